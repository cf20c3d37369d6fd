"""The evaluation report as a printable HTML page for a loan officer's file.

One self-contained document (inline CSS and SVG, no script, no external asset) so that it prints
and archives the same anywhere, offline included. It is rendered with Jinja2 and autoescaping on
for the whole template rather than with ``html.escape`` at each call site: product names,
reasons and explanations come from policies, catalogs and other members, and a field added to the
page later is escaped without anyone having to remember to. The Python side only turns the
report into display strings and gauge geometry; the template holds the layout.

Only what the stored report holds is shown: it has no raw identifier (the query id is a random
id, the applicant appears nowhere), so neither has the page.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import ROUND_HALF_EVEN, Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined

from node.reports import EvaluationReport

SCORE_MIN, SCORE_MAX = 300, 900
_CENT = Decimal("0.01")

#: Labels of the exposures the report carries today; a key added later gets a label made from
#: its name (see :func:`exposure_label`), so the page never drops a figure it does not know.
EXPOSURE_LABELS: dict[str, str] = {
    "outstanding_debt": "Outstanding debt",
    "active_loans": "Active loans",
    "open_credit_lines": "Open credit lines",
    "accounts_30dpd": "Accounts 30+ days past due",
    "accounts_90dpd": "Accounts 90+ days past due",
    "inquiries_90d": "Credit inquiries, last 90 days",
    "institutions_with_active_loans": "Members holding an active loan",
    "blacklist_flags": "Members flagging the applicant",
}
#: Exposures that are money, whatever their value's type.
_MONEY_KEYS = re.compile(r"debt|amount|balance|limit")
#: Exposures a loan officer must not miss when they are not zero.
_ADVERSE_KEYS = frozenset({"accounts_30dpd", "accounts_90dpd", "blacklist_flags"})

_DECISIONS: dict[str, tuple[str, str]] = {
    "approve": ("Approved", "approve"),
    "refer": ("Referred for manual review", "refer"),
    "decline": ("Declined", "decline"),
}
_PLAN_OUTCOMES: dict[str, str] = {
    "planned": "Planned",
    "income_unknown": "Income unknown",
    "spending_unknown": "Spending unknown",
    "no_surplus": "No surplus",
    "unaffordable": "Unaffordable",
    "no_credit": "No credit",
}


def money(value: float | None) -> str:
    if value is None:
        return "—"
    return f"{_cents(value):,.2f}"


def percent(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value * 100:.{digits}f}%"


def _cents(value: float) -> Decimal:
    return Decimal(str(value)).quantize(_CENT, rounding=ROUND_HALF_EVEN)


def exposure_label(key: str) -> str:
    """The known label, else the key in words: ``lenders_with_active_loans`` reads "Lenders
    with active loans", ``accounts_60dpd`` "Accounts 60+ days past due"."""
    if key in EXPOSURE_LABELS:
        return EXPOSURE_LABELS[key]
    words = []
    for word in key.split("_"):
        if m := re.fullmatch(r"(\d+)dpd", word):
            words.append(f"{m[1]}+ days past due")
        elif m := re.fullmatch(r"(\d+)d", word):
            words.append(f"last {m[1]} days")
        elif word == "dpd":
            words.append("days past due")
        elif word:
            words.append(word)
    text = " ".join(words) or key
    return text[:1].upper() + text[1:]


def exposure_value(key: str, value: object) -> str:
    """Numbers grouped, money to the cent; lists and mappings (flags by kind, say) spelled out
    rather than shown as Python reprs."""
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "Yes" if value else "No"
    if isinstance(value, int | float) and _MONEY_KEYS.search(key):
        return money(float(value))
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{int(value):,}" if value.is_integer() else f"{value:,.2f}"
    if isinstance(value, list | tuple):
        return ", ".join(exposure_value("", v) for v in value) or "none"
    if isinstance(value, Mapping):
        return "; ".join(f"{exposure_label(str(k))}: {exposure_value(str(k), v)}"
                         for k, v in value.items()) or "none"
    return str(value)


def _adverse(key: str, value: object) -> bool:
    if key not in _ADVERSE_KEYS:
        return False
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value != 0
    return bool(value)


def gauge(score: int) -> dict[str, Any]:
    """The score dial's geometry: a half circle from 300 (left) to 900 (right), its needle and
    tick marks, computed here so that the template holds no trigonometry."""
    cx, cy, r = 150.0, 150.0, 110.0
    fraction = min(max((score - SCORE_MIN) / (SCORE_MAX - SCORE_MIN), 0.0), 1.0)

    def point(f: float, radius: float) -> tuple[float, float]:
        theta = math.pi * (1 - f)
        return round(cx + radius * math.cos(theta), 2), round(cy - radius * math.sin(theta), 2)

    ticks = []
    for value in range(SCORE_MIN, SCORE_MAX + 1, 100):
        f = (value - SCORE_MIN) / (SCORE_MAX - SCORE_MIN)
        (x1, y1), (x2, y2), (tx, ty) = point(f, r + 12), point(f, r + 18), point(f, r + 30)
        ticks.append({"x1": x1, "y1": y1, "x2": x2, "y2": y2, "tx": tx, "ty": ty + 4,
                      "label": value})
    tip, marker = point(fraction, r - 26), point(fraction, r)
    return {"cx": cx, "cy": cy, "r": r, "left": cx - r, "right": cx + r,
            "tip_x": tip[0], "tip_y": tip[1], "marker_x": marker[0], "marker_y": marker[1],
            "ticks": ticks}


def _when(doc: Mapping[str, Any]) -> str:
    """The stored report has ``created_at_ms``; the API's JSON (a lender app may keep that
    instead) has ``created_at`` in ISO 8601."""
    if "created_at_ms" in doc:
        at = datetime.fromtimestamp(int(doc["created_at_ms"]) / 1000, tz=UTC)
    else:
        at = datetime.fromisoformat(str(doc["created_at"]).replace("Z", "+00:00"))
    return at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _days(days: int) -> str:
    return "same day" if days == 0 else f"{days} day" + ("" if days == 1 else "s")


def _schedule(plan: Mapping[str, Any]) -> dict[str, Any]:
    rows = [{
        "number": i["number"], "due_month": i["due_month"], "payment": money(i["payment"]),
        "principal": money(i["principal"]), "interest": money(i["interest"]),
        "balance": money(i["balance"]),
    } for i in plan["installments"]]
    totals = {field: money(float(sum((_cents(i[field]) for i in plan["installments"]),
                                     Decimal(0))))
              for field in ("payment", "principal", "interest")}
    period = plan.get("period")
    largest = max((i["payment"] for i in plan["installments"]), default=None)
    return {
        "outcome": _PLAN_OUTCOMES.get(plan["outcome"], str(plan["outcome"])),
        "planned": bool(rows),
        "explanation": plan["explanation"],
        "principal": money(plan.get("principal")),
        "apr": percent(plan.get("apr")),
        "period": str(period) if period else "—",
        "count": len(rows),
        "largest": money(largest),
        "total_interest": money(plan.get("total_interest")),
        "rows": rows,
        "totals": totals,
    }


_GROUP_LABELS = {"payment_history": "Payment history", "amounts_owed": "Amounts owed",
                 "credit_history": "Length of credit history", "new_credit": "New credit"}


def _groups(groups: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The joint reason slots as bars: how far each group moves the log-odds of default from
    the average applicant's (right, red: against the applicant; left, green: in favour)."""
    values = {k: float(v) for k, v in groups.items()}
    scale = max([0.5, *(abs(v) for v in values.values())])
    return [{
        "label": _GROUP_LABELS.get(key, key.replace("_", " ").capitalize()),
        "value": f"{value:+.2f}",
        "width": round(50 * abs(value) / scale, 1),
        "against": value > 0,
    } for key, value in values.items()]


def _lending(lending: Mapping[str, Any]) -> dict[str, Any]:
    decision = str(lending["decision"])
    title, tone = _DECISIONS.get(decision, (decision.capitalize(), "refer"))
    limit = lending.get("credit_limit")
    products = [{
        "rank": p["rank"], "name": p["name"], "product_id": p["product_id"],
        "member_id": p["member_id"], "amount": money(p["offered_amount"]),
        "apr": percent(p["apr"]), "speed": _days(int(p["disbursement_days"])),
        "reason": p["reason"],
    } for p in lending.get("products") or []]
    plan = lending.get("plan")
    if products:
        best = products[0]
        offer, offer_note = best["amount"], f'at {best["apr"]} APR · {best["name"]}'
    elif decision == "decline":
        offer, offer_note = "None", "declined"
    else:
        offer, offer_note = "None", lending.get("products_note") or "no matching product"
    return {
        "decision": decision,
        "title": title,
        "tone": tone,
        "policy_version": lending.get("policy_version"),
        "grade": lending["grade"],
        "credit_limit": money(limit) if limit is not None else "Not set",
        "limit_note": None if limit is not None else "no verified income",
        "rules_fired": list(lending.get("rules_fired") or []),
        "rules_unevaluated": list(lending.get("rules_unevaluated") or []),
        "reasons": [{"code": r["code"], "text": r["text"]} for r in lending.get("reasons") or []],
        "groups": _groups(lending.get("reason_groups") or {}),
        "products": products,
        "products_note": lending.get("products_note"),
        "offer": offer,
        "offer_note": offer_note,
        "plan": _schedule(plan) if plan is not None else None,
    }


def page_context(report: EvaluationReport | Mapping[str, Any]) -> dict[str, Any]:
    """Everything the template shows, as display strings: the report in its stored form
    (``EvaluationReport.to_dict()``) or as ``GET /v1/evaluations/{id}`` returns it."""
    doc = report.to_dict() if isinstance(report, EvaluationReport) else report
    exposures = doc["exposures"]
    coverage = doc["coverage"]
    lending = doc.get("lending")
    return {
        "query_id": doc["query_id"],
        "member": doc["requester_id"],
        "created": _when(doc),
        "model_version": doc["model_version"],
        "purpose": str(doc["purpose"]).replace("_", " "),
        "consent_reference": doc.get("consent_reference") or "—",
        "requested_amount": money(doc.get("requested_amount")),
        "term_months": doc.get("term_months"),
        "score": int(doc["score"]),
        "default_probability": percent(doc["default_probability"], 1),
        "grade": doc["grade"],
        "institutions_with_records": doc.get("institutions_with_records"),
        "gauge": gauge(int(doc["score"])),
        "exposures": [{"label": exposure_label(key), "value": exposure_value(key, value),
                       "adverse": _adverse(key, value)} for key, value in exposures.items()],
        "coverage": {"asked": coverage["asked"], "answered": coverage["answered"],
                     "skipped": [{"member_id": s["member_id"], "error_code": s["error_code"]}
                                 for s in coverage["skipped"]]},
        "lending": _lending(lending) if lending is not None else None,
    }


@lru_cache(maxsize=1)
def _environment() -> Environment:
    # autoescape=True, not select_autoescape: the template's name ends in .j2, and every byte of
    # it is HTML. StrictUndefined: a misspelt field fails the render instead of printing blank.
    return Environment(loader=PackageLoader("node", "templates"), autoescape=True,
                       undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render_report_page(report: EvaluationReport | Mapping[str, Any]) -> str:
    """The complete HTML document for ``report``."""
    return _environment().get_template("report.html.j2").render(page_context(report))


def write_report_page(report: EvaluationReport | Mapping[str, Any], path: Path) -> Path:
    """Write the page to ``path`` (UTF-8) and return it: what the demo calls to leave a
    printable copy of a report next to its logs."""
    path.write_text(render_report_page(report), encoding="utf-8")
    return path
