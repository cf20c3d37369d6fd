"""One member's own state or policy (a skewed clock, a missing model version, a purpose it
does not serve) must not fail everyone's evaluations; as a requester, it gets a clear error."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from fedcredit.audit import EntryKind
from fedcredit.demo.population import Population, generate, pooled_result
from mpc.pseudonym import SubjectKey
from tests.support.alliance import API_KEY, InProcessAlliance, body, consent, start_alliance

pytestmark = pytest.mark.integration
TEN_MINUTES_MS = 600_000


@pytest.fixture(scope="module")
def population5() -> Population:
    return generate(subjects=300, nodes=5, seed=5)


@pytest.fixture(scope="module", params=["chain", "tree"])
def faulty(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
           population5: Population, subject_key: SubjectKey) -> Iterator[InProcessAlliance]:
    """The same faults under both route shapes: in a TREE, a faulty member may be the root."""
    workdir = tmp_path_factory.mktemp("faults")
    no_models = workdir / "no-models"
    no_models.mkdir()
    running = start_alliance(workdir, population5, subject_key, nodes={
        "shop": {"clock": lambda: time.time_ns() // 1_000_000 + TEN_MINUTES_MS},
        "telco": {"model_dir": no_models},
        "union": {"allowed_purposes": ["origination"]},
    }, route_mode=request.param, probe_interval_ms=600_000)  # latencies: see fastest()
    yield running
    running.stop()


def fastest(alliance: InProcessAlliance, member: str) -> None:
    """Make ``member`` look fastest to the planner, so that a TREE plan makes it the root (the
    fixture's prober waits ten minutes between rounds, so nothing overwrites this)."""
    alliance.coordinator.registry.db.execute(
        "UPDATE members SET latency_ms = CASE member_id WHEN ? THEN 0.001 ELSE 100 END",
        (member,))


@pytest.mark.parametrize("faulty", ["tree"], indirect=True)
@pytest.mark.parametrize("root", ["shop", "telco", "union"])
def test_whichever_faulty_member_a_tree_puts_at_the_root_the_rest_still_answer(
    faulty: InProcessAlliance, population5: Population, root: str
) -> None:
    """shop's clock is off, so as a TREE root it refuses the plan and nothing is aggregated:
    the requester falls back to a CHAIN under a new plan. telco (no model) declines its own
    share but relays its children's sums; union (which serves origination) aggregates."""
    assert faulty.coordinator_settings.route_mode == "tree"
    ledger = faulty.coordinator.core.ledger
    before = ledger.size()
    fastest(faulty, root)
    index = 17
    answered_without_shop_and_telco(faulty, population5, index)
    plans = [e for e in ledger.entries(before, ledger.size(), kinds=[EntryKind.PLAN])
             if e.actor == "bank"]
    assert [p.body["mode"] for p in plans] == (["TREE", "CHAIN"] if root == "shop" else ["TREE"])
    route = plans[0].body["route"]
    assert isinstance(route, list) and route[0] == root


def post(alliance: InProcessAlliance, requester: str, doc: dict[str, object]) -> httpx.Response:
    return httpx.post(f"{alliance.url(requester)}/v1/evaluations", json=doc,
                      headers={"X-API-Key": API_KEY}, timeout=30)


def share(population: Population, member: str, index: int) -> tuple[float, int]:
    inst = next(i for i in population.institutions if i.profile.member_id == member)
    if not inst.has_record[index]:
        return 0.0, 0
    values = {k: float(v[index]) for k, v in inst.features.items()}
    return (population.models[member].partial_logit(values),
            int(inst.exposures["outstanding_debt_cents"][index]))


def answered_without_shop_and_telco(alliance: InProcessAlliance, population: Population,
                                    index: int) -> None:
    """bank evaluates ``index``: shop (clock skew) and telco (no model) are skipped, finco and
    union answer, and the result is exactly the pooled one without shop's and telco's shares."""
    response = post(alliance, "bank", body(population, index))
    assert response.status_code == 201, response.text
    report = response.json()
    skipped = {s["member_id"]: s["error_code"] for s in report["coverage"]["skipped"]}
    assert skipped == {"shop": "PLAN_EXPIRED", "telco": "MODEL_VERSION_UNAVAILABLE"}
    assert (report["coverage"]["asked"], report["coverage"]["answered"]) == (4, 2)
    expected = pooled_result(population, index)
    missing = [share(population, m, index) for m in ("shop", "telco")]
    assert report["joint_logit"] == pytest.approx(
        expected.joint_logit - sum(p for p, _ in missing), abs=1e-6)
    assert round(report["exposures"]["outstanding_debt"] * 100) == (
        expected.exposures["outstanding_debt_cents"] - sum(d for _, d in missing))


def test_faulty_members_are_skipped_and_the_rest_answer_exactly(
    faulty: InProcessAlliance, population5: Population
) -> None:
    answered_without_shop_and_telco(faulty, population5, 17)



def test_a_purpose_one_member_declines_only_removes_that_member(
    faulty: InProcessAlliance, population5: Population
) -> None:
    before = faulty.stored_reports("bank")
    bank = population5.institutions[0]
    index = next(i for i in range(len(population5.identifiers)) if bank.has_record[i])
    collections = {**consent(purpose="collections"), "relationship": "existing_customer"}
    response = post(faulty, "bank", body(population5, index, consent=collections))
    # finco alone is left: its share would be the whole sum, so it withholds it.
    assert response.status_code == 503
    error = response.json()["error"]
    assert error["code"] == "INSUFFICIENT_COVERAGE"
    assert "withheld" in error["detail"] and "union CONSENT_PURPOSE_NOT_ALLOWED" in error["detail"]
    assert faulty.stored_reports("bank") == before


def test_a_requester_without_the_model_version_gets_a_clear_error(
    faulty: InProcessAlliance, population5: Population
) -> None:
    response = post(faulty, "telco", body(population5, 4))
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "MODEL_VERSION_UNAVAILABLE"
    assert faulty.stored_reports("telco") == 0


def test_a_requester_whose_clock_runs_ahead_gets_plan_expired(
    faulty: InProcessAlliance, population5: Population
) -> None:
    response = post(faulty, "shop", body(population5, 4))
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "PLAN_EXPIRED"
    assert faulty.stored_reports("shop") == 0

