"""A node's part of a portfolio re-scoring job: the hop side.

The requester opens the job at every hop (``OpenPortfolio``: the batch plan, the signed
consent whose "pseudonym" is the Merkle root over the job's chunks, the TenSEAL public key the
plan commits to), then walks each chunk down the CHAIN (``ContributePortfolio``) exactly like a
joint evaluation: a hop checks the chunk against the consent's root, looks its subjects up in
one query, encrypts its shares (one CKKS + two BFV ciphertexts per 4,096 subjects), adds them
to the accumulator and passes it on; the hop the requester called returns the final sum, and
only with ``min_answered`` shares in it.

Each chunk index is served at most once per job at this hop and only within the plan's
chunk count: one portfolio plan is not a licence for unlimited lookups.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass, field

from fedcredit.audit import EntryDraft, EntryKind
from fedcredit.clock import Clock
from fedcredit.consents import verify_consent
from fedcredit.errors import (
    ConsentError,
    ErrorCode,
    FedCreditError,
    KeyMismatchError,
    PermissionDeniedError,
)
from fedcredit.protocol import (
    HopOutcome,
    Plan,
    Purpose,
    SignedPlan,
)
from fedcredit.serde import consent_from_bytes
from mpc.batch_he import BatchCipher, BatchPublicKey, add, encrypt, to_wire
from mpc.merkle import leaf_hash, verify_inclusion
from mpc.pki import CertifiedIdentity
from node.audit_trail import AuditTrail
from node.batch_share import batch_share
from node.blacklist import SubjectFlags
from node.contribution import ContributionService, check_chain_caller, require_coverage
from node.models import ModelCatalog
from node.route import RouteForwarder
from node.serde import OpenPortfolioCall, PortfolioChunkCall
from node.store import FeatureStore
from scoring.model import ModelSlice

log = logging.getLogger(__name__)

#: Jobs open at once at one hop (each holds ~1 MB of TenSEAL contexts).
MAX_OPEN_JOBS = 32


def chunk_leaf(chunk_index: int, pseudonyms: bytes) -> bytes:
    """The Merkle leaf of one chunk: its index and its pseudonyms, in order."""
    return leaf_hash(chunk_index.to_bytes(4, "big") + pseudonyms)


@dataclass
class _Job:
    plan: Plan
    key: BatchPublicKey
    root: bytes
    consent_sha256: str
    model: ModelSlice
    served: set[int] = field(default_factory=set)


class PortfolioHop:
    def __init__(
        self,
        member_id: str,
        contributions: ContributionService,
        store: FeatureStore,
        models: ModelCatalog,
        forwarder: RouteForwarder,
        allowed_purposes: frozenset[Purpose],
        audit: AuditTrail,
        flags: SubjectFlags,
        clock: Clock,
    ) -> None:
        self._member_id = member_id
        self._contributions = contributions
        self._directory = contributions.directory
        self._store = store
        self._models = models
        self._forwarder = forwarder
        self._allowed = allowed_purposes
        self._audit = audit
        self._flags = flags
        self._clock = clock
        self._jobs: dict[str, _Job] = {}
        self._lock = threading.Lock()

    def _batch_plan(self, signed_plan: SignedPlan, hop_index: int, now: int) -> Plan:
        plan = self._contributions.verified_plan(signed_plan, now)
        if plan.batch is None:
            raise FedCreditError("a joint evaluation's plan covers no portfolio",
                                 code=ErrorCode.PLAN_INVALID)
        if hop_index >= len(plan.route) or plan.route[hop_index].member_id != self._member_id:
            raise FedCreditError("this member is not the addressed hop",
                                 code=ErrorCode.NOT_ON_ROUTE)
        return plan

    def open(self, call: OpenPortfolioCall, caller: CertifiedIdentity) -> None:
        """Register a job: its plan, consent and key, all checked."""
        now = self._clock()
        plan = self._batch_plan(call.plan, call.hop_index, now)
        assert plan.batch is not None
        if caller.party_id != plan.requester_id:
            raise PermissionDeniedError("only the requester opens its portfolio job")
        self._directory.require_active(plan.requester_id)
        if hashlib.sha256(call.public_key).digest() != plan.batch.key_sha256:
            raise KeyMismatchError("the portfolio key is not the one the plan commits to")
        consent = verify_consent(
            call.consent, self._directory.member_verifier(plan.requester_id, call.consent.key_id),
            plan=plan, pseudonym=_consent_root(call), now_ms=now, allowed_purposes=None)
        if plan.purpose not in self._allowed:
            raise ConsentError(f"purpose {plan.purpose.value} is not allowed",
                               code=ErrorCode.CONSENT_PURPOSE_NOT_ALLOWED)
        model = self._models.get(plan.model_version)
        key = BatchPublicKey.from_bytes(call.public_key)
        with self._lock:
            self._expire(now)
            if plan.query_id in self._jobs:
                raise FedCreditError("this portfolio job is open already",
                                     code=ErrorCode.PLAN_REPLAYED)
            if len(self._jobs) >= MAX_OPEN_JOBS:
                raise FedCreditError(f"{MAX_OPEN_JOBS} portfolio jobs are open at this member; "
                                     "try again when one ends", code=ErrorCode.RESOURCE_CONFLICT)
            self._jobs[plan.query_id] = _Job(plan, key, consent.subject_pseudonym,
                                             hashlib.sha256(call.consent.body).hexdigest(), model)
        log.info("portfolio %s opened: %d subjects in %d chunks for %s", plan.query_id,
                 plan.batch.subjects, plan.batch.chunks, plan.requester_id)

    def contribute(self, call: PortfolioChunkCall, caller: CertifiedIdentity,
                   caller_deadline_ms: int | None) -> tuple[BatchCipher | None,
                                                            tuple[HopOutcome, ...]]:
        now = self._clock()
        plan = self._batch_plan(call.plan, call.hop_index, now)
        check_chain_caller(plan, call.hop_index, caller.party_id, call.accumulator is not None)
        self._directory.require_active(plan.requester_id)
        job = self._job(plan.query_id)
        terms = plan.batch
        assert terms is not None
        if not 0 <= call.chunk_index < terms.chunks or len(call.pseudonyms) != (
            terms.chunk_size(call.chunk_index)
        ):
            raise FedCreditError("the chunk is not one of the plan's", code=ErrorCode.PLAN_INVALID)
        pseudonyms = call.pseudonym_bytes
        if not verify_inclusion(chunk_leaf(call.chunk_index, pseudonyms), call.chunk_index,
                                terms.chunks, call.proof, job.root):
            raise ConsentError("the chunk is not covered by the job's consent",
                               code=ErrorCode.CONSENT_INVALID)
        incoming = None if call.accumulator is None else call.accumulator.parse(job.key)
        if incoming is not None and incoming.subjects != len(call.pseudonyms):
            raise FedCreditError("the accumulator covers another chunk",
                                 code=ErrorCode.INVALID_REQUEST)
        with self._lock:
            if call.chunk_index in job.served:
                raise FedCreditError("this chunk was served already",
                                     code=ErrorCode.PLAN_REPLAYED)
            job.served.add(call.chunk_index)
        share, clamped = batch_share(
            call.pseudonyms, self._store.lookup_many(call.pseudonyms), job.model,
            self._flags.flagged_among(call.pseudonyms, now))
        if clamped:
            log.warning("portfolio %s chunk %d: %d value(s) clamped to the batch bounds",
                        plan.query_id, call.chunk_index, clamped)
        mine = encrypt(job.key, share)
        accumulator = mine if incoming is None else add(incoming, mine)
        self._record(plan, job, call, accumulator)
        deadline = plan.expires_unix_ms if caller_deadline_ms is None else min(
            plan.expires_unix_ms, caller_deadline_ms)
        final, later = self._forwarder.forward_chunk(
            plan, call.plan, job.key, call.chunk_index, pseudonyms, call.proof,
            call.hop_index + 1, accumulator, deadline)
        outcomes = (HopOutcome(self._member_id, True), *later)
        if incoming is None:  # this hop started the sum: its reply goes to the key holder
            require_coverage(outcomes, plan.fallback.min_answered)
        return final, outcomes

    def _job(self, query_id: str) -> _Job:
        with self._lock:
            self._expire(self._clock())
            job = self._jobs.get(query_id)
        if job is None:
            raise FedCreditError("this portfolio job is not open at this member (it expired, "
                                 "or this node restarted): open it again",
                                 code=ErrorCode.PORTFOLIO_NOT_OPEN)
        return job

    def _expire(self, now: int) -> None:
        for query_id in [q for q, j in self._jobs.items() if j.plan.expires_unix_ms <= now]:
            del self._jobs[query_id]

    def _record(self, plan: Plan, job: _Job, call: PortfolioChunkCall, sent: BatchCipher
                ) -> None:
        partials, lanes = to_wire(sent)
        self._audit.enqueue(EntryDraft(
            kind=EntryKind.CONTRIBUTION, actor=self._member_id, query_id=plan.query_id, body={
                "accumulator_sha256": hashlib.sha256(partials + b"".join(lanes)).hexdigest(),
                "consent_sha256": job.consent_sha256,
                "chunk": call.chunk_index,
                "subjects": len(call.pseudonyms),
                "hop_index": call.hop_index,
            }))


def _consent_root(call: OpenPortfolioCall) -> bytes:
    """The Merkle root the requester signed in the consent's pseudonym field: no hop can know
    it otherwise. :func:`verify_consent` checks the signature over it before anything else, and
    every chunk is then checked against it."""
    return consent_from_bytes(call.consent.body).subject_pseudonym
