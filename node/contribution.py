"""A node's part of a joint evaluation: verify, compute, encrypt, add, pass on."""

from __future__ import annotations

import hashlib
from typing import Any

from fedcredit.audit import EntryDraft, EntryKind
from fedcredit.clock import Clock
from fedcredit.consents import verify_consent
from fedcredit.errors import (
    CoverageError,
    ErrorCode,
    FedCreditError,
    InvalidRequestError,
    PermissionDeniedError,
)
from fedcredit.plans import verify_plan
from fedcredit.protocol import HopOutcome, Plan, Purpose, RouteMode, SignedPlan, describe_skips
from mpc.contribution import ContributionVector, clamp_share
from mpc.pki import CertifiedIdentity
from mpc.secure_sum import accumulate
from node.audit_trail import AuditTrail
from node.blacklist import SubjectFlags
from node.directory import MemberDirectory
from node.ingest.snapshot import SubjectRecord
from node.models import ModelCatalog
from node.obfuscator_pools import ObfuscatorPools
from node.replay import SeenPlans
from node.route import RouteForwarder, RouteResult
from node.serde import ContributeCall
from node.store import FeatureStore
from scoring.model import ModelSlice


def contribution_for(record: SubjectRecord | None, model: ModelSlice,
                     flagged: bool = False) -> ContributionVector:
    """This member's additive share; zero (with has_record=0) when it has no record, except
    for its blacklist flag, which a member may hold on someone it has no record of.

    The partial logit and its reason slots are clamped to ±MAX_ABS_PARTIAL: beyond
    |logit| ≈ 40 the probability is already 0 or 1, and failing instead would skip this member,
    which would tell the requester that it holds a record.
    """
    if record is None:
        return ContributionVector(flagged=int(flagged))
    partial, slots = model.partials(record.features)
    reason_slots: dict[str, Any] = {slot.value: clamp_share(value) for slot, value in slots.items()}
    return ContributionVector(
        model_partial=clamp_share(partial),
        has_record=1,
        flagged=int(flagged),
        with_active_loans=int(record.exposures.get("active_loans", 0) > 0),
        **reason_slots,
        **record.exposures,
    )


class ContributionService:
    def __init__(
        self,
        member_id: str,
        directory: MemberDirectory,
        store: FeatureStore,
        models: ModelCatalog,
        forwarder: RouteForwarder,
        allowed_purposes: frozenset[Purpose],
        seen: SeenPlans,
        audit: AuditTrail,
        clock: Clock,
        flags: SubjectFlags,
        obfuscators: ObfuscatorPools | None = None,
    ) -> None:
        self._member_id = member_id
        self._flags = flags
        self._obfuscators = obfuscators
        self._directory = directory
        self._seen = seen
        self._audit = audit
        self._store = store
        self._models = models
        self._forwarder = forwarder
        self._allowed = allowed_purposes
        self._clock = clock

    @property
    def directory(self) -> MemberDirectory:
        return self._directory

    def verified_plan(self, signed: SignedPlan, now_ms: int) -> Plan:
        """A plan the coordinator signed with a certified key, enforced against a directory at
        least as new as the one it was planned with."""
        plan = verify_plan(signed, self._directory.coordinator_verifier(signed.key_id), now_ms)
        self._directory.ensure(plan.directory_version)
        return plan

    def vector_for(self, pseudonym: bytes, record: SubjectRecord | None, model: ModelSlice,
                   now_ms: int) -> ContributionVector:
        """This member's share for the subject, its own blacklist flag included."""
        return contribution_for(record, model, self._flags.is_flagged(pseudonym, now_ms))

    def contribute(self, call: ContributeCall, caller: CertifiedIdentity,
                   caller_deadline_ms: int | None) -> RouteResult:
        now = self._clock()
        plan = self.verified_plan(call.plan, now)
        if plan.mode is not RouteMode.CHAIN:
            raise InvalidRequestError(f"route mode {plan.mode.value} is not supported yet")
        if call.hop_index >= len(plan.route) or plan.route[call.hop_index].member_id != (
            self._member_id
        ):
            raise FedCreditError("this member is not the addressed hop",
                                 code=ErrorCode.NOT_ON_ROUTE)
        earlier = {plan.requester_id, *(h.member_id for h in plan.route[: call.hop_index])}
        if caller.party_id not in earlier:
            raise PermissionDeniedError("only the requester or an earlier hop may call this hop")
        # The requester only ever starts a sum; a hop only ever passes one on. A requester that
        # handed a late hop a ciphertext of its own making would get back one member's share.
        if (caller.party_id == plan.requester_id) != (call.accumulator is None):
            raise PermissionDeniedError(
                "the requester starts the sum without an accumulator; a hop passes one on")
        self._directory.require_active(plan.requester_id)
        verify_consent(
            call.consent,
            self._directory.member_verifier(plan.requester_id, call.consent.key_id),
            plan=plan, pseudonym=call.pseudonym, now_ms=now, allowed_purposes=self._allowed,
        )
        incoming = call.parse_accumulator(plan.requester_key)
        model = self._models.get(plan.model_version)
        # The plan is spent here, once everything about the call checked out.
        self._seen.admit(plan, now)
        vector = self.vector_for(call.pseudonym, self._store.lookup(call.pseudonym), model, now)
        pools, key = self._obfuscators, plan.requester_key
        accumulator = accumulate(incoming, vector, key,
                                 obfuscate=(lambda: pools.take(key)) if pools is not None else None)
        self._audit.enqueue(EntryDraft(
            kind=EntryKind.CONTRIBUTION, actor=self._member_id, query_id=plan.query_id, body={
                "accumulator_sha256": hashlib.sha256(
                    b"".join(accumulator.to_wire(plan.requester_key))).hexdigest(),
                "consent_sha256": hashlib.sha256(call.consent.body).hexdigest(),
                "hop_index": call.hop_index,
            }))
        deadline = plan.expires_unix_ms
        if caller_deadline_ms is not None:
            deadline = min(deadline, caller_deadline_ms)
        later = self._forwarder.forward(
            plan, call.plan, call.pseudonym, call.consent, call.hop_index + 1, accumulator, deadline
        )
        outcomes = (HopOutcome(self._member_id, True), *later.outcomes)
        if incoming is None:
            # This member started the sum, so its reply goes straight back to the requester:
            # never let a ciphertext holding fewer than min_answered shares reach the key holder.
            self._require_coverage(outcomes, plan.fallback.min_answered)
        return RouteResult(later.accumulator, outcomes, later.key)

    def _require_coverage(self, outcomes: tuple[HopOutcome, ...], minimum: int) -> None:
        answered = sum(1 for o in outcomes if o.answered)
        if answered < minimum:
            skipped = describe_skips(outcomes)
            raise CoverageError(
                f"{answered} member(s) answered, policy requires {minimum}; the sum was withheld"
                + (f" (skipped: {skipped})" if skipped else "")
            )
