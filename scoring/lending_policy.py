"""A lender's decision policy: admission rules, grade cutoffs, credit-limit multiples and the
installment share — versioned, loaded from YAML, refused at load with the line at fault.

```yaml
version: 3
rules:                      # any decline fires → decline; else any refer → refer; else approve
  - {id: DPD90, metric: accounts_90dpd, op: ">=", threshold: 1, outcome: decline}
  - {id: FLAGGED, metric: blacklist_flags, op: ">=", threshold: 1, outcome: refer}
  - {id: MULTI_LENDER, metric: institutions_with_active_loans, op: ">=", threshold: 3,
     outcome: refer}
  - {id: DEBT_TO_INCOME, metric: debt_to_income, op: ">", threshold: 0.5, outcome: refer}
grades: {A: 620, B: 580, C: 540, D: 500}       # score floors, strictly decreasing
limit_multiples: {A: 0.5, B: 0.4, C: 0.3, D: 0.2, E: 0.0}  # x verified annual income
max_installment_share: 0.4                      # of the monthly surplus
debt_service_rate: 0.03     # optional: monthly debt service assumed per unit of alliance debt
plan_apr: 0.18              # optional: the APR a plan is computed at when no product applies
reason_min_logit: 0.1       # optional: a reason group adds at least this much log-odds of
                            # default (x1.105 odds) before it is named as a reason
```
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from typing import Any

import yaml

from scoring.scorecard import Grade


class PolicyError(ValueError):
    """The policy file cannot be used; the message names the line at fault."""


class Outcome(StrEnum):
    APPROVE = "approve"
    REFER = "refer"
    DECLINE = "decline"


class Metric(StrEnum):
    """What a rule can test: the joint result's alliance-wide figures and the applicant's."""

    ACCOUNTS_90DPD = "accounts_90dpd"
    ACCOUNTS_30DPD = "accounts_30dpd"
    ACTIVE_LOANS = "active_loans"
    OPEN_CREDIT_LINES = "open_credit_lines"
    INQUIRIES_90D = "inquiries_90d"
    INSTITUTIONS_WITH_RECORDS = "institutions_with_records"
    #: Members holding an active loan of the applicant's (each member counts once).
    INSTITUTIONS_WITH_ACTIVE_LOANS = "institutions_with_active_loans"
    #: Members holding an unexpired blacklist flag on the applicant (private blacklist).
    BLACKLIST_FLAGS = "blacklist_flags"
    DEBT_TO_INCOME = "debt_to_income"  # alliance debt ÷ verified annual income
    SCORE = "score"


_OPS = {">": lambda a, b: a > b, ">=": lambda a, b: a >= b,
        "<": lambda a, b: a < b, "<=": lambda a, b: a <= b}


@dataclass(frozen=True)
class Rule:
    rule_id: str
    metric: Metric
    op: str
    threshold: float
    outcome: Outcome  # refer or decline

    def fires(self, value: float) -> bool:
        return bool(_OPS[self.op](value, self.threshold))


@dataclass(frozen=True)
class LendingPolicy:
    version: int
    rules: tuple[Rule, ...]
    grade_floors: tuple[tuple[Grade, int], ...]  # best grade first, strictly decreasing
    limit_multiples: Mapping[Grade, Decimal]
    max_installment_share: Decimal
    debt_service_rate: Decimal = Decimal("0.03")
    plan_apr: Decimal = Decimal("0.18")
    reason_min_logit: Decimal = Decimal("0.1")


DEFAULT_POLICY_YAML = """\
version: 2
rules:
  - {id: DPD90, metric: accounts_90dpd, op: ">=", threshold: 1, outcome: decline}
  - {id: FLAGGED_TWICE, metric: blacklist_flags, op: ">=", threshold: 2, outcome: decline}
  - {id: FLAGGED, metric: blacklist_flags, op: ">=", threshold: 1, outcome: refer}
  - {id: MULTI_LENDER, metric: institutions_with_active_loans, op: ">=", threshold: 3,
     outcome: refer}
  - {id: DEBT_TO_INCOME, metric: debt_to_income, op: ">", threshold: 0.5, outcome: refer}
  - {id: LOW_SCORE, metric: score, op: "<", threshold: 540, outcome: refer}
grades: {A: 620, B: 580, C: 540, D: 500}
limit_multiples: {A: 0.5, B: 0.4, C: 0.3, D: 0.2, E: 0.0}
max_installment_share: 0.4
"""


#: Fields a policy may leave out, with their defaults.
_OPTIONAL = {"debt_service_rate": 0.03, "plan_apr": 0.18, "reason_min_logit": 0.1}


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _mapping(node: yaml.Node, what: str) -> dict[str, tuple[Any, yaml.Node]]:
    if not isinstance(node, yaml.MappingNode):
        raise PolicyError(f"line {_line(node)}: {what} must be a mapping")
    out: dict[str, tuple[Any, yaml.Node]] = {}
    for key, value in node.value:
        name = str(key.value)
        if name in out:
            raise PolicyError(f"line {_line(key)}: {what}: {name!r} appears twice")
        out[name] = (yaml.safe_load(yaml.serialize(value)), value)
    return out


def _number(value: Any, node: yaml.Node, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise PolicyError(f"line {_line(node)}: {what} must be a number")
    return float(value)


def _rule(node: yaml.Node, seen: set[str]) -> Rule:
    fields = _mapping(node, "a rule")
    unknown = set(fields) - {"id", "metric", "op", "threshold", "outcome"}
    if unknown:
        raise PolicyError(f"line {_line(node)}: unknown rule field(s) {sorted(unknown)}")
    for required in ("id", "metric", "op", "threshold", "outcome"):
        if required not in fields:
            raise PolicyError(f"line {_line(node)}: a rule needs {required!r}")
    rule_id, id_node = fields["id"]
    if not isinstance(rule_id, str) or not rule_id:
        raise PolicyError(f"line {_line(id_node)}: a rule id is a non-empty string")
    if rule_id in seen:
        raise PolicyError(f"line {_line(id_node)}: rule id {rule_id!r} is used twice")
    seen.add(rule_id)
    metric, metric_node = fields["metric"]
    try:
        parsed_metric = Metric(metric)
    except ValueError:
        raise PolicyError(f"line {_line(metric_node)}: unknown metric {metric!r} (one of "
                          f"{', '.join(m.value for m in Metric)})") from None
    op, op_node = fields["op"]
    if op not in _OPS:
        raise PolicyError(f"line {_line(op_node)}: op must be one of {', '.join(_OPS)}")
    threshold = _number(*fields["threshold"], "threshold")
    if threshold < 0 and parsed_metric is not Metric.SCORE:
        raise PolicyError(f"line {_line(fields['threshold'][1])}: {metric} cannot be negative")
    outcome, outcome_node = fields["outcome"]
    if outcome not in (Outcome.REFER.value, Outcome.DECLINE.value):
        raise PolicyError(f"line {_line(outcome_node)}: a rule's outcome is refer or decline")
    return Rule(rule_id, parsed_metric, op, threshold, Outcome(outcome))


def _grades(node: yaml.Node) -> tuple[tuple[Grade, int], ...]:
    fields = _mapping(node, "grades")
    floors = []
    for name, (value, value_node) in fields.items():
        try:
            grade = Grade(name)
        except ValueError:
            raise PolicyError(f"line {_line(value_node)}: unknown grade {name!r}") from None
        if grade is Grade.E:
            raise PolicyError(f"line {_line(value_node)}: E has no floor (it is the rest)")
        floors.append((grade, int(_number(value, value_node, f"the floor of {name}")),
                       value_node))
    order = [g for g in Grade if g is not Grade.E]
    if [g for g, _, _ in floors] != order:
        raise PolicyError(f"line {_line(node)}: grades must list {', '.join(order)} in order")
    for (_, high, _), (grade, low, low_node) in itertools.pairwise(floors):
        if low >= high:
            raise PolicyError(f"line {_line(low_node)}: the floor of {grade} ({low}) must be "
                              f"below the grade above it ({high})")
    return (*((g, f) for g, f, _ in floors), (Grade.E, 0))


def load_policy(text: str, source: str = "policy") -> LendingPolicy:
    """Parse and check a policy; :class:`PolicyError` names the line at fault."""
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise PolicyError(f"{source}: {where}not valid YAML") from None
    if root is None:
        raise PolicyError(f"{source}: the policy is empty")
    try:
        fields = _mapping(root, "the policy")
        unknown = set(fields) - {"version", "rules", "grades", "limit_multiples",
                                 "max_installment_share", *_OPTIONAL}
        if unknown:
            raise PolicyError(f"line {_line(root)}: unknown field(s) {sorted(unknown)}")
        for required in ("version", "rules", "grades", "limit_multiples",
                         "max_installment_share"):
            if required not in fields:
                raise PolicyError(f"line {_line(root)}: {required!r} is required")
        version, version_node = fields["version"]
        if isinstance(version, bool) or not isinstance(version, int) or version < 1:
            raise PolicyError(f"line {_line(version_node)}: version is a positive integer")
        rules_node = fields["rules"][1]
        if not isinstance(rules_node, yaml.SequenceNode):
            raise PolicyError(f"line {_line(rules_node)}: rules must be a list")
        seen: set[str] = set()
        rules = tuple(_rule(item, seen) for item in rules_node.value)
        grades = _grades(fields["grades"][1])
        multiples: dict[Grade, Decimal] = {}
        for name, (value, value_node) in _mapping(fields["limit_multiples"][1],
                                                  "limit_multiples").items():
            try:
                grade = Grade(name)
            except ValueError:
                raise PolicyError(f"line {_line(value_node)}: unknown grade {name!r}") from None
            number = _number(value, value_node, f"the multiple of {name}")
            if number < 0:
                raise PolicyError(f"line {_line(value_node)}: a multiple cannot be negative")
            multiples[grade] = Decimal(str(number))
        if set(multiples) != set(Grade):
            raise PolicyError(f"line {_line(fields['limit_multiples'][1])}: limit_multiples "
                              f"needs every grade ({', '.join(Grade)})")
        ordered = [multiples[g] for g in Grade]
        if any(worse > better for better, worse in itertools.pairwise(ordered)):
            raise PolicyError(f"line {_line(fields['limit_multiples'][1])}: a worse grade "
                              "cannot get a larger multiple")
        share, share_node = fields["max_installment_share"]
        share_value = _number(share, share_node, "max_installment_share")
        if not 0 < share_value <= 1:
            raise PolicyError(f"line {_line(share_node)}: max_installment_share is in (0, 1]")
        optional = {}
        for name, default in _OPTIONAL.items():
            value, value_node = fields.get(name, (default, root))
            number = _number(value, value_node, name)
            if not 0 <= number <= 1:
                raise PolicyError(f"line {_line(value_node)}: {name} is a fraction in [0, 1]")
            optional[name] = Decimal(str(number))
    except PolicyError as exc:
        raise PolicyError(f"{source}: {exc}") from None
    return LendingPolicy(version, rules, grades, multiples, Decimal(str(share_value)),
                         **optional)


def default_policy() -> LendingPolicy:
    return load_policy(DEFAULT_POLICY_YAML, "default policy")


def grade_of(score: int, policy: LendingPolicy) -> Grade:
    for grade, floor in policy.grade_floors:
        if score >= floor:
            return grade
    return Grade.E
