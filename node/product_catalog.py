"""This node's copy of the alliance's loan product catalog, for the products its evaluations list.

Fetched from the coordinator once the node has announced itself, then at most every
``refresh_ms`` alongside the heartbeat; each fetch names the version held, and the coordinator
answers "unchanged" or sends the whole catalog. A failed fetch keeps the last catalog: a lender's
evaluation never fails because the catalog could not be refreshed. Products of a member that is
not active in this node's directory (suspended, revoked) are left out of matching.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from fedcredit.errors import FedCreditError
from node.directory import MemberDirectory
from scoring.products import Product

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CatalogView:
    version: int
    products: tuple[Product, ...]


#: Asks the coordinator for the catalog given the version held; None: unchanged.
CatalogFetch = Callable[[int], CatalogView | None]


class CatalogCopy:
    def __init__(self, fetch: CatalogFetch, member_active: Callable[[str], bool],
                 refresh_ms: int, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._fetch = fetch
        self._member_active = member_active
        self._refresh_s = refresh_ms / 1000
        self._monotonic = monotonic
        self._view = CatalogView(0, ())
        self._lock = threading.Lock()
        self._last_attempt: float | None = None

    @property
    def version(self) -> int:
        return self._view.version

    def products(self) -> tuple[Product, ...]:
        """The catalog's products whose member is active in the directory."""
        return tuple(p for p in self._view.products if self._member_active(p.member_id))

    def refresh(self) -> bool:
        """Fetch the catalog if the coordinator has another version; True if it changed.
        A failure is logged and the last catalog kept."""
        with self._lock:
            self._last_attempt = self._monotonic()
            held = self._view.version
            try:
                view = self._fetch(held)
            except FedCreditError as exc:
                log.warning("product catalog: kept version %d (%s: %s)", held, exc.code.value,
                            exc.detail)
                return False
            if view is None:
                return False
            self._view = view
        log.info("product catalog: version %d, %d products", view.version, len(view.products))
        return True

    def refresh_if_due(self) -> bool:
        """:meth:`refresh` if it never ran or last ran ``refresh_ms`` ago or more."""
        last = self._last_attempt
        if last is not None and self._monotonic() - last < self._refresh_s:
            return False
        return self.refresh()


def active_in(directory: MemberDirectory) -> Callable[[str], bool]:
    """Whether a member is active in ``directory`` (unknown members are not)."""
    def active(member_id: str) -> bool:
        try:
            return directory.member(member_id).active
        except FedCreditError:
            return False

    return active
