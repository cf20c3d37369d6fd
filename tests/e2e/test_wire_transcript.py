"""What crosses between the alliance's processes in real evaluations, recorded at two levels:

* on the wire, by TCP proxies on every gRPC link: all of it is TLS, so not even a method name
  shows;
* at each party, by every process's dev-only transcript of the messages its servers receive
  and return (fedcredit/transcript.py) — what the party at the other end learns.

No raw identifier, feature value or plaintext partial result may appear at either level, and
the coordinator never sees a subject pseudonym."""

from __future__ import annotations

import io
import re
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

import httpx
import numpy as np
import pyarrow.parquet as pq
import pytest

from fedcredit.demo.population import Population, generate, pooled_result, population_alliance
from fedcredit.demo.runner import evaluation_body
from fedcredit.launcher import LocalAlliance
from fedcredit.transcript import read_transcript
from mpc.batch_he import pack_lanes
from mpc.contribution import EXPOSURE_FIELDS, FIXED_POINT_SCALE
from mpc.pseudonym import SubjectKey, pseudonymize
from node.ingest.snapshot import EXPOSURE_COLUMNS
from tests.support.wire import Capture, RecordingProxy

pytestmark = pytest.mark.e2e
EVALUATIONS = 6
PORTFOLIO_ROWS = 16


# Needles of 4 bytes or fewer would match random ciphertext bytes by chance (about one in
# 10^4 per needle over this transcript), so only encodings of 5 bytes or more are searched.
def varint(value: int) -> bytes:
    out, v = bytearray(), value
    while True:
        byte, v = v & 0x7F, v >> 7
        out.append(byte | (0x80 if v else 0))
        if not v:
            return bytes(out)


@dataclass(frozen=True)
class DecimalText:
    """A number as text, not inside a longer run of letters and digits: the ledger's hex
    digests hold every 7-digit string now and then (one did: a flake)."""

    text: bytes
    pattern: re.Pattern[bytes]


Needle = bytes | DecimalText


def occurs(needle: Needle, seen: bytes) -> bool:
    if isinstance(needle, DecimalText):  # the plain search first: the regex only on a hit
        return needle.text in seen and needle.pattern.search(seen) is not None
    return needle in seen


def decimal(value: int) -> DecimalText:
    text = str(value).encode()
    return DecimalText(text, re.compile(rb"(?<![0-9A-Za-z])" + re.escape(text)
                                        + rb"(?![0-9A-Za-z])"))


def int_encodings(value: int) -> list[Needle]:
    """int64 both byte orders, decimal text, minimal big-endian, and protobuf varints: plain
    (negative values as 10-byte two's complement, as int64 fields do) and zigzag (sint64)."""
    out: list[Needle] = [struct.pack("<q", value), struct.pack(">q", value)]
    if abs(value) >= 10_000:
        out.append(decimal(value))
    if value >= 1 << 32:
        out.append(value.to_bytes((value.bit_length() + 7) // 8, "big"))
    candidates = [varint(value & (2**64 - 1)), varint((value << 1) ^ (value >> 63))]
    out += [v for v in candidates if len(v) >= 5]
    return out


def float_encodings(value: float) -> list[Needle]:
    out: list[Needle] = [struct.pack("<d", value), struct.pack(">d", value)]
    text = repr(value)
    if len(text) >= 5:
        out.append(text.encode())
    out += int_encodings(round(value * FIXED_POINT_SCALE)) if abs(value) > 1e-3 else []
    return out


def secrets_of(population: Population, index: int, report: dict) -> dict[str, list[Needle]]:
    """What must never appear on the wire for one evaluated applicant."""
    ident = population.identifiers[index]
    needles: dict[str, list[Needle]] = {
        "raw identifier": [ident.encode(), ident.lower().encode(), ident[:17].encode()],
    }
    for inst in population.institutions:
        if not inst.has_record[index]:
            continue
        member = inst.profile.member_id
        values = {k: float(v[index]) for k, v in inst.features.items()}
        needles[f"{member} feature values"] = [
            enc for v in values.values() if v not in (0.0, 1.0) for enc in float_encodings(v)
        ]
        partial, slots = population.models[member].partials(values)
        needles[f"{member} plaintext partial"] = float_encodings(partial)
        needles[f"{member} plaintext reason slots"] = [
            enc for v in slots.values() if abs(v) > 1e-3 for enc in float_encodings(v)]
        debt = int(inst.exposures["outstanding_debt_cents"][index])
        needles[f"{member} plaintext debt"] = int_encodings(debt) if debt >= 10_000 else []
    expected = pooled_result(population, index)
    needles["decrypted joint logit"] = float_encodings(report["joint_logit"])
    total_debt = expected.exposures["outstanding_debt_cents"]
    needles["decrypted total debt"] = int_encodings(total_debt) if total_debt >= 10_000 else []
    return needles


def grpc_port(alliance: LocalAlliance, member: str) -> int:
    return alliance.node_procs[member].ports["grpc_port"]


@pytest.fixture(scope="module", params=["chain", "tree"])
def transcript(request: pytest.FixtureRequest,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple]:
    """Both route shapes: in a TREE the root sees its children's encrypted shares one by one
    before it adds them up, which must reveal no more than a CHAIN's running sums."""
    population = generate(subjects=600, nodes=3, seed=23)
    alliance: LocalAlliance = population_alliance(population, tmp_path_factory.mktemp("wire"))
    capture = Capture()
    transcripts = alliance.workdir / "transcripts"
    alliance.extra_coordinator_env["FEDCREDIT_COORDINATOR_TRANSCRIPT_FILE"] = str(
        transcripts / "coordinator.bin")
    alliance.extra_coordinator_env["FEDCREDIT_COORDINATOR_ROUTE_MODE"] = request.param
    proxies = {"coordinator": RecordingProxy("coordinator", lambda: alliance.coordinator_port,
                                             capture)}
    for spec in alliance.nodes:
        member = spec.member_id
        proxies[member] = RecordingProxy(member, partial(grpc_port, alliance, member), capture)
        alliance.node_env_overrides[member] = {
            "FEDCREDIT_NODE_ADVERTISE_ENDPOINT": f"127.0.0.1:{proxies[member].port}",
            "FEDCREDIT_NODE_COORDINATOR_ADDRESS": f"127.0.0.1:{proxies['coordinator'].port}",
            "FEDCREDIT_NODE_TRANSCRIPT_FILE": str(transcripts / f"{member}.bin"),
        }
    counts = sum(inst.has_record.astype(int) for inst in population.institutions)
    indices = [int(i) for i in np.flatnonzero(counts >= 2)[:EVALUATIONS]]
    reports = []
    rng = np.random.default_rng(0)
    with alliance, httpx.Client(timeout=60, headers={"X-API-Key": alliance.api_key}) as http:
        for k, index in enumerate(indices):
            requester = alliance.nodes[k % len(alliance.nodes)].member_id
            response = http.post(f"{alliance.http_url(requester)}/v1/evaluations",
                                 json=evaluation_body(population.identifiers[index],
                                                      population.id_type.value, index, rng))
            assert response.status_code == 201, response.text
            reports.append(response.json())
        # Planned as a CHAIN whatever the policy's route mode: checked under both.
        portfolio = run_portfolio(http, alliance, population)
    for proxy in proxies.values():
        proxy.close()
    exit_codes = alliance.stop()  # already stopped by the with-block: reports the exit codes
    assert exit_codes == dict.fromkeys(["bank", "finco", "shop", "coordinator"], 0)
    key = SubjectKey.from_hex(alliance.subject_key_hex)
    received = {path.stem: list(read_transcript(path)) for path in transcripts.glob("*.bin")}
    yield population, indices, reports, capture, key, alliance, received, portfolio


def run_portfolio(http: httpx.Client, alliance: LocalAlliance, population: Population
                  ) -> tuple[list[int], list[dict]]:
    """A portfolio job at the requester "bank": its customers among the first subjects."""
    bank = next(i for i in population.institutions if i.profile.member_id == "bank")
    rows = [int(i) for i in np.flatnonzero(bank.has_record[:PORTFOLIO_ROWS])]
    expires = (datetime.now(UTC) + timedelta(days=30)).isoformat()
    url = f"{alliance.http_url('bank')}/v1/portfolio-evaluations"
    response = http.post(url, json={
        "subjects": {"id_type": "cn_resident_id",
                     "identifiers": [population.identifiers[i] for i in rows]},
        "consent": {"purpose": "account_review", "expires_at": expires,
                    "relationship": "existing_customer", "reference": "book-review"}})
    assert response.status_code == 202, response.text
    location = f"{alliance.http_url('bank')}{response.headers['Location']}"
    deadline = time.monotonic() + 60
    while (job := http.get(location).json())["state"] in ("queued", "running"):
        assert time.monotonic() < deadline, job
        time.sleep(0.1)
    assert job["state"] == "succeeded", job
    results = pq.read_table(io.BytesIO(http.get(
        f"{alliance.http_url('bank')}{job['results']['parquet']}").content)).to_pylist()
    return rows, results


def portfolio_secrets(population: Population, index: int, result: dict
                      ) -> dict[str, list[Needle]]:
    """What must never appear on the wire for one subject of the portfolio job: besides what
    an evaluation must not leak, each member's packed BFV lanes in the clear."""
    needles = secrets_of(population, index, result)
    for inst in population.institutions:
        if not inst.has_record[index]:
            continue
        exposures = np.zeros((1, len(EXPOSURE_FIELDS)), dtype=np.int64)
        for j, name in enumerate(EXPOSURE_COLUMNS):
            exposures[0, j] = inst.exposures[name][index]
        exposures[0, EXPOSURE_FIELDS.index("has_record")] = 1
        exposures[0, EXPOSURE_FIELDS.index("with_active_loans")] = int(
            inst.exposures["active_loans"][index] > 0)
        # A lane with a single bit field set (e.g. only has_record: exactly 2^40) is a bare
        # power of two that ciphertext headers hold too; a lane with 3+ non-zero bytes is not.
        needles[f"{inst.profile.member_id} plaintext lanes"] = [
            enc for lane in pack_lanes(exposures)[:, 0]
            if sum(b != 0 for b in int(lane).to_bytes(8, "little")) >= 3
            for enc in int_encodings(int(lane))]
    return needles


def party_view(received: dict[str, list[tuple[int, str, bytes]]], party: str | None = None
               ) -> bytes:
    """Every message some party's servers received or returned (one party, or all)."""
    return b"".join(payload for name, records in received.items() if party in (None, name)
                    for _, _, payload in records)


def test_the_capture_saw_the_protocol(transcript: tuple) -> None:
    """Positive controls: the proxies sat on every link, the transcripts saw the messages."""
    population, indices, reports, capture, key, alliance, received, _ = transcript
    methods = {name: {m for _, m, _ in records} for name, records in received.items()}
    assert {"/fedcredit.v1.Coordinator/PlanInquiry", "/fedcredit.v1.Coordinator/PlanEvaluation",
            "/fedcredit.v1.Coordinator/Announce",
            "/fedcredit.v1.Coordinator/RecordAudit"} <= methods["coordinator"]
    for spec in alliance.nodes:
        assert "/fedcredit.v1.Node/Contribute" in methods[spec.member_id]
        assert len(capture.link(spec.member_id)) > 5_000
    pseudonym = pseudonymize(key, "cn_resident_id", population.identifiers[indices[0]]).value
    assert any(pseudonym in party_view(received, s.member_id) for s in alliance.nodes)
    assert all(r["coverage"]["answered"] == 2 for r in reports)


def test_every_link_is_tls(transcript: tuple) -> None:
    """On the wire nothing is readable: no method names, no pseudonyms, only TLS records."""
    population, indices, _, capture, key, alliance, _, _ = transcript
    for link in ("coordinator", *(s.member_id for s in alliance.nodes)):
        wire = capture.link(link)
        assert wire[:3] in (b"\x16\x03\x01", b"\x16\x03\x03"), link  # a TLS handshake first
        assert b"fedcredit.v1" not in wire and b"Contribute" not in wire, link
    pseudonym = pseudonymize(key, "cn_resident_id", population.identifiers[indices[0]]).value
    assert pseudonym not in capture.everything()


@pytest.mark.parametrize("level", ["wire", "parties"])
def test_no_raw_identifier_feature_or_plaintext_result_crosses(transcript: tuple,
                                                               level: str) -> None:
    population, indices, reports, capture, _, _, received, _ = transcript
    seen = capture.everything() if level == "wire" else party_view(received)
    assert len(seen) > 50_000
    print(f"{level}: {len(seen)} bytes")
    leaks = [
        f"applicant #{index}: {what}"
        for index, report in zip(indices, reports, strict=True)
        for what, needles in secrets_of(population, index, report).items()
        if any(occurs(needle, seen) for needle in needles)
    ]
    assert leaks == []


def test_the_coordinator_never_sees_a_pseudonym(transcript: tuple) -> None:
    population, indices, _, _, key, _, received, _ = transcript
    coordinator_bytes = party_view(received, "coordinator")
    assert len(coordinator_bytes) > 10_000
    for index in indices:
        pseudonym = pseudonymize(key, "cn_resident_id", population.identifiers[index]).value
        assert pseudonym not in coordinator_bytes
        assert pseudonym.hex().encode() not in coordinator_bytes


def test_the_subject_key_never_crosses(transcript: tuple) -> None:
    _, _, _, capture, key, _, received, _ = transcript
    for seen in (capture.everything(), party_view(received)):
        assert key.secret not in seen and key.secret.hex().encode() not in seen


def test_the_needles_would_catch_a_leak(transcript: tuple) -> None:
    """A test that would pass with the check deleted is no test: plant a leak and find it."""
    population, indices, reports, _, _, _, _, _ = transcript
    index, report = indices[0], reports[0]
    inst = next(i for i in population.institutions if i.has_record[index])
    value = float(next(iter(inst.features.values()))[index])
    planted = b"\x00" * 100 + struct.pack("<d", value) + population.identifiers[index].encode()
    found = {what for what, needles in secrets_of(population, index, report).items()
             if any(occurs(n, planted) for n in needles)}
    assert "raw identifier" in found
    assert f"{inst.profile.member_id} feature values" in found
    # A number as text is found in JSON or a protobuf string, not inside a hex digest.
    assert occurs(decimal(4770029), b'{"debt":4770029}') and occurs(
        decimal(4770029), b"\x32\x074770029")
    assert not occurs(decimal(4770029), b'"ba59434770029190"')
    # a negative partial leaked as a protobuf int64 or sint64 field is found too
    negatives = [
        (i, r, inst.profile.member_id, partial)
        for i, r in zip(indices, reports, strict=True)
        for inst in population.institutions
        if inst.has_record[i]
        and (partial := population.models[inst.profile.member_id].partial_logit(
            {k: float(v[i]) for k, v in inst.features.items()})) < -0.2
    ]
    assert negatives, "the sample holds a clearly negative partial"
    index, report, member, partial = negatives[0]
    fixed = round(partial * FIXED_POINT_SCALE)
    for planted_varint in (varint(fixed & (2**64 - 1)), varint((fixed << 1) ^ (fixed >> 63))):
        found = {what for what, needles in secrets_of(population, index, report).items()
                 if any(occurs(n, b"\x00" + planted_varint + b"\x00") for n in needles)}
        assert f"{member} plaintext partial" in found


def test_logs_hold_no_raw_identifier(transcript: tuple) -> None:
    population, indices, _, _, _, alliance, _, _ = transcript
    logs = b"".join(p.read_bytes() for p in Path(alliance.workdir, "logs").glob("*.log"))
    for index in indices:
        assert population.identifiers[index].encode() not in logs


@pytest.mark.parametrize("level", ["wire", "parties"])
def test_a_portfolio_job_leaks_nothing_either(transcript: tuple, level: str) -> None:
    """A portfolio job (CKKS partials, packed BFV lanes, chunks of pseudonyms) shows no raw
    identifier, feature value or plaintext share or total either; only its pseudonyms reach
    the members, never the coordinator."""
    population, _, _, capture, key, _, received, (rows, results) = transcript
    methods = {m for records in received.values() for _, m, _ in records}
    assert {"/fedcredit.v1.Node/OpenPortfolio", "/fedcredit.v1.Node/ContributePortfolio"} <= (
        methods)
    assert all(r["status"] == "scored" and r["members_answered"] == 2 for r in results)
    seen = capture.everything() if level == "wire" else party_view(received)
    leaks = [f"portfolio subject #{index}: {what}"
             for index, result in zip(rows, results, strict=True)
             for what, needles in portfolio_secrets(population, index, result).items()
             if any(occurs(needle, seen) for needle in needles)]
    assert leaks == []
    coordinator_bytes = party_view(received, "coordinator")
    for index in rows:
        pseudonym = pseudonymize(key, "cn_resident_id", population.identifiers[index]).value
        assert pseudonym not in coordinator_bytes
        if level == "parties":
            assert pseudonym in party_view(received, "finco")  # the members look it up
