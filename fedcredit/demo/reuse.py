"""Re-running the demo in the same ``--workdir`` reuses its ingested snapshots.

The population is deterministic in (subjects, institutions, seed), so a second run with the
same three numbers would generate and ingest exactly what is already there. What makes the
snapshots reusable is the subject key they were pseudonymized with: it is kept next to them
(``subject-key``, 0600) together with a record of what was built (``demo-inputs.json``). The
alliance's own state (CA, certificates, ledger) is reused as the launcher finds it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from fedcredit.files import write_json, write_secret
from mpc.pseudonym import SubjectKey

INPUTS_FILE = "demo-inputs.json"
KEY_FILE = "subject-key"


@dataclass(frozen=True)
class PreparedInputs:
    key: SubjectKey
    snapshots: dict[str, Path]


def reusable(workdir: Path, subjects: int, nodes: int, seed: int) -> PreparedInputs | None:
    """The snapshots and key of an earlier run with the same population, if complete."""
    try:
        doc = json.loads((workdir / INPUTS_FILE).read_text())
        key = SubjectKey.from_hex((workdir / KEY_FILE).read_text().strip())
    except (OSError, ValueError):
        return None
    if [doc.get("subjects"), doc.get("nodes"), doc.get("seed")] != [subjects, nodes, seed]:
        return None
    snapshots = {member: Path(path) for member, path in doc.get("snapshots", {}).items()}
    if len(snapshots) != nodes or not all((p / "manifest.json").exists()
                                          for p in snapshots.values()):
        return None
    return PreparedInputs(key, snapshots)


def remember(workdir: Path, subjects: int, nodes: int, seed: int, key: SubjectKey,
             snapshots: dict[str, Path]) -> None:
    write_secret(workdir / KEY_FILE, key.secret.hex().encode())
    write_json(workdir / INPUTS_FILE, {
        "subjects": subjects, "nodes": nodes, "seed": seed,
        "snapshots": {member: str(path) for member, path in snapshots.items()},
    })
