"""Model drafts as training would register them (metadata and digests, never weights)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from coordinator.model_registry import ModelDraft, SliceRecord


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def model_draft(version: str, requester: str, hosts: tuple[str, ...] = ("host-1", "host-2"),
                slice_digests: Mapping[str, str] | None = None) -> ModelDraft:
    """``requester`` as the guest, each of ``hosts`` as a host; digests default to made-up
    ones (``slice_digests`` gives the real SHA-256 of installed slice files)."""
    members = (requester, *hosts)
    digests = dict(slice_digests or {})
    return ModelDraft(
        version=version, requester_id=requester, engine="paillier",
        session_id=f"session-{version}",
        slices=tuple(SliceRecord(member, "guest" if member == requester else "host",
                                 digests.get(member, digest(f"{version}/{member}")),
                                 (f"{member}_f1", f"{member}_f2")) for member in members),
        metrics={"auc": 0.78125, "ks": 0.4375, "rows": 2400.0},
        fingerprints={member: digest(f"data/{member}") for member in members})
