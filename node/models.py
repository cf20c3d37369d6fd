"""This member's model slices, one JSON file per version (``<model_dir>/<version>.json``)."""

from __future__ import annotations

import json
import re
import threading
from pathlib import Path

from fedcredit.errors import ModelUnavailableError
from scoring.model import ModelSlice

_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class ModelCatalog:
    def __init__(self, model_dir: Path, member_id: str) -> None:
        self._dir = model_dir
        self._member_id = member_id
        self._cache: dict[str, ModelSlice] = {}
        self._lock = threading.Lock()

    def get(self, version: str) -> ModelSlice:
        with self._lock:
            cached = self._cache.get(version)
        if cached is not None:
            return cached
        if not _VERSION.match(version):
            raise ModelUnavailableError(f"model version {version!r} is not a valid name")
        path = self._dir / f"{version}.json"
        if not path.exists():
            raise ModelUnavailableError(f"model version {version} is not installed at this member")
        try:
            model = ModelSlice.from_dict(json.loads(path.read_text()))
        except (ValueError, KeyError, TypeError) as exc:
            raise ModelUnavailableError(f"model file for {version} is invalid: {exc}") from exc
        if model.model_version != version or model.member_id != self._member_id:
            raise ModelUnavailableError(
                f"model file for {version} belongs to another member or version"
            )
        with self._lock:
            self._cache[version] = model
        return model

    def requester_versions(self) -> list[str]:
        """The versions this member holds a requesting slice of (what it can plan with)."""
        held = []
        for path in sorted(self._dir.glob("*.json")):
            try:
                self.requester_slice(path.stem)
            except ModelUnavailableError:
                continue
            held.append(path.stem)
        return held

    def requester_slice(self, version: str) -> ModelSlice:
        """The slice this member needs to request with ``version``: its own, with the
        intercept (a trained host's slice has none: only the label holder requests)."""
        model = self.get(version)
        if not model.can_request:
            raise ModelUnavailableError(
                f"model {version} holds no intercept at this member: only the member that "
                "trained it with its labels can request evaluations with it"
            )
        return model
