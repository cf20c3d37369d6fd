"""``/v1/portfolio-evaluations``: jobs that re-score a whole loan book jointly."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Literal

from fastapi import APIRouter, Path, Query, Response, status
from fastapi.responses import FileResponse

from fedcredit.errors import ErrorCode
from fedcredit.protocol import ConsentTerms
from node.api.deps import CanCreateEvaluations, CanReadEvaluations, Portfolios
from node.api.errors import error_responses
from node.api.schemas import (
    JobErrorOut,
    PortfolioCreate,
    PortfolioListOut,
    PortfolioOut,
    PortfolioResultsOut,
)
from node.portfolio import PortfolioRequest
from node.portfolio_jobs import JobRecord, JobState

PORTFOLIO_PATH = "/v1/portfolio-evaluations"
router = APIRouter(prefix=PORTFOLIO_PATH, tags=["portfolio-evaluations"])
_JOB_ID = Path(max_length=64, examples=["0b7d7c1e-2f55-4a8e-9d55-6f3c1e8a9b10"])
_MEDIA = {"parquet": "application/vnd.apache.parquet", "csv": "text/csv"}


def _out(record: JobRecord) -> PortfolioOut:
    base = f"{PORTFOLIO_PATH}/{record.job_id}/results"
    return PortfolioOut(
        job_id=record.job_id, state=record.state.value,
        created_at=datetime.fromtimestamp(record.created_ms / 1000, tz=UTC),
        updated_at=datetime.fromtimestamp(record.updated_ms / 1000, tz=UTC),
        rows=record.rows, subjects=record.subjects, chunks=record.chunks,
        chunks_done=record.chunks_done, progress=round(record.progress, 4),
        purpose=record.purpose, model_version=record.model_version, query_id=record.query_id,
        error=None if record.error_code is None else JobErrorOut(
            code=record.error_code.value, detail=record.error_detail or ""),
        summary=record.summary,
        results=PortfolioResultsOut(parquet=f"{base}?format=parquet", csv=f"{base}?format=csv")
        if record.state is JobState.SUCCEEDED else None,
    )


@router.post(
    "",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=PortfolioOut,
    summary="Start re-scoring a portfolio jointly with the alliance",
    description=(
        "Checks the identifiers, the consent and the model here, then queues a job and answers "
        "at once; poll GET /v1/portfolio-evaluations/{id} for its progress. Only your own "
        "customers are sent to the alliance (as pseudonyms, 4,096 per chunk, every member's "
        "shares encrypted under a key made for this job); the others come back "
        "not_a_customer. Results: one row per identifier, in request order, as Parquet or CSV."
    ),
    responses=error_responses(
        ErrorCode.UNKNOWN_API_KEY, ErrorCode.PERMISSION_DENIED, ErrorCode.INVALID_REQUEST,
        ErrorCode.MALFORMED_IDENTIFIER, ErrorCode.CONSENT_EXPIRED,
        ErrorCode.CONSENT_PURPOSE_NOT_ALLOWED, ErrorCode.MESSAGE_TOO_LARGE,
        ErrorCode.MODEL_VERSION_UNAVAILABLE, ErrorCode.RESOURCE_CONFLICT, ErrorCode.INTERNAL,
    ),
)
def create_portfolio(body: PortfolioCreate, response: Response, _: CanCreateEvaluations,
                     portfolios: Portfolios) -> PortfolioOut:
    record = portfolios.start(PortfolioRequest(
        id_type=body.subjects.id_type, identifiers=body.subjects.identifiers,
        consent=ConsentTerms(
            purpose=body.consent.purpose,
            expires_unix_ms=int(body.consent.expires_at.timestamp() * 1000),
            reference=body.consent.reference, relationship=body.consent.relationship)))
    response.headers["Location"] = f"{PORTFOLIO_PATH}/{record.job_id}"
    return _out(record)


@router.get("", response_model=PortfolioListOut, summary="Recent portfolio jobs, newest first",
            responses=error_responses(ErrorCode.UNKNOWN_API_KEY, ErrorCode.PERMISSION_DENIED))
def list_portfolios(_: CanReadEvaluations, portfolios: Portfolios,
                    limit: int = Query(100, ge=1, le=1000)) -> PortfolioListOut:
    return PortfolioListOut(jobs=[_out(r) for r in portfolios.recent(limit)])


@router.get("/{job_id}", response_model=PortfolioOut, summary="A portfolio job's state",
            responses=error_responses(ErrorCode.UNKNOWN_API_KEY, ErrorCode.PERMISSION_DENIED,
                                      ErrorCode.EVALUATION_NOT_FOUND))
def get_portfolio(_: CanReadEvaluations, portfolios: Portfolios, job_id: str = _JOB_ID
                  ) -> PortfolioOut:
    return _out(portfolios.get(job_id))


@router.post(
    "/{job_id}/cancel", response_model=PortfolioOut, summary="Cancel a queued or running job",
    description="The job stops before its next chunk and ends cancelled, without results.",
    responses=error_responses(ErrorCode.UNKNOWN_API_KEY, ErrorCode.PERMISSION_DENIED,
                              ErrorCode.EVALUATION_NOT_FOUND, ErrorCode.RESOURCE_CONFLICT))
def cancel_portfolio(_: CanCreateEvaluations, portfolios: Portfolios, job_id: str = _JOB_ID
                     ) -> PortfolioOut:
    return _out(portfolios.cancel(job_id))


@router.get(
    "/{job_id}/results",
    response_class=FileResponse,
    summary="Download a succeeded job's results",
    description=(
        "One row per identifier of the request, in its order: row, subject_pseudonym (hex), "
        "status (scored or not_a_customer), score, default_probability, grade, joint_logit and "
        "the alliance-wide exposures (outstanding_debt_cents, active_loans, open_credit_lines, "
        "accounts_30dpd, accounts_90dpd, inquiries_90d, institutions_with_records, "
        "blacklist_flags, institutions_with_active_loans) and members_answered."
    ),
    responses={200: {"description": "The file.", "content": {
        "application/vnd.apache.parquet": {}, "text/csv": {"example": (
            "row,subject_pseudonym,status,score,...\n0,9f2c...,scored,612,...\n")}}},
        **error_responses(ErrorCode.UNKNOWN_API_KEY, ErrorCode.PERMISSION_DENIED,
                          ErrorCode.EVALUATION_NOT_FOUND, ErrorCode.RESOURCE_CONFLICT)},
)
def portfolio_results(_: CanReadEvaluations, portfolios: Portfolios, job_id: str = _JOB_ID,
                      format: Literal["parquet", "csv"] = Query("parquet")
                      ) -> FileResponse:
    path = portfolios.results(job_id, format)
    return FileResponse(path, media_type=_MEDIA[format],
                        filename=f"portfolio-{job_id}.{format}")
