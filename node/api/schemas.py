"""Request and response models of the lender API (separate from storage models)."""

from __future__ import annotations

from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from fedcredit.protocol import Purpose, Relationship
from mpc.pseudonym import IdentifierType


class Applicant(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id_type: IdentifierType = Field(description="Type of the national identifier.")
    identifier: str = Field(
        min_length=1,
        max_length=64,
        description="The applicant's identifier. It never leaves this node: only a keyed "
        "pseudonym travels.",
    )


class ConsentIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    purpose: Purpose
    expires_at: AwareDatetime = Field(description="When the applicant's consent ends (with zone).")
    reference: str = Field(
        default="", max_length=128,
        description="Your consent record's id. Only its SHA-256 leaves this node.",
    )
    relationship: Relationship = Field(
        default=Relationship.APPLICANT,
        description="Your relationship with the applicant, attested under this member's "
        "signature. Alliance policy allows some purposes (e.g. account_review) only for an "
        "existing customer, which this node checks against its own records first.",
    )


class EvaluationCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "applicant": {"id_type": "cn_resident_id", "identifier": "11010519491231002X"},
                    "consent": {
                        "purpose": "origination",
                        "expires_at": "2030-01-01T00:00:00Z",
                        "reference": "consent-2026-000123",
                    },
                    "requested_amount": 50000,
                    "term_months": 24,
                }
            ]
        },
    )
    applicant: Applicant
    consent: ConsentIn | None = Field(
        default=None, description="Required; a request without it fails with CONSENT_MISSING."
    )
    requested_amount: float = Field(gt=0, le=1e9, description="Currency units.")
    term_months: int = Field(ge=1, le=480)
    verified_annual_income: float | None = Field(
        default=None, ge=0, le=1e10, description="The applicant's income as this lender "
        "verified it (currency units a year). Without it: no credit limit, no plan, and rules "
        "on debt-to-income refer.")
    monthly_spending: float | None = Field(
        default=None, ge=0, le=1e9, description="The applicant's monthly spending from this "
        "lender's own data; needed for the repayment plan.")


class ExposuresOut(BaseModel):
    outstanding_debt: float = Field(description="Alliance-wide outstanding debt, currency units.")
    active_loans: int
    open_credit_lines: int
    accounts_30dpd: int = Field(description="Accounts 30+ days past due, alliance-wide.")
    accounts_90dpd: int = Field(description="Accounts 90+ days past due, alliance-wide.")
    inquiries_90d: int
    institutions_with_active_loans: int = Field(
        0, description="Members at which the applicant has an active loan (a count; which "
        "members is not learned).")
    blacklist_flags: int = Field(
        0, description="Members whose private blacklist flags the applicant (a count; which "
        "members, and why, is not learned).")


class SkippedOut(BaseModel):
    member_id: str
    error_code: str


class CoverageOut(BaseModel):
    asked: int = Field(description="Members on the planned route.")
    answered: int
    skipped: list[SkippedOut]


class TimingsOut(BaseModel):
    plan_ms: float
    route_ms: float
    decrypt_ms: float
    total_ms: float


class ReasonOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"code": "RC01", "text": "An account at an alliance member is 90 or more days past due."}]})
    code: str = Field(description="Stable reason code.")
    text: str


class ProductMatchOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "rank": 1, "product_id": "bank-personal-12", "member_id": "bank",
        "name": "Personal loan", "offered_amount": 20000, "apr": 0.089,
        "disbursement_days": 1, "reason": "the full amount at 8.90% APR, disbursed in 1 day(s)"}]})
    rank: int
    product_id: str
    member_id: str
    name: str
    offered_amount: float
    apr: float
    disbursement_days: int
    reason: str


class InstallmentOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "number": 1, "due_month": 1, "payment": 1742.51, "principal": 1558.34,
        "interest": 184.17, "balance": 18441.66}]})
    number: int
    due_month: int = Field(description="Months after disbursement.")
    payment: float
    principal: float
    interest: float
    balance: float


class PlanOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "outcome": "planned", "explanation": "12 monthly installments of at most 1742.51 "
        "keep within 40% of the monthly surplus (4900.00)", "principal": 20000, "apr": 0.18,
        "period": "monthly", "installments": [], "total_interest": 910.12}]})
    outcome: str = Field(description="planned, income_unknown, spending_unknown, no_surplus, "
                         "unaffordable or no_credit.")
    explanation: str
    principal: float | None
    apr: float | None
    period: str | None
    installments: list[InstallmentOut]
    total_interest: float | None


class LendingOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "policy_version": 1, "decision": "refer", "rules_fired": ["DEBT_TO_INCOME"],
        "rules_unevaluated": [], "grade": "C", "credit_limit": 12000,
        "reasons": [{"code": "RC03", "text": "Existing debt is high compared with income."}],
        "reason_groups": {"payment_history": 0.41, "amounts_owed": 0.12,
                          "credit_history": -0.05, "new_credit": 0.0},
        "products": [], "products_note": "no product is open to this grade and term",
        "plan": None}]})
    policy_version: int
    decision: str = Field(description="approve, refer or decline.")
    rules_fired: list[str]
    rules_unevaluated: list[str] = Field(description="Rules whose input is unknown (they "
                                         "refer).")
    grade: str
    credit_limit: float | None = Field(description="Whole currency units; null without a "
                                       "verified income.")
    reasons: list[ReasonOut] = Field(description="Up to four adverse reasons, most serious "
                                     "first.")
    reason_groups: dict[str, float] = Field(
        default_factory=dict, description="Joint log-odds of default each reason group adds "
        "(positive: above the average applicant's odds), summed over the members; the slots "
        "the reasons RC11-RC14 come from.")
    products: list[ProductMatchOut]
    products_note: str | None
    plan: PlanOut | None


class EvaluationOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "query_id": "5f0c2a8e-8f7e-4a53-9b8f-2d8c1f6f3b7a",
                    "requester_id": "bank",
                    "created_at": "2026-11-22T10:00:00Z",
                    "model_version": "v1",
                    "purpose": "origination",
                    "consent_reference": "consent-2026-000123",
                    "requested_amount": 50000,
                    "term_months": 24,
                    "score": 561,
                    "default_probability": 0.082,
                    "grade": "C",
                    "joint_logit": -2.415,
                    "institutions_with_records": 2,
                    "exposures": {
                        "outstanding_debt": 18250.5,
                        "active_loans": 2,
                        "open_credit_lines": 3,
                        "accounts_30dpd": 1,
                        "accounts_90dpd": 0,
                        "inquiries_90d": 4,
                    },
                    "coverage": {"asked": 2, "answered": 2, "skipped": []},
                    "timings": {
                        "plan_ms": 2.1,
                        "route_ms": 240.3,
                        "decrypt_ms": 40.2,
                        "total_ms": 283.0,
                    },
                }
            ]
        }
    )
    query_id: str
    requester_id: str
    created_at: datetime
    model_version: str
    purpose: Purpose
    consent_reference: str
    requested_amount: float
    term_months: int
    score: int = Field(description="PDO-scaled score, 300-900 (600 at 50:1 good:bad, PDO 20).")
    default_probability: float
    grade: str = Field(description="A (best) to E.")
    joint_logit: float = Field(description="Joint model log-odds of default.")
    institutions_with_records: int = Field(
        description="How many members (requester included) hold a record for the applicant."
    )
    exposures: ExposuresOut
    coverage: CoverageOut
    timings: TimingsOut
    lending: LendingOut | None = Field(
        default=None, description="The lender's decision on this result under its policy.")


class ErrorDetail(BaseModel):
    code: str = Field(description="Stable error code (see docs/security.md).")
    message: str
    detail: str


class ErrorOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "error": {
                        "code": "CONSENT_EXPIRED",
                        "message": "The applicant's consent has expired.",
                        "detail": "the applicant's consent has expired",
                    }
                }
            ]
        }
    )
    error: ErrorDetail


class HealthOut(BaseModel):
    status: str
    member_id: str
    registered: bool
    subjects: int
    product_catalog_version: int = Field(
        description="The alliance product catalog version this node matches against (0: none "
        "fetched yet); compare with the catalog_version the admin API reports.")


class InquirySearch(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{
            "applicant": {"id_type": "cn_resident_id", "identifier": "11010519491231002X"},
            "since": "2025-01-01T00:00:00Z",
        }]},
    )
    applicant: Applicant
    since: AwareDatetime | None = Field(
        default=None, description="Start of the window (default: two years back).")


class InquiryOut(BaseModel):
    requester_id: str
    requester_name: str
    purpose: str
    at: datetime
    query_id: str


class InquiryHistoryOut(BaseModel):
    inquiries: list[InquiryOut] = Field(description="Newest first.")


class PortfolioSubjectsIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "id_type": "cn_resident_id", "identifiers": ["11010519491231002X"]}]})
    id_type: IdentifierType = Field(description="Type of every identifier in the list.")
    identifiers: list[str] = Field(
        min_length=1,
        description="Your customers' identifiers, one per booked loan (duplicates are scored "
        "once). They never leave this node; results carry each one's row number instead.",
    )


class PortfolioCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{
            "subjects": {"id_type": "cn_resident_id",
                         "identifiers": ["11010519491231002X", "110105194912310037"]},
            "consent": {"purpose": "account_review", "expires_at": "2030-01-01T00:00:00Z",
                        "reference": "loan-book-review-2026-11",
                        "relationship": "existing_customer"},
        }]},
    )
    subjects: PortfolioSubjectsIn
    consent: ConsentIn = Field(description="The consent your loan contracts give for account "
                               "review; relationship must be existing_customer.")


class JobErrorOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "code": "INSUFFICIENT_COVERAGE",
        "detail": "chunk 12: 1 member(s) answered; policy requires 2"}]})
    code: str
    detail: str


class PortfolioResultsOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "parquet": "/v1/portfolio-evaluations/0b7d7c1e-2f55-4a8e-9d55-6f3c1e8a9b10/results"
                   "?format=parquet",
        "csv": "/v1/portfolio-evaluations/0b7d7c1e-2f55-4a8e-9d55-6f3c1e8a9b10/results"
               "?format=csv"}]})
    parquet: str = Field(description="Download path of the results as Parquet.")
    csv: str = Field(description="Download path of the results as CSV.")


class PortfolioOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "job_id": "0b7d7c1e-2f55-4a8e-9d55-6f3c1e8a9b10", "state": "running",
        "created_at": "2026-11-23T05:00:00Z", "updated_at": "2026-11-23T05:00:04Z",
        "rows": 1000000, "subjects": 998512, "chunks": 244, "chunks_done": 120,
        "progress": 0.49, "purpose": "account_review", "model_version": "v1",
        "query_id": "5f0c2a8e-8f7e-4a53-9b8f-2d8c1f6f3b7a", "error": None,
        "summary": {"not_a_customer": 1288}, "results": None}]})
    job_id: str
    state: str = Field(description="queued, running, succeeded, failed or cancelled.")
    created_at: datetime
    updated_at: datetime
    rows: int = Field(description="Identifiers in the request.")
    subjects: int = Field(description="Distinct subjects among them.")
    chunks: int = Field(description="Chunks of 4,096 of your customers routed through the "
                        "alliance (0 until the job has prepared them).")
    chunks_done: int
    progress: float = Field(ge=0, le=1)
    purpose: str
    model_version: str
    query_id: str = Field(description="The job's plan in the audit ledger ('' until planned).")
    error: JobErrorOut | None = None
    summary: dict[str, object] = Field(description="Counts, coverage and timings so far.")
    results: PortfolioResultsOut | None = Field(
        default=None, description="Present once the job has succeeded.")


class PortfolioListOut(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"jobs": []}]})
    jobs: list[PortfolioOut]
