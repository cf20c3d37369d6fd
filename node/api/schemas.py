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


class ExposuresOut(BaseModel):
    outstanding_debt: float = Field(description="Alliance-wide outstanding debt, currency units.")
    active_loans: int
    open_credit_lines: int
    accounts_30dpd: int = Field(description="Accounts 30+ days past due, alliance-wide.")
    accounts_90dpd: int = Field(description="Accounts 90+ days past due, alliance-wide.")
    inquiries_90d: int


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
