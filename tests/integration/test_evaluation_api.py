"""The lender REST API over real HTTP, against a real in-process alliance."""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path

import httpx
import numpy as np
import pytest

from fedcredit.demo.population import Population, pooled_result
from fedcredit.errors import ConfigurationError
from node.server import lending_policy_from
from scoring.decision import ReasonCode, credit_limit
from scoring.lending_policy import DEFAULT_POLICY_YAML, default_policy, grade_of
from scoring.scorecard import Grade
from tests.support.alliance import InProcessAlliance, body, consent, indices_with_records

pytestmark = pytest.mark.integration


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


def test_joint_evaluation_is_exact_persisted_and_retrievable(
    alliance: InProcessAlliance, population: Population, http: httpx.Client
) -> None:
    for k, index in enumerate(indices_with_records(population, 3)[:4]):
        requester = ("bank", "finco", "shop", "telco")[k]
        response = http.post(f"{alliance.url(requester)}/v1/evaluations",
                             json=body(population, index))
        assert response.status_code == 201, response.text
        report = response.json()
        expected = pooled_result(population, index)
        assert report["joint_logit"] == pytest.approx(expected.joint_logit, abs=1e-6)
        assert report["institutions_with_records"] == expected.institutions_with_records
        assert round(report["exposures"]["outstanding_debt"] * 100) == (
            expected.exposures["outstanding_debt_cents"])
        assert report["exposures"]["accounts_30dpd"] == expected.exposures["accounts_30dpd"]
        assert report["coverage"] == {"asked": 3, "answered": 3, "skipped": []}
        assert 300 <= report["score"] <= 900 and report["grade"] in "ABCDE"
        assert response.headers["Location"] == f"/v1/evaluations/{report['query_id']}"
        again = http.get(f"{alliance.url(requester)}{response.headers['Location']}")
        assert again.status_code == 200
        assert again.json() == report


def test_an_applicant_nobody_knows_gets_zero_exposure(
    alliance: InProcessAlliance, population: Population, http: httpx.Client
) -> None:
    response = http.post(
        f"{alliance.url('bank')}/v1/evaluations",
        json=body(population, 0, applicant={"id_type": "cn_resident_id",
                                            "identifier": "11010519491231002X"}),
    )
    assert response.status_code == 201, response.text
    report = response.json()
    assert report["institutions_with_records"] == 0
    assert report["exposures"]["outstanding_debt"] == 0
    assert report["joint_logit"] == pytest.approx(alliance.nodes["bank"].app.state.context
                                                  .evaluations._models.get("v1").intercept)


@pytest.mark.parametrize(
    ("changes", "status", "code"),
    [
        ({"applicant": {"id_type": "cn_resident_id", "identifier": "110105194912310021"}},
         422, "MALFORMED_IDENTIFIER"),
        ({"applicant": {"id_type": "us_ssn", "identifier": "000-12-3456"}},
         422, "MALFORMED_IDENTIFIER"),
        ({"consent": None}, 403, "CONSENT_MISSING"),
        ({"consent": consent(days=-1)}, 403, "CONSENT_EXPIRED"),
        ({"consent": consent(purpose="marketing")}, 422, "INVALID_REQUEST"),
        ({"requested_amount": -5}, 422, "INVALID_REQUEST"),
        ({"term_months": "soon"}, 422, "INVALID_REQUEST"),
        ({"verified_annual_income": -1}, 422, "INVALID_REQUEST"),
        ({"monthly_spending": -1}, 422, "INVALID_REQUEST"),
        ({"unexpected": 1}, 422, "INVALID_REQUEST"),
    ],
)
def test_bad_requests_get_typed_errors_and_persist_nothing(
    alliance: InProcessAlliance, population: Population, http: httpx.Client,
    changes: dict[str, object], status: int, code: str,
) -> None:
    before = alliance.stored_reports("bank")
    response = http.post(f"{alliance.url('bank')}/v1/evaluations",
                         json=body(population, 1, **changes))
    assert_error(response, status, code)
    assert alliance.stored_reports("bank") == before


def test_api_keys_are_required(alliance: InProcessAlliance, population: Population) -> None:
    url = f"{alliance.url('bank')}/v1/evaluations"
    for headers in ({}, {"X-API-Key": "not-a-key"}):
        response = httpx.post(url, json=body(population, 1), headers=headers)
        assert_error(response, 401, "UNKNOWN_API_KEY")
    assert_error(httpx.get(f"{url}/anything"), 401, "UNKNOWN_API_KEY")


def test_malformed_json_and_oversized_bodies(
    alliance: InProcessAlliance, http: httpx.Client
) -> None:
    url = f"{alliance.url('bank')}/v1/evaluations"
    response = http.post(url, content=b"{not json", headers={"Content-Type": "application/json"})
    assert_error(response, 422, "INVALID_REQUEST")
    huge = b'{"applicant": "' + b"x" * (128 * 1024) + b'"}'
    assert_error(http.post(url, content=huge, headers={"Content-Type": "application/json"}),
                 413, "MESSAGE_TOO_LARGE")

    def chunks():  # no Content-Length: the limit is enforced while reading
        for _ in range(40):
            yield b"x" * 4096

    assert_error(http.post(url, content=chunks(), headers={"Content-Type": "application/json"}),
                 413, "MESSAGE_TOO_LARGE")


def test_unknown_evaluation_id(alliance: InProcessAlliance, http: httpx.Client) -> None:
    assert_error(http.get(f"{alliance.url('bank')}/v1/evaluations/no-such-id"), 404,
                 "EVALUATION_NOT_FOUND")


def test_health_metrics_and_openapi(alliance: InProcessAlliance, http: httpx.Client) -> None:
    health = http.get(f"{alliance.url('shop')}/healthz").json()
    assert health["status"] == "ok" and health["registered"] and health["subjects"] > 0
    http.get(f"{alliance.url('shop')}/v1/evaluations/missing")
    metrics = http.get(f"{alliance.url('shop')}/metrics").text
    assert "fedcredit_evaluation_seconds_bucket" in metrics
    assert 'fedcredit_api_errors_total{code="EVALUATION_NOT_FOUND"}' in metrics
    assert 'fedcredit_api_errors_total{code="MESSAGE_TOO_LARGE"}' not in metrics
    http.post(f"{alliance.url('shop')}/v1/evaluations", content=b"x" * 70_000)
    metrics = http.get(f"{alliance.url('shop')}/metrics").text
    assert 'fedcredit_api_errors_total{code="MESSAGE_TOO_LARGE"} 1.0' in metrics
    spec = http.get(f"{alliance.url('shop')}/openapi.json").json()
    post = spec["paths"]["/v1/evaluations"]["post"]
    assert {"201", "401", "403", "413", "422", "503"} <= set(post["responses"])
    schemas = spec["components"]["schemas"]
    assert schemas["EvaluationCreate"]["examples"] and schemas["EvaluationOut"]["examples"]
    assert "X-API-Key" in str(spec["components"]["securitySchemes"])


def _alliance_90dpd(population: Population) -> list[int]:
    """Applicants bank holds a record of and whom some member reports 90+ days past due."""
    late = np.sum([inst.exposures["accounts_90dpd"] for inst in population.institutions], axis=0)
    return [int(i) for i in np.flatnonzero((late > 0) & population.institutions[0].has_record)]


def test_the_report_carries_the_lenders_decision_limit_plan_and_reasons(
    alliance: InProcessAlliance, population: Population, http: httpx.Client
) -> None:
    policy = default_policy()
    late = set(_alliance_90dpd(population))
    outcomes = []
    for index in [i for i in indices_with_records(population, 2) if i not in late][:6]:
        response = http.post(f"{alliance.url('bank')}/v1/evaluations", json=body(
            population, index, requested_amount=6000, term_months=12,
            verified_annual_income=90000, monthly_spending=2500))
        assert response.status_code == 201, response.text
        report = response.json()
        lending = report["lending"]
        assert lending["policy_version"] == policy.version
        assert lending["grade"] == report["grade"] == grade_of(report["score"], policy).value
        debt = Decimal(str(report["exposures"]["outstanding_debt"]))
        limit = credit_limit(Grade(report["grade"]), Decimal(90000), debt, policy)
        assert limit is not None and lending["credit_limit"] == float(limit)
        assert lending["decision"] in ("approve", "refer")
        assert lending["products"] == [] and lending["products_note"]  # no catalog yet
        plan = lending["plan"]
        outcomes.append(plan["outcome"])
        if limit == 0:
            assert plan["outcome"] == "no_credit" and plan["installments"] == []
        if plan["outcome"] == "planned":
            rows = plan["installments"]
            assert len(rows) in (3, 6, 12, 24) and plan["period"] in ("monthly", "quarterly")
            assert round(sum(r["principal"] for r in rows), 2) == plan["principal"]
            assert round(sum(r["payment"] for r in rows), 2) == round(
                plan["principal"] + plan["total_interest"], 2)
            assert plan["principal"] == min(6000, float(limit))
            assert plan["apr"] == float(policy.plan_apr)
        again = http.get(f"{alliance.url('bank')}/v1/evaluations/{report['query_id']}")
        assert again.json()["lending"] == lending
    assert "planned" in outcomes, outcomes


def test_a_decline_shows_its_reasons_and_no_plan(
    alliance: InProcessAlliance, population: Population, http: httpx.Client
) -> None:
    index = _alliance_90dpd(population)[0]
    report = http.post(f"{alliance.url('bank')}/v1/evaluations", json=body(
        population, index, verified_annual_income=50000, monthly_spending=1000)).json()
    lending = report["lending"]
    assert lending["decision"] == "decline" and "DPD90" in lending["rules_fired"]
    assert lending["reasons"][0]["code"] == ReasonCode.DELINQUENCY_90.value
    assert lending["credit_limit"] == 0 and lending["plan"] is None


def test_without_income_the_plan_says_it_cannot_be_computed(
    alliance: InProcessAlliance, population: Population, http: httpx.Client
) -> None:
    late = set(_alliance_90dpd(population))
    index = next(i for i in indices_with_records(population, 2) if i not in late)
    lending = http.post(f"{alliance.url('bank')}/v1/evaluations",
                        json=body(population, index)).json()["lending"]
    assert lending["decision"] == "refer" and lending["rules_unevaluated"] == ["DEBT_TO_INCOME"]
    assert lending["credit_limit"] is None
    assert lending["plan"]["outcome"] == "income_unknown" and lending["plan"]["installments"] == []
    assert "RC08" in [r["code"] for r in lending["reasons"]]


def test_a_policy_that_does_not_parse_stops_the_node_with_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "policy.yaml"
    bad.write_text(DEFAULT_POLICY_YAML.replace("metric: accounts_90dpd", "metric: loans"))
    with pytest.raises(ConfigurationError,
                       match=r"policy\.yaml: line 3: unknown metric 'loans'"):
        lending_policy_from(bad)
    with pytest.raises(ConfigurationError, match="cannot read the lending policy"):
        lending_policy_from(tmp_path / "missing.yaml")


def test_reason_codes_come_from_the_joint_slots_and_the_counts_are_exact(
    alliance: InProcessAlliance, population: Population, http: httpx.Client
) -> None:
    seen: set[str] = set()
    for index in indices_with_records(population, 2)[:12]:
        response = http.post(f"{alliance.url('finco')}/v1/evaluations",
                             json=body(population, index, verified_annual_income=90000,
                                       monthly_spending=2000))
        assert response.status_code == 201, response.text
        report = response.json()
        expected = pooled_result(population, index)
        groups = report["lending"]["reason_groups"]
        assert groups.keys() == expected.reason_groups.keys()
        for group, value in expected.reason_groups.items():
            assert groups[group] == pytest.approx(value, abs=1e-4), group
        assert report["exposures"]["institutions_with_active_loans"] == (
            expected.institutions_with_active_loans)
        heavy = {g for g, v in groups.items() if v >= 0.1}
        slot_codes = {"payment_history": "RC11", "amounts_owed": "RC12",
                      "credit_history": "RC13", "new_credit": "RC14"}
        codes = [r["code"] for r in report["lending"]["reasons"]]
        cited = {g for g, c in slot_codes.items() if c in codes}
        assert cited <= heavy  # never a group that does not weigh against the applicant
        if len(codes) < 4:
            assert cited == heavy  # and every heavy one while there is room
        seen |= cited
    assert "payment_history" in seen  # the sample exercises the slots


def test_hops_encrypt_with_obfuscators_their_refiller_made_in_advance(
    alliance: InProcessAlliance, population: Population, http: httpx.Client
) -> None:
    bank_key = alliance.nodes["bank"].app.state.context.evaluations._keypair.public
    hops = {m: alliance.nodes[m].app.state.context.evaluations._contributions._obfuscators
            for m in ("finco", "shop", "telco")}
    for m in hops:  # the key's DJN base came with it: announce -> coordinator -> directory
        directory = alliance.nodes[m].app.state.context.evaluations._contributions.directory
        published = {k.fingerprint(): k for k in directory.requester_keys(m)}
        assert published[bank_key.fingerprint()].hs == bank_key.hs is not None
    deadline = time.monotonic() + 30
    pools = {m: p.for_key(bank_key) for m, p in hops.items()}
    while not all(pool.full for pool in pools.values()):  # the refillers fill them meanwhile
        assert time.monotonic() < deadline, {m: len(p) for m, p in pools.items()}
        time.sleep(0.05)
    before = {m: (p.taken_from_pool, p.computed_on_demand) for m, p in pools.items()}
    response = http.post(f"{alliance.url('bank')}/v1/evaluations",
                         json=body(population, indices_with_records(population, 3)[7]))
    assert response.status_code == 201, response.text
    answered = response.json()["coverage"]["answered"]
    used = {m: (p.taken_from_pool - before[m][0], p.computed_on_demand - before[m][1])
            for m, p in pools.items()}
    assert sum(t for t, _ in used.values()) == answered  # one pooled obfuscator per hop
    assert all(d == 0 for _, d in used.values())  # none had to be computed on the spot
    assert all(pool.short_exponent for pool in pools.values())  # h_s^alpha, not r^n
