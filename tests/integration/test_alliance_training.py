"""Training over the alliance: the coordinator runs it (as arbiter) over the members' own
feature stores, with their alliance identities (mutual TLS), and registers the model.

One real coordinator and four real nodes in-process; the run is started through the real HTTPS
admin API with the client the CLI uses. Checked: the model is registered with every slice's
digest and nothing more, each member holds only its own slice, the promoted model is the one a
lender's evaluation uses, what crossed the wire held no identifier, pseudonym, feature value or
weight, and every refusal is a typed error that registers nothing.
"""

from __future__ import annotations

import csv
import hashlib
import json
import sqlite3
import struct
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from typer.testing import CliRunner

from coordinator.principals import PrincipalStore
from coordinator.training.runs import RunState, TrainingRun
from fedcredit.admin_client import AdminClient
from fedcredit.cli import app
from fedcredit.demo.population import Population, generate
from fedcredit.errors import FedCreditError
from fedcredit.transcript import read_transcript, training_transcript
from mpc.pseudonym import SubjectKey, pseudonymize
from tests.support.alliance import API_KEY, InProcessAlliance, body, start_alliance
from tests.support.needles import find_leaks

pytestmark = pytest.mark.integration
RUN = {"engine": "ckks", "binning": {"engine": "exact", "max_bins": 6, "min_bin_size": 20},
       "max_epochs": 4, "min_overlap": 50, "split_seed": 3}


@pytest.fixture(scope="module")
def people() -> Population:
    return generate(subjects=1200, nodes=4, seed=17)


@pytest.fixture(scope="module")
def members(people: Population) -> list[str]:
    return [i.profile.member_id for i in people.institutions]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, people: Population,
          subject_key: SubjectKey, members: list[str]) -> Iterator[InProcessAlliance]:
    workdir = tmp_path_factory.mktemp("alliance-training")
    guest, *others = members
    labels = workdir / "labels.csv"  # the guest's repayment outcomes, by raw identifier
    with labels.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["identifier_type", "identifier", "default"])
        for ident, label in zip(people.identifiers, people.defaulted, strict=True):
            writer.writerow([people.id_type.value, ident, int(label)])
    transcripts = workdir / "transcripts"
    nodes: dict[str, dict[str, object]] = {
        guest: {"training_enabled": True, "training_labels": labels, "model_version": "",
                "transcript_file": transcripts / f"{guest}.bin"},
        others[0]: {"training_enabled": True, "transcript_file": transcripts / f"{others[0]}.bin"},
        others[1]: {"training_enabled": True, "transcript_file": transcripts / f"{others[1]}.bin"},
        others[2]: {},  # does not take part in training (the default)
    }
    running = start_alliance(workdir, people, subject_key, nodes=nodes,
                             transcript_file=transcripts / "coordinator.bin")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def admin_token(world: InProcessAlliance) -> str:
    core = world.coordinator.core
    return PrincipalStore(core.db, core.ledger).bootstrap_admin("test admin")


@pytest.fixture(scope="module")
def admin(world: InProcessAlliance, admin_token: str) -> AdminClient:
    return AdminClient(f"https://127.0.0.1:{world.coordinator.admin_port}",
                       world.coordinator_settings.ca_certificate_path, admin_token)


def finish(world: InProcessAlliance, run: dict[str, object]) -> TrainingRun:
    return world.coordinator.core.training.wait(str(run["run_id"]), timeout_s=240)


@pytest.fixture(scope="module")
def trained(world: InProcessAlliance, admin_token: str, members: list[str],
            tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """One three-party run through the CLI (`fedcredit train --config`), promoted."""
    guest, host1, host2, _ = members
    config = tmp_path_factory.mktemp("config") / "run.yaml"
    config.write_text(json.dumps({"guest": guest, "hosts": [host1, host2], "promote": True,
                                  **RUN}))  # JSON is YAML
    token_file = config.with_name("token")
    token_file.write_text(admin_token)
    result = CliRunner().invoke(app, [
        "train", "--config", str(config), "--url",
        f"https://127.0.0.1:{world.coordinator.admin_port}", "--ca-cert",
        str(world.coordinator_settings.ca_certificate_path), "--token-file", str(token_file),
        "--json", str(config.with_name("run.json"))])
    assert result.exit_code == 0, result.output
    assert "AUC, held-out" in result.output
    run: dict[str, object] = json.loads(config.with_name("run.json").read_text())
    return run


def slice_path(world: InProcessAlliance, member: str, version: str) -> Path:
    return world.nodes[member].settings.model_dir / f"{version}.json"


def test_a_run_registers_the_model_with_digests_only(
    world: InProcessAlliance, trained: dict[str, object], members: list[str]
) -> None:
    guest, host1, host2, outsider = members
    assert trained["state"] == "succeeded"
    version = str(trained["model_version"])
    record = world.coordinator.core.models.get(version)
    assert record.requester_id == guest and record.status.value == "active"
    assert {s.member_id for s in record.slices} == {guest, host1, host2}
    for s in record.slices:  # the registry's digest is the member's installed slice
        assert hashlib.sha256(slice_path(world, s.member_id, version).read_bytes()).hexdigest() \
            == s.sha256
        assert set(s.features) <= set(world.population.institutions[
            members.index(s.member_id)].features)
    assert not slice_path(world, outsider, version).exists()
    assert 0.6 < record.metrics["test_auc"] <= 1.0
    assert set(record.fingerprints) == {guest, host1, host2}
    # Each member holds only its own slice: a host's has no intercept; nobody has another's.
    guest_slice = json.loads(slice_path(world, guest, version).read_text())
    host_slice = json.loads(slice_path(world, host1, version).read_text())
    assert "intercept" in guest_slice and "intercept" not in host_slice
    report = world.nodes[guest].settings.training_dir / str(trained["run_id"])
    assert (report / "roc.png").stat().st_size > 10_000 and (report / "ks.png").exists()
    assert {f["name"] for f in guest_slice["features"]}.isdisjoint(
        f["name"] for f in host_slice["features"])
    # The coordinator holds no weight, bin edge or WOE of any slice.
    dump = "\n".join(sqlite3.connect(world.coordinator_settings.database_path).iterdump())
    for member in (guest, host1, host2):
        doc = json.loads(slice_path(world, member, version).read_text())
        for feature in doc["features"]:
            assert repr(feature["weight"]) not in dump
            assert all(repr(w) not in dump for w in feature["woe"] if abs(w) > 1e-9)


def test_the_promoted_model_is_what_the_lender_evaluates_with(
    world: InProcessAlliance, trained: dict[str, object], members: list[str]
) -> None:
    guest = members[0]
    version = str(trained["model_version"])
    pop = world.population
    index = next(i for i in range(len(pop.identifiers))
                 if pop.institutions[0].has_record[i] and pop.institutions[1].has_record[i])
    response = httpx.post(f"{world.url(guest)}/v1/evaluations", json=body(pop, index),
                          headers={"X-API-Key": API_KEY}, timeout=30)
    assert response.status_code == 201, response.text
    report = response.json()
    assert report["model_version"] == version  # the node asks for "" = the active version
    assert isinstance(report["score"], int | float)


def test_nothing_identifying_crossed_the_wire(
    world: InProcessAlliance, trained: dict[str, object], members: list[str],
    subject_key: SubjectKey,
) -> None:
    pop = world.population
    version = str(trained["model_version"])
    pseudonyms = [pseudonymize(subject_key, pop.id_type, i).value for i in pop.identifiers]
    weights = []
    for member in members[:3]:
        for feature in json.loads(slice_path(world, member, version).read_text())["features"]:
            weights += [feature["weight"]]
    needles_for = {
        "identifier": [i.encode() for i in pop.identifiers],
        "pseudonym": pseudonyms[:50] + [p.hex().encode() for p in pseudonyms[:300]],
        "weight": [struct.pack("<d", w) for w in weights] + [repr(w).encode() for w in weights],
    }
    directory = world.coordinator_settings.transcript_file
    assert directory is not None
    files = [training_transcript(directory)] + [
        training_transcript(world.nodes[m].settings.transcript_file)  # type: ignore[arg-type]
        for m in members[:3]]
    for path in files:
        data = b"".join(payload for _, _, payload in read_transcript(path))
        assert len(data) > 100_000, path  # the session really is in there
        feature_values = [
            struct.pack("<d", float(v))
            for inst in pop.institutions[:3] if inst.profile.member_id not in path.name
            for values in inst.features.values() for v in values[:200]
            if np.isfinite(v) and abs(v) >= 1e-3  # 0.0 is eight zero bytes, as in framing
        ]
        leaks = find_leaks(data, {**needles_for, "foreign feature value": feature_values})
        assert leaks == [], (path.name, leaks)


def test_refusals_are_typed_and_register_nothing(
    world: InProcessAlliance, admin: AdminClient, trained: dict[str, object],
    members: list[str],
) -> None:
    guest, host1, host2, outsider = members
    before = len(world.coordinator.core.models.list())
    # Synchronous refusals: unknown member, the guest as its own host.
    for run, code in (({"guest": guest, "hosts": ["nobody"]}, "UNKNOWN_MEMBER"),
                      ({"guest": guest, "hosts": [guest]}, "INVALID_REQUEST")):
        with pytest.raises(Exception) as caught:
            admin.call("POST", "/v1/training-runs", body={**RUN, **run})
        assert isinstance(caught.value, FedCreditError) and caught.value.code.value == code
    # A member that does not take part, a host made guest without labels: the run fails,
    # named and typed, and registers nothing.
    for run, code, named in (
        ({"guest": guest, "hosts": [host1, outsider]}, "PERMISSION_DENIED", outsider),
        ({"guest": host1, "hosts": [guest]}, "TRAINING_DATA_INVALID", host1),
    ):
        started = admin.call("POST", "/v1/training-runs", body={**RUN, **run})
        assert started["state"] == "running"
        ended = finish(world, started)
        assert ended.state is RunState.FAILED, ended
        assert ended.error_code == code and named in str(ended.error_detail), ended
        shown = admin.call("GET", f"/v1/training-runs/{started['run_id']}")
        assert shown["error"]["code"] == code
    assert len(world.coordinator.core.models.list()) == before
    # A member whose node is down cannot be invited.
    world.nodes[host2].stop()
    try:
        started = admin.call("POST", "/v1/training-runs",
                             body={**RUN, "guest": guest, "hosts": [host2]})
        ended = finish(world, started)
        assert ended.state is RunState.FAILED and ended.error_code == "NODE_UNAVAILABLE"
    except FedCreditError as exc:  # or refused at once, when the coordinator already noticed
        assert exc.code.value == "NODE_UNAVAILABLE"
    assert len(world.coordinator.core.models.list()) == before


def test_a_bad_run_file_is_refused_before_anything_starts(tmp_path: Path) -> None:
    cases = {
        "guest: bank\nhosts: [finco]\nengin: ckks\n": "engin",  # a typo
        "guest: bank\nhosts: []\n": "hosts",
        "guest: bank\nhosts: [finco]\nbinning: {max_bins: 1}\n": "binning.max_bins",
        "guest: bank\nhosts: [finco\n": "not valid YAML at line",
        "- just a list\n": "expected a mapping",
    }
    for text, named in cases.items():
        config = tmp_path / "run.yaml"
        config.write_text(text)
        result = CliRunner().invoke(app, ["train", "--config", str(config),
                                          "--url", "https://127.0.0.1:1"])
        output = " ".join(result.output.split())  # rich wraps to the terminal's width
        assert result.exit_code == 1, (text, output)
        assert "CONFIGURATION_INVALID" in output and named in output, output
        assert "Traceback" not in output
    missing = CliRunner().invoke(app, ["train", "--config", str(tmp_path / "none.yaml")])
    assert missing.exit_code == 1 and "cannot read" in " ".join(missing.output.split())
