"""The coordinator's admin API (FastAPI): ``create_admin_app(AdminContext.from_core(...))``."""

from coordinator.api.app import create_admin_app
from coordinator.api.deps import AdminContext

__all__ = ["AdminContext", "create_admin_app"]
