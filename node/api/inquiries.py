"""``/v1/inquiries``: an applicant's inquiry history across the alliance (from the ledger)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from fastapi import APIRouter

from fedcredit.errors import ErrorCode
from node.api.deps import CanReadInquiries, Evaluations
from node.api.errors import error_responses
from node.api.schemas import InquiryHistoryOut, InquiryOut, InquirySearch

router = APIRouter(prefix="/v1/inquiries", tags=["inquiries"])
DEFAULT_WINDOW = timedelta(days=730)


@router.post(
    "/search",
    response_model=InquiryHistoryOut,
    summary="An applicant's inquiry history: who asked, when, for which purpose",
    description=(
        "Answered from the alliance's audit ledger, as a credit report's inquiry section is. "
        "The identifier is pseudonymized here and never leaves this node; the coordinator "
        "learns which (unnamed) ledger entries matched. POST, so that the identifier is not "
        "in a URL or an access log."
    ),
    responses=error_responses(
        ErrorCode.UNKNOWN_API_KEY, ErrorCode.PERMISSION_DENIED, ErrorCode.MALFORMED_IDENTIFIER,
        ErrorCode.INVALID_REQUEST, ErrorCode.COORDINATOR_UNAVAILABLE, ErrorCode.INTERNAL,
    ),
)
def search_inquiries(
    body: InquirySearch, _: CanReadInquiries, evaluations: Evaluations
) -> InquiryHistoryOut:
    since = body.since or datetime.now(UTC) - DEFAULT_WINDOW
    found = evaluations.inquiry_history(body.applicant.id_type, body.applicant.identifier,
                                        int(since.timestamp() * 1000))
    return InquiryHistoryOut(inquiries=[
        InquiryOut(requester_id=i.requester_id, requester_name=i.requester_name,
                   purpose=i.purpose, at=datetime.fromtimestamp(i.at_ms / 1000, UTC),
                   query_id=i.query_id)
        for i in found
    ])
