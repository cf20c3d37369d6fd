"""Measures each member's round-trip latency with gRPC health checks, for route ordering.

Probes go over mutual TLS with the coordinator's identity and check that the endpoint is the
member it claims to be (the certificate's name), so a member cannot look fast by announcing
someone else's endpoint.
"""

from __future__ import annotations

import logging
import threading
import time

import grpc

from coordinator.registry import MemberRegistry, Membership
from fedcredit.clock import Clock
from fedcredit.tls import IdentityHolder, target_name_option
from fedcredit.transport import check_health, create_channel
from mpc.pki import CertRole

log = logging.getLogger(__name__)


class LatencyProber:
    def __init__(
        self, registry: MemberRegistry, identity: IdentityHolder, interval_ms: int, clock: Clock,
        timeout_s: float = 1.0,
    ) -> None:
        self._registry = registry
        self._identity = identity
        self._interval_s = interval_ms / 1000
        self._clock = clock
        self._timeout_s = timeout_s
        self._channels: dict[tuple[str, str, int], grpc.Channel] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="latency-prober", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for channel in self._channels.values():
            channel.close()

    def _channel(self, member_id: str, endpoint: str) -> grpc.Channel:
        key = (member_id, endpoint, self._identity.generation)
        channel = self._channels.get(key)
        if channel is None:
            for stale in [k for k in self._channels if k[:2] == key[:2]]:
                self._channels.pop(stale).close()
            channel = self._channels[key] = create_channel(
                endpoint, self._identity.channel_credentials(),
                target_name_option(member_id, CertRole.MEMBER))
        return channel

    def probe_once(self) -> None:
        for member in self._registry.members(self._clock()):
            if member.membership is not Membership.ACTIVE or not member.endpoint:
                continue
            channel = self._channel(member.member_id, member.endpoint)
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
