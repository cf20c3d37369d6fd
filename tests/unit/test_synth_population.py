"""The latent model: what risk drives, the overlap of members, the default label."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest

from fedcredit.synth.credit import (
    DEFAULTED,
    DEFAULTED_DPD,
    STATUS_NAMES,
    WRITTEN_OFF,
    WRITTEN_OFF_DPD,
    draw_loans,
)
from fedcredit.synth.dates import SECONDS_PER_DAY, HistoryWindow
from fedcredit.synth.identifiers import IdentifierSpace
from fedcredit.synth.institutions import (
    Dialect,
    FileFormat,
    InstitutionKind,
    alliance_members,
    local_name,
)
from fedcredit.synth.ledger import CATEGORY_NAMES, CREDIT, bank_ledger
from fedcredit.synth.population import NEVER, IncomeSource, People, draw_defaults, draw_people
from fedcredit.synth.relationships import draw_relationships
from fedcredit.synth.spec import AllianceSpec, InvalidSpecError
from node.ingest.datamodel import TABLES

pytestmark = pytest.mark.unit
WINDOW = HistoryWindow.ending(date(2026, 10, 31), 12)


@pytest.fixture(scope="module")
def people() -> People:
    rng = np.random.default_rng(21)
    return draw_people(rng, 0, 20_000, WINDOW, IdentifierSpace.from_rng(rng))


@pytest.mark.parametrize("institutions", range(1, 9))
def test_default_rate_is_realistic_and_multi_lender_borrowers_default_more(
    people: People, institutions: int
) -> None:
    rng = np.random.default_rng(institutions)
    members = alliance_members(institutions)
    relationships = draw_relationships(rng, people, members)
    lenders = relationships.lenders
    defaults = draw_defaults(rng, people, lenders)
    assert 0.15 <= defaults.mean() <= 0.25
    assert relationships.customer.any(axis=0).all()
    if institutions == 1:
        assert relationships.customer.all() and lenders.max() == 1
        return
    assert not relationships.customer.all(axis=1).any()  # no member sees everyone
    multi = lenders >= 2
    assert multi.mean() > 0.05
    assert defaults[multi].mean() > defaults[lenders == 1].mean() + 0.05
    assert people.risk[multi].mean() > people.risk[lenders <= 1].mean()


def test_riskier_people_apply_for_credit_more(people: People) -> None:
    relationships = draw_relationships(np.random.default_rng(3), people, alliance_members(3))
    risky = people.risk > 1.0
    declined = relationships.declined.sum(axis=0)
    assert declined[risky].mean() > 2 * declined[people.risk < -1.0].mean()


def test_riskier_people_have_more_volatile_income_and_gamble_more(people: People) -> None:
    ledger = bank_ledger(np.random.default_rng(4), people, np.arange(people.size), WINDOW, 1.0)
    assert (ledger.ts < WINDOW.as_of_second).all()
    assert (ledger.ts >= WINDOW.first_day * SECONDS_PER_DAY).all()
    salaried = people.income_source == IncomeSource.SALARY
    salary = (ledger.direction == CREDIT) & (ledger.category == CATEGORY_NAMES.index("salary"))
    log_amount = np.log(ledger.amount[salary])
    owner = ledger.owner[salary]
    mean = np.bincount(owner, log_amount, people.size) / np.maximum(
        np.bincount(owner, minlength=people.size), 1)
    spread = np.bincount(owner, (log_amount - mean[owner]) ** 2, people.size)
    count = np.bincount(owner, minlength=people.size)
    volatility = np.sqrt(spread / np.maximum(count - 1, 1))
    steady = salaried & (count >= 6)
    assert (volatility[steady & (people.risk > 1)].mean()
            > 1.5 * volatility[steady & (people.risk < -1)].mean())
    gambling = ledger.category == CATEGORY_NAMES.index("gambling")
    risky_owner = people.risk[ledger.owner] > 1
    assert gambling[risky_owner].mean() > 3 * gambling[~risky_owner].mean()


def test_loans_are_consistent_as_of_the_as_of_date(people: People) -> None:
    rng = np.random.default_rng(6)
    relationships = draw_relationships(rng, people, alliance_members(1))
    book = draw_loans(rng, people, relationships.loans[0], WINDOW)
    assert set(np.unique(book.status)) == set(range(len(STATUS_NAMES)))
    assert (np.diff(book.owner) >= 0).all() and (np.diff(book.schedule_loan) >= 0).all()
    assert (book.balance >= 0).all() and (book.principal >= 0).all()
    assert (book.open_date <= WINDOW.as_of).all()
    # Nobody borrowed as a child (a month or two of slack for month arithmetic).
    assert (book.open_date >= people.birth_day[book.owner] + 18 * 365.25 - 62).all()
    closed = book.close_date != NEVER
    assert (book.close_date[closed] <= WINDOW.as_of).all()
    assert ((book.days_past_due >= WRITTEN_OFF_DPD) == (book.status == WRITTEN_OFF)).all()
    late = (book.days_past_due >= DEFAULTED_DPD) & (book.days_past_due < WRITTEN_OFF_DPD)
    assert (late == (book.status == DEFAULTED)).all()
    paid = book.paid_date != NEVER
    assert (book.paid_date[paid] <= WINDOW.as_of).all()
    assert np.isnan(book.paid_amount[~paid]).all() and not np.isnan(book.paid_amount[paid]).any()
    # Days past due are counted from the oldest installment still unpaid.
    unpaid_due = ~paid & (book.due_date <= WINDOW.as_of)
    behind = np.zeros(book.loans, dtype=bool)
    behind[book.schedule_loan[unpaid_due]] = True
    assert ((book.days_past_due > 0) == behind).all()
    # People in distress stop paying: they are far more often behind.
    distressed = people.distressed[book.owner]
    assert behind[distressed].mean() > 3 * behind[~distressed].mean()


def test_a_universal_bank_alone_and_kinds_cycling_otherwise() -> None:
    (solo,) = alliance_members(1)
    assert solo.kind is InstitutionKind.UNIVERSAL_BANK
    assert solo.tables == tuple(t.name for t in TABLES)
    members = alliance_members(8)
    assert [m.member_id for m in members] == [
        "bank", "finco", "shop", "bank2", "finco2", "shop2", "bank3", "finco3"]
    assert FileFormat.CSV in {m.file_format for m in alliance_members(3)}
    assert len({m.display_name for m in members}) == 8
    for member in members:
        for table in member.tables:
            names = [member.local_names(table).get(c, c) for c in member.columns(table)]
            assert len(set(names)) == len(names), (member.member_id, table)
    assert local_name(Dialect.CAMEL, "days_past_due") == "daysPastDue"
    assert local_name(Dialect.UPPER, "identifier") == "ID_NUMBER"


@pytest.mark.parametrize(("field", "value"), [
    ("subjects", 0), ("institutions", 9), ("months", 0), ("dirty_rate", 0.5),
    ("spending_per_month", -1.0), ("seed", -3), ("as_of", date(1990, 1, 1)),
])
def test_an_out_of_range_spec_names_its_field(field: str, value: object) -> None:
    with pytest.raises(InvalidSpecError) as info:
        AllianceSpec(**{"subjects": 10, field: value})  # type: ignore[arg-type]
    assert info.value.field == field
