"""The one catalog: each error code's gRPC status, HTTP status and public meaning.

Edges apply it: gRPC servicers abort with :func:`grpc_status` and put the code in trailing
metadata (key :data:`ERROR_CODE_METADATA_KEY`); FastAPI handlers answer with :func:`http_status`
and a JSON body ``{"error": {"code", "message", "detail"}}``. ``docs/security.md`` and the
OpenAPI error responses come from the same table (a test keeps the docs equal to it).
"""

from __future__ import annotations

from dataclasses import dataclass

import grpc

from fedcredit.errors import ErrorCode, FedCreditError

ERROR_CODE_METADATA_KEY = "fedcredit-error-code"
#: What gRPC says when this side's TLS refused the server's certificate. (When the *server*
#: refuses ours, the client only sees the connection close: that stays NODE_UNAVAILABLE.)
_TLS_REFUSALS = ("CERTIFICATE_VERIFY_FAILED", "Hostname Verification", "certificate has expired")


@dataclass(frozen=True)
class CatalogEntry:
    grpc_status: grpc.StatusCode
    http_status: int
    message: str


_S = grpc.StatusCode
CATALOG: dict[ErrorCode, CatalogEntry] = {
    ErrorCode.INVALID_REQUEST: CatalogEntry(_S.INVALID_ARGUMENT, 422, "The request is malformed."),
    ErrorCode.MALFORMED_IDENTIFIER: CatalogEntry(
        _S.INVALID_ARGUMENT, 422, "The applicant identifier is malformed for its type."
    ),
    ErrorCode.CONSENT_MISSING: CatalogEntry(
        _S.FAILED_PRECONDITION, 403, "The applicant's consent is missing."
    ),
    ErrorCode.CONSENT_EXPIRED: CatalogEntry(
        _S.FAILED_PRECONDITION, 403, "The applicant's consent has expired."
    ),
    ErrorCode.CONSENT_PURPOSE_NOT_ALLOWED: CatalogEntry(
        _S.PERMISSION_DENIED, 403, "The consent purpose is not allowed by alliance policy."
    ),
    ErrorCode.UNKNOWN_API_KEY: CatalogEntry(
        _S.UNAUTHENTICATED, 401, "Missing or unknown API key."
    ),
    ErrorCode.REGISTRATION_REFUSED: CatalogEntry(
        _S.PERMISSION_DENIED, 403, "The coordinator refused the member's credentials."
    ),
    ErrorCode.UNKNOWN_MEMBER: CatalogEntry(
        _S.NOT_FOUND, 404, "No such member is registered with the coordinator."
    ),
    ErrorCode.PLAN_INVALID: CatalogEntry(
        _S.UNAUTHENTICATED, 502, "The evaluation plan failed verification."
    ),
    ErrorCode.PLAN_EXPIRED: CatalogEntry(
        _S.FAILED_PRECONDITION, 504, "The evaluation plan has expired."
    ),
    ErrorCode.NOT_ON_ROUTE: CatalogEntry(
        _S.PERMISSION_DENIED, 502, "This member is not the addressed hop of the plan."
    ),
    ErrorCode.KEY_TOO_SHORT: CatalogEntry(
        _S.INVALID_ARGUMENT, 422, "Paillier keys shorter than 2048 bits are refused."
    ),
    ErrorCode.KEY_MISMATCH: CatalogEntry(
        _S.INVALID_ARGUMENT, 502, "A ciphertext is not under the planned requester key."
    ),
    ErrorCode.DECRYPTION_FAILED: CatalogEntry(
        _S.INTERNAL, 502, "The joint result could not be decrypted."
    ),
    ErrorCode.MESSAGE_TOO_LARGE: CatalogEntry(
        _S.RESOURCE_EXHAUSTED, 413, "The message exceeds the size limit."
    ),
    ErrorCode.MODEL_VERSION_UNAVAILABLE: CatalogEntry(
        _S.FAILED_PRECONDITION, 409, "The requested model version is not installed here."
    ),
    ErrorCode.NO_MEMBERS_AVAILABLE: CatalogEntry(
        _S.UNAVAILABLE, 503, "No other active member can contribute right now."
    ),
    ErrorCode.INSUFFICIENT_COVERAGE: CatalogEntry(
        _S.UNAVAILABLE, 503, "Too few members answered to give a joint result."
    ),
    ErrorCode.NODE_UNAVAILABLE: CatalogEntry(_S.UNAVAILABLE, 503, "A member node is unreachable."),
    ErrorCode.DEADLINE_EXCEEDED: CatalogEntry(
        _S.DEADLINE_EXCEEDED, 504, "The evaluation ran out of time."
    ),
    ErrorCode.COORDINATOR_UNAVAILABLE: CatalogEntry(
        _S.UNAVAILABLE, 503, "The coordinator is unreachable."
    ),
    ErrorCode.EVALUATION_NOT_FOUND: CatalogEntry(
        _S.NOT_FOUND, 404, "No evaluation with this id exists at this node."
    ),
    ErrorCode.INVALID_FEATURE_FILE: CatalogEntry(
        _S.INVALID_ARGUMENT, 422, "The feature file failed validation; nothing was loaded."
    ),
    ErrorCode.CONFIGURATION_INVALID: CatalogEntry(
        _S.FAILED_PRECONDITION, 500, "The service configuration is invalid."
    ),
    ErrorCode.INSECURE_TRANSPORT_REFUSED: CatalogEntry(
        _S.FAILED_PRECONDITION, 500, "Plaintext transport is refused; use TLS."
    ),
    ErrorCode.INGEST_SOURCE_INVALID: CatalogEntry(
        _S.INVALID_ARGUMENT, 422, "A source table cannot be ingested; no snapshot was written."
    ),
    ErrorCode.SNAPSHOT_INVALID: CatalogEntry(
        _S.FAILED_PRECONDITION, 422, "The snapshot is incomplete or corrupt; nothing was loaded."
    ),
    ErrorCode.SNAPSHOT_NOT_FOUND: CatalogEntry(
        _S.NOT_FOUND, 404, "No snapshot with this id is known to the feature store."
    ),
    ErrorCode.FEATURE_STORE_UNAVAILABLE: CatalogEntry(
        _S.UNAVAILABLE, 503, "The feature store cannot be reached."
    ),
    ErrorCode.CERTIFICATE_INVALID: CatalogEntry(
        _S.UNAUTHENTICATED, 401, "The certificate is not a valid alliance certificate."
    ),
    ErrorCode.CERTIFICATE_REVOKED: CatalogEntry(
        _S.UNAUTHENTICATED, 401, "The certificate has been revoked."
    ),
    ErrorCode.MEMBER_SUSPENDED: CatalogEntry(
        _S.PERMISSION_DENIED, 403, "The member is suspended from the alliance."
    ),
    ErrorCode.PERMISSION_DENIED: CatalogEntry(
        _S.PERMISSION_DENIED, 403, "The caller's role does not permit this action."
    ),
    ErrorCode.CONSENT_INVALID: CatalogEntry(
        _S.PERMISSION_DENIED, 403, "The signed consent failed verification."
    ),
    ErrorCode.PLAN_REPLAYED: CatalogEntry(
        _S.ALREADY_EXISTS, 409, "The evaluation plan was already used here."
    ),
    ErrorCode.RESOURCE_NOT_FOUND: CatalogEntry(
        _S.NOT_FOUND, 404, "No such resource exists."
    ),
    ErrorCode.RESOURCE_CONFLICT: CatalogEntry(
        _S.ALREADY_EXISTS, 409, "The resource's state does not allow this change."
    ),
    ErrorCode.POLICY_INVALID: CatalogEntry(
        _S.INVALID_ARGUMENT, 422, "The alliance policy is invalid; nothing was changed."
    ),
    ErrorCode.LEDGER_TAMPERED: CatalogEntry(
        _S.DATA_LOSS, 500, "The audit ledger failed verification."
    ),
    ErrorCode.LEDGER_RANGE_INVALID: CatalogEntry(
        _S.OUT_OF_RANGE, 422, "The requested ledger range or tree size does not exist."
    ),
    ErrorCode.TRAINING_DATA_INVALID: CatalogEntry(
        _S.INVALID_ARGUMENT, 422, "A party's training data cannot be used."
    ),
    ErrorCode.OVERLAP_TOO_SMALL: CatalogEntry(
        _S.FAILED_PRECONDITION, 409, "The parties share too few subjects to train."
    ),
    ErrorCode.TRAINING_ABORTED: CatalogEntry(
        _S.ABORTED, 409, "The training session stopped; no model was registered."
    ),
    ErrorCode.PORTFOLIO_NOT_OPEN: CatalogEntry(
        _S.FAILED_PRECONDITION, 409, "The portfolio job is not open at this member."
    ),
    ErrorCode.JOB_INTERRUPTED: CatalogEntry(
        _S.ABORTED, 409, "The job was interrupted by a node restart; start it again."
    ),
    ErrorCode.INTERNAL: CatalogEntry(_S.INTERNAL, 500, "Internal error."),
}

_BY_NAME = {code.value: code for code in ErrorCode}


def entry(code: ErrorCode) -> CatalogEntry:
    return CATALOG[code]


def grpc_status(error: FedCreditError) -> grpc.StatusCode:
    return CATALOG[error.code].grpc_status


def http_status(error: FedCreditError) -> int:
    return CATALOG[error.code].http_status


def code_from_name(name: str) -> ErrorCode | None:
    return _BY_NAME.get(name)


def error_from_rpc(exc: grpc.RpcError, *, default: ErrorCode) -> FedCreditError:
    """Turn a failed call into a typed error, using the peer's code when it sent one."""
    code: ErrorCode | None = None
    trailing = exc.trailing_metadata() if hasattr(exc, "trailing_metadata") else None
    for item in trailing or ():
        if item[0] == ERROR_CODE_METADATA_KEY:  # type: ignore[index]
            code = code_from_name(str(item[1]))  # type: ignore[index]
    status = exc.code() if hasattr(exc, "code") else None
    details = exc.details() if hasattr(exc, "details") else None
    if code is None and status == grpc.StatusCode.UNAVAILABLE and any(
        marker in str(details) for marker in _TLS_REFUSALS
    ):
        # This side refused the peer's certificate (another CA, expired, wrong member name).
        code = ErrorCode.CERTIFICATE_INVALID
    if code is None:
        if status == grpc.StatusCode.DEADLINE_EXCEEDED:
            code = ErrorCode.DEADLINE_EXCEEDED
        elif status == grpc.StatusCode.RESOURCE_EXHAUSTED:
            code = ErrorCode.MESSAGE_TOO_LARGE
        else:
            code = default
    return FedCreditError(str(details or code.value), code=code)
