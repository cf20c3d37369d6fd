"""What members may write to the audit ledger, and the checks before it is written.

A member records its own part of an evaluation that the coordinator planned: the requester
its signed consent (digest, purpose, validity, relationship, the subject tag) and the
completion; each hop the digest of the accumulator it passed on. The coordinator checks that
the plan exists, that the caller had that role in it, that each body has exactly the fields of
its kind, and that none of them can carry an identifier (digests are hex SHA-256, tags 32
bytes). Everything in one submission commits under one signed tree head. A joint evaluation's
consent usually comes with its plan request instead (``PlanInquiry``,
:meth:`AuditIntake.consent_with_plan`) and commits together with the plan entry.
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from coordinator.ledger import AuditLedger
from fedcredit.audit import EntryDraft, EntryKind, Receipt
from fedcredit.errors import (
    ConsentError,
    ErrorCode,
    InvalidRequestError,
    PermissionDeniedError,
    ResourceNotFoundError,
)
from fedcredit.protocol import Plan, Purpose, Relationship

MAX_RECORDS = 256
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_ERROR_CODE = re.compile(r"^[A-Z_]{1,64}$")


@dataclass(frozen=True)
class SubmittedRecord:
    kind: str
    query_id: str
    subject_tag: bytes
    body_json: str


def _digest(body: dict[str, Any], key: str) -> None:
    if not isinstance(body.get(key), str) or not _DIGEST.match(body[key]):
        raise InvalidRequestError(f"{key} must be a hex SHA-256 digest")


def _int(body: dict[str, Any], key: str, low: int, high: int) -> None:
    value = body.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise InvalidRequestError(f"{key} must be an integer in [{low}, {high}]")


_FIELDS = {
    EntryKind.CONSENT: {"consent_sha256", "purpose", "issued_ms", "expires_ms",
                        "reference_sha256", "relationship"},
    EntryKind.CONTRIBUTION: {"accumulator_sha256", "consent_sha256", "hop_index"},
    EntryKind.COMPLETION: {"asked", "answered", "skipped", "result_commitment"},
}
#: What a portfolio job's entries carry besides (its plan's body names a "batch").
_BATCH_FIELDS = {
    EntryKind.CONSENT: {"subjects", "chunks", "pseudonym_root"},
    EntryKind.CONTRIBUTION: {"chunk", "subjects"},
    EntryKind.COMPLETION: {"subjects", "chunks"},
}
_MAX_MS = 2**53


def _check_batch(kind: EntryKind, body: dict[str, Any], batch: dict[str, Any]) -> None:
    subjects, chunks = int(batch["subjects"]), int(batch["chunks"])
    if kind is EntryKind.CONTRIBUTION:
        _int(body, "chunk", 0, chunks - 1)
        _int(body, "subjects", 1, subjects)
        return
    _int(body, "subjects", subjects, subjects)
    _int(body, "chunks", chunks, chunks)
    if kind is EntryKind.CONSENT:
        _digest(body, "pseudonym_root")


def _check_body(kind: EntryKind, body: dict[str, Any], route: Sequence[str],
                caller: str, batch: dict[str, Any] | None = None) -> None:
    fields = _FIELDS[kind] | (_BATCH_FIELDS[kind] if batch is not None else set())
    if set(body) != fields:
        raise InvalidRequestError(f"a {kind.value} entry has exactly the fields "
                                  f"{sorted(fields)}")
    if batch is not None:
        _check_batch(kind, body, batch)
    if kind is EntryKind.CONSENT:
        _digest(body, "consent_sha256")
        _digest(body, "reference_sha256")
        _int(body, "issued_ms", 0, _MAX_MS)
        _int(body, "expires_ms", 0, _MAX_MS)
        if body["purpose"] not in {p.value for p in Purpose}:
            raise InvalidRequestError("unknown purpose")
        if body["relationship"] not in {r.value for r in Relationship}:
            raise InvalidRequestError("unknown relationship")
    elif kind is EntryKind.CONTRIBUTION:
        _digest(body, "accumulator_sha256")
        _digest(body, "consent_sha256")
        _int(body, "hop_index", 0, len(route) - 1)
        if route[body["hop_index"]] != caller:
            raise PermissionDeniedError("a member records its own hop's contribution only")
    else:
        _int(body, "asked", 0, len(route))
        _int(body, "answered", 0, len(route))
        _digest(body, "result_commitment")
        skipped = body["skipped"]
        if not isinstance(skipped, list) or len(skipped) > len(route) or not all(
            isinstance(s, dict) and set(s) == {"member_id", "error_code"}
            and s["member_id"] in route and isinstance(s["error_code"], str)
            and _ERROR_CODE.match(s["error_code"]) for s in skipped
        ):
            raise InvalidRequestError("skipped lists route members and error codes")


#: Plans whose bodies the intake keeps at hand: every member of a route records against the
#: same plan, within seconds of each other.
PLAN_CACHE = 4096


class AuditIntake:
    def __init__(self, ledger: AuditLedger) -> None:
        self.ledger = ledger
        self._plans: OrderedDict[str, Mapping[str, Any]] = OrderedDict()
        self._plans_lock = threading.Lock()

    def _plan_body(self, query_id: str) -> Mapping[str, Any] | None:
        """The body of the plan recorded for ``query_id`` (ledger entries never change, so a
        found one is cached; an absent one is looked up again next time)."""
        with self._plans_lock:
            body = self._plans.get(query_id)
            if body is not None:
                self._plans.move_to_end(query_id)
                return body
        entry = self.ledger.first_of(EntryKind.PLAN, query_id) if query_id else None
        if entry is None:
            return None
        with self._plans_lock:
            self._plans[query_id] = entry.body
            while len(self._plans) > PLAN_CACHE:
                self._plans.popitem(last=False)
        return entry.body

    def record(self, caller: str, records: Sequence[SubmittedRecord],
               now_ms: int) -> list[Receipt]:
        if not 0 < len(records) <= MAX_RECORDS:
            raise InvalidRequestError(f"submit 1 to {MAX_RECORDS} records at a time")
        drafts = [self._draft(caller, record) for record in records]
        return self.ledger.append_many(drafts, now_ms=now_ms)

    def consent_with_plan(self, caller: str, record: SubmittedRecord, plan: Plan
                          ) -> EntryDraft:
        """The consent entry a requester sends with its plan request (``PlanInquiry``),
        checked against the plan about to be recorded with it: same query id and purpose, a
        relationship the alliance policy accepts for that purpose. (What the signed consent
        itself says the hops check; here only its ledger entry is seen.)"""
        if record.kind != EntryKind.CONSENT.value:
            raise InvalidRequestError("the entry sent with a plan request is its consent")
        if record.query_id != plan.query_id:
            raise InvalidRequestError("the consent entry is for another query")
        body = _body(record)
        _check_body(EntryKind.CONSENT, body, (), caller)
        if body["purpose"] != plan.purpose.value:
            raise ConsentError("the consent's purpose differs from the requested purpose",
                               code=ErrorCode.CONSENT_PURPOSE_NOT_ALLOWED)
        if plan.requires_existing_customer and (
            body["relationship"] != Relationship.EXISTING_CUSTOMER.value
        ):
            raise ConsentError(
                f"alliance policy allows {plan.purpose.value} only for an existing customer",
                code=ErrorCode.CONSENT_PURPOSE_NOT_ALLOWED)
        return EntryDraft(kind=EntryKind.CONSENT, actor=caller, body=body,
                          query_id=record.query_id, subject_tag=_subject_tag(
                              EntryKind.CONSENT, record))

    def _draft(self, caller: str, record: SubmittedRecord) -> EntryDraft:
        try:
            kind = EntryKind(record.kind)
        except ValueError:
            raise InvalidRequestError(f"unknown entry kind {record.kind!r}") from None
        if kind not in _FIELDS:
            raise PermissionDeniedError(f"members cannot record {kind.value} entries")
        plan = self._plan_body(record.query_id)
        if plan is None:
            raise ResourceNotFoundError("no plan with this query id is in the ledger")
        requester = plan.get("requester_id")
        route = plan.get("route")
        assert isinstance(route, list)
        members = [str(m) for m in route]
        if kind is EntryKind.CONTRIBUTION:
            if caller not in members:
                raise PermissionDeniedError("only a member on the route records a contribution")
        elif caller != requester:
            raise PermissionDeniedError(f"only the requester records the {kind.value}")
        body = _body(record)
        batch = plan.get("batch")
        _check_body(kind, body, members, caller, batch if isinstance(batch, dict) else None)
        return EntryDraft(kind=kind, actor=caller, body=body, query_id=record.query_id,
                          subject_tag=_subject_tag(kind, record))


def _body(record: SubmittedRecord) -> dict[str, Any]:
    try:
        body = json.loads(record.body_json)
    except ValueError:
        raise InvalidRequestError("body_json is not JSON") from None
    if not isinstance(body, dict):
        raise InvalidRequestError("body_json must be an object")
    return body


def _subject_tag(kind: EntryKind, record: SubmittedRecord) -> bytes | None:
    if kind is EntryKind.CONSENT:
        if len(record.subject_tag) != 32:
            raise InvalidRequestError("a consent entry carries a 32-byte subject tag")
        return record.subject_tag
    if record.subject_tag:
        raise InvalidRequestError("only consent entries carry a subject tag")
    return None
