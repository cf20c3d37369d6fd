"""Keeps this node in the alliance: announces itself, heartbeats, keeps the directory and the
product catalog current and renews its certificate before it expires.

The heartbeat reply carries the coordinator's directory version; when it is newer than the one
enforced here, the node fetches the directory and immediately heartbeats again to confirm it,
which is what an admin's suspension waits for.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from fedcredit.errors import ErrorCode, FedCreditError
from fedcredit.tls import IdentityHolder, TlsIdentity
from mpc.paillier import PaillierPublicKey
from mpc.pki import create_csr
from mpc.signing import Signer
from node.coordinator_client import CoordinatorClient
from node.directory import MemberDirectory
from node.product_catalog import CatalogCopy

log = logging.getLogger(__name__)


class Membership:
    def __init__(
        self,
        client: CoordinatorClient,
        directory: MemberDirectory,
        identity: IdentityHolder,
        display_name: str,
        endpoint: str,
        key: PaillierPublicKey,
        renew_before_ms: int,
        clock: Callable[[], int],
        retry_s: float = 0.5,
        products: CatalogCopy | None = None,
    ) -> None:
        self._client = client
        self._directory = directory
        self._identity = identity
        self._announcement = (display_name, endpoint, key)
        self._renew_before_ms = renew_before_ms
        self._clock = clock
        self._retry_s = retry_s
        self._products = products
        self._stop = threading.Event()
        self.registered = threading.Event()
        self._thread = threading.Thread(target=self._run, name="membership", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def renew_if_due(self) -> bool:
        """Renew the certificate (new key) when it expires within the renewal window."""
        current = self._identity.current
        if current.certified.not_after_ms - self._clock() > self._renew_before_ms:
            return False
        signer = Signer.generate()
        pem = self._client.renew(create_csr(current.party_id, signer))
        renewed = TlsIdentity.from_pems(signer.to_pem(), pem, current.ca_pem, self._clock())
        self._identity.replace(renewed)
        log.info("renewed this member's certificate (serial %s, valid until %d)",
                 renewed.certified.serial, renewed.certified.not_after_ms)
        return True

    def sync(self) -> None:
        """One heartbeat; fetch the directory and confirm it if the coordinator has a newer one."""
        latest = self._client.heartbeat(self._directory.version)
        if latest > self._directory.version:
            self._client.heartbeat(self._directory.refresh())

    def _run(self) -> None:
        interval_s = self._retry_s
        while not self._stop.is_set():
            try:
                if not self.registered.is_set():
                    interval_s = self._client.announce(*self._announcement) / 1000
                    self._directory.refresh()
                    self.registered.set()
                    log.info("announced to the coordinator")
                self.sync()
                if self._products is not None:  # never raises: a failure keeps the last one
                    self._products.refresh_if_due()
                self.renew_if_due()
            except FedCreditError as exc:
                if exc.code is ErrorCode.UNKNOWN_MEMBER:
                    self.registered.clear()
                log.warning("coordinator: %s (%s); retrying", exc.detail, exc.code.value)
                self._stop.wait(self._retry_s)
                continue
            self._stop.wait(interval_s)
