"""docker-compose.yml and the Dockerfile, checked without a Docker engine so they cannot rot.

Static checks read the file (tests/support/compose.py parses and interpolates it the way
Compose does); the topology test runs every service as a local process, volumes mapped to
temporary folders. Then, with nobody touching anything in between (no manual step): the
alliance bootstrapped itself (CA, admission of all three members through join requests,
lender API keys), every member is ACTIVE, joint evaluations requested at each member are
answered by both others and equal the plaintext computation over the members' input files,
every gRPC port refuses callers without an alliance certificate, each secret is in exactly
one volume and in no log, everything stops on SIGTERM, and a second ``up`` on the same
volumes reuses the CA, the identities and the keys. The ports are fixed by the compose file:
if one is already bound on 127.0.0.1 the test skips and says which.
"""

from __future__ import annotations

import csv
import itertools
import json
import re
import stat
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import typer
import yaml

from fedcredit.admin_client import AdminClient
from fedcredit.clock import system_clock
from fedcredit.tls import TlsFiles, TlsIdentity, server_only_channel_credentials, target_name_option
from fedcredit.transport import check_health, create_channel
from mpc.pki import CertRole
from node.ingest.snapshot import EXPOSURE_COLUMNS
from scoring.model import ModelSlice
from tests.support.compose import (
    COMPOSE_FILE,
    DOCKERFILE,
    DOCKERIGNORE,
    ROOT,
    Compose,
    LocalTopology,
    dockerfile_instruction,
    fixed_ports,
    load_compose,
    skip_if_ports_busy,
)

pytestmark = pytest.mark.e2e

MEMBERS = ("bank", "finco", "shop")
NODE_DATA = "/var/lib/fedcredit/node/data"  # the node's own volume, as the compose file has it
LENDER_KEY_FILE = f"{NODE_DATA}/lender-api-key"
LOGIT_TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def compose() -> Compose:
    return load_compose()


# -- static checks --------------------------------------------------------------------------------

def test_every_service_has_a_command(compose: Compose) -> None:
    assert compose.services
    for service in compose.services.values():
        assert service.raw.get("command"), f"{service.name} has no command"
        assert service.argv, f"{service.name} would run nothing"


def test_secrets_are_never_in_the_environment(compose: Compose) -> None:
    # load_compose() with no variables already proved that every ${VAR} has a default.
    raw = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
    for name, service in raw.items():
        for key, value in (service.get("environment") or {}).items():
            if key.endswith("SUBJECT_KEY"):
                assert "${" in str(value), f"{name}.{key} is hard-coded; use a ${{VAR:-dev}}"
            # Tokens and keys are files (0600) in their owner's volume, never variables.
            assert not re.search(r"TOKEN$|API_KEYS?$|PASSWORD", key), f"{name}.{key}"
    assert "FEDCREDIT_SUBJECT_KEY" in compose.variables_used
    header = COMPOSE_FILE.read_text().split("\nname:")[0]  # the comment block on top
    for variable in compose.variables_used:
        assert variable in header, f"${{{variable}}} is not described at the top of the file"
    assert not {"FEDCREDIT_REGISTRATION_TOKEN", "FEDCREDIT_LENDER_API_KEY"} & compose.variables_used


def test_environment_names_are_real_settings(compose: Compose) -> None:
    # pydantic-settings ignores unknown prefixed variables, so a typo would silently fall
    # back to the default; check every name against the settings classes and the admin CLI.
    from coordinator.settings import CoordinatorSettings
    from fedcredit.admin_cli import admin_app
    from node.settings import NodeSettings

    known = {f"FEDCREDIT_NODE_{name.upper()}" for name in NodeSettings.model_fields}
    known |= {f"FEDCREDIT_COORDINATOR_{name.upper()}"
              for name in CoordinatorSettings.model_fields}
    known |= {p.envvar for p in typer.main.get_command(admin_app).params
              if isinstance(p.envvar, str)}
    assert {"FEDCREDIT_ADMIN_URL", "FEDCREDIT_ADMIN_CA_CERT"} <= known
    operations = (ROOT / "docs" / "operations.md").read_text()
    for service in compose.services.values():
        unknown = {key for key in service.environment
                   if key.startswith("FEDCREDIT_") and key not in known}
        assert not unknown, f"{service.name}: no such setting {sorted(unknown)}"
        undocumented = {key for key in service.environment
                        if key.startswith("FEDCREDIT_") and f"`{key}`" not in operations}
        assert not undocumented, f"{service.name}: {sorted(undocumented)} not in operations.md"
        # Any other variable is the service's own script's: it must use it.
        script = "\n".join(service.argv)
        unused = {key for key in service.environment
                  if not key.startswith("FEDCREDIT_") and key not in script}
        assert not unused, f"{service.name}: {sorted(unused)} set but not used"


def test_topology_and_who_mounts_which_volume(compose: Compose) -> None:
    nodes, coordinator = compose.nodes, compose.coordinator
    init, admit = compose.init, compose.admit
    assert sorted(n.member_id or "" for n in nodes) == sorted(MEMBERS)
    # The subject key is for members only; the coordinator never holds it.
    for service in (init, coordinator, admit):
        assert not any("SUBJECT_KEY" in key for key in service.environment), service.name
    # The coordinator's volume (CA key, admin token, identity key): written by init and the
    # coordinator only, read by admit (the operator's admin), mounted by nothing else.
    data = coordinator.environment["FEDCREDIT_COORDINATOR_DATA_DIR"]
    private = coordinator.volume_of(data)
    assert init.volume_of(init.environment["FEDCREDIT_COORDINATOR_DATA_DIR"]) == private
    assert {s.name for s in compose.mounting(private)} == {init.name, coordinator.name,
                                                           admit.name}
    assert private not in admit.writable_volumes()
    # The public volume holds the CA certificate; only init writes it.
    ca_file = {n.environment["FEDCREDIT_NODE_CA_FILE"] for n in nodes}
    (ca_path,) = ca_file
    public = nodes[0].volume_of(ca_path)
    assert [s.name for s in compose.services.values() if public in s.writable_volumes()] == [
        init.name]
    for node in nodes:
        # The node's data volume (identity key, Paillier key, API keys): its own, nobody
        # else's, not even read-only.
        own = node.volume_of(node.environment["FEDCREDIT_NODE_DATA_DIR"])
        assert own in node.writable_volumes()
        assert [s.name for s in compose.mounting(own)] == [node.name], own
        assert private not in node.mounts.values()
        # Everything else it mounts is read-only: its inputs (written by demo-data) and the CA.
        assert node.writable_volumes() == {own}, node.name
        inputs = node.volume_of(node.environment["FEDCREDIT_NODE_MODEL_DIR"])
        assert {s.name for s in compose.mounting(inputs)} == {node.name, "demo-data"}
    # The auto-approver admits exactly the compose members, and only through the admin API.
    assert set(admit.environment["AUTO_APPROVE_MEMBERS"].split()) == set(MEMBERS)
    assert admit.environment["FEDCREDIT_ADMIN_URL"].startswith("https://")
    assert not any("TOKEN" in k for k in admit.environment if k.startswith("FEDCREDIT_"))
    # Nothing waits for the one-shot admit to finish: it finishes when the nodes have joined.
    assert admit.one_shot and init.one_shot
    assert not any(admit.name in s.depends_on for s in compose.services.values())
    assert coordinator.depends_on == {init.name: "service_completed_successfully"}
    ports = fixed_ports(compose)
    assert len(ports) == len(set(ports)) == 3 + 2 * len(MEMBERS), ports
    # Single-machine dev topology: host networking, every address loopback.
    for service in compose.services.values():
        assert service.raw.get("network_mode") == "host", service.name
        for key, value in service.environment.items():
            if key.endswith(("_BIND", "_ADDRESS", "_ENDPOINT", "_HTTP_HOST")):
                assert value.startswith("127.0.0.1:") or value == "127.0.0.1", (key, value)
            if key.endswith("_URL"):
                assert value.startswith("https://127.0.0.1:"), f"{service.name}.{key}"
            assert "INSECURE" not in key, f"{service.name}.{key}"


def test_dockerfile_uses_python_311_or_newer_and_runs_fedcredit(compose: Compose) -> None:
    text = DOCKERFILE.read_text()
    bases = re.findall(r"^FROM\s+(\S+)", text, re.M | re.I)
    assert bases, "Dockerfile has no FROM"
    for base in bases:
        match = re.fullmatch(r"(?:docker\.io/)?(?:library/)?python:3\.(\d+)(?:[.-]\S*)?", base)
        assert match and int(match.group(1)) >= 11, f"base image {base} is not python>=3.11"
    assert dockerfile_instruction("ENTRYPOINT") == ["fedcredit"]
    assert re.search(r"^RUN\s+pip install \.", text, re.M)
    # A fresh named volume takes the owner of its mount point in the image: one the image does
    # not create would belong to root, and the unprivileged user could not write to it.
    created = set(re.findall(r"(/var/lib/fedcredit[\w/.-]*)", text))
    for service in compose.services.values():
        for target in service.mounts:
            assert target in created, f"{service.name}: mount point {target} not in the image"


def test_dockerignore_keeps_what_pip_install_needs_and_no_key_material() -> None:
    patterns = [line.strip() for line in DOCKERIGNORE.read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    assert ".venv" in patterns and ".git" in patterns
    for secret in ("*.key", "*.pem", "*.crt", "**/admin-token", "**/lender-api-key",
                   "**/identity", "*.sqlite3", ".env"):
        assert secret in patterns, secret
    for path in ["pyproject.toml", "proto", "mpc", "scoring", "node", "coordinator", "fedcredit"]:
        assert (ROOT / path).exists(), path
        assert path not in patterns and f"{path}/" not in patterns, f"{path} is excluded"


# -- the topology, run as local processes ---------------------------------------------------------

@pytest.fixture
def topology(compose: Compose, tmp_path: Path) -> Iterator[LocalTopology]:
    skip_if_ports_busy(fixed_ports(compose))
    local = LocalTopology(compose, tmp_path)
    local.prepare()
    try:
        yield local
    finally:
        local.down()


def admin_client(topology: LocalTopology) -> AdminClient:
    """The admin API as the compose file's operator: the token from the coordinator volume."""
    admit = topology.compose.admit
    token_file = topology.path(admit, admit.environment["AUTO_APPROVE_TOKEN_FILE"])
    return AdminClient(admit.environment["FEDCREDIT_ADMIN_URL"],
                       topology.path(admit, admit.environment["FEDCREDIT_ADMIN_CA_CERT"]),
                       token_file.read_text().strip())


def active_members(admin: AdminClient) -> set[str]:
    return {m["member_id"] for m in admin.call("GET", "/v1/members")
            if m["status"] == "ACTIVE" and m["membership"] == "ACTIVE" and m["endpoint"]}


def identity_files(topology: LocalTopology, member: str) -> TlsFiles:
    node = topology.compose.node(member)
    return TlsFiles(topology.path(node, node.environment["FEDCREDIT_NODE_DATA_DIR"]) / "identity")


def expected_result(topology: LocalTopology, identifier: str) -> dict[str, Any]:
    """The plaintext answer over the members' input files (what each node loaded)."""
    logit: float | None = None
    exposures = dict.fromkeys(EXPOSURE_COLUMNS, 0)
    count = 0
    for node in topology.compose.nodes:
        models = topology.path(node, node.environment["FEDCREDIT_NODE_MODEL_DIR"])
        version = node.environment["FEDCREDIT_NODE_MODEL_VERSION"]
        model = ModelSlice.from_dict(json.loads((models / f"{version}.json").read_text()))
        logit = model.intercept if logit is None else logit
        with (models.parent / "features.csv").open(newline="") as handle:
            row = next((r for r in csv.DictReader(handle) if r["subject_id"] == identifier), None)
        if row is not None:
            count += 1
            logit += model.partial_logit({f: float(row[f] or "nan") for f in model.feature_names})
            for column in EXPOSURE_COLUMNS:
                exposures[column] += int(row[column] or 0)
    return {"joint_logit": logit, "exposures": exposures, "institutions_with_records": count}


def evaluate(topology: LocalTopology, member: str, applicant: dict[str, str]) -> dict[str, Any]:
    """A joint evaluation through ``member``'s lender API, with the key from its volume."""
    node = topology.compose.node(member)
    api_key = topology.path(node, LENDER_KEY_FILE).read_text().strip()
    url = (f"http://{node.environment['FEDCREDIT_NODE_HTTP_HOST']}:"
           f"{node.environment['FEDCREDIT_NODE_HTTP_PORT']}")
    body = {
        "applicant": {"id_type": applicant["id_type"], "identifier": applicant["subject_id"]},
        "consent": {"purpose": "origination",
                    "expires_at": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
                    "reference": f"compose-e2e-{member}"},
        "requested_amount": 10000.0,
        "term_months": 12,
    }
    with httpx.Client(base_url=url, timeout=60) as client:
        refused = client.post("/v1/evaluations", json=body,
                              headers={"X-API-Key": "not-the-key-" + "x" * 20})
        assert refused.status_code == 401, refused.text
        response = client.post("/v1/evaluations", json=body, headers={"X-API-Key": api_key})
        assert response.status_code == 201, response.text
        assert client.get(response.headers["Location"],
                          headers={"X-API-Key": api_key}).status_code == 200
    report: dict[str, Any] = response.json()
    assert report["coverage"]["asked"] == 2, report["coverage"]
    assert report["coverage"]["answered"] == 2, report["coverage"]
    assert report["coverage"]["skipped"] == []
    expected = expected_result(topology, applicant["subject_id"])
    assert abs(report["joint_logit"] - expected["joint_logit"]) <= LOGIT_TOLERANCE
    assert report["institutions_with_records"] == expected["institutions_with_records"]
    got = dict(report["exposures"])
    assert round(got.pop("outstanding_debt") * 100) == expected["exposures"].pop(
        "outstanding_debt_cents")
    assert {k: got[k] for k in expected["exposures"]} == expected["exposures"]
    return report


def check_mutual_tls(topology: LocalTopology) -> None:
    """Every gRPC port refuses plaintext and callers without a certificate; the coordinator's
    enrollment port authenticates the server only; the admin API is HTTPS only."""
    compose = topology.compose
    env = compose.coordinator.environment
    ca_pem = topology.path(compose.admit, compose.admit.environment[
        "FEDCREDIT_ADMIN_CA_CERT"]).read_bytes()
    bank = TlsIdentity.load(identity_files(topology, "bank"), system_clock())
    member_credentials = grpc.ssl_channel_credentials(bank.ca_pem, bank.key_pem,
                                                      bank.certificate_pem)
    targets = [(env["FEDCREDIT_COORDINATOR_BIND"], "coordinator", CertRole.COORDINATOR)]
    targets += [(n.environment["FEDCREDIT_NODE_GRPC_BIND"], n.member_id or "", CertRole.MEMBER)
                for n in compose.nodes]
    for address, party, role in targets:
        plaintext = grpc.insecure_channel(address)
        anonymous = create_channel(address, server_only_channel_credentials(ca_pem),
                                   target_name_option(party, role))
        member = create_channel(address, member_credentials, target_name_option(party, role))
        try:
            assert not check_health(plaintext, 3), f"{party} answered plaintext gRPC"
            assert not check_health(anonymous, 3), f"{party} answered a caller without a cert"
            assert check_health(member, 5), f"{party} refused the bank's alliance certificate"
        finally:
            for channel in (plaintext, anonymous, member):
                channel.close()
    enroll = env["FEDCREDIT_COORDINATOR_ENROLL_BIND"]
    plaintext = grpc.insecure_channel(enroll)
    server_tls = create_channel(enroll, server_only_channel_credentials(ca_pem),
                                target_name_option("coordinator", CertRole.COORDINATOR))
    try:
        assert not check_health(plaintext, 3), "the enrollment port answered plaintext"
        assert check_health(server_tls, 5), "the enrollment port refused server-only TLS"
    finally:
        plaintext.close()
        server_tls.close()
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://{env['FEDCREDIT_COORDINATOR_ADMIN_BIND']}/healthz", timeout=5)


def check_secrets_stay_home(topology: LocalTopology) -> None:
    """Each key and token is in exactly one volume, its owner's, with mode 0600, and in no
    log; the public volume holds the CA certificate and nothing else."""
    compose = topology.compose
    coordinator = compose.coordinator
    data = topology.path(coordinator, coordinator.environment["FEDCREDIT_COORDINATOR_DATA_DIR"])
    private = coordinator.volume_of(coordinator.environment["FEDCREDIT_COORDINATOR_DATA_DIR"])
    secrets: dict[Path, str] = {data / "ca" / "ca.key": private, data / "admin-token": private,
                                data / "identity" / "identity.key": private}
    for node in compose.nodes:
        own = node.volume_of(node.environment["FEDCREDIT_NODE_DATA_DIR"])
        secrets[identity_files(topology, node.member_id or "").key] = own
        secrets[topology.path(node, LENDER_KEY_FILE)] = own
    contents = {path: path.read_bytes().strip() for path in secrets}
    for path in secrets:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
        assert len(contents[path]) >= 16, path
    holders: dict[Path, set[str]] = {path: set() for path in secrets}
    for volume in compose.volumes:
        for file in topology.volume_dir(volume).rglob("*"):
            if file.is_file():
                blob = file.read_bytes()
                for path, secret in contents.items():
                    if secret in blob:
                        holders[path].add(volume)
    assert holders == {path: {volume} for path, volume in secrets.items()}, holders
    for log in (topology.root / "logs").glob("*.log"):
        text = log.read_bytes()
        leaked = [str(path) for path, secret in contents.items() if secret in text]
        assert not leaked, f"{log.name} contains {leaked}"
    public = compose.node("bank").volume_of(compose.node("bank").environment[
        "FEDCREDIT_NODE_CA_FILE"])
    assert [p.name for p in topology.volume_dir(public).iterdir()] == ["ca.crt"]
    for member in MEMBERS:  # admission finished: no pending request or key left behind
        directory = identity_files(topology, member).directory
        assert sorted(p.name for p in directory.iterdir()) == ["ca.crt", "identity.crt",
                                                               "identity.key"]


def wait_bootstrapped(topology: LocalTopology) -> AdminClient:
    """``up``, then every one-shot finished cleanly and every member is ACTIVE."""
    topology.up()
    for service in topology.compose.services.values():
        if service.one_shot:
            topology.wait_completed(service.name)
    admin = admin_client(topology)
    topology.wait_until("bank, finco and shop to be ACTIVE",
                        lambda: active_members(admin) >= set(MEMBERS))
    return admin


def stop_cleanly(topology: LocalTopology) -> None:
    codes = topology.down()
    assert not topology.killed, (f"{topology.killed} ignored SIGTERM for 10s "
                                 "(docker would kill)")
    unclean = {name: code for name, code in codes.items() if code != 0}
    assert not unclean, f"exit codes after SIGTERM: {unclean}"


def test_compose_topology_bootstraps_and_runs_over_mutual_tls(topology: LocalTopology) -> None:
    compose = topology.compose
    try:
        admin = wait_bootstrapped(topology)
        # admit approved each member once, quoting the key fingerprint the node printed.
        logs = topology.root / "logs"
        approved = re.findall(r"^approving (\w+): .* key fingerprint ([0-9a-f:]+)",
                              (logs / f"{compose.admit.name}.log").read_text(), re.M)
        assert sorted(m for m, _ in approved) == sorted(MEMBERS), approved
        for member, fingerprint in approved:
            node_log = re.sub(r"\s+", "", (logs / f"{member}.log").read_text())
            assert f"keyfingerprint{fingerprint}" in node_log, member

        applicants_files = sorted(topology.root.glob("volumes/*/applicants.csv"))
        assert len(applicants_files) == 1, applicants_files
        with applicants_files[0].open(newline="") as handle:
            applicants = list(itertools.islice(csv.DictReader(handle), len(MEMBERS)))
        for member, applicant in zip(MEMBERS, applicants, strict=True):
            evaluate(topology, member, applicant)  # each member requests once

        check_mutual_tls(topology)
        check_secrets_stay_home(topology)
        ca_before = topology.path(compose.init, "/var/lib/fedcredit/alliance/ca.crt").read_bytes()
        certificates = {m: identity_files(topology, m).certificate.read_bytes() for m in MEMBERS}
        stop_cleanly(topology)

        # The next `up` on the same volumes keeps the CA, the identities and the lender keys.
        admin = wait_bootstrapped(topology)
        assert "the alliance CA exists" in (topology.root / "logs" / "init.log").read_text()
        assert topology.path(compose.init, "/var/lib/fedcredit/alliance/ca.crt").read_bytes() == (
            ca_before)
        assert {m: identity_files(topology, m).certificate.read_bytes()
                for m in MEMBERS} == certificates
        assert len(admin.call("GET", "/v1/join-requests")) == len(MEMBERS)
        evaluate(topology, "shop", applicants[0])
    except BaseException:
        print(topology.log_tails())
        raise
    stop_cleanly(topology)
