"""The lender REST API over real HTTP, against a real in-process alliance."""

from __future__ import annotations

import httpx
import pytest

from fedcredit.demo.population import Population, pooled_result
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
