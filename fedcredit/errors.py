"""One error hierarchy with stable codes.

Every failure a caller can see is a :class:`FedCreditError` carrying an :class:`ErrorCode`.
The codes are part of the public contract (HTTP bodies, gRPC trailing metadata, logs): never
rename one, only add. :mod:`fedcredit.error_catalog` maps each code to its gRPC and HTTP status.
"""

from __future__ import annotations

from enum import StrEnum


class ErrorCode(StrEnum):
    INVALID_REQUEST = "INVALID_REQUEST"
    MALFORMED_IDENTIFIER = "MALFORMED_IDENTIFIER"
    CONSENT_MISSING = "CONSENT_MISSING"
    CONSENT_EXPIRED = "CONSENT_EXPIRED"
    CONSENT_PURPOSE_NOT_ALLOWED = "CONSENT_PURPOSE_NOT_ALLOWED"
    UNKNOWN_API_KEY = "UNKNOWN_API_KEY"
    REGISTRATION_REFUSED = "REGISTRATION_REFUSED"
    UNKNOWN_MEMBER = "UNKNOWN_MEMBER"
    PLAN_INVALID = "PLAN_INVALID"
    PLAN_EXPIRED = "PLAN_EXPIRED"
    NOT_ON_ROUTE = "NOT_ON_ROUTE"
    KEY_TOO_SHORT = "KEY_TOO_SHORT"
    KEY_MISMATCH = "KEY_MISMATCH"
    DECRYPTION_FAILED = "DECRYPTION_FAILED"
    MESSAGE_TOO_LARGE = "MESSAGE_TOO_LARGE"
    MODEL_VERSION_UNAVAILABLE = "MODEL_VERSION_UNAVAILABLE"
    NO_MEMBERS_AVAILABLE = "NO_MEMBERS_AVAILABLE"
    INSUFFICIENT_COVERAGE = "INSUFFICIENT_COVERAGE"
    NODE_UNAVAILABLE = "NODE_UNAVAILABLE"
    DEADLINE_EXCEEDED = "DEADLINE_EXCEEDED"
    COORDINATOR_UNAVAILABLE = "COORDINATOR_UNAVAILABLE"
    EVALUATION_NOT_FOUND = "EVALUATION_NOT_FOUND"
    INVALID_FEATURE_FILE = "INVALID_FEATURE_FILE"
    CONFIGURATION_INVALID = "CONFIGURATION_INVALID"
    INSECURE_TRANSPORT_REFUSED = "INSECURE_TRANSPORT_REFUSED"
    INGEST_SOURCE_INVALID = "INGEST_SOURCE_INVALID"
    SNAPSHOT_INVALID = "SNAPSHOT_INVALID"
    SNAPSHOT_NOT_FOUND = "SNAPSHOT_NOT_FOUND"
    FEATURE_STORE_UNAVAILABLE = "FEATURE_STORE_UNAVAILABLE"
    CERTIFICATE_INVALID = "CERTIFICATE_INVALID"
    CERTIFICATE_REVOKED = "CERTIFICATE_REVOKED"
    MEMBER_SUSPENDED = "MEMBER_SUSPENDED"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    CONSENT_INVALID = "CONSENT_INVALID"
    PLAN_REPLAYED = "PLAN_REPLAYED"
    RESOURCE_NOT_FOUND = "RESOURCE_NOT_FOUND"
    RESOURCE_CONFLICT = "RESOURCE_CONFLICT"
    POLICY_INVALID = "POLICY_INVALID"
    LEDGER_TAMPERED = "LEDGER_TAMPERED"
    LEDGER_RANGE_INVALID = "LEDGER_RANGE_INVALID"
    TRAINING_DATA_INVALID = "TRAINING_DATA_INVALID"
    OVERLAP_TOO_SMALL = "OVERLAP_TOO_SMALL"
    TRAINING_ABORTED = "TRAINING_ABORTED"
    PORTFOLIO_NOT_OPEN = "PORTFOLIO_NOT_OPEN"
    JOB_INTERRUPTED = "JOB_INTERRUPTED"
    INTERNAL = "INTERNAL"


class FedCreditError(Exception):
    """Base of every error this project raises on purpose.

    ``detail`` is safe to show to the caller; it must never contain secrets, raw identifiers,
    feature values or plaintext partial results.
    """

    code: ErrorCode = ErrorCode.INTERNAL

    def __init__(self, detail: str | None = None, *, code: ErrorCode | None = None) -> None:
        if code is not None:
            self.code = code
        self.detail = detail or self.code.value.replace("_", " ").lower()
        super().__init__(self.detail)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.code.value}: {self.detail})"


class InvalidRequestError(FedCreditError):
    code = ErrorCode.INVALID_REQUEST


class MalformedIdentifierError(FedCreditError):
    code = ErrorCode.MALFORMED_IDENTIFIER


class ConsentError(FedCreditError):
    code = ErrorCode.CONSENT_MISSING


class AuthenticationError(FedCreditError):
    code = ErrorCode.UNKNOWN_API_KEY


class PlanError(FedCreditError):
    code = ErrorCode.PLAN_INVALID


class InvalidSignature(FedCreditError):  # noqa: N818 - named after cryptography's
    """Opaque: a signature did not verify. Says nothing about why (no oracle).

    The code names what was being verified (a plan, a consent, a tree head), never the reason.
    """

    code = ErrorCode.PLAN_INVALID

    def __init__(self, *, code: ErrorCode | None = None) -> None:
        super().__init__("signature verification failed", code=code)


class DecryptionError(FedCreditError):
    """Opaque: a ciphertext did not decrypt to a valid encoding. Says nothing about why."""

    code = ErrorCode.DECRYPTION_FAILED

    def __init__(self) -> None:
        super().__init__("decryption failed")


class KeyTooShortError(FedCreditError):
    code = ErrorCode.KEY_TOO_SHORT


class KeyMismatchError(FedCreditError):
    code = ErrorCode.KEY_MISMATCH


class ModelUnavailableError(FedCreditError):
    code = ErrorCode.MODEL_VERSION_UNAVAILABLE


class CoverageError(FedCreditError):
    code = ErrorCode.INSUFFICIENT_COVERAGE


class UnavailableError(FedCreditError):
    code = ErrorCode.NODE_UNAVAILABLE


class NotFoundError(FedCreditError):
    code = ErrorCode.EVALUATION_NOT_FOUND


class FeatureFileError(FedCreditError):
    code = ErrorCode.INVALID_FEATURE_FILE


class ConfigurationError(FedCreditError):
    code = ErrorCode.CONFIGURATION_INVALID


class IngestSourceError(FedCreditError):
    """A source table cannot be ingested at all (missing, empty, unmapped or mistyped column)."""

    code = ErrorCode.INGEST_SOURCE_INVALID


class SnapshotError(FedCreditError):
    """A snapshot is incomplete, corrupt or does not fit the store; nothing was loaded."""

    code = ErrorCode.SNAPSHOT_INVALID


class SnapshotNotFoundError(FedCreditError):
    code = ErrorCode.SNAPSHOT_NOT_FOUND


class FeatureStoreUnavailableError(FedCreditError):
    code = ErrorCode.FEATURE_STORE_UNAVAILABLE


class CertificateError(FedCreditError):
    """A certificate is not from the alliance CA, has expired, or names the wrong party."""

    code = ErrorCode.CERTIFICATE_INVALID


class PermissionDeniedError(FedCreditError):
    code = ErrorCode.PERMISSION_DENIED


class ResourceNotFoundError(FedCreditError):
    code = ErrorCode.RESOURCE_NOT_FOUND


class ConflictError(FedCreditError):
    code = ErrorCode.RESOURCE_CONFLICT


class PolicyError(FedCreditError):
    code = ErrorCode.POLICY_INVALID


class LedgerTamperedError(FedCreditError):
    code = ErrorCode.LEDGER_TAMPERED


class LedgerRangeError(FedCreditError):
    code = ErrorCode.LEDGER_RANGE_INVALID


class TrainingDataError(FedCreditError):
    """A party's training table cannot be used (missing id or label column, duplicate ids,
    non-binary label, non-numeric values, no usable feature). Names rows and columns, never
    values."""

    code = ErrorCode.TRAINING_DATA_INVALID


class OverlapTooSmallError(FedCreditError):
    code = ErrorCode.OVERLAP_TOO_SMALL


class TrainingAbortedError(FedCreditError):
    """A training session stopped before the end (a party failed, left, or timed out);
    nothing was registered."""

    code = ErrorCode.TRAINING_ABORTED
