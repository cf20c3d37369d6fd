"""Portfolio re-scoring over real HTTP against a real in-process alliance (mutual TLS)."""

from __future__ import annotations

import io
import time
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import pytest

from fedcredit.demo.population import Population, pooled_result
from mpc.contribution import ContributionVector
from mpc.pseudonym import SubjectKey
from scoring.assessment import assess
from tests.support.alliance import InProcessAlliance, consent, start_alliance

pytestmark = pytest.mark.integration

CHUNK = 64


@pytest.fixture(scope="module")
def alliance(tmp_path_factory: pytest.TempPathFactory, population: Population,
             subject_key: SubjectKey) -> Iterator[InProcessAlliance]:
    running = start_alliance(
        tmp_path_factory.mktemp("portfolio"), population, subject_key,
        nodes={i.profile.member_id: {"portfolio_chunk_subjects": CHUNK}
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
