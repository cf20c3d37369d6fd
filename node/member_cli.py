"""A short-lived coordinator client with this member's identity, for CLI commands."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fedcredit.clock import system_clock
from fedcredit.tls import IdentityHolder, TlsIdentity
from node.coordinator_client import CoordinatorClient
from node.settings import NodeSettings


@contextmanager
def member_client(settings: NodeSettings | None = None) -> Iterator[CoordinatorClient]:
    settings = settings or NodeSettings()
    identity = IdentityHolder(TlsIdentity.load(settings.identity_files, system_clock()))
    client = CoordinatorClient(settings.coordinator_address, identity,
                               settings.coordinator_timeout_ms)
    try:
        yield client
    finally:
        client.close()
