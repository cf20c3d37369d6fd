"""Node protobuf ⇄ domain conversions."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from fedcredit.errors import InvalidRequestError
from fedcredit.protocol import HopOutcome, SignedConsent, SignedPlan
from fedcredit.serde import (
    accumulator_from_pb,
    accumulator_to_pb,
    outcome_from_pb,
    outcome_to_pb,
    signed_consent_from_pb,
    signed_consent_to_pb,
    signed_plan_from_pb,
    signed_plan_to_pb,
)
from mpc.batch_he import BatchCipher, BatchPublicKey
from mpc.batch_he import from_wire as batch_from_wire
from mpc.batch_he import to_wire as batch_to_wire
from mpc.paillier import PaillierPublicKey
from mpc.secure_sum import EncryptedContribution
from node.product_catalog import CatalogView
from proto.v1 import coordinator_pb2, node_pb2
from scoring.products import Product, ProductError
from scoring.scorecard import Grade

PSEUDONYM_BYTES = 32


@dataclass(frozen=True)
class SealedAccumulator:
    """An accumulator as received: bytes not yet checked against any key."""

    key_fingerprint: bytes
    encoding_version: int
    ciphertexts: tuple[bytes, ...]


@dataclass(frozen=True)
class ContributeCall:
    """A Contribute request whose accumulator is still unparsed: its key comes from the plan,
    which must be verified first."""

    plan: SignedPlan
    pseudonym: bytes
    consent: SignedConsent
    hop_index: int
    accumulator: SealedAccumulator | None

    def parse_accumulator(self, key: PaillierPublicKey) -> EncryptedContribution | None:
        if self.accumulator is None:
            return None
        sealed = self.accumulator
        return EncryptedContribution.from_wire(
            key, sealed.key_fingerprint, sealed.encoding_version, sealed.ciphertexts
        )


def contribute_request_from_pb(msg: node_pb2.ContributeRequest) -> ContributeCall:
    if not msg.HasField("plan"):
        raise InvalidRequestError("plan is required")
    if len(msg.subject_pseudonym) != PSEUDONYM_BYTES:
        raise InvalidRequestError("subject_pseudonym must be 32 bytes")
    consent = signed_consent_from_pb(msg.consent)  # CONSENT_MISSING when absent
    return ContributeCall(
        plan=signed_plan_from_pb(msg.plan),
        pseudonym=msg.subject_pseudonym,
        consent=consent,
        hop_index=msg.hop_index,
        accumulator=(
            SealedAccumulator(
                key_fingerprint=msg.accumulator.key_fingerprint,
                encoding_version=msg.accumulator.encoding_version,
                ciphertexts=tuple(msg.accumulator.ciphertexts),
            )
            if msg.HasField("accumulator")
            else None
        ),
    )


def contribute_request_to_pb(
    plan: SignedPlan,
    pseudonym: bytes,
    consent: SignedConsent,
    hop_index: int,
    accumulator: EncryptedContribution | None,
    key: PaillierPublicKey,
) -> node_pb2.ContributeRequest:
    msg = node_pb2.ContributeRequest(
        plan=signed_plan_to_pb(plan),
        subject_pseudonym=pseudonym,
        consent=signed_consent_to_pb(consent),
        hop_index=hop_index,
    )
    if accumulator is not None:
        msg.accumulator.CopyFrom(accumulator_to_pb(accumulator, key))
    return msg


def contribute_reply_to_pb(
    accumulator: EncryptedContribution | None,
    outcomes: tuple[HopOutcome, ...],
    key: PaillierPublicKey,
) -> node_pb2.ContributeReply:
    msg = node_pb2.ContributeReply(outcomes=[outcome_to_pb(o) for o in outcomes])
    if accumulator is not None:
        msg.accumulator.CopyFrom(accumulator_to_pb(accumulator, key))
    return msg


def contribute_reply_from_pb(
    msg: node_pb2.ContributeReply, key: PaillierPublicKey
) -> tuple[EncryptedContribution | None, tuple[HopOutcome, ...]]:
    accumulator = accumulator_from_pb(msg.accumulator, key) if msg.HasField("accumulator") else None
    return accumulator, tuple(outcome_from_pb(o) for o in msg.outcomes)


def product_from_pb(msg: coordinator_pb2.LoanProduct) -> Product:
    """Money arrives as decimal strings; anything malformed refuses the whole catalog."""
    try:
        return Product(
            product_id=msg.product_id, member_id=msg.member_id, name=msg.name,
            min_amount=Decimal(msg.min_amount), max_amount=Decimal(msg.max_amount),
            terms_months=tuple(msg.terms_months), apr=Decimal(msg.apr),
            disbursement_days=msg.disbursement_days,
            eligible_grades=frozenset(Grade(g) for g in msg.eligible_grades))
    except (InvalidOperation, ValueError) as exc:  # ProductError is a ValueError
        what = str(exc) if isinstance(exc, ProductError) else "a malformed amount or grade"
        raise InvalidRequestError(f"product {msg.product_id!r} from the coordinator: {what}"
                                  ) from None


def product_catalog_from_pb(msg: coordinator_pb2.ProductCatalog) -> CatalogView | None:
    """The catalog, or None when the reply says the version held is current."""
    if msg.unchanged:
        return None
    return CatalogView(msg.version, tuple(product_from_pb(p) for p in msg.products))


@dataclass(frozen=True)
class SealedBatch:
    """A portfolio accumulator as received: bytes not yet parsed under the job's key."""

    subjects: int
    partials: bytes
    lanes: tuple[bytes, ...]

    def parse(self, key: BatchPublicKey) -> BatchCipher:
        return batch_from_wire(key, self.subjects, self.partials, self.lanes)


@dataclass(frozen=True)
class OpenPortfolioCall:
    plan: SignedPlan
    consent: SignedConsent
    public_key: bytes
    hop_index: int


@dataclass(frozen=True)
class PortfolioChunkCall:
    plan: SignedPlan
    hop_index: int
    chunk_index: int
    pseudonyms: tuple[bytes, ...]
    proof: tuple[bytes, ...]
    accumulator: SealedBatch | None

    @property
    def pseudonym_bytes(self) -> bytes:
        return b"".join(self.pseudonyms)


def open_portfolio_to_pb(call: OpenPortfolioCall) -> node_pb2.OpenPortfolioRequest:
    return node_pb2.OpenPortfolioRequest(
        plan=signed_plan_to_pb(call.plan), consent=signed_consent_to_pb(call.consent),
        public_key=call.public_key, hop_index=call.hop_index)


def open_portfolio_from_pb(msg: node_pb2.OpenPortfolioRequest) -> OpenPortfolioCall:
    if not msg.HasField("plan"):
        raise InvalidRequestError("plan is required")
    return OpenPortfolioCall(
        plan=signed_plan_from_pb(msg.plan), consent=signed_consent_from_pb(msg.consent),
        public_key=msg.public_key, hop_index=msg.hop_index)


def _batch_to_pb(cipher: BatchCipher) -> node_pb2.BatchCiphertext:
    partials, lanes = batch_to_wire(cipher)
    return node_pb2.BatchCiphertext(subjects=cipher.subjects, partials=partials, lanes=lanes)


def _sealed_batch(msg: node_pb2.BatchCiphertext) -> SealedBatch:
    return SealedBatch(msg.subjects, msg.partials, tuple(msg.lanes))


def portfolio_chunk_to_pb(plan: SignedPlan, hop_index: int, chunk_index: int,
                          pseudonyms: bytes, proof: tuple[bytes, ...],
                          accumulator: BatchCipher | None) -> node_pb2.PortfolioChunkRequest:
    msg = node_pb2.PortfolioChunkRequest(
        plan=signed_plan_to_pb(plan), hop_index=hop_index, chunk_index=chunk_index,
        pseudonyms=pseudonyms, inclusion_proof=proof)
    if accumulator is not None:
        msg.accumulator.CopyFrom(_batch_to_pb(accumulator))
    return msg


def portfolio_chunk_from_pb(msg: node_pb2.PortfolioChunkRequest) -> PortfolioChunkCall:
    if not msg.HasField("plan"):
        raise InvalidRequestError("plan is required")
    data = msg.pseudonyms
    if not data or len(data) % PSEUDONYM_BYTES:
        raise InvalidRequestError(f"pseudonyms must be a non-empty run of {PSEUDONYM_BYTES}-byte "
                                  "pseudonyms")
    return PortfolioChunkCall(
        plan=signed_plan_from_pb(msg.plan), hop_index=msg.hop_index,
        chunk_index=msg.chunk_index,
        pseudonyms=tuple(data[i:i + PSEUDONYM_BYTES] for i in range(0, len(data),
                                                                     PSEUDONYM_BYTES)),
        proof=tuple(msg.inclusion_proof),
        accumulator=_sealed_batch(msg.accumulator) if msg.HasField("accumulator") else None)


def portfolio_reply_to_pb(accumulator: BatchCipher | None, outcomes: tuple[HopOutcome, ...]
                          ) -> node_pb2.PortfolioChunkReply:
    msg = node_pb2.PortfolioChunkReply(outcomes=[outcome_to_pb(o) for o in outcomes])
    if accumulator is not None:
        msg.accumulator.CopyFrom(_batch_to_pb(accumulator))
    return msg


def portfolio_reply_from_pb(msg: node_pb2.PortfolioChunkReply, key: BatchPublicKey
                            ) -> tuple[BatchCipher | None, tuple[HopOutcome, ...]]:
    accumulator = _sealed_batch(msg.accumulator).parse(key) if msg.HasField(
        "accumulator") else None
    return accumulator, tuple(outcome_from_pb(o) for o in msg.outcomes)
