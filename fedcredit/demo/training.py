"""The bootstrap model of the demo and the benchmarks, trained on the members' snapshots.

Until federated training lands, the demo fits a plaintext logistic regression on the members'
feature snapshots joined by pseudonym (on one machine, in the demo only — never in the
network), then splits it into one :class:`~scoring.model.ModelSlice` per member. The same joined
data measures what the alliance is for: a model on joint features against the best model any
single institution could fit on its own features (AUC on a held-out split).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from node.ingest.snapshot import PSEUDONYM_COLUMN, verify_snapshot
from scoring.lending_policy import LendingPolicy, grade_of
from scoring.model import FeatureWeight, ModelSlice
from scoring.scorecard import Grade, ScoreScale, score_from_logit


@dataclass(frozen=True)
class MemberBlock:
    member_id: str
    features: tuple[str, ...]
    #: [subjects, features], NaN where absent or where the member has no record.
    values: np.ndarray
    has_record: np.ndarray  # bool [subjects]


@dataclass(frozen=True)
class JointData:
    """Labelled subjects (rows) and every member's features about them."""

    pseudonyms: tuple[bytes, ...]
    labels: np.ndarray  # int [subjects]
    blocks: tuple[MemberBlock, ...]


def load_joint(snapshots: Mapping[str, Path], labels: Mapping[bytes, int]) -> JointData:
    """Join the members' verified snapshots on the pseudonyms that have a label."""
    order = tuple(sorted(labels))
    index = {p: i for i, p in enumerate(order)}
    blocks = []
    for member, directory in snapshots.items():
        manifest = verify_snapshot(directory)
        table = pq.read_table(directory / "subjects")
        rows = np.array(
            [index.get(bytes(p), -1) for p in table.column(PSEUDONYM_COLUMN).to_pylist()]
        )
        keep = rows >= 0
        values = np.full((len(order), len(manifest.feature_names)), np.nan)
        for j, name in enumerate(manifest.feature_names):
            column = table.column(name).to_numpy(zero_copy_only=False).astype(float)
            values[rows[keep], j] = column[keep]
        has = np.zeros(len(order), dtype=bool)
        has[rows[keep]] = True
        blocks.append(MemberBlock(member, manifest.feature_names, values, has))
    return JointData(order, np.array([labels[p] for p in order], dtype=np.int64), tuple(blocks))


@dataclass(frozen=True)
class Standardized:
    matrix: np.ndarray  # z-scores, 0 where absent (= imputed at the mean)
    slots: tuple[tuple[str, str, float, float], ...]  # (member, feature, mean, scale)


def standardize(blocks: tuple[MemberBlock, ...], rows: np.ndarray) -> Standardized:
    """z-scores with means and scales from ``rows``; features with no spread are dropped."""
    columns: list[np.ndarray] = []
    slots: list[tuple[str, str, float, float]] = []
    for block in blocks:
        for j, name in enumerate(block.features):
            values = block.values[:, j]
            fitted = values[rows]
            fitted = fitted[~np.isnan(fitted)]
            if len(fitted) < 2 or float(fitted.std()) == 0.0:
                continue
            mean, scale = float(fitted.mean()), float(fitted.std())
            z = np.where(np.isnan(values), 0.0, (values - mean) / scale)
            columns.append(z)
            slots.append((block.member_id, name, mean, scale))
    matrix = np.column_stack(columns) if columns else np.zeros((len(rows), 0))
    return Standardized(matrix, tuple(slots))


def _fit(x: np.ndarray, y: np.ndarray) -> LogisticRegression:
    model = LogisticRegression(C=0.2, max_iter=2000)  # L2: dozens of features, few defaults
    model.fit(x, y)
    return model


def split(n: int, seed: int, holdout: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    cut = int(n * (1 - holdout))
    return np.sort(order[:cut]), np.sort(order[cut:])


def fit_model_slices(data: JointData, train: np.ndarray, version: str
                     ) -> dict[str, ModelSlice]:
    """A joint logistic regression on the training rows, as one slice per member."""
    std = standardize(data.blocks, train)
    model = _fit(std.matrix[train], data.labels[train])
    weights = model.coef_[0]
    intercept = float(model.intercept_[0])
    slices = {}
    for block in data.blocks:
        slices[block.member_id] = ModelSlice(
            model_version=version,
            member_id=block.member_id,
            intercept=intercept,
            features=tuple(
                FeatureWeight(name=name, weight=float(weights[i]), mean=mean, scale=scale)
                for i, (owner, name, mean, scale) in enumerate(std.slots)
                if owner == block.member_id
            ),
            scale=ScoreScale(),
        )
    return slices


@dataclass(frozen=True)
class AucReport:
    subjects: int
    default_rate: float
    joint_auc: float
    member_auc: Mapping[str, float]
    member_coverage: Mapping[str, float]

    @property
    def best_single(self) -> tuple[str, float]:
        member = max(self.member_auc, key=lambda m: self.member_auc[m])
        return member, self.member_auc[member]


def compare_auc(data: JointData, seed: int = 1) -> AucReport:
    """Held-out AUC of the joint model and of each member's model on its own features.

    Every model scores the same held-out applicants: a member that does not know an applicant
    can only give them its base rate, which is exactly its handicap without the alliance.
    """
    train, test = split(len(data.labels), seed)
    y_train, y_test = data.labels[train], data.labels[test]

    def auc_of(blocks: tuple[MemberBlock, ...]) -> float:
        std = standardize(blocks, train)
        if std.matrix.shape[1] == 0:
            return 0.5
        model = _fit(std.matrix[train], y_train)
        return float(roc_auc_score(y_test, model.decision_function(std.matrix[test])))

    return AucReport(
        subjects=len(data.labels),
        default_rate=float(data.labels.mean()),
        joint_auc=auc_of(data.blocks),
        member_auc={b.member_id: auc_of((b,)) for b in data.blocks},
        member_coverage={b.member_id: float(b.has_record.mean()) for b in data.blocks},
    )


@dataclass(frozen=True)
class GradeBand:
    grade: Grade
    floor: int  # the lowest score of the band (E: 0)
    applicants: int
    defaults: int
    mean_predicted: float  # the model's mean probability of default in the band

    @property
    def default_rate(self) -> float | None:
        return self.defaults / self.applicants if self.applicants else None


def grade_bands(data: JointData, policy: LendingPolicy, seed: int = 1) -> tuple[GradeBand, ...]:
    """Observed default rate per grade of the policy, on the held-out applicants, scored by the
    joint model fitted on the training rows (the model the demo's alliance evaluates with)."""
    train, test = split(len(data.labels), seed)
    std = standardize(data.blocks, train)
    model = _fit(std.matrix[train], data.labels[train])
    logits = model.decision_function(std.matrix[test])
    scale = ScoreScale()
    grades = [grade_of(score_from_logit(float(z), scale), policy) for z in logits]
    y = data.labels[test]
    bands = []
    for grade, floor in policy.grade_floors:
        mask = np.array([g is grade for g in grades], dtype=bool)
        predicted = 1.0 / (1.0 + np.exp(-logits[mask]))
        bands.append(GradeBand(grade, floor, int(mask.sum()), int(y[mask].sum()),
                               float(predicted.mean()) if mask.any() else 0.0))
    return tuple(bands)
