"""The audit ledger as members use it: every evaluation's plan, consent, contributions and
completion recorded; receipts kept and checked; inquiry histories answered; bad records
refused; nothing lost while the coordinator is down."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import httpx
import pytest

from coordinator.server import start_coordinator
from fedcredit.audit import EntryDraft, EntryKind
from fedcredit.demo.population import Population
from mpc.pseudonym import SubjectKey, pseudonymize
from node.audit_trail import AuditTrail, OutboxSync
from proto.v1 import coordinator_pb2, coordinator_pb2_grpc
from tests.support.alliance import (
    API_KEY,
    InProcessAlliance,
    body,
    indices_with_records,
    start_alliance,
)
from tests.support.grpc_calls import coordinator_channel, error_code, member_identity, now_ms

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def audited(tmp_path_factory: pytest.TempPathFactory, population: Population,
            subject_key: SubjectKey) -> Iterator[InProcessAlliance]:
    running = start_alliance(tmp_path_factory.mktemp("audit"), population, subject_key)
    yield running
    running.stop()


def evaluate(alliance: InProcessAlliance, requester: str, index: int,
             population: Population) -> dict[str, object]:
    response = httpx.post(f"{alliance.url(requester)}/v1/evaluations",
                          json=body(population, index), headers={"X-API-Key": API_KEY},
                          timeout=30)
    assert response.status_code == 201, response.text
    report: dict[str, object] = response.json()
    return report


def trail(alliance: InProcessAlliance, member: str) -> AuditTrail:
    audit: AuditTrail = alliance.nodes[member].app.state.context.evaluations._audit
    return audit


def test_an_evaluation_leaves_its_whole_trail_and_nothing_identifying(
    audited: InProcessAlliance, population: Population, subject_key: SubjectKey
) -> None:
    index = indices_with_records(population, 3)[0]
    report = evaluate(audited, "bank", index, population)
    audited.drain_audit_outboxes()
    ledger = audited.coordinator.core.ledger
    entries = ledger.entries(0, ledger.size(), query_id=str(report["query_id"]))
    kinds = [(e.kind, e.actor) for e in entries]
    assert kinds[0] == (EntryKind.PLAN, "bank")
    assert (EntryKind.CONSENT, "bank") in kinds
    assert {a for k, a in kinds if k is EntryKind.CONTRIBUTION} == {"finco", "shop", "telco"}
    # Contributions and the completion arrive through each member's own outbox, so the ledger
    # holds them in arrival order: the requester's completion may land before a contribution.
    completions = [e for e in entries if e.kind is EntryKind.COMPLETION]
    assert [e.actor for e in completions] == ["bank"]
    completion = completions[0].body
    assert (completion["asked"], completion["answered"]) == (3, 3)
    # Nothing in the log identifies the applicant: no identifier, no pseudonym, no tag reuse.
    pseudonym = pseudonymize(subject_key, "cn_resident_id", population.identifiers[index]).value
    db = sqlite3.connect(audited.coordinator_settings.database_path)
    dump = "\n".join(db.iterdump()).encode()
    db.close()
    for needle in (population.identifiers[index].encode(), pseudonym, pseudonym.hex().encode()):
        assert needle not in dump
    consent = next(e for e in entries if e.kind is EntryKind.CONSENT)
    assert consent.subject_tag is not None and len(consent.subject_tag) == 32


def test_receipts_check_out_and_catch_a_rewritten_log(
    audited: InProcessAlliance, population: Population
) -> None:
    evaluate(audited, "shop", indices_with_records(population, 2)[1], population)
    audited.drain_audit_outboxes()
    for member in audited.nodes:
        receipts = trail(audited, member).receipts()
        assert receipts, member
        result = trail(audited, member).check()
        assert result.ok and result.receipts_checked == len(receipts)
    # The operator cuts the log back to before bank's last receipt and re-signs nothing:
    # proofs for the receipts beyond the cut no longer exist.
    last = max(r.index for r in trail(audited, "bank").receipts())
    db = sqlite3.connect(audited.coordinator_settings.database_path)
    saved_entries = db.execute("SELECT * FROM ledger_entries WHERE idx >= ?", (last,)).fetchall()
    saved_heads = db.execute("SELECT * FROM ledger_tree_heads WHERE size > ?",
                             (last,)).fetchall()
    saved_nodes = db.execute("SELECT * FROM ledger_nodes").fetchall()
    with db:
        db.execute("DELETE FROM ledger_entries WHERE idx >= ?", (last,))
        db.execute("DELETE FROM ledger_tree_heads WHERE size > ?", (last,))
    try:
        result = trail(audited, "bank").check()
        assert not result.ok and last in result.failed_indices
    finally:
        with db:  # put the log back for the other tests
            db.executemany(f"INSERT INTO ledger_entries VALUES ({','.join('?' * 8)})",
                           saved_entries)
            db.executemany(f"INSERT INTO ledger_tree_heads VALUES "
                           f"({','.join('?' * len(saved_heads[0]))})", saved_heads)
            db.execute("DELETE FROM ledger_nodes")
            db.executemany(f"INSERT INTO ledger_nodes VALUES ({','.join('?' * 3)})", saved_nodes)
        db.close()
    assert trail(audited, "bank").check().ok


def test_the_applicants_institution_answers_their_inquiry_history(
    audited: InProcessAlliance, population: Population
) -> None:
    index = indices_with_records(population, 3)[2]
    evaluate(audited, "finco", index, population)
    evaluate(audited, "telco", index, population)
    response = httpx.post(
        f"{audited.url('bank')}/v1/inquiries/search", headers={"X-API-Key": API_KEY},
        json={"applicant": {"id_type": "cn_resident_id",
                            "identifier": population.identifiers[index]}}, timeout=30)
    assert response.status_code == 200, response.text
    history = response.json()["inquiries"]
    assert [(i["requester_id"], i["purpose"]) for i in history] == [
        ("telco", "origination"), ("finco", "origination")]
    other = indices_with_records(population, 3)[3]
    response = httpx.post(
        f"{audited.url('bank')}/v1/inquiries/search", headers={"X-API-Key": API_KEY},
        json={"applicant": {"id_type": "cn_resident_id",
                            "identifier": population.identifiers[other]}}, timeout=30)
    assert response.json()["inquiries"] == []


def record(alliance: InProcessAlliance, member: str, kind: str, query_id: str,
           doc: dict[str, object], tag: bytes = b"") -> grpc.RpcError:
    with coordinator_channel(alliance, member_identity(alliance, member)) as channel:
        stub = coordinator_pb2_grpc.CoordinatorStub(channel)
        with pytest.raises(grpc.RpcError) as info:
            stub.RecordAudit(coordinator_pb2.AuditSubmission(records=[
                coordinator_pb2.AuditRecord(kind=kind, query_id=query_id, subject_tag=tag,
                                            body_json=json.dumps(doc))]), timeout=5)
    return info.value


def test_members_can_only_record_their_own_part(
    audited: InProcessAlliance, population: Population
) -> None:
    report = evaluate(audited, "bank", indices_with_records(population, 3)[4], population)
    audited.drain_audit_outboxes()
    query = str(report["query_id"])
    digest = "ab" * 32
    plan = audited.coordinator.core.ledger.first_of(EntryKind.PLAN, query)
    assert plan is not None
    route = plan.body["route"]
    assert isinstance(route, list)
    theirs = next(i for i, member in enumerate(route) if member != "finco")
    contribution = {"accumulator_sha256": digest, "consent_sha256": digest,
                    "hop_index": route.index("finco")}
    completion = {"asked": 3, "answered": 3, "skipped": [], "result_commitment": digest}
    cases = [
        ("finco", "completion", query, completion, "PERMISSION_DENIED"),   # not the requester
        ("bank", "contribution", query, contribution, "PERMISSION_DENIED"),  # not on the route
        ("finco", "contribution", "no-such-plan", contribution, "RESOURCE_NOT_FOUND"),
        ("finco", "admission", query, {}, "PERMISSION_DENIED"),
        ("finco", "contribution", query, {**contribution, "pseudonym": "00" * 32},
         "INVALID_REQUEST"),                                                # smuggled field
        ("finco", "contribution", query, {**contribution, "accumulator_sha256": "raw text"},
         "INVALID_REQUEST"),
        ("finco", "contribution", query, {**contribution, "hop_index": theirs},
         "PERMISSION_DENIED"),                                              # another hop's
    ]
    audited.drain_audit_outboxes()  # earlier evaluations' entries land first
    size = audited.coordinator.core.ledger.size()
    for member, kind, query_id, doc, code in cases:
        assert error_code(record(audited, member, kind, query_id, doc)) == code, (member, kind)
    assert audited.coordinator.core.ledger.size() == size  # nothing half-written


def test_the_outbox_keeps_entries_through_a_coordinator_outage(
    tmp_path_factory: pytest.TempPathFactory, population: Population, subject_key: SubjectKey
) -> None:
    alliance = start_alliance(tmp_path_factory.mktemp("outage"), population, subject_key)
    try:
        report = evaluate(alliance, "bank", indices_with_records(population, 3)[0], population)
        alliance.drain_audit_outboxes()
        port = alliance.coordinator.port
        alliance.coordinator.stop(0)
        bank = trail(alliance, "bank")
        bank.enqueue(EntryDraft(kind=EntryKind.COMPLETION, actor="bank",
                                query_id=str(report["query_id"]), body={
                                    "asked": 3, "answered": 3, "skipped": [],
                                    "result_commitment": "cd" * 32}))
        # Not sent, but on the disk: the flusher syncs the outbox whether or not the
        # coordinator answers.
        deadline = time.monotonic() + 5
        while not bank.synced and time.monotonic() < deadline:
            time.sleep(0.05)
        assert bank.synced
        time.sleep(0.3)
        assert bank.pending() == 1
        restarted = now_ms()
        alliance.coordinator = start_coordinator(alliance.coordinator_settings.model_copy(
            update={"bind": f"127.0.0.1:{port}"}))
        alliance.wait_active({"bank"}, heard_since_ms=restarted)
        alliance.drain_audit_outboxes()
        ledger = alliance.coordinator.core.ledger
        completions = ledger.entries(0, ledger.size(), kinds=[EntryKind.COMPLETION],
                                     query_id=str(report["query_id"]))
        assert [e.body["result_commitment"] for e in completions][-1] == "cd" * 32
    finally:
        alliance.stop()


@pytest.mark.parametrize(("sync", "on_disk_at_once"), [("batch", False), ("entry", True)])
def test_outbox_entries_reach_the_disk_as_the_sync_setting_says(
    audited: InProcessAlliance, tmp_path: Path, sync: OutboxSync, on_disk_at_once: bool
) -> None:
    bank = trail(audited, "bank")
    # A second trail beside bank's (same coordinator client and directory), its flusher not
    # started: what enqueue itself does.
    own = AuditTrail(tmp_path / "audit.sqlite3", "bank", bank._client, bank._directory,
                     now_ms, sync=sync)
    try:
        assert own.synced
        own.enqueue(EntryDraft(kind=EntryKind.COMPLETION, actor="bank", query_id="q-sync",
                               body={"asked": 3, "answered": 3, "skipped": [],
                                     "result_commitment": "ab" * 32}))
        assert own.pending() == 1
        assert own.synced is on_disk_at_once
    finally:
        own.close()  # syncs what waits
    reopened = sqlite3.connect(tmp_path / "audit.sqlite3")
    assert reopened.execute("SELECT COUNT(*) FROM audit_outbox").fetchone() == (1,)
    reopened.close()
