"""A node's part of a joint evaluation: verify, compute, encrypt, add, pass on."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

from fedcredit.audit import EntryDraft, EntryKind
from fedcredit.clock import Clock
from fedcredit.consents import verify_consent
from fedcredit.errors import (
    ConsentError,
    CoverageError,
    ErrorCode,
    FedCreditError,
    PermissionDeniedError,
)
from fedcredit.plans import verify_plan
from fedcredit.protocol import (
    HopOutcome,
    Plan,
    Purpose,
    RouteMode,
    SignedPlan,
    describe_skips,
    tree_positions,
)
from mpc.contribution import ContributionVector, clamp_share
from mpc.pki import CertifiedIdentity
from mpc.secure_sum import EncryptedContribution, accumulate, encrypt_contribution
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


def check_chain_caller(plan: Plan, hop_index: int, caller: str, accumulator: bool) -> None:
    """A CHAIN hop is called by the requester or an earlier hop; the requester only ever starts
    a sum and a hop only ever passes one on. A requester that handed a late hop a ciphertext of
    its own making would get back one member's share."""
    earlier = {plan.requester_id, *(h.member_id for h in plan.route[:hop_index])}
    if caller not in earlier:
        raise PermissionDeniedError("only the requester or an earlier hop may call this hop")
    if (caller == plan.requester_id) != (not accumulator):
        raise PermissionDeniedError(
            "the requester starts the sum without an accumulator; a hop passes one on")


def require_coverage(outcomes: tuple[HopOutcome, ...], minimum: int) -> None:
    """Withhold a sum holding fewer than ``minimum`` members' shares: the hop that started it
    calls this before its reply goes back to the key holder."""
    answered = sum(1 for o in outcomes if o.answered)
    if answered < minimum:
        skipped = describe_skips(outcomes)
        raise CoverageError(
            f"{answered} member(s) answered, policy requires {minimum}; the sum was withheld"
            + (f" (skipped: {skipped})" if skipped else "")
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
        if plan.batch is not None:
            raise FedCreditError("a portfolio plan covers portfolio chunks only",
                                 code=ErrorCode.PLAN_INVALID)
        if plan.mode is RouteMode.TREE:
            return self._contribute_in_tree(call, plan, caller, caller_deadline_ms, now)
        if call.hop_index >= len(plan.route) or plan.route[call.hop_index].member_id != (
            self._member_id
        ):
            raise FedCreditError("this member is not the addressed hop",
                                 code=ErrorCode.NOT_ON_ROUTE)
        check_chain_caller(plan, call.hop_index, caller.party_id, call.accumulator is not None)
        incoming, vector, _ = self._checked_share(call, plan, now, may_decline=False)
        assert vector is not None
        accumulator = accumulate(incoming, vector, plan.requester_key, obfuscate=self._obfuscate(
            plan))
        self._record(call, plan, accumulator)
        later = self._forwarder.forward(
            plan, call.plan, call.pseudonym, call.consent, call.hop_index + 1, accumulator,
            self._deadline(plan, caller_deadline_ms)
        )
        outcomes = (HopOutcome(self._member_id, True), *later.outcomes)
        if incoming is None:
            # This member started the sum, so its reply goes straight back to the requester:
            # never let a ciphertext holding fewer than min_answered shares reach the key holder.
            require_coverage(outcomes, plan.fallback.min_answered)
        return RouteResult(later.accumulator, outcomes, later.key)

    def _contribute_in_tree(self, call: ContributeCall, plan: Plan, caller: CertifiedIdentity,
                            caller_deadline_ms: int | None, now: int) -> RouteResult:
        """A TREE hop: own share plus the children's sums, returned to the parent (the root
        returns the whole tree's sum to the requester, and only with enough shares in it)."""
        positions = tree_positions(plan.route)
        if call.hop_index >= len(positions) or (
            positions[call.hop_index].hop.member_id != self._member_id
        ):
            raise FedCreditError("this member is not the addressed hop",
                                 code=ErrorCode.NOT_ON_ROUTE)
        position = positions[call.hop_index]
        parent = plan.requester_id if position.parent is None else (
            positions[position.parent].hop.member_id)
        if position.parent is not None and parent == plan.requester_id:
            # A subtree sum must never reach the key holder except through the root's check.
            raise FedCreditError("the plan makes the requester a hop's parent",
                                 code=ErrorCode.PLAN_INVALID)
        if caller.party_id != parent:
            raise PermissionDeniedError(
                "only the requester may call a TREE root, and only its parent any other hop")
        if call.accumulator is not None:
            raise PermissionDeniedError("a TREE hop is called without an accumulator")
        # A hop with children that declines to share for this inquiry (a purpose it does not
        # serve, a model version it lacks) still relays its children's sums: its subtree is
        # not lost for a reason of its own. The plan is spent either way (no second tree).
        _, vector, declined = self._checked_share(call, plan, now,
                                                  may_decline=bool(position.children))
        own = None if vector is None else encrypt_contribution(
            vector, plan.requester_key, obfuscate=self._obfuscate(plan))
        below = self._forwarder.fan_out(
            plan, call.plan, call.pseudonym, call.consent, positions, position.children, own,
            self._deadline(plan, caller_deadline_ms))
        mine = (HopOutcome(self._member_id, True) if declined is None
                else HopOutcome(self._member_id, False, declined.code.value))
        outcomes = (mine, *below.outcomes)
        if position.parent is None:
            require_coverage(outcomes, plan.fallback.min_answered)
        if below.accumulator is not None:
            self._record(call, plan, below.accumulator)
        return RouteResult(below.accumulator, outcomes, below.key)

    def _checked_share(
        self, call: ContributeCall, plan: Plan, now: int, *, may_decline: bool
    ) -> tuple[EncryptedContribution | None, ContributionVector | None, FedCreditError | None]:
        """Everything a hop checks before it computes (requester active, consent, accumulator,
        this member's purposes and model), the plan spent, then this member's share for the
        subject. Where this member's own policy refuses (a purpose it does not serve, a model
        version it lacks) it raises, or — ``may_decline`` — returns no share and the refusal."""
        self._directory.require_active(plan.requester_id)
        verify_consent(
            call.consent,
            self._directory.member_verifier(plan.requester_id, call.consent.key_id),
            plan=plan, pseudonym=call.pseudonym, now_ms=now, allowed_purposes=None,
        )
        declined: FedCreditError | None = None
        if plan.purpose not in self._allowed:
            declined = ConsentError(f"purpose {plan.purpose.value} is not allowed",
                                    code=ErrorCode.CONSENT_PURPOSE_NOT_ALLOWED)
        incoming = call.parse_accumulator(plan.requester_key)
        model = None
        if declined is None:
            try:
                model = self._models.get(plan.model_version)
            except FedCreditError as exc:
                if exc.code is not ErrorCode.MODEL_VERSION_UNAVAILABLE:
                    raise
                declined = exc
        if declined is not None and not may_decline:
            raise declined
        # The plan is spent here, once everything about the call checked out.
        self._seen.admit(plan, now)
        if model is None:
            return incoming, None, declined
        vector = self.vector_for(call.pseudonym, self._store.lookup(call.pseudonym), model, now)
        return incoming, vector, None

    def _obfuscate(self, plan: Plan) -> Callable[[], int] | None:
        pools, key = self._obfuscators, plan.requester_key
        return (lambda: pools.take(key)) if pools is not None else None

    def _record(self, call: ContributeCall, plan: Plan, sent: EncryptedContribution) -> None:
        self._audit.enqueue(EntryDraft(
            kind=EntryKind.CONTRIBUTION, actor=self._member_id, query_id=plan.query_id, body={
                "accumulator_sha256": hashlib.sha256(
                    b"".join(sent.to_wire(plan.requester_key))).hexdigest(),
                "consent_sha256": hashlib.sha256(call.consent.body).hexdigest(),
                "hop_index": call.hop_index,
            }))

    @staticmethod
    def _deadline(plan: Plan, caller_deadline_ms: int | None) -> int:
        if caller_deadline_ms is None:
            return plan.expires_unix_ms
        return min(plan.expires_unix_ms, caller_deadline_ms)
