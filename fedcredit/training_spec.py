"""What every party of one training session agrees on before it starts.

The launcher (``fedcredit train local``) or the coordinator writes one :class:`SessionSpec`;
each party process reads it. Nothing in it is secret: names, addresses, engine and
hyper-parameters.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from fedcredit.errors import ConfigurationError
from mpc.vector_he import EngineName
from scoring.logistic import GdSettings

ARBITER = "arbiter"
#: In an alliance session the arbiter (the coordinator) first sends every party the others'
#: addresses; every party ends by reporting its installed slice to the arbiter.
ROSTER_TAG = "roster"
DONE_TAG = "done"
_SESSION_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,47}$")


@dataclass(frozen=True)
class PartySpec:
    name: str
    role: str  # "guest" | "host" | "arbiter"
    address: str


@dataclass(frozen=True)
class BinningSpec:
    max_bins: int = 10
    min_bin_size: int = 50
    min_iv: float = 0.0
    engine: str = "spark"
    spark_master: str = "local[2]"

    def __post_init__(self) -> None:
        if self.max_bins < 2 or self.min_bin_size < 1:
            raise ConfigurationError("binning needs max_bins >= 2 and min_bin_size >= 1")
        if self.engine not in ("spark", "exact"):
            raise ConfigurationError("binning engine must be 'spark' or 'exact'")


@dataclass(frozen=True)
class SessionSpec:
    session_id: str
    engine: EngineName
    parties: tuple[PartySpec, ...]
    gd: GdSettings = field(default_factory=GdSettings)
    binning: BinningSpec = field(default_factory=BinningSpec)
    test_fraction: float = 0.3
    valid_fraction: float = 0.2
    min_overlap: int = 100
    split_seed: int | None = None
    timeout_s: float = 600.0
    paillier_bits: int = 2048

    def __post_init__(self) -> None:
        if not _SESSION_ID.match(self.session_id):  # it names files and a model version
            raise ConfigurationError("a session id is 1-48 letters, digits, '.', '_' or '-'")
        roles = [p.role for p in self.parties]
        if roles.count("guest") != 1 or roles.count("arbiter") != 1 or roles.count("host") < 1:
            raise ConfigurationError("a session has one guest, one arbiter and at least one host")
        if len({p.name for p in self.parties}) != len(self.parties):
            raise ConfigurationError("party names must be unique")
        if not (0 < self.test_fraction < 1 and 0 < self.valid_fraction < 1):
            raise ConfigurationError("test and validation fractions must be between 0 and 1")
        if self.paillier_bits < 2048:
            raise ConfigurationError("Paillier keys below 2048 bits are refused")

    @property
    def guest(self) -> str:
        return next(p.name for p in self.parties if p.role == "guest")

    @property
    def hosts(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parties if p.role == "host")

    @property
    def arbiter(self) -> str:
        return next(p.name for p in self.parties if p.role == "arbiter")

    @property
    def model_version(self) -> str:
        """The version the session's slices carry (and the registry registers them under)."""
        return f"trained-{self.session_id}"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.parties)

    def party(self, name: str) -> PartySpec:
        for p in self.parties:
            if p.name == name:
                return p
        raise ConfigurationError(f"no party {name!r} in session {self.session_id}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> SessionSpec:
        try:
            return cls(
                session_id=str(doc["session_id"]),
                engine=EngineName(doc["engine"]),
                parties=tuple(PartySpec(**p) for p in doc["parties"]),
                gd=GdSettings(**doc.get("gd", {})),
                binning=BinningSpec(**doc.get("binning", {})),
                test_fraction=float(doc.get("test_fraction", 0.3)),
                valid_fraction=float(doc.get("valid_fraction", 0.2)),
                min_overlap=int(doc.get("min_overlap", 100)),
                split_seed=doc.get("split_seed"),
                timeout_s=float(doc.get("timeout_s", 600.0)),
                paillier_bits=int(doc.get("paillier_bits", 2048)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigurationError(f"invalid training session spec: {exc}") from exc

    @classmethod
    def from_json(cls, text: str | bytes) -> SessionSpec:
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise ConfigurationError(f"invalid training session spec: {exc}") from exc
        if not isinstance(doc, dict):
            raise ConfigurationError("invalid training session spec: not an object")
        return cls.from_dict(doc)

    @classmethod
    def load(cls, path: Path) -> SessionSpec:
        try:
            return cls.from_dict(json.loads(path.read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise ConfigurationError(f"cannot read session spec {path}: {exc}") from exc
