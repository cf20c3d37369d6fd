"""What a judicial grant covers, entry by entry: the rules a case read applies to the ledger."""

from __future__ import annotations

import pytest

from coordinator.grants import GrantScope, concerns
from fedcredit.audit import EntryDraft, EntryKind, LedgerEntry
from fedcredit.errors import InvalidRequestError

pytestmark = pytest.mark.unit
T0 = 1_790_000_000_000


def entry(kind: EntryKind, actor: str, body: dict[str, object] | None = None,
          query_id: str | None = None, at: int = T0) -> LedgerEntry:
    return LedgerEntry.from_draft(EntryDraft(kind, actor, body or {}, query_id), 0, at)  # type: ignore[arg-type]


def test_a_member_is_concerned_as_actor_subject_requester_or_hop() -> None:
    assert concerns(entry(EntryKind.CONTRIBUTION, "bank-w"), "bank-w")
    assert concerns(entry(EntryKind.SUSPENSION, "admin:1", {"member_id": "bank-w"}), "bank-w")
    assert concerns(entry(EntryKind.PLAN, "x", {"requester_id": "bank-w"}), "bank-w")
    assert concerns(entry(EntryKind.PLAN, "x", {"route": ["bank-v", "bank-w"]}), "bank-w")
    assert not concerns(entry(EntryKind.PLAN, "x", {"route": ["bank-v"], "note": "bank-w"}),
                        "bank-w")
    assert not concerns(entry(EntryKind.PLAN, "x", {"route": "bank-w"}), "bank-w")


def test_query_ids_are_matched_exactly_at_any_time() -> None:
    scope = GrantScope(query_ids=("q-1",))
    assert scope.covers(entry(EntryKind.PLAN, "bank-x", query_id="q-1", at=1))
    assert not scope.covers(entry(EntryKind.PLAN, "bank-x", query_id="q-10"))
    assert not scope.covers(entry(EntryKind.SUSPENSION, "admin:1", {"member_id": "q-1"}))


def test_a_member_window_is_half_open() -> None:
    scope = GrantScope(member_id="bank-w", since_ms=T0, until_ms=T0 + 1000)
    inside = [entry(EntryKind.CONTRIBUTION, "bank-w", at=t) for t in (T0, T0 + 999)]
    outside = [entry(EntryKind.CONTRIBUTION, "bank-w", at=t) for t in (T0 - 1, T0 + 1000)]
    assert all(map(scope.covers, inside)) and not any(map(scope.covers, outside))
    assert not scope.covers(entry(EntryKind.CONTRIBUTION, "bank-v"))


@pytest.mark.parametrize("kind", [EntryKind.POLICY_CHANGE, EntryKind.PRINCIPAL_CHANGE,
                                  EntryKind.GRANT])
def test_trust_plane_administration_is_never_in_a_case(kind: EntryKind) -> None:
    scope = GrantScope(query_ids=("q-1",), member_id="bank-w", since_ms=0, until_ms=2 * T0)
    assert not scope.covers(entry(kind, "bank-w", {"member_id": "bank-w"}, "q-1"))


@pytest.mark.parametrize("fields", [
    {},
    {"member_id": "bank-w"},
    {"member_id": "bank-w", "since_ms": 5, "until_ms": 5},
    {"query_ids": ("q",), "since_ms": 1, "until_ms": 2},
    {"query_ids": ("",)},
    {"query_ids": tuple(f"q-{i}" for i in range(101))},
])
def test_a_scope_names_what_it_covers(fields: dict[str, object]) -> None:
    with pytest.raises(InvalidRequestError):
        GrantScope(**fields)  # type: ignore[arg-type]
