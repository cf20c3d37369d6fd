"""Prometheus metrics, one registry per app (no process-wide globals)."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram


@dataclass
class ApiMetrics:
    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.evaluation_seconds = Histogram(
            "fedcredit_evaluation_seconds",
            "Latency of joint evaluations that produced a report.",
            buckets=(0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2.5, 5, 10),
            registry=self.registry,
        )
        self.errors = Counter(
            "fedcredit_api_errors_total",
            "API requests that failed, by stable error code.",
            ["code"],
            registry=self.registry,
        )
