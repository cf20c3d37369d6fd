"""Run a feature-holding party's role (guest or host) and describe what it produced.

Shared by the local party process (``fedcredit train party``) and a member node invited by the
coordinator (:mod:`node.training.member_session`). The result is the party's own: its slice,
and for the guest its private metrics, test scores and split; the caller decides what of it
(if anything) goes anywhere.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from fedcredit.federation import Peer
from fedcredit.training_spec import SessionSpec
from node.training.outputs import slice_document
from node.training.party_data import PartyTable
from scoring.scorecard import ScoreScale


def run_role(peer: Peer, spec: SessionSpec, table: PartyTable, overlap_only: bool = False,
             progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    role = spec.party(peer.name).role
    scale = ScoreScale()
    version = spec.model_version
    if role == "host":
        from node.training.host import run_host

        host = run_host(peer, spec, table)
        if host is None:
            return {"role": role, "overlap_only": True}
        return {
            "role": role, "seconds": host.seconds, "bytes_sent": host.bytes_sent,
            "slice": slice_document(version, peer.name, role, host.binnings, host.woe,
                                    host.weights, scale),
        }
    from node.training.guest import run_guest

    guest = run_guest(peer, spec, table, overlap_only=overlap_only, progress=progress)
    doc: dict[str, Any] = {
        "role": role,
        "overlap": guest.overlap,
        "rows": guest.rows,
        "seconds": guest.seconds,
        "seconds_training": guest.seconds_training,
        "bytes_sent": guest.bytes_sent,
        "stages": guest.stages,
        "warnings": list(table.warnings),
    }
    if overlap_only:
        return doc
    assert guest.metrics is not None
    doc.update({
        "best_epoch": guest.best_epoch,
        "history": list(guest.history),
        "metrics": guest.metrics.as_dict(),
        "guest_only": guest.guest_only.as_dict() if guest.guest_only else None,
        "feature_report": [asdict(r) for r in guest.feature_report],
        "split_ids": {k: [table.ids[i] for i in v] for k, v in guest.split_rows.items()},
        "test_scores": list(guest.test_scores),
        "test_labels": list(guest.test_labels),
        "slice": slice_document(version, peer.name, role, guest.binnings, guest.woe,
                                guest.weights, scale, intercept=guest.intercept),
    })
    return doc
