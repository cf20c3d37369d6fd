"""Plans carry the model version the coordinator's registry has active for the requester: a node
whose ``model_version`` setting is empty evaluates with whatever an admin promoted (and rolled
back to), every hop scores with the version the plan names, and whoever lacks that version's
slice answers with MODEL_VERSION_UNAVAILABLE naming it."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterator

import httpx
import pytest

from fedcredit.audit import EntryKind
from fedcredit.demo.population import Population, pooled_result
from mpc.pseudonym import SubjectKey
from tests.support.alliance import API_KEY, InProcessAlliance, body, start_alliance
from tests.support.model_drafts import model_draft

pytestmark = pytest.mark.integration
#: Evaluates with the registry's active model; the others keep the seed ``v1`` pinned.
REQUESTER = "bank"
#: Also unpinned, and never promoted anything.
NEVER_PROMOTED = "shop"
HOSTS = ("finco", "shop", "telco")
INDEX = 11


@pytest.fixture(scope="module")
def registry_alliance(tmp_path_factory: pytest.TempPathFactory, population: Population,
                      subject_key: SubjectKey) -> Iterator[InProcessAlliance]:
    running = start_alliance(tmp_path_factory.mktemp("model-plans"), population, subject_key,
                             nodes={m: {"model_version": ""} for m in (REQUESTER, NEVER_PROMOTED)})
    yield running
    running.stop()


def install(alliance: InProcessAlliance, version: str, members: tuple[str, ...],
            with_intercept: bool = True) -> dict[str, str]:
    """The seed weights as ``version``'s slice at each of ``members`` (training's output, by
    hand); returns each file's SHA-256, as training registers them."""
    digests = {}
    for member in members:
        doc = dataclasses.replace(alliance.population.models[member],
                                  model_version=version).to_dict()
        if not with_intercept:
            del doc["intercept"]
        data = json.dumps(doc).encode()
        (alliance.workdir / "inputs" / member / "models" / f"{version}.json").write_bytes(data)
        digests[member] = hashlib.sha256(data).hexdigest()
    return digests


def register_and_promote(alliance: InProcessAlliance, version: str,
                         digests: dict[str, str]) -> None:
    models = alliance.coordinator.core.models
    models.register(model_draft(version, REQUESTER, HOSTS, digests), "training:test", 1)
    models.promote(version, "admin:test", 2)


def evaluate(alliance: InProcessAlliance, requester: str = REQUESTER) -> httpx.Response:
    return httpx.post(f"{alliance.url(requester)}/v1/evaluations",
                      json=body(alliance.population, INDEX),
                      headers={"X-API-Key": API_KEY}, timeout=30)


def error_of(response: httpx.Response) -> tuple[int, str, str]:
    error = response.json()["error"]
    return response.status_code, error["code"], error["detail"]


def test_with_no_model_promoted_the_requester_is_told_to_promote_one(
        registry_alliance: InProcessAlliance) -> None:
    before = registry_alliance.stored_reports(NEVER_PROMOTED)
    status, code, detail = error_of(evaluate(registry_alliance, NEVER_PROMOTED))
    assert (status, code) == (409, "MODEL_VERSION_UNAVAILABLE")
    assert detail == (f"no model has been promoted for {NEVER_PROMOTED}; an admin promotes one "
                      "with `fedcredit admin models promote VERSION`")
    assert registry_alliance.stored_reports(NEVER_PROMOTED) == before


def test_the_plan_carries_the_promoted_version_and_a_rollback_restores_the_last(
        registry_alliance: InProcessAlliance, population: Population) -> None:
    ledger = registry_alliance.coordinator.core.ledger
    register_and_promote(registry_alliance, "bank-2",
                         install(registry_alliance, "bank-2", (REQUESTER, *HOSTS)))
    response = evaluate(registry_alliance)
    assert response.status_code == 201, response.text
    report = response.json()
    assert report["model_version"] == "bank-2" and report["coverage"]["skipped"] == []
    assert report["joint_logit"] == pytest.approx(
        pooled_result(population, INDEX).joint_logit, abs=1e-6)
    plan = ledger.first_of(EntryKind.PLAN, report["query_id"])
    assert plan is not None and plan.body["model_version"] == "bank-2"

    # telco never received bank-3's slice: it answers that, and is skipped.
    register_and_promote(registry_alliance, "bank-3",
                         install(registry_alliance, "bank-3", (REQUESTER, "finco", "shop")))
    report = evaluate(registry_alliance).json()
    assert report["model_version"] == "bank-3"
    assert report["coverage"]["skipped"] == [
        {"member_id": "telco", "error_code": "MODEL_VERSION_UNAVAILABLE"}]

    registry_alliance.coordinator.core.models.rollback(REQUESTER, "admin:test", 3)
    report = evaluate(registry_alliance).json()
    assert report["model_version"] == "bank-2" and report["coverage"]["skipped"] == []


def test_a_requester_without_the_active_slice_says_which_version_it_lacks(
        registry_alliance: InProcessAlliance) -> None:
    size = registry_alliance.coordinator.core.ledger.size()
    register_and_promote(registry_alliance, "bank-4", install(registry_alliance, "bank-4", HOSTS))
    status, code, detail = error_of(evaluate(registry_alliance))
    assert (status, code) == (409, "MODEL_VERSION_UNAVAILABLE")
    assert detail.startswith("the active model version bank-4 is not installed at the requester")

    register_and_promote(registry_alliance, "bank-5", {
        **install(registry_alliance, "bank-5", HOSTS),
        **install(registry_alliance, "bank-5", (REQUESTER,), with_intercept=False)})
    status, code, detail = error_of(evaluate(registry_alliance))
    assert (status, code) == (409, "MODEL_VERSION_UNAVAILABLE") and "no intercept" in detail
    # The coordinator refused both before recording a plan or a consent: the applicant's
    # history shows no inquiry that never ran.
    kinds = [e.kind for e in registry_alliance.coordinator.core.ledger.entries(
        size, registry_alliance.coordinator.core.ledger.size())]
    assert EntryKind.CONSENT not in kinds and EntryKind.PLAN not in kinds
