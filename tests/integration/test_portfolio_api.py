"""Portfolio re-scoring over real HTTP against a real in-process alliance (mutual TLS)."""

from __future__ import annotations

import dataclasses
import io
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import grpc
import httpx
import numpy as np
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from fedcredit.audit import EntryKind
from fedcredit.demo.population import Population, pooled_result
from fedcredit.plans import sign_plan
from fedcredit.protocol import (
    BatchTerms,
    ConsentTerms,
    FallbackPolicy,
    Purpose,
    Relationship,
    SignedConsent,
    SignedPlan,
)
from fedcredit.serde import signed_consent_to_pb, signed_plan_to_pb
from mpc.batch_he import BatchKeyPair
from mpc.contribution import ContributionVector
from mpc.merkle import inclusion_proofs, root_from_leaves
from mpc.pseudonym import SubjectKey, pseudonymize
from node.portfolio import PortfolioService
from node.portfolio_hop import chunk_leaf
from proto.v1 import node_pb2, node_pb2_grpc
from scoring.assessment import assess
from tests.support.alliance import InProcessAlliance, consent, start_alliance
from tests.support.grpc_calls import (
    channel_to,
    coordinator_signer,
    error_code,
    make_plan,
    make_request,
    now_ms,
    signed_consent,
)

pytestmark = pytest.mark.integration

CHUNK = 64


@pytest.fixture(scope="module")
def alliance(tmp_path_factory: pytest.TempPathFactory, population: Population,
             subject_key: SubjectKey) -> Iterator[InProcessAlliance]:
    running = start_alliance(
        tmp_path_factory.mktemp("portfolio"), population, subject_key,
        nodes={i.profile.member_id: {"portfolio_chunk_subjects": CHUNK,
                                     "portfolio_max_request_bytes": 200_000}
               for i in population.institutions})
    yield running
    running.stop()


def portfolio(identifiers: list[str], **changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "subjects": {"id_type": "cn_resident_id", "identifiers": identifiers},
        "consent": {**consent(purpose="account_review"), "relationship": "existing_customer"},
    }
    doc.update(changes)
    return doc


def bank_customers(population: Population) -> list[int]:
    bank = next(i for i in population.institutions if i.profile.member_id == "bank")
    return [int(i) for i in np.flatnonzero(bank.has_record)]


def service(alliance: InProcessAlliance, member: str = "bank") -> PortfolioService:
    portfolios: PortfolioService = alliance.nodes[member].app.state.context.portfolios
    return portfolios


def wait_done(http: httpx.Client, url: str, timeout_s: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = http.get(url).json()
        if job["state"] in ("succeeded", "failed", "cancelled"):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job still {job['state']} after {timeout_s} s")


def test_a_portfolio_is_scored_exactly_in_request_order(
    alliance: InProcessAlliance, population: Population, http: httpx.Client
) -> None:
    bank = next(i for i in population.institutions if i.profile.member_id == "bank")
    customers = [int(i) for i in np.flatnonzero(bank.has_record)]
    strangers = [int(i) for i in np.flatnonzero(~bank.has_record)][:5]
    order = customers + strangers + customers[:3]  # duplicates are scored once
    ids = [population.identifiers[i] for i in order]
    url = f"{alliance.url('bank')}/v1/portfolio-evaluations"
    response = http.post(url, json=portfolio(ids))
    assert response.status_code == 202, response.text
    job = wait_done(http, f"{alliance.url('bank')}{response.headers['Location']}")
    assert job["state"] == "succeeded", job
    assert job["rows"] == len(ids) and job["subjects"] == len(customers) + len(strangers)
    assert job["chunks"] == -(-len(customers) // CHUNK) and job["chunks_done"] == job["chunks"]
    assert job["progress"] == 1.0
    assert job["summary"]["members_asked"] == 3 and job["summary"]["skipped"] == []
    assert job["summary"]["not_a_customer"] == len(strangers)

    table = pq.read_table(io.BytesIO(http.get(
        f"{alliance.url('bank')}{job['results']['parquet']}").content)).to_pylist()
    assert [r["row"] for r in table] == list(range(len(ids)))
    model = population.models["bank"]
    for row, index in zip(table, order, strict=True):
        assert row["subject_pseudonym"] == pseudonymize(
            alliance.subject_key, "cn_resident_id", population.identifiers[index]).hex()
        if index in strangers:
            assert row["status"] == "not_a_customer" and row["score"] is None
            continue
        expected = pooled_result(population, index)
        assert row["status"] == "scored"
        assert row["joint_logit"] == pytest.approx(expected.joint_logit, abs=1e-5)
        for name, value in expected.exposures.items():
            assert row[name] == value, name
        assert row["institutions_with_records"] == expected.institutions_with_records
        assert row["institutions_with_active_loans"] == expected.institutions_with_active_loans
        reference = assess(ContributionVector(
            model_partial=expected.joint_logit - model.intercept), model.intercept, model.scale)
        assert row["score"] == reference.score and row["grade"] == reference.grade.value
        assert row["members_answered"] == 3
    csv = pa_csv.read_csv(io.BytesIO(http.get(
        f"{alliance.url('bank')}{job['results']['csv']}").content)).to_pylist()
    assert [r["row"] for r in csv] == list(range(len(ids)))
    assert [r["score"] for r in csv] == [r["score"] for r in table]


@pytest.mark.parametrize(
    ("change", "status", "code", "detail"),
    [
        ({"subjects": {"id_type": "cn_resident_id", "identifiers": []}}, 422,
         "INVALID_REQUEST", ""),
        ({"subjects": {"id_type": "cn_resident_id",
                       "identifiers": ["11010519491231002X", "110105194912310021"]}},
         422, "MALFORMED_IDENTIFIER", "row 1"),
        ({"subjects": {"id_type": "passport", "identifiers": ["x"]}}, 422, "INVALID_REQUEST",
         ""),
        ({"consent": {**consent(days=-1, purpose="account_review"),
                      "relationship": "existing_customer"}}, 403, "CONSENT_EXPIRED", ""),
        ({"consent": consent(purpose="account_review")}, 403, "CONSENT_PURPOSE_NOT_ALLOWED",
         "existing customers only"),
        ({"consent": None}, 422, "INVALID_REQUEST", ""),
        ({"extra": 1}, 422, "INVALID_REQUEST", ""),
    ],
)
def test_bad_requests_are_refused_before_anything_is_queued(
    alliance: InProcessAlliance, population: Population, http: httpx.Client,
    change: dict[str, Any], status: int, code: str, detail: str,
) -> None:
    before = len(service(alliance).recent())
    response = http.post(f"{alliance.url('bank')}/v1/portfolio-evaluations",
                         json=portfolio([population.identifiers[0]], **change))
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert detail in response.json()["error"]["detail"]
    assert len(service(alliance).recent()) == before


def test_unknown_jobs_and_missing_keys_get_typed_errors(alliance: InProcessAlliance,
                                                        http: httpx.Client) -> None:
    base = f"{alliance.url('bank')}/v1/portfolio-evaluations"
    for response in (http.get(f"{base}/no-such-job"), http.post(f"{base}/no-such-job/cancel"),
                     http.get(f"{base}/no-such-job/results")):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "EVALUATION_NOT_FOUND"
    anonymous = httpx.get(base, timeout=10)
    assert anonymous.status_code == 401
    assert http.get(f"{base}/x/results?format=xlsx").status_code == 422


def test_the_route_has_its_own_body_limit_and_a_complete_openapi(
    alliance: InProcessAlliance, http: httpx.Client
) -> None:
    base = alliance.url("bank")
    # Above the lender API's 64 KiB but within the portfolio route's limit: parsed (and
    # refused as JSON), not cut off; above the route's own limit: 413.
    assert http.post(f"{base}/v1/portfolio-evaluations", content=b"x" * 150_000,
                     headers={"Content-Type": "application/json"}).status_code == 422
    too_big = http.post(f"{base}/v1/portfolio-evaluations", content=b"x" * 250_000)
    assert too_big.status_code == 413
    assert too_big.json()["error"]["code"] == "MESSAGE_TOO_LARGE"
    assert http.post(f"{base}/v1/evaluations", content=b"x" * 150_000).status_code == 413
    spec = http.get(f"{base}/openapi.json").json()
    paths = spec["paths"]
    assert {"202", "401", "403", "413", "422"} <= set(
        paths["/v1/portfolio-evaluations"]["post"]["responses"])
    assert {"404", "409"} <= set(
        paths["/v1/portfolio-evaluations/{job_id}/results"]["get"]["responses"])
    schemas = spec["components"]["schemas"]
    for name in ("PortfolioCreate", "PortfolioSubjectsIn", "PortfolioOut", "PortfolioListOut",
                 "JobErrorOut", "PortfolioResultsOut"):
        assert schemas[name]["examples"], name


def test_a_cancelled_job_stops_before_its_next_chunk_and_has_no_results(
    alliance: InProcessAlliance, population: Population, http: httpx.Client,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    forwarder = service(alliance)._forwarder
    original = forwarder.forward_chunk
    started, release = threading.Event(), threading.Event()

    def gated(*args: Any, **kwargs: Any) -> Any:
        started.set()
        assert release.wait(20)
        return original(*args, **kwargs)

    monkeypatch.setattr(forwarder, "forward_chunk", gated)
    ids = [population.identifiers[i] for i in bank_customers(population)]
    base = f"{alliance.url('bank')}/v1/portfolio-evaluations"
    job_id = http.post(base, json=portfolio(ids)).json()["job_id"]
    assert started.wait(20)
    second = http.post(base, json=portfolio(ids[:10]))
    assert second.status_code == 202
    third = http.post(base, json=portfolio(ids[:10]))  # two run at most
    assert third.status_code == 409 and third.json()["error"]["code"] == "RESOURCE_CONFLICT"
    for job_to_cancel in (job_id, second.json()["job_id"]):
        assert http.post(f"{base}/{job_to_cancel}/cancel").status_code == 200
    release.set()
    assert wait_done(http, f"{base}/{second.json()['job_id']}")["state"] == "cancelled"
    job = wait_done(http, f"{base}/{job_id}")
    assert job["state"] == "cancelled" and job["chunks_done"] < job["chunks"]
    assert job["results"] is None
    for response in (http.get(f"{base}/{job_id}/results"), http.post(f"{base}/{job_id}/cancel")):
        assert response.status_code == 409
        assert response.json()["error"]["code"] == "RESOURCE_CONFLICT"
    listed = http.get(base, params={"limit": 5}).json()["jobs"]
    assert {j["job_id"] for j in listed[:2]} == {job_id, second.json()["job_id"]}


def test_a_chunk_without_enough_shares_fails_the_job_and_keeps_its_progress(
    alliance: InProcessAlliance, population: Population, http: httpx.Client,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    forwarder = service(alliance)._forwarder
    original = forwarder.forward_chunk
    calls = 0

    def short(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        accumulator, outcomes = original(*args, **kwargs)
        if calls < 3:
            return accumulator, outcomes
        # As if every other member had been skipped: nothing to decrypt.
        return None, tuple(dataclasses.replace(o, answered=False, error_code="NODE_UNAVAILABLE")
                           for o in outcomes)

    monkeypatch.setattr(forwarder, "forward_chunk", short)
    monkeypatch.setattr(service(alliance), "_in_flight", 1)
    ids = [population.identifiers[i] for i in bank_customers(population)[:300]]
    base = f"{alliance.url('bank')}/v1/portfolio-evaluations"
    job = wait_done(http, f"{alliance.url('bank')}"
                          f"{http.post(base, json=portfolio(ids)).headers['Location']}")
    assert job["state"] == "failed", job
    assert job["error"]["code"] == "INSUFFICIENT_COVERAGE" and "chunk 2" in job["error"]["detail"]
    assert job["query_id"] and job["chunks"] == 5 and job["chunks_done"] == 2
    # One chunk in flight: the worker may have taken the next before the failure was seen,
    # never the rest.
    assert calls <= 4
    assert http.get(f"{base}/{job['job_id']}/results").status_code == 409


def test_the_ledger_holds_the_job_and_no_subject(
    alliance: InProcessAlliance, population: Population, http: httpx.Client,
) -> None:
    ids = [population.identifiers[i] for i in bank_customers(population)[:150]]
    base = f"{alliance.url('bank')}/v1/portfolio-evaluations"
    job = wait_done(http, f"{alliance.url('bank')}"
                          f"{http.post(base, json=portfolio(ids)).headers['Location']}")
    assert job["state"] == "succeeded"
    ledger = alliance.coordinator.core.ledger
    deadline = time.monotonic() + 10
    while True:
        entries = ledger.entries(0, ledger.size(), query_id=job["query_id"])
        kinds = [(e.kind, e.actor) for e in entries]
        if kinds.count((EntryKind.COMPLETION, "bank")) and sum(
                k is EntryKind.CONTRIBUTION for k, _ in kinds) == 3 * job["chunks"]:
            break
        assert time.monotonic() < deadline, kinds
        time.sleep(0.05)
    batch = dict(entries[0].body["batch"])  # type: ignore[arg-type]
    assert batch == {"subjects": 150, "chunks": 3, "key_sha256": batch["key_sha256"]}
    assert job["chunks"] == 3
    consent_entry = next(e for e in entries if e.kind is EntryKind.CONSENT)
    assert consent_entry.body["subjects"] == 150
    assert len(str(consent_entry.body["pseudonym_root"])) == 64
    contributions = [e.body for e in entries if e.kind is EntryKind.CONTRIBUTION]
    assert sorted((c["chunk"], c["hop_index"]) for c in contributions) == [
        (c, h) for c in range(3) for h in range(3)]
    text = json.dumps([e.body for e in entries]).encode()
    for index in bank_customers(population)[:150]:
        pseudonym = pseudonymize(alliance.subject_key, "cn_resident_id",
                                 population.identifiers[index]).value
        assert population.identifiers[index].encode() not in text
        assert pseudonym.hex().encode() not in text


# -- hop refusals, straight over gRPC (mutual TLS) ---------------------------------------------
@dataclasses.dataclass
class Job:
    plan: Any
    signed: SignedPlan
    consent: SignedConsent
    keys: BatchKeyPair
    chunks: list[bytes]
    proofs: list[tuple[bytes, ...]]


def make_job(alliance: InProcessAlliance, population: Population, route: tuple[str, ...],
             subjects: int = 150, **changes: Any) -> Job:
    keys = BatchKeyPair.generate()
    names = [pseudonymize(alliance.subject_key, "cn_resident_id",
                          population.identifiers[i]).value
             for i in bank_customers(population)[:subjects]]
    chunks = [b"".join(names[i:i + CHUNK]) for i in range(0, len(names), CHUNK)]
    leaves = [chunk_leaf(i, c) for i, c in enumerate(chunks)]
    terms = BatchTerms(subjects=len(names), chunks=len(chunks), key_sha256=keys.public.sha256,
                       chunk_subjects=CHUNK)
    plan = make_plan(alliance, route, purpose=Purpose.ACCOUNT_REVIEW, batch=terms,
                     requires_existing_customer=True, expires_unix_ms=now_ms() + 120_000,
                     **changes)
    consent = signed_consent(alliance, plan, root_from_leaves(leaves), terms=ConsentTerms(
        Purpose.ACCOUNT_REVIEW, now_ms() + 60_000, "book", Relationship.EXISTING_CUSTOMER))
    return Job(plan, sign_plan(plan, coordinator_signer(alliance)), consent, keys, chunks,
               inclusion_proofs(leaves))


def open_at(alliance: InProcessAlliance, job: Job, member: str, hop_index: int,
            as_member: str = "bank", key: bytes | None = None) -> None:
    with channel_to(alliance, member, as_member=as_member) as channel:
        node_pb2_grpc.NodeStub(channel).OpenPortfolio(node_pb2.OpenPortfolioRequest(
            plan=signed_plan_to_pb(job.signed), consent=signed_consent_to_pb(job.consent),
            public_key=job.keys.public.wire if key is None else key, hop_index=hop_index),
            timeout=10)


def chunk_at(alliance: InProcessAlliance, job: Job, member: str, hop_index: int, chunk: int,
             as_member: str = "bank", pseudonyms: bytes | None = None
             ) -> node_pb2.PortfolioChunkReply:
    with channel_to(alliance, member, as_member=as_member) as channel:
        reply: node_pb2.PortfolioChunkReply = node_pb2_grpc.NodeStub(
            channel).ContributePortfolio(node_pb2.PortfolioChunkRequest(
                plan=signed_plan_to_pb(job.signed), hop_index=hop_index, chunk_index=chunk,
                pseudonyms=job.chunks[chunk] if pseudonyms is None else pseudonyms,
                inclusion_proof=job.proofs[min(chunk, len(job.proofs) - 1)]), timeout=20)
    return reply


def refused(call: Any) -> str | None:
    with pytest.raises(grpc.RpcError) as info:
        call()
    return error_code(info.value)


def test_a_hop_serves_each_chunk_of_a_job_once_and_only_chunks_the_consent_covers(
    alliance: InProcessAlliance, population: Population,
) -> None:
    job = make_job(alliance, population, ("finco", "shop"))
    for index, member in enumerate(("finco", "shop")):
        open_at(alliance, job, member, index)
    reply = chunk_at(alliance, job, "finco", 0, 0)
    assert [o.member_id for o in reply.outcomes] == ["finco", "shop"] and reply.HasField(
        "accumulator")
    assert refused(lambda: chunk_at(alliance, job, "finco", 0, 0)) == "PLAN_REPLAYED"
    swapped = job.chunks[1][32:64] + job.chunks[1][:32] + job.chunks[1][64:]
    assert refused(lambda: chunk_at(alliance, job, "finco", 0, 1, pseudonyms=swapped)
                   ) == "CONSENT_INVALID"
    assert refused(lambda: chunk_at(alliance, job, "finco", 0, 7, pseudonyms=job.chunks[0])
                   ) == "PLAN_INVALID"
    # Only the requester starts a chunk, and a hop it starts alone withholds the sum: the
    # reply would be one member's share.
    assert refused(lambda: chunk_at(alliance, job, "shop", 1, 1, as_member="finco")
                   ) == "PERMISSION_DENIED"
    assert refused(lambda: chunk_at(alliance, job, "shop", 1, 2)) == "INSUFFICIENT_COVERAGE"
    assert refused(lambda: open_at(alliance, job, "finco", 0)) == "PLAN_REPLAYED"


def test_a_job_must_be_opened_by_its_requester_with_the_committed_key(
    alliance: InProcessAlliance, population: Population,
) -> None:
    job = make_job(alliance, population, ("finco", "shop"))
    assert refused(lambda: chunk_at(alliance, job, "finco", 0, 0)) == "PORTFOLIO_NOT_OPEN"
    assert refused(lambda: open_at(alliance, job, "shop", 1, as_member="finco")
                   ) == "PERMISSION_DENIED"
    other = BatchKeyPair.generate().public.wire
    assert refused(lambda: open_at(alliance, job, "finco", 0, key=other)) == "KEY_MISMATCH"
    assert refused(lambda: open_at(alliance, job, "finco", 1)) == "NOT_ON_ROUTE"


def test_plans_of_one_kind_do_not_serve_the_other(
    alliance: InProcessAlliance, population: Population, subject_key: SubjectKey,
) -> None:
    job = make_job(alliance, population, ("finco", "shop"))
    pseudonym = pseudonymize(subject_key, "cn_resident_id", population.identifiers[3]).value
    with channel_to(alliance, "finco") as channel:
        stub = node_pb2_grpc.NodeStub(channel)
        assert refused(lambda: stub.Contribute(make_request(alliance, job.plan, pseudonym),
                                               timeout=10)) == "PLAN_INVALID"
    online = dataclasses.replace(job.plan, batch=None)
    job.signed = sign_plan(online, coordinator_signer(alliance))
    assert refused(lambda: open_at(alliance, job, "finco", 0)) == "PLAN_INVALID"


def test_the_first_hop_withholds_a_chunk_with_too_few_shares(
    alliance: InProcessAlliance, population: Population,
) -> None:
    job = make_job(alliance, population, ("finco", "shop"), fallback=FallbackPolicy(
        skip_unreachable=True, hop_timeout_ms=2000, min_answered=3))
    for index, member in enumerate(("finco", "shop")):
        open_at(alliance, job, member, index)
    assert refused(lambda: chunk_at(alliance, job, "finco", 0, 0)) == "INSUFFICIENT_COVERAGE"


def test_a_member_that_is_down_is_skipped_and_the_rest_sum_exactly(
    alliance: InProcessAlliance, population: Population, http: httpx.Client,
) -> None:
    """Last in this module: it stops a member."""
    alliance.nodes["telco"].stop()
    customers = bank_customers(population)[:100]
    base = f"{alliance.url('bank')}/v1/portfolio-evaluations"
    response = http.post(base, json=portfolio([population.identifiers[i] for i in customers]))
    job = wait_done(http, f"{alliance.url('bank')}{response.headers['Location']}")
    assert job["state"] == "succeeded", job
    assert job["summary"]["skipped"] == [{"member_id": "telco",
                                          "error_code": "NODE_UNAVAILABLE"}]
    assert job["summary"]["members_answered_min"] == 2
    table = pq.read_table(io.BytesIO(http.get(
        f"{alliance.url('bank')}{job['results']['parquet']}").content)).to_pylist()
    telco = next(i for i in population.institutions if i.profile.member_id == "telco")
    for row, index in zip(table, customers, strict=True):
        expected = pooled_result(population, index)
        telco_debt = int(telco.exposures["outstanding_debt_cents"][index]) * bool(
            telco.has_record[index])
        assert row["outstanding_debt_cents"] == (
            expected.exposures["outstanding_debt_cents"] - telco_debt)
        assert row["members_answered"] == 2
