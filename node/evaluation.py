"""The requester's side of a joint evaluation: from an applicant to a persisted report."""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal

from fedcredit.audit import EntryDraft, EntryKind
from fedcredit.clock import Clock
from fedcredit.consents import consent_for_query, consent_ledger_body, sign_consent
from fedcredit.errors import (
    ConsentError,
    CoverageError,
    ErrorCode,
    FedCreditError,
    KeyMismatchError,
)
from fedcredit.protocol import (
    ConsentTerms,
    Coverage,
    Plan,
    Purpose,
    Relationship,
    RouteMode,
    SignedConsent,
    SignedPlan,
    describe_skips,
)
from fedcredit.tls import IdentityHolder
from mpc.contribution import ContributionVector
from mpc.paillier import PaillierKeyPair
from mpc.pseudonym import IdentifierType, SubjectKey, ledger_subject_tag, pseudonymize
from mpc.secure_sum import decrypt_total
from node.audit_trail import AuditTrail, Inquiry
from node.contribution import ContributionService
from node.coordinator_client import CoordinatorClient
from node.inquiries import inquiry_history
from node.models import ModelCatalog
from node.product_catalog import CatalogCopy
from node.reports import (
    CoverageReport,
    EvaluationReport,
    EvaluationStore,
    Exposures,
    SkippedMember,
    Timings,
)
from node.route import RouteForwarder
from node.store import FeatureStore
from scoring.assessment import assess
from scoring.decision import JointFacts, lend, lending_document
from scoring.lending_policy import LendingPolicy, default_policy
from scoring.model import ModelSlice
from scoring.reason_slots import ReasonSlot

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvaluationRequest:
    id_type: IdentifierType
    identifier: str
    consent: ConsentTerms | None
    requested_amount: float
    term_months: int
    annual_income: float | None = None  # verified by this lender
    monthly_spending: float | None = None  # from this lender's own data


class EvaluationService:
    def __init__(
        self,
        member_id: str,
        subject_key: SubjectKey,
        keypair: PaillierKeyPair,
        identity: IdentityHolder,
        contributions: ContributionService,
        audit: AuditTrail,
        coordinator: CoordinatorClient,
        forwarder: RouteForwarder,
        store: FeatureStore,
        models: ModelCatalog,
        reports: EvaluationStore,
        model_version: str,
        allowed_purposes: frozenset[Purpose],
        clock: Clock,
        policy: LendingPolicy | None = None,
        products: CatalogCopy | None = None,
    ) -> None:
        self._member_id = member_id
        self._subject_key = subject_key
        self._keypair = keypair
        self._identity = identity
        self._contributions = contributions
        self._audit = audit
        self._coordinator = coordinator
        self._forwarder = forwarder
        self._store = store
        self._models = models
        self._reports = reports
        self._model_version = model_version
        self._allowed = allowed_purposes
        self._clock = clock
        self._policy = policy or default_policy()
        #: The alliance's loan products (this node's copy); none: no product is matched.
        self._products = products

    def evaluate(self, request: EvaluationRequest) -> EvaluationReport:
        started = time.perf_counter()
        # Local checks first: nothing leaves the node for a request that cannot succeed.
        pseudonym = pseudonymize(self._subject_key, request.id_type, request.identifier)
        if request.consent is None:
            raise FedCreditError("the applicant's consent is required",
                                 code=ErrorCode.CONSENT_MISSING)
        terms = request.consent
        terms.check(self._clock(), self._allowed)
        if self._model_version:  # pinned: its slice is checked before anything leaves
            self._models.requester_slice(self._model_version)
        own_record = self._store.lookup(pseudonym.value)
        if terms.relationship is Relationship.EXISTING_CUSTOMER and own_record is None:
            # The consent will attest this relationship under our signature: check it first.
            raise ConsentError("the applicant is not a customer of this member",
                               code=ErrorCode.CONSENT_PURPOSE_NOT_ALLOWED)

        plan, signed, consent, model = self._planned(terms, pseudonym.value, chain=False)
        planned = time.perf_counter()

        result = self._forwarder.forward(
            plan, signed, pseudonym.value, consent, 0, None, plan.expires_unix_ms
        )
        if plan.mode is RouteMode.TREE and result.accumulator is None and result.outcomes and (
            not result.outcomes[0].answered
        ):
            # The root failed before aggregating anything (down, clock skew, a stale key): its
            # whole tree is lost. Once more as a CHAIN, under a new plan and consent (both in
            # the ledger), which skips a failing member instead.
            log.warning("query %s: TREE root %s failed (%s); falling back to a CHAIN",
                        plan.query_id, result.outcomes[0].member_id,
                        result.outcomes[0].error_code)
            plan, signed, consent, model = self._planned(terms, pseudonym.value, chain=True)
            result = self._forwarder.forward(
                plan, signed, pseudonym.value, consent, 0, None, plan.expires_unix_ms
            )
        own = self._contributions.vector_for(pseudonym.value, own_record, model, self._clock())
        coverage = Coverage.from_outcomes(result.outcomes)
        if result.accumulator is None or coverage.answered < plan.fallback.min_answered:
            raise CoverageError(
                f"{coverage.answered} of {coverage.asked} members answered; "
                f"policy requires {plan.fallback.min_answered} "
                f"(skipped: {describe_skips(result.outcomes)})"
            )
        routed = time.perf_counter()

        total = decrypt_total(result.accumulator, self._keypair) + own
        assessment = assess(total, model.intercept, model.scale)
        lending = lend(
            _facts(assessment.score, total, request.annual_income), self._policy,
            Decimal(str(request.requested_amount)), request.term_months,
            None if request.monthly_spending is None else Decimal(str(request.monthly_spending)),
            products=self._products.products() if self._products is not None else (),
        )
        done = time.perf_counter()
        self._audit.enqueue(EntryDraft(
            kind=EntryKind.COMPLETION, actor=self._member_id, query_id=plan.query_id, body={
                "asked": coverage.asked,
                "answered": coverage.answered,
                "skipped": [{"member_id": o.member_id, "error_code": o.error_code}
                            for o in coverage.skipped],
                "result_commitment": self._audit.commitment(
                    plan.query_id.encode() + repr(total).encode()),
            }))

        report = EvaluationReport(
            query_id=plan.query_id,
            requester_id=self._member_id,
            created_at_ms=self._clock(),
            model_version=plan.model_version,
            purpose=plan.purpose.value,
            consent_reference=terms.reference,
            requested_amount=request.requested_amount,
            term_months=request.term_months,
            score=assessment.score,
            default_probability=assessment.default_probability,
            grade=lending.decision.grade.value,
            joint_logit=assessment.logit,
            institutions_with_records=total.has_record,
            exposures=Exposures(
                outstanding_debt=total.outstanding_debt_cents / 100,
                active_loans=total.active_loans,
                open_credit_lines=total.open_credit_lines,
                accounts_30dpd=total.accounts_30dpd,
                accounts_90dpd=total.accounts_90dpd,
                inquiries_90d=total.inquiries_90d,
                institutions_with_active_loans=total.with_active_loans,
                blacklist_flags=total.flagged,
            ),
            coverage=CoverageReport(
                asked=coverage.asked,
                answered=coverage.answered,
                skipped=[SkippedMember(o.member_id, o.error_code) for o in coverage.skipped],
            ),
            timings=Timings(
                plan_ms=round((planned - started) * 1000, 3),
                route_ms=round((routed - planned) * 1000, 3),
                decrypt_ms=round((done - routed) * 1000, 3),
                total_ms=round((time.perf_counter() - started) * 1000, 3),
            ),
            lending=lending_document(lending, self._policy),
        )
        self._reports.save(report, pseudonym.value)
        return report

    def _planned(self, terms: ConsentTerms, pseudonym: bytes, *, chain: bool
                 ) -> tuple[Plan, SignedPlan, SignedConsent, ModelSlice]:
        """A verified plan for this request and the consent signed for it, both in the ledger
        (durably, in one commit at the coordinator) before anything is routed.

        The consent names a query id this node proposes, so it can be signed first and travel
        with the plan request; the coordinator refuses, before recording anything, a purpose
        or relationship its policy does not allow and — unpinned — an active model version this
        node holds no slice of."""
        query_id = str(uuid.uuid4())
        record = consent_for_query(terms, query_id, self._member_id, pseudonym, self._clock())
        consent = sign_consent(record, self._identity.current.signer)
        draft = EntryDraft(
            kind=EntryKind.CONSENT, actor=self._member_id, query_id=query_id,
            subject_tag=ledger_subject_tag(self._subject_key, pseudonym, query_id),
            body=consent_ledger_body(record, consent))
        signed, receipt = self._coordinator.plan_inquiry(
            self._model_version, terms.purpose, draft, chain=chain,
            held_versions=() if self._model_version else self._models.requester_versions())
        # No inquiry without its ledger entry: the receipt proves the consent is recorded.
        self._audit.keep(draft, receipt)
        plan = self._contributions.verified_plan(signed, self._clock())
        if plan.requester_key.fingerprint() != self._keypair.public.fingerprint():
            raise KeyMismatchError("the plan names a different key for this requester")
        if (
            plan.query_id != query_id
            or plan.requester_id != self._member_id
            or (self._model_version and plan.model_version != self._model_version)
            or plan.purpose is not terms.purpose
            or (chain and plan.mode is not RouteMode.CHAIN)
            or plan.batch is not None
        ):
            raise FedCreditError("the plan does not match the request", code=ErrorCode.PLAN_INVALID)
        model = self._models.requester_slice(plan.model_version)
        if plan.requires_existing_customer and terms.relationship is not (
            Relationship.EXISTING_CUSTOMER
        ):  # the coordinator refused this already; a plan that says otherwise is not followed
            raise ConsentError(
                f"alliance policy allows {plan.purpose.value} only for an existing customer",
                code=ErrorCode.CONSENT_PURPOSE_NOT_ALLOWED)
        return plan, signed, consent, model

    def get(self, query_id: str) -> EvaluationReport:
        return self._reports.get(query_id)

    def inquiry_history(self, id_type: IdentifierType, identifier: str,
                        since_ms: int) -> list[Inquiry]:
        """Who asked the alliance about this applicant, when and why (from the ledger)."""
        pseudonym = pseudonymize(self._subject_key, id_type, identifier)
        return inquiry_history(self._coordinator, self._contributions.directory,
                               self._subject_key, pseudonym.value, since_ms, self._clock())


def _facts(score: int, total: ContributionVector, annual_income: float | None) -> JointFacts:
    return JointFacts(
        score=score,
        outstanding_debt=Decimal(total.outstanding_debt_cents) / 100,
        active_loans=total.active_loans,
        open_credit_lines=total.open_credit_lines,
        accounts_30dpd=total.accounts_30dpd,
        accounts_90dpd=total.accounts_90dpd,
        inquiries_90d=total.inquiries_90d,
        institutions_with_records=total.has_record,
        annual_income=None if annual_income is None else Decimal(str(annual_income)),
        institutions_with_active_loans=total.with_active_loans,
        blacklist_flags=total.flagged,
        reason_slots={slot: getattr(total, slot.value) for slot in ReasonSlot},
    )
