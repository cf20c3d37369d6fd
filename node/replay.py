"""Replay protection: each plan acts at most once at this node.

A plan lives at most ``max_plan_ttl_ms`` (the coordinator's cap), so remembering every query id
until its plan expires is enough. Plans issued before this process started are refused: the
previous process may have seen them and its memory is gone.
"""

from __future__ import annotations

import heapq
import threading

from fedcredit.errors import ErrorCode, FedCreditError
from fedcredit.plans import CLOCK_SKEW_MS
from fedcredit.protocol import Plan


class SeenPlans:
    def __init__(self, started_ms: int) -> None:
        self._started_ms = started_ms
        self._seen: dict[str, int] = {}
        self._expiry: list[tuple[int, str]] = []
        self._lock = threading.Lock()

    def admit(self, plan: Plan, now_ms: int) -> None:
        """Record the plan's first use here; PLAN_REPLAYED if it was used or may have been."""
        if plan.issued_unix_ms + CLOCK_SKEW_MS < self._started_ms:
            raise FedCreditError("the plan predates this node's start; it may have been used",
                                 code=ErrorCode.PLAN_REPLAYED)
        with self._lock:
            while self._expiry and self._expiry[0][0] <= now_ms:
                _, old = heapq.heappop(self._expiry)
                self._seen.pop(old, None)
            if plan.query_id in self._seen:
                raise FedCreditError("the plan was already used at this node",
                                     code=ErrorCode.PLAN_REPLAYED)
            self._seen[plan.query_id] = plan.expires_unix_ms
            heapq.heappush(self._expiry, (plan.expires_unix_ms, plan.query_id))

    def __len__(self) -> int:
        return len(self._seen)
