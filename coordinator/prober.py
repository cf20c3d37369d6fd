"""Measures each member's round-trip latency with gRPC health checks, for route ordering."""

from __future__ import annotations

import logging
import threading
import time

import grpc

from coordinator.registry import MemberRegistry
from fedcredit.clock import Clock
from fedcredit.transport import check_health, create_channel

log = logging.getLogger(__name__)


class LatencyProber:
    def __init__(
        self, registry: MemberRegistry, interval_ms: int, clock: Clock, timeout_s: float = 1.0
    ) -> None:
        self._registry = registry
        self._interval_s = interval_ms / 1000
        self._clock = clock
        self._timeout_s = timeout_s
        self._channels: dict[str, grpc.Channel] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="latency-prober", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for channel in self._channels.values():
            channel.close()

    def probe_once(self) -> None:
        for member in self._registry.members(self._clock()):
            channel = self._channels.get(member.endpoint)
            if channel is None:
                channel = self._channels[member.endpoint] = create_channel(member.endpoint)
            started = time.perf_counter()
            if check_health(channel, self._timeout_s):
                rtt_ms = (time.perf_counter() - started) * 1000
                self._registry.record_latency(member.member_id, rtt_ms)

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                self.probe_once()
            except Exception:
                log.exception("latency probe failed")
