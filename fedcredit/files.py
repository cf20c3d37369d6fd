"""Small file helpers with the durability and permissions key material needs."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def write_secret(path: Path, data: bytes) -> None:
    """Write a key file readable by its owner only (0600), atomically and durably."""
    write_atomic(path, data, mode=0o600)


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(tmp, mode)
    os.replace(tmp, path)


def write_json(path: Path, doc: Any) -> None:
    write_atomic(path, (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode())
