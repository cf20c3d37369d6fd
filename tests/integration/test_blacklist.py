"""The private alliance blacklist: flags at each member, a count in the joint evaluation.

Real nodes and coordinator in-process (gRPC with mutual TLS, the lender API over HTTP); the
flags are set through the same store (and CLI) an operator uses on a running node.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from fedcredit.cli import app
from fedcredit.demo.population import Population
from fedcredit.errors import InvalidRequestError, NotFoundError
from mpc.pseudonym import IdentifierType, SubjectKey, pseudonymize
from node.blacklist import FlagCategory, SubjectFlags
from tests.support.alliance import InProcessAlliance, body, indices_with_records

pytestmark = pytest.mark.integration
DAY_MS = 86_400_000
NOW_MS = 1_800_000_000_000


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SubjectFlags]:
    flags = SubjectFlags(tmp_path / "flags.sqlite3", clock=lambda: NOW_MS)
    yield flags
    flags.close()


def test_a_flag_counts_until_it_expires_or_is_withdrawn(store: SubjectFlags) -> None:
    subject, other = b"\x01" * 32, b"\x02" * 32
    flag = store.add(subject, FlagCategory.FRAUD, NOW_MS + DAY_MS, "analyst-7", "case 1234")
    assert store.is_flagged(subject, NOW_MS) and not store.is_flagged(other, NOW_MS)
    assert not store.is_flagged(subject, NOW_MS + DAY_MS)  # expired on the day
    assert [f.flag_id for f in store.list()] == [flag.flag_id]
    withdrawn = store.withdraw(flag.flag_id)
    assert withdrawn.withdrawn_ms == NOW_MS and not store.is_flagged(subject, NOW_MS)
    assert store.list() == [] and store.list(include_inactive=True) == [withdrawn]
    assert store.for_subject(subject) == [withdrawn]  # kept on record


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"expires_ms": NOW_MS}, "expiry must be in the future"),
    ({"created_by": "  "}, "who sets the flag"),
    ({"note": "x" * 501}, "longer than 500"),
])
def test_bad_flags_are_refused_and_nothing_is_written(
    store: SubjectFlags, kwargs: dict[str, object], message: str
) -> None:
    args: dict[str, object] = {"pseudonym": b"\x01" * 32, "category": FlagCategory.LITIGATION,
                               "expires_ms": NOW_MS + DAY_MS, "created_by": "a"} | kwargs
    with pytest.raises(InvalidRequestError, match=message):
        store.add(**args)  # type: ignore[arg-type]
    assert store.list(include_inactive=True) == []


def test_withdrawing_an_unknown_or_withdrawn_flag_is_refused(store: SubjectFlags) -> None:
    with pytest.raises(NotFoundError):
        store.withdraw("flg_nope")
    flag = store.add(b"\x01" * 32, FlagCategory.FRAUD, NOW_MS + DAY_MS, "a")
    store.withdraw(flag.flag_id)
    with pytest.raises(InvalidRequestError, match="already withdrawn"):
        store.withdraw(flag.flag_id)


def _flags(alliance: InProcessAlliance, member: str) -> SubjectFlags:
    """The member's flag store, opened beside its running node (as the CLI does)."""
    return SubjectFlags(alliance.node_settings(member).blacklist_store_path)


def _lending(http: httpx.Client, alliance: InProcessAlliance, population: Population,
             index: int, requester: str = "bank") -> tuple[dict[str, Any], dict[str, Any]]:
    response = http.post(f"{alliance.url(requester)}/v1/evaluations",
                         json=body(population, index, verified_annual_income=80000,
                                   monthly_spending=1500))
    assert response.status_code == 201, response.text
    report = response.json()
    return report["exposures"], report["lending"]


def test_the_evaluation_learns_how_many_members_flag_the_applicant_and_nothing_more(
    alliance: InProcessAlliance, population: Population, subject_key: SubjectKey,
    http: httpx.Client,
) -> None:
    index = indices_with_records(population, 2)[5]
    pseudonym = pseudonymize(subject_key, IdentifierType.CN_RESIDENT_ID,
                             population.identifiers[index]).value
    exposures, before = _lending(http, alliance, population, index)
    assert exposures["blacklist_flags"] == 0 and "RC10" not in [
        r["code"] for r in before["reasons"]]

    stores = {m: _flags(alliance, m) for m in ("finco", "shop", "bank")}
    try:
        first = stores["finco"].add(pseudonym, FlagCategory.FRAUD, NOW_MS * 2, "ops",
                                    "case 77 secret note")
        exposures, once = _lending(http, alliance, population, index)
        assert exposures["blacklist_flags"] == 1
        assert "FLAGGED" in once["rules_fired"]
        assert once["decision"] in ("refer", "decline")
        assert once["reasons"][0]["code"] == "RC10"
        # Which member flagged, why and when is not learned: the reason names no member and
        # no category, and nothing of the flag is in the report.
        said = " ".join(r["text"] for r in once["reasons"])
        assert "finco" not in said and "case 77" not in str(once)
        assert first.flag_id not in str(once) and "analyst" not in str(once)

        stores["shop"].add(pseudonym, FlagCategory.LITIGATION, NOW_MS * 2, "legal")
        exposures, twice = _lending(http, alliance, population, index)
        assert exposures["blacklist_flags"] == 2 and twice["decision"] == "decline"
        assert "FLAGGED_TWICE" in twice["rules_fired"]

        # The requester's own flag counts too (its share is added in the clear, at home);
        # an expired one does not.
        stores["bank"].add(pseudonym, FlagCategory.IDENTITY_MISUSE, NOW_MS * 2, "kyc")
        now = int(time.time() * 1000)
        stale = SubjectFlags(alliance.node_settings("telco").blacklist_store_path,
                             clock=lambda: now - 10 * DAY_MS)
        try:
            stale.add(pseudonym, FlagCategory.FRAUD, now - DAY_MS, "old")
        finally:
            stale.close()
        exposures, _ = _lending(http, alliance, population, index)
        assert exposures["blacklist_flags"] == 3

        for member, flags in stores.items():
            for flag in flags.list():
                flags.withdraw(flag.flag_id)
            assert not flags.list(), member
        exposures, after = _lending(http, alliance, population, index)
        assert exposures["blacklist_flags"] == 0 and after["decision"] == before["decision"]
        assert first.flag_id not in str(after)
    finally:
        for flags in stores.values():
            flags.close()


def test_a_member_may_flag_someone_it_holds_no_record_of(
    alliance: InProcessAlliance, population: Population, subject_key: SubjectKey,
    http: httpx.Client,
) -> None:
    stranger = "11010519491231002X"  # nobody's customer
    pseudonym = pseudonymize(subject_key, IdentifierType.CN_RESIDENT_ID, stranger).value
    flags = _flags(alliance, "shop")
    try:
        flag = flags.add(pseudonym, FlagCategory.FRAUD, NOW_MS * 2, "ops")
        response = http.post(f"{alliance.url('bank')}/v1/evaluations", json=body(
            population, 0, applicant={"id_type": "cn_resident_id", "identifier": stranger}))
        assert response.status_code == 201, response.text
        report = response.json()
        assert report["institutions_with_records"] == 0
        assert report["exposures"]["blacklist_flags"] == 1
        flags.withdraw(flag.flag_id)
    finally:
        flags.close()


def test_the_flags_cli_pseudonymizes_from_stdin_and_refuses_bad_input(
    tmp_path: Path, subject_key: SubjectKey, population: Population,
) -> None:
    env = {"FEDCREDIT_NODE_ENVIRONMENT": "dev", "FEDCREDIT_NODE_MEMBER_ID": "bank",
           "FEDCREDIT_NODE_DATA_DIR": str(tmp_path), "COLUMNS": "200",
           "FEDCREDIT_NODE_SUBJECT_KEY": subject_key.secret.hex()}
    runner = CliRunner()
    ids = population.identifiers[:2]
    args = ["node", "flags", "add", "--id-type", "cn_resident_id", "--category", "fraud",
            "--expires", "2099-01-31", "--by", "analyst-7", "--note", "case 12"]
    added = runner.invoke(app, args, input="\n".join(ids) + "\n", env=env)
    assert added.exit_code == 0, added.output
    flag_ids = [line for line in added.stdout.splitlines() if line.startswith("flg_")]
    assert len(flag_ids) == 2

    flags = SubjectFlags(tmp_path / "flags.sqlite3")
    try:
        expected = pseudonymize(subject_key, IdentifierType.CN_RESIDENT_ID, ids[0]).value
        assert flags.is_flagged(expected, NOW_MS)
        assert flags.get(flag_ids[0]).expires_ms == 4073500800000  # 2099-01-31T00:00Z
    finally:
        flags.close()
    raw = (tmp_path / "flags.sqlite3").read_bytes()
    assert ids[0].encode() not in raw and ids[1].encode() not in raw

    listed = runner.invoke(app, ["node", "flags", "list"], env=env)
    assert listed.exit_code == 0 and all(f in listed.stdout for f in flag_ids)
    assert ids[0] not in listed.stdout and "case 12" in listed.stdout
    checked = runner.invoke(app, ["node", "flags", "check", "--id-type", "cn_resident_id"],
                            input=ids[1] + "\n", env=env)
    assert checked.exit_code == 0 and flag_ids[1] in checked.stdout
    assert "counts in evaluations: yes" in checked.stdout

    # A malformed identifier on any line: nothing is written, the line is named.
    bad = runner.invoke(app, args, input=f"{ids[0]}\n110105194912310021\n", env=env)
    assert bad.exit_code == 1 and "MALFORMED_IDENTIFIER" in bad.output and "line 2" in bad.output
    listed = runner.invoke(app, ["node", "flags", "list", "--all"], env=env)
    assert listed.stdout.count("flg_") == 2
    past = runner.invoke(app, [*args[:-6], "--expires", "2001-01-01", "--by", "a"],
                         input=ids[0] + "\n", env=env)
    assert past.exit_code == 1 and "INVALID_REQUEST" in past.output

    gone = runner.invoke(app, ["node", "flags", "withdraw", flag_ids[0]], env=env)
    assert gone.exit_code == 0 and "withdrew" in gone.output
    again = runner.invoke(app, ["node", "flags", "withdraw", "flg_nope"], env=env)
    assert again.exit_code == 1 and "NOT_FOUND" in again.output
