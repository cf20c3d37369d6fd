"""What the admin API's routes depend on: the coordinator's services and the caller's role.

Roles are checked by dependencies, one per route (``Annotated`` aliases below), so a route's
signature states who may call it; docs/security.md's permission matrix lists them all and a
test checks every cell over real HTTP.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from coordinator.admission import AdmissionService
from coordinator.grants import GrantStore
from coordinator.ledger import AuditLedger
from coordinator.model_registry import ModelRegistry
from coordinator.policy import PolicyStore
from coordinator.principals import Principal, PrincipalStore, Role
from coordinator.product_catalog import ProductCatalog
from coordinator.registry import MemberRegistry
from coordinator.training.runs import TrainingRuns
from fedcredit.clock import Clock, system_clock
from fedcredit.errors import AuthenticationError, PermissionDeniedError
from fedcredit.settings_base import Environment
from fedcredit.sqlite import SqliteDatabase

if TYPE_CHECKING:  # coordinator.server will import this package to serve the admin API
    from coordinator.server import CoordinatorCore
    from coordinator.settings import CoordinatorSettings


@dataclass(frozen=True)
class AdminContext:
    """Everything the routes need; shares the core's database with the gRPC services, so an
    admin change and the members' view of it are one state."""

    db: SqliteDatabase
    registry: MemberRegistry
    admission: AdmissionService
    policies: PolicyStore
    ledger: AuditLedger
    principals: PrincipalStore
    grants: GrantStore
    models: ModelRegistry
    training: TrainingRuns
    products: ProductCatalog
    environment: Environment
    #: How long suspension and revocation wait for online members to enforce them.
    propagation_timeout_ms: int
    clock: Clock

    @classmethod
    def from_core(cls, core: CoordinatorCore, settings: CoordinatorSettings,
                  clock: Clock = system_clock) -> AdminContext:
        principals = PrincipalStore(core.db, core.ledger, clock)
        return cls(
            db=core.db, registry=core.registry, admission=core.admission,
            policies=core.policies, ledger=core.ledger, principals=principals,
            grants=GrantStore(core.db, core.ledger, principals, clock), models=core.models,
            training=core.training, products=core.products,
            environment=settings.environment,
            propagation_timeout_ms=settings.propagation_timeout_ms, clock=clock,
        )


def get_context(request: Request) -> AdminContext:
    context: AdminContext = request.app.state.context
    return context


Context = Annotated[AdminContext, Depends(get_context)]
_bearer = HTTPBearer(auto_error=False, scheme_name="AdminToken",
                     description="An admin API token, `Authorization: Bearer fca_<id>_<secret>`; "
                                 "`fedcredit alliance init` prints the first admin's.")


def authenticate(
    context: Context,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(_bearer)],
) -> Principal:
    if credentials is None:
        raise AuthenticationError("missing admin token (Authorization: Bearer fca_...)")
    return context.principals.authenticate(credentials.credentials)


def allow(*roles: Role) -> Callable[[Principal], Principal]:
    """A dependency that admits only callers in ``roles``."""
    allowed = frozenset(roles)

    def check(principal: Annotated[Principal, Depends(authenticate)]) -> Principal:
        if principal.role not in allowed:
            names = " or ".join(sorted(r.value for r in allowed))
            raise PermissionDeniedError(f"this action is for the {names} role; you are "
                                        f"{principal.role.value}")
        return principal

    return check


Anyone = Annotated[Principal, Depends(authenticate)]
Admin = Annotated[Principal, Depends(allow(Role.ADMIN))]
Regulator = Annotated[Principal, Depends(allow(Role.REGULATOR))]
AdminOrRegulator = Annotated[Principal, Depends(allow(Role.ADMIN, Role.REGULATOR))]
#: Readers of a case: a regulator (any case) or a judicial authority (its own cases only,
#: enforced by :meth:`coordinator.grants.GrantStore.readable_grants`).
CaseReader = Annotated[Principal, Depends(allow(Role.REGULATOR, Role.JUDICIAL))]
