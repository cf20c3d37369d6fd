"""``/v1/evaluations``: joint credit evaluations of applicants."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from fastapi import APIRouter, Path, Response, status
from fastapi.responses import HTMLResponse

from fedcredit.errors import ErrorCode
from fedcredit.protocol import ConsentTerms
from node.api.deps import (
    CanCreateEvaluations,
    CanReadEvaluations,
    Context,
    Evaluations,
    run_blocking,
)
from node.api.errors import error_responses
from node.api.schemas import EvaluationCreate, EvaluationOut
from node.evaluation import EvaluationRequest
from node.report_page import render_report_page
from node.reports import EvaluationReport

router = APIRouter(prefix="/v1/evaluations", tags=["evaluations"])


def _to_request(body: EvaluationCreate) -> EvaluationRequest:
    consent = None
    if body.consent is not None:
        consent = ConsentTerms(
            purpose=body.consent.purpose,
            expires_unix_ms=int(body.consent.expires_at.timestamp() * 1000),
            reference=body.consent.reference,
            relationship=body.consent.relationship,
        )
    return EvaluationRequest(
        id_type=body.applicant.id_type,
        identifier=body.applicant.identifier,
        consent=consent,
        requested_amount=body.requested_amount,
        term_months=body.term_months,
        annual_income=body.verified_annual_income,
        monthly_spending=body.monthly_spending,
    )


def _to_response(report: EvaluationReport) -> EvaluationOut:
    doc = report.to_dict()
    doc["created_at"] = datetime.fromtimestamp(doc.pop("created_at_ms") / 1000, tz=UTC)
    return EvaluationOut.model_validate(doc)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=EvaluationOut,
    summary="Evaluate an applicant jointly with the alliance",
    description=(
        "Pseudonymizes the applicant here, asks the coordinator for a signed route, collects "
        "the members' encrypted contributions and decrypts only their sum. The report is "
        "persisted before this call returns; fetch it again with GET /v1/evaluations/{id}."
    ),
    responses=error_responses(
        ErrorCode.UNKNOWN_API_KEY,
        ErrorCode.PERMISSION_DENIED,
        ErrorCode.MALFORMED_IDENTIFIER,
        ErrorCode.INVALID_REQUEST,
        ErrorCode.CONSENT_MISSING,
        ErrorCode.CONSENT_EXPIRED,
        ErrorCode.MESSAGE_TOO_LARGE,
        ErrorCode.MODEL_VERSION_UNAVAILABLE,
        ErrorCode.INSUFFICIENT_COVERAGE,
        ErrorCode.NO_MEMBERS_AVAILABLE,
        ErrorCode.COORDINATOR_UNAVAILABLE,
        ErrorCode.PLAN_INVALID,
        ErrorCode.PLAN_EXPIRED,
        ErrorCode.KEY_MISMATCH,
        ErrorCode.DECRYPTION_FAILED,
        ErrorCode.DEADLINE_EXCEEDED,
        ErrorCode.CONSENT_PURPOSE_NOT_ALLOWED,
        ErrorCode.MEMBER_SUSPENDED,
        ErrorCode.CERTIFICATE_INVALID,
        ErrorCode.INTERNAL,
    ),
)
async def create_evaluation(
    body: EvaluationCreate,
    _: CanCreateEvaluations,
    evaluations: Evaluations,
    context: Context,
) -> Response:
    started = time.perf_counter()
    report = await run_blocking(context, evaluations.evaluate, _to_request(body))
    context.metrics.evaluation_seconds.observe(time.perf_counter() - started)
    # Serialized here, once: FastAPI would dump the model and validate it again first (the
    # response model still documents the body).
    return Response(_to_response(report).model_dump_json(), status_code=status.HTTP_201_CREATED,
                    media_type="application/json",
                    headers={"Location": f"/v1/evaluations/{report.query_id}"})


@router.get(
    "/{query_id}",
    response_model=EvaluationOut,
    summary="Fetch a stored evaluation report",
    responses=error_responses(ErrorCode.UNKNOWN_API_KEY, ErrorCode.PERMISSION_DENIED,
                      ErrorCode.EVALUATION_NOT_FOUND),
)
def get_evaluation(
    _: CanReadEvaluations,
    evaluations: Evaluations,
    query_id: str = Path(max_length=64, examples=["5f0c2a8e-8f7e-4a53-9b8f-2d8c1f6f3b7a"]),
) -> EvaluationOut:
    return _to_response(evaluations.get(query_id))


#: The page needs nothing but its own inline styles: a policy that forbids everything else
#: would keep a script out even if escaping ever failed. A credit report is not cached.
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
                               "img-src data:; base-uri 'none'; form-action 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
_PAGE_EXAMPLE = (
    '<!doctype html>\n<html lang="en">\n<head><meta charset="utf-8">'
    "<title>Credit evaluation 5f0c2a8e-8f7e-4a53-9b8f-2d8c1f6f3b7a</title>...</head>\n"
    '<body><main class="page">... <div class="verdict">Approved</div> ...</main></body>\n'
    "</html>\n"
)


@router.get(
    "/{query_id}/report",
    response_class=HTMLResponse,
    summary="A stored evaluation report as a printable page",
    description=(
        "The report of GET /v1/evaluations/{id} as one self-contained HTML page for the loan "
        "file: score gauge, decision with its reasons, grade and credit limit, exposures, "
        "matching products, the installment schedule and coverage. Inline CSS and SVG only "
        "(no script, no external asset); prints on A4. Like the report, it holds no applicant "
        "identifier. Errors are the usual JSON envelope."
    ),
    responses={
        200: {"description": "The page (UTF-8 HTML).",
              "content": {"text/html": {"example": _PAGE_EXAMPLE}}},
        **error_responses(ErrorCode.UNKNOWN_API_KEY, ErrorCode.PERMISSION_DENIED,
                          ErrorCode.EVALUATION_NOT_FOUND),
    },
)
def get_evaluation_page(
    _: CanReadEvaluations,
    evaluations: Evaluations,
    query_id: str = Path(max_length=64, examples=["5f0c2a8e-8f7e-4a53-9b8f-2d8c1f6f3b7a"]),
) -> HTMLResponse:
    return HTMLResponse(render_report_page(evaluations.get(query_id)), headers=PAGE_HEADERS)
