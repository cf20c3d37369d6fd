"""The report page renderer on hand-built reports: escaping, labels for exposures it does not
know, reports without a decision or a plan, and the score gauge's geometry."""

from __future__ import annotations

import copy
import math
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from node.report_page import (
    exposure_label,
    exposure_value,
    gauge,
    render_report_page,
    write_report_page,
)
from node.reports import EvaluationReport

pytestmark = pytest.mark.unit
CREATED_MS = 1_795_340_400_000  # 2026-11-22 09:40 UTC


def report(**changes: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "query_id": "q-1", "requester_id": "bank", "created_at_ms": CREATED_MS,
        "model_version": "v3", "purpose": "origination", "consent_reference": "c-1",
        "requested_amount": 6000.0, "term_months": 12, "score": 612,
        "default_probability": 0.041, "grade": "B", "joint_logit": -3.1,
        "institutions_with_records": 2,
        "exposures": {"outstanding_debt": 1500.5, "active_loans": 1, "open_credit_lines": 2,
                      "accounts_30dpd": 0, "accounts_90dpd": 0, "inquiries_90d": 1},
        "coverage": {"asked": 3, "answered": 2,
                     "skipped": [{"member_id": "telco", "error_code": "DEADLINE_EXCEEDED"}]},
        "timings": {"plan_ms": 1.0, "route_ms": 2.0, "decrypt_ms": 3.0, "total_ms": 6.0},
        "lending": {
            "policy_version": 2, "decision": "refer", "rules_fired": ["INQUIRIES"],
            "rules_unevaluated": [], "grade": "B", "credit_limit": 25000.0,
            "reasons": [{"code": "RC05", "text": "Many recent credit applications."}],
            "products": [{"rank": 1, "product_id": "bank-p12", "member_id": "bank",
                          "name": "Personal loan", "offered_amount": 6000.0, "apr": 0.089,
                          "disbursement_days": 1, "reason": "the full amount"}],
            "products_note": None,
            "plan": {"outcome": "planned", "explanation": "3 monthly installments fit",
                     "principal": 6000.0, "apr": 0.089, "period": "monthly",
                     "installments": [
                         {"number": n, "due_month": n, "payment": 2029.7,
                          "principal": p, "interest": i, "balance": b}
                         for n, p, i, b in ((1, 1985.2, 44.5, 4014.8), (2, 1999.92, 29.78,
                                            2014.88), (3, 2014.88, 14.94, 0.0))],
                     "total_interest": 89.22},
        },
    }
    doc.update(changes)
    return doc


class Parsed(HTMLParser):
    """The tags (with their attributes) and the text of a page."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.tags: list[tuple[str, tuple[tuple[str, str | None], ...]]] = []
        self.data: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, tuple(attrs)))

    def handle_data(self, data: str) -> None:
        self.data.append(data)

    @property
    def text(self) -> str:
        return "".join(self.data)

    @property
    def words(self) -> str:
        """The text, one space between the pieces of every element."""
        return " ".join(" ".join(self.data).split())


def with_text(doc: dict[str, Any], text: str) -> dict[str, Any]:
    """``doc`` with ``text`` in every free-text field that comes from outside the node."""
    doc = copy.deepcopy(doc)
    lending = doc["lending"]
    lending["products"][0].update(name=text, product_id=text, member_id=text, reason=text)
    lending["reasons"][0]["text"] = text
    lending["rules_fired"] = [text]
    lending["plan"]["explanation"] = text
    doc["coverage"]["skipped"][0]["member_id"] = text
    doc.update(requester_id=text, consent_reference=text, model_version=text)
    return doc


@settings(max_examples=60, deadline=None)
@example("<b>bold</b>")
@example("\"'><img src=x onerror=alert(1)>")
@example("&amp; &lt;!-- not a comment")
@given(st.text(st.sampled_from("<>&\"'/=;#!- ab") | st.characters(), min_size=1, max_size=40))
def test_any_text_in_the_report_is_text_on_the_page(text: str) -> None:
    """Whatever a member, a catalog or a policy writes, the page has exactly the template's
    tags and attributes, and the text reads back as written."""
    hostile = Parsed(render_report_page(with_text(report(), text)))
    assert hostile.tags == Parsed(render_report_page(with_text(report(), "x"))).tags
    assert text in hostile.text


def test_a_script_in_a_product_renders_escaped() -> None:
    page = render_report_page(with_text(report(), "<script>alert(1)</script>"))
    assert "<script" not in page
    assert page.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 8


def test_a_report_without_lending_says_no_decision_was_recorded() -> None:
    page = render_report_page(report(lending=None))
    parsed = Parsed(page)
    assert "No lending decision recorded" in parsed.text
    assert "stored before lending decisions existed" in parsed.text
    assert ("table", (("class", "schedule"),)) not in parsed.tags
    assert "Personal loan" not in parsed.text and "RC05" not in parsed.text


def test_a_plan_that_cannot_be_computed_shows_why() -> None:
    doc = report()
    doc["lending"].update(products=[], products_note="no product is open to this grade and term",
                          credit_limit=None)
    doc["lending"]["plan"] = {"outcome": "income_unknown", "explanation": "income is missing "
                              "or zero: repayment capacity cannot be computed", "principal": None,
                              "apr": None, "period": None, "installments": [],
                              "total_interest": None}
    text = Parsed(render_report_page(doc)).words
    assert "Income unknown. income is missing or zero: repayment capacity cannot be computed" in (
        text)
    assert "No product: no product is open to this grade and term." in text
    assert "no verified income" in text and "Due (month)" not in text


def test_the_schedule_and_its_totals_are_to_the_cent() -> None:
    text = Parsed(render_report_page(report())).words
    assert "1 1 2,029.70 1,985.20 44.50 4,014.80" in text
    assert "Total 6,089.10 6,000.00 89.22" in text


def test_exposures_it_does_not_know_get_a_label_from_their_name() -> None:
    assert exposure_label("accounts_90dpd") == "Accounts 90+ days past due"
    assert exposure_label("lenders_with_active_loans") == "Lenders with active loans"
    assert exposure_label("accounts_60dpd") == "Accounts 60+ days past due"
    assert exposure_label("inquiries_30d") == "Inquiries last 30 days"
    assert exposure_value("outstanding_debt", 1234) == "1,234.00"
    assert exposure_value("loan_amount_max", 12.5) == "12.50"
    assert exposure_value("active_loans", 12345) == "12,345"
    assert exposure_value("flag_kinds", ["fraud", "litigation"]) == "fraud, litigation"
    assert exposure_value("by_kind", {"fraud_flags": 1}) == "Fraud flags: 1"
    assert exposure_value("frozen", True) == "Yes"
    doc = report()
    doc["exposures"].update(lenders_with_active_loans=3, blacklist_flags=1)
    parsed = Parsed(render_report_page(doc))
    assert "Lenders with active loans 3" in parsed.words
    assert ("tr", (("class", "adverse"),)) in parsed.tags  # a blacklist flag stands out


def test_the_api_json_and_the_stored_report_render_the_same_page() -> None:
    stored = report()
    api = {k: v for k, v in stored.items() if k != "created_at_ms"}
    api["created_at"] = datetime.fromtimestamp(CREATED_MS / 1000, UTC).isoformat()
    assert render_report_page(api) == render_report_page(stored)
    assert "2026-11-22 09:40 UTC" in render_report_page(stored)


def test_an_evaluation_report_object_renders_and_is_written(tmp_path: Path) -> None:
    doc = report()
    stored = EvaluationReport.from_dict(doc)
    written = write_report_page(stored, tmp_path / "r.html")
    assert written.read_text(encoding="utf-8") == render_report_page(stored.to_dict())
    assert "Personal loan" in written.read_text(encoding="utf-8")


@pytest.mark.parametrize(("score", "angle"), [(300, 180), (450, 135), (600, 90), (900, 0),
                                              (250, 180), (990, 0)])
def test_the_gauge_needle_points_at_the_score(score: int, angle: float) -> None:
    g = gauge(score)
    measured = math.degrees(math.atan2(g["cy"] - g["tip_y"], g["tip_x"] - g["cx"]))
    assert measured == pytest.approx(angle, abs=0.1)
    assert math.dist((g["cx"], g["cy"]), (g["marker_x"], g["marker_y"])) == pytest.approx(
        g["r"], abs=0.01)


def test_a_report_dict_is_what_asdict_gives_and_round_trips() -> None:
    import dataclasses

    doc = report()
    stored = EvaluationReport.from_dict(copy.deepcopy(doc))
    assert stored.to_dict() == dataclasses.asdict(stored)
    assert EvaluationReport.from_dict(stored.to_dict()) == stored
