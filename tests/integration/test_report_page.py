"""The printable report page over real HTTP, against a real in-process alliance, and what
headless Chromium makes of it (a screenshot and an A4 print)."""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Iterator
from dataclasses import replace
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import numpy as np
import pytest
from matplotlib import image

from fedcredit.demo.population import Population
from node.api_keys import ApiScope
from node.report_page import money
from tests.support.alliance import API_KEY, InProcessAlliance, body, indices_with_records

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
#: The decision banner's fill (node/templates/report.html.j2: --approve, --decline).
APPROVE_RGB, DECLINE_RGB = (0x1F, 0x7A, 0x4D), (0xB3, 0x26, 0x1E)
A4_POINTS = (595.28, 841.89)
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
         "track", "wbr"}


class Page(HTMLParser):
    """The page's text by CSS class, and its tables by class as rows of cell texts per
    section (thead, tbody, tfoot)."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.by_class: dict[str, list[str]] = {}
        self.tables: list[dict[str, Any]] = []
        self._open: list[tuple[str, list[str], list[str]]] = []
        self._table: dict[str, Any] | None = None
        self._section = "tbody"
        self._row: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        classes = next((v or "" for k, v in attrs if k == "class"), "").split()
        if tag == "table":
            self._table = {"class": classes, "thead": [], "tbody": [], "tfoot": []}
            self.tables.append(self._table)
        elif tag in ("thead", "tbody", "tfoot"):
            self._section = tag
        elif tag == "tr":
            self._row = []
        if tag not in _VOID:
            self._open.append((tag, classes, []))

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        pass  # <stop/>, <path/>: no text

    def handle_data(self, data: str) -> None:
        for _, _, text in self._open:
            text.append(data)

    def handle_endtag(self, tag: str) -> None:
        while self._open:
            name, classes, parts = self._open.pop()
            text = " ".join(" ".join(parts).split())
            for cls in classes:
                self.by_class.setdefault(cls, []).append(text)
            if name in ("td", "th"):
                self._row.append(text)
            elif name == "tr" and self._table is not None:
                self._table[self._section].append(self._row)
            if name == tag:
                return

    def text(self, cls: str) -> str:
        return " | ".join(self.by_class.get(cls, []))

    def table(self, cls: str) -> dict[str, Any]:
        found = [t for t in self.tables if cls in t["class"]]
        assert len(found) == 1, f"{len(found)} tables of class {cls}"
        return found[0]


def _number(cell: str) -> Decimal:
    return Decimal(cell.replace(",", ""))


def _late(population: Population) -> set[int]:
    late = np.sum([inst.exposures["accounts_90dpd"] for inst in population.institutions], axis=0)
    return {int(i) for i in np.flatnonzero(late > 0)}


@pytest.fixture(scope="module")
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30, headers={"X-API-Key": API_KEY}) as http:
        yield http


@pytest.fixture(scope="module")
def approved(alliance: InProcessAlliance, population: Population,
             client: httpx.Client) -> dict[str, Any]:
    """An approved evaluation with an installment schedule (as test_evaluation_api makes
    one: a verified income and spending, an applicant nobody reports late)."""
    late = _late(population)
    for index in [i for i in indices_with_records(population, 2) if i not in late][:8]:
        report: dict[str, Any] = client.post(f"{alliance.url('bank')}/v1/evaluations", json=body(
            population, index, requested_amount=6000, term_months=12,
            verified_annual_income=90000, monthly_spending=2500)).json()
        lending = report["lending"]
        if lending["decision"] == "approve" and lending["plan"]["outcome"] == "planned":
            return report
    raise AssertionError("no approved evaluation with a plan among the first candidates")


@pytest.fixture(scope="module")
def declined(alliance: InProcessAlliance, population: Population,
             client: httpx.Client) -> dict[str, Any]:
    """An applicant some member reports 90+ days past due: the policy declines."""
    has_record = population.institutions[0].has_record
    index = min(i for i in _late(population) if has_record[i])
    report: dict[str, Any] = client.post(f"{alliance.url('bank')}/v1/evaluations", json=body(
        population, index, verified_annual_income=50000, monthly_spending=1000)).json()
    assert report["lending"]["decision"] == "decline", report["lending"]
    return report


def page_of(alliance: InProcessAlliance, client: httpx.Client, query_id: str) -> str:
    response = client.get(f"{alliance.url('bank')}/v1/evaluations/{query_id}/report")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert response.headers["cache-control"] == "no-store"
    assert "<script" not in response.text.lower()
    return response.text


def test_an_approved_page_shows_decision_grade_limit_and_the_schedule(
    alliance: InProcessAlliance, client: httpx.Client, approved: dict[str, Any]
) -> None:
    lending, plan = approved["lending"], approved["lending"]["plan"]
    page = Page(page_of(alliance, client, approved["query_id"]))
    assert page.text("verdict") == "Approved"
    assert approved["query_id"] in page.text("mono")
    facts = page.text("facts")
    assert f"Grade {lending['grade']}" in facts
    assert f"Credit limit {money(lending['credit_limit'])}" in facts
    assert money(approved["exposures"]["outstanding_debt"]) in page.text("num")
    schedule = page.table("schedule")
    rows = schedule["tbody"]
    assert [int(r[0]) for r in rows] == [i["number"] for i in plan["installments"]]
    assert [_number(r[2]) for r in rows] == [
        Decimal(str(i["payment"])).quantize(Decimal("0.01")) for i in plan["installments"]]
    principal = sum((_number(r[3]) for r in rows), Decimal(0))
    interest = sum((_number(r[4]) for r in rows), Decimal(0))
    assert principal == Decimal(str(plan["principal"])).quantize(Decimal("0.01"))
    assert interest == Decimal(str(plan["total_interest"])).quantize(Decimal("0.01"))
    assert _number(rows[-1][5]) == 0
    (total,) = schedule["tfoot"]
    assert total[0] == "Total"
    assert [_number(c) for c in total[1:4]] == [principal + interest, principal, interest]
    assert plan["explanation"] in page.text("explanation")


def test_a_declined_page_leads_with_its_reasons(
    alliance: InProcessAlliance, client: httpx.Client, declined: dict[str, Any]
) -> None:
    page = Page(page_of(alliance, client, declined["query_id"]))
    assert page.text("verdict") == "Declined"
    why = page.text("why")
    assert why.startswith("Why this application was declined")
    reasons = declined["lending"]["reasons"]
    assert reasons and reasons[0]["code"] == "RC01"
    for reason in reasons:
        assert f"{reason['code']} {reason['text']}" in why
    assert "None: the application was declined." in page.text("empty")
    assert not [t for t in page.tables if "schedule" in t["class"]]


def test_a_report_stored_before_lending_decisions_still_has_a_page(
    alliance: InProcessAlliance, client: httpx.Client, approved: dict[str, Any]
) -> None:
    evaluations = alliance.nodes["bank"].app.state.context.evaluations
    legacy = replace(evaluations.get(approved["query_id"]), query_id="legacy-0001",
                     lending=None)
    evaluations._reports.save(legacy, bytes(32))
    page = Page(page_of(alliance, client, "legacy-0001"))
    assert page.text("verdict") == "No lending decision recorded"
    assert "before lending decisions existed" in page.text("rules")
    assert str(approved["score"]) in page.text("gauge")
    assert not [t for t in page.tables if "schedule" in t["class"]]


def test_an_unknown_id_is_a_typed_404(alliance: InProcessAlliance, client: httpx.Client) -> None:
    response = client.get(f"{alliance.url('bank')}/v1/evaluations/no-such-id/report")
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["code"] == "EVALUATION_NOT_FOUND"


def test_the_page_needs_a_key_with_evaluations_read(
    alliance: InProcessAlliance, approved: dict[str, Any]
) -> None:
    url = f"{alliance.url('bank')}/v1/evaluations/{approved['query_id']}/report"
    for headers in ({}, {"X-API-Key": "not-a-key"}):
        response = httpx.get(url, headers=headers)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "UNKNOWN_API_KEY"
    keys = alliance.nodes["bank"].app.state.context.api_keys
    _, create_only = keys.create("create-only", [ApiScope.EVALUATIONS_CREATE])
    response = httpx.get(url, headers={"X-API-Key": create_only})
    assert response.status_code == 403
    assert response.json()["error"]["code"] == "PERMISSION_DENIED"
    _, read_only = keys.create("read-only", [ApiScope.EVALUATIONS_READ])
    assert httpx.get(url, headers={"X-API-Key": read_only}).status_code == 200


def test_openapi_describes_the_page(alliance: InProcessAlliance, client: httpx.Client) -> None:
    spec = client.get(f"{alliance.url('bank')}/openapi.json").json()
    route = spec["paths"]["/v1/evaluations/{query_id}/report"]["get"]
    assert route["summary"] and "A4" in route["description"]
    assert {"200", "401", "403", "404"} <= set(route["responses"])
    example = route["responses"]["200"]["content"]["text/html"]["example"]
    assert example.startswith("<!doctype html>")
    assert "EVALUATION_NOT_FOUND" in route["responses"]["404"]["description"]


# -- headless Chromium -------------------------------------------------------------------------

def _screenshot_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("report_screenshot",
                                                  ROOT / "scripts" / "report_screenshot.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def camera() -> ModuleType:
    """scripts/report_screenshot.py; without Chromium the tests skip — or fail when ``CI`` is
    set, so a CI machine cannot silently lose what they check (as the PostgreSQL tests do).
    Tests list it first: a skip then starts no alliance."""
    module = _screenshot_module()
    if module.find_chromium() is None:
        message = ("Chromium not found (scripts/test.sh installs Debian's `chromium` as root; "
                   "or set FEDCREDIT_CHROMIUM)")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return module


def _colour_codes(png: np.ndarray) -> np.ndarray:
    """Each pixel as one integer 0xRRGGBB (``np.unique`` over rows of three is 30x slower)."""
    rgb = (png[..., :3] * 255 + 0.5).astype(np.int32)
    codes: np.ndarray = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    return codes


def _code(rgb: tuple[int, int, int]) -> int:
    return (rgb[0] << 16) | (rgb[1] << 8) | rgb[2]


@pytest.mark.parametrize(("which", "banner", "other"),
                         [("approved", APPROVE_RGB, DECLINE_RGB),
                          ("declined", DECLINE_RGB, APPROVE_RGB)])
def test_chromium_screenshots_the_page_with_its_decision_banner(
    camera: ModuleType, alliance: InProcessAlliance, client: httpx.Client, tmp_path: Path,
    request: pytest.FixtureRequest, which: str, banner: tuple[int, int, int],
    other: tuple[int, int, int],
) -> None:
    report = request.getfixturevalue(which)
    html = tmp_path / "report.html"
    html.write_text(page_of(alliance, client, report["query_id"]), encoding="utf-8")
    png = image.imread(camera.capture(html, tmp_path / "report.png"))
    assert png.shape[:2] == (1754, 1240)
    codes = _colour_codes(png)
    assert len(np.unique(codes)) > 500  # text, gauge gradient, tables: not a blank page
    # The banner is about 660 x 80 pixels of one colour; the gauge's ends hold a few of both.
    assert int((codes == _code(banner)).sum()) > 20_000
    assert int((codes == _code(other)).sum()) < 5_000


def test_chromium_prints_the_page_on_a4(
    camera: ModuleType, alliance: InProcessAlliance, client: httpx.Client, tmp_path: Path,
    approved: dict[str, Any],
) -> None:
    html = tmp_path / "report.html"
    html.write_text(page_of(alliance, client, approved["query_id"]), encoding="utf-8")
    pdf = camera.capture(html, tmp_path / "report.pdf").read_bytes()
    assert pdf.startswith(b"%PDF-")
    boxes = re.findall(rb"/MediaBox \[0 0 ([\d.]+) ([\d.]+)\]", pdf)
    assert boxes  # Chromium's default paper is US Letter: A4 comes from the page's @page
    for width, height in boxes:
        assert abs(float(width) - A4_POINTS[0]) < 1 and abs(float(height) - A4_POINTS[1]) < 1
