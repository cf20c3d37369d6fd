"""A small synthetic alliance population for the demo, the tests and the benchmark.

One latent creditworthiness per person drives what each institution sees (income, spending,
borrowing, delinquency) and a default label; customer bases overlap, so no institution sees
the whole picture. Multi-lender borrowers default more. Deterministic by seed.

The bootstrap model (until federated training lands) is a plaintext L2 logistic regression
fitted on the pooled features, then split into one :class:`~scoring.model.ModelSlice` per
member. That pooling happens only here, in the demo's data generator, never in the network.
"""

from __future__ import annotations

import csv
import secrets
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fedcredit.demo.snapshots import PooledResult
from fedcredit.files import write_json
from fedcredit.launcher import LocalAlliance, NodeSpec
from mpc.pseudonym import IdentifierType, SubjectKey, cn_check_character
from node.ingest.snapshot import EXPOSURE_COLUMNS
from scoring.model import FeatureWeight, ModelSlice
from scoring.reason_slots import ReasonSlot
from scoring.scorecard import ScoreScale

MODEL_VERSION = "v1"


@dataclass(frozen=True)
class FeatureSpec:
    name: str
    loading: float  # how strongly the latent risk moves the feature
    base: float
    spread: float
    #: The adverse-reason group the model file names for it (these names are not the
    #: pipeline's catalog, so the groups are explicit; None: never a reason).
    reason: ReasonSlot | None = None


_PAY, _OWED, _HIST = (ReasonSlot.PAYMENT_HISTORY, ReasonSlot.AMOUNTS_OWED,
                      ReasonSlot.CREDIT_HISTORY)


@dataclass(frozen=True)
class InstitutionProfile:
    member_id: str
    display_name: str
    coverage: float  # share of the population that are its customers
    lends: float     # share of its customers that borrow from it
    features: tuple[FeatureSpec, ...]


PROFILES: tuple[InstitutionProfile, ...] = (
    InstitutionProfile("bank", "Harbor Bank", 0.70, 0.45, (
        FeatureSpec("bank_income_monthly", -0.55, 8000.0, 2500.0),
        FeatureSpec("bank_balance_avg", -0.60, 20000.0, 9000.0, _OWED),
        FeatureSpec("bank_overdraft_days", 0.50, 2.0, 2.0, _PAY),
    )),
    InstitutionProfile("finco", "Quickline Consumer Finance", 0.40, 0.90, (
        FeatureSpec("finco_max_dpd", 0.70, 8.0, 10.0, _PAY),
        FeatureSpec("finco_repayment_ratio", -0.65, 0.85, 0.12, _PAY),
        FeatureSpec("finco_loan_count", 0.35, 1.5, 1.0, ReasonSlot.NEW_CREDIT),
    )),
    InstitutionProfile("shop", "Bazaar Pay (e-commerce)", 0.60, 0.35, (
        FeatureSpec("shop_spend_monthly", 0.25, 1500.0, 700.0),
        FeatureSpec("shop_bnpl_late_rate", 0.60, 0.08, 0.07, _PAY),
        FeatureSpec("shop_returns_rate", 0.15, 0.10, 0.05),
    )),
    InstitutionProfile("telco", "Meridian Telecom", 0.80, 0.20, (
        FeatureSpec("telco_tenure_months", -0.40, 48.0, 24.0, _HIST),
        FeatureSpec("telco_late_bills_12m", 0.55, 1.0, 1.2, _PAY),
    )),
    InstitutionProfile("union", "Cooperative Credit Union", 0.30, 0.70, (
        FeatureSpec("union_savings_rate", -0.50, 0.12, 0.08),
        FeatureSpec("union_max_dpd", 0.60, 5.0, 8.0, _PAY),
    )),
    # Members 6-9: for benchmarks of larger alliances (routes of up to eight other members).
    InstitutionProfile("lease", "Northway Auto Leasing", 0.25, 0.85, (
        FeatureSpec("lease_missed_payments", 0.65, 0.5, 1.0, _PAY),
        FeatureSpec("lease_deposit_ratio", -0.40, 0.20, 0.08, _OWED),
    )),
    InstitutionProfile("micro", "Lantern Microfinance", 0.20, 0.90, (
        FeatureSpec("micro_max_dpd", 0.70, 6.0, 9.0, _PAY),
        FeatureSpec("micro_loans_12m", 0.40, 1.2, 1.0, ReasonSlot.NEW_CREDIT),
    )),
    InstitutionProfile("insure", "Keystone Insurance", 0.50, 0.10, (
        FeatureSpec("insure_lapsed_policies", 0.45, 0.3, 0.6, _PAY),
        FeatureSpec("insure_tenure_months", -0.35, 36.0, 20.0, _HIST),
    )),
    InstitutionProfile("utility", "Riverside Utilities", 0.75, 0.05, (
        FeatureSpec("utility_late_bills_12m", 0.50, 0.8, 1.0, _PAY),
        FeatureSpec("utility_tenure_months", -0.30, 60.0, 30.0, _HIST),
    )),
)
MAX_NODES = len(PROFILES)


@dataclass(frozen=True)
class InstitutionData:
    profile: InstitutionProfile
    has_record: np.ndarray          # bool [n]
    exposures: dict[str, np.ndarray]  # int64 [n], 0 where no record
    features: dict[str, np.ndarray]   # float [n], NaN where no record


@dataclass(frozen=True)
class Population:
    identifiers: list[str]
    id_type: IdentifierType
    latent_risk: np.ndarray
    defaulted: np.ndarray
    institutions: tuple[InstitutionData, ...]
    models: dict[str, ModelSlice]


def make_identifiers(rng: np.random.Generator, n: int) -> list[str]:
    """Unique, valid PRC resident identity numbers (synthetic region codes and dates)."""
    regions = ("110105", "310104", "440305", "330106", "510107", "420111")
    seen: set[str] = set()
    out: list[str] = []
    while len(out) < n:
        region = regions[int(rng.integers(len(regions)))]
        year = int(rng.integers(1960, 2004))
        month = int(rng.integers(1, 13))
        day = int(rng.integers(1, 29))
        seq = int(rng.integers(0, 1000))
        first17 = f"{region}{year:04d}{month:02d}{day:02d}{seq:03d}"
        ident = first17 + cn_check_character(first17)
        if ident not in seen:
            seen.add(ident)
            out.append(ident)
    return out


def _institution(
    rng: np.random.Generator, profile: InstitutionProfile, z: np.ndarray
) -> InstitutionData:
    n = len(z)
    has = rng.random(n) < profile.coverage
    borrows = has & (rng.random(n) < profile.lends + 0.15 * np.clip(z, -1, 2))
    feats: dict[str, np.ndarray] = {}
    for spec in profile.features:
        value = spec.base + spec.spread * (spec.loading * z + rng.normal(0, 0.8, n))
        feats[spec.name] = np.where(has, np.round(np.maximum(value, 0.0), 4), np.nan)
    risk = np.exp(0.8 * z)
    debt = np.where(borrows, np.round(rng.lognormal(9.2, 0.8, n) * risk * 100), 0)
    active = np.where(borrows, 1 + rng.poisson(0.6 * risk), 0)
    lines = np.where(has, rng.poisson(0.8 + 0.3 * risk), 0) + active
    dpd30 = np.where(borrows, rng.poisson(0.15 * risk * risk), 0)
    dpd90 = np.minimum(dpd30, np.where(borrows, rng.poisson(0.05 * risk * risk), 0))
    inquiries = np.where(has, rng.poisson(0.3 * risk), 0)
    exposures = {
        "outstanding_debt_cents": debt,
        "active_loans": active,
        "open_credit_lines": lines,
        "accounts_30dpd": dpd30,
        "accounts_90dpd": dpd90,
        "inquiries_90d": inquiries,
    }
    return InstitutionData(
        profile=profile,
        has_record=has,
        exposures={k: v.astype(np.int64) for k, v in exposures.items()},
        features=feats,
    )


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1.0, iters: int = 50) -> np.ndarray:
    """L2-regularized logistic regression by Newton's method; returns [intercept, w...]."""
    design = np.hstack([np.ones((len(x), 1)), x])
    beta = np.zeros(design.shape[1])
    penalty = np.full(design.shape[1], l2)
    penalty[0] = 0.0
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-design @ beta))
        grad = design.T @ (p - y) + penalty * beta
        hess = (design * (p * (1 - p))[:, None]).T @ design + np.diag(penalty)
        step = np.linalg.solve(hess, grad)
        beta -= step
        if np.max(np.abs(step)) < 1e-10:
            break
    return beta


def generate(subjects: int, nodes: int, seed: int) -> Population:
    if not 3 <= nodes <= MAX_NODES:
        raise ValueError(f"nodes must be between 3 and {MAX_NODES}")
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, 1.0, subjects)
    institutions = tuple(_institution(rng, p, z) for p in PROFILES[:nodes])
    lenders = sum((inst.exposures["active_loans"] > 0).astype(int) for inst in institutions)
    p_default = 1.0 / (1.0 + np.exp(-(-2.2 + 1.1 * z + 0.35 * np.maximum(lenders - 1, 0))))
    defaulted = (rng.random(subjects) < p_default).astype(np.int64)

    columns: list[np.ndarray] = []
    slots: list[tuple[str, str, float, float]] = []
    for inst in institutions:
        for name, values in inst.features.items():
            present = values[~np.isnan(values)]
            mean = float(present.mean())
            scale = float(present.std()) or 1.0
            columns.append(np.where(np.isnan(values), 0.0, (values - mean) / scale))
            slots.append((inst.profile.member_id, name, mean, scale))
    beta = fit_logistic(np.column_stack(columns), defaulted.astype(float))
    intercept = float(beta[0])
    models: dict[str, ModelSlice] = {}
    reasons = {f.name: f.reason for inst in institutions for f in inst.profile.features}
    for inst in institutions:
        member = inst.profile.member_id
        models[member] = ModelSlice(
            model_version=MODEL_VERSION,
            member_id=member,
            intercept=intercept,
            features=tuple(
                FeatureWeight(name=name, weight=float(beta[i + 1]), mean=mean, scale=scale,
                              reason=reasons[name])
                for i, (owner, name, mean, scale) in enumerate(slots)
                if owner == member
            ),
            scale=ScoreScale(),
        )
    return Population(
        identifiers=make_identifiers(rng, subjects),
        id_type=IdentifierType.CN_RESIDENT_ID,
        latent_risk=z,
        defaulted=defaulted,
        institutions=institutions,
        models=models,
    )


def pooled_result(population: Population, index: int) -> PooledResult:
    logit = next(iter(population.models.values())).intercept
    exposures = dict.fromkeys(EXPOSURE_COLUMNS, 0)
    groups = {slot.name.lower(): 0.0 for slot in ReasonSlot}
    count = lenders = 0
    for inst in population.institutions:
        if not inst.has_record[index]:
            continue
        count += 1
        lenders += int(inst.exposures["active_loans"][index] > 0)
        model = population.models[inst.profile.member_id]
        partial, slots = model.partials({k: float(v[index]) for k, v in inst.features.items()})
        logit += partial
        for slot, value in slots.items():
            groups[slot.name.lower()] += value
        for name in EXPOSURE_COLUMNS:
            exposures[name] += int(inst.exposures[name][index])
    return PooledResult(logit, exposures, count, lenders, groups)


def population_alliance(population: Population, workdir: Path) -> LocalAlliance:
    """This population's members as local processes, each loading its feature file."""
    files = write_member_files(population, workdir / "inputs")
    write_applicants(population, workdir / "inputs" / "applicants.csv")
    specs = [
        NodeSpec(
            member_id=inst.profile.member_id,
            display_name=inst.profile.display_name,
            features_file=files[inst.profile.member_id],
            model_dir=files[inst.profile.member_id].parent / "models",
            model_version=MODEL_VERSION,
        )
        for inst in population.institutions
    ]
    return LocalAlliance(
        workdir=workdir,
        nodes=specs,
        subject_key_hex=SubjectKey.generate().secret.hex(),
        api_key=secrets.token_urlsafe(24),
    )


def write_member_files(population: Population, out: Path) -> dict[str, Path]:
    """Per member: ``<out>/<member>/features.csv`` and ``<out>/<member>/models/v1.json``."""
    paths: dict[str, Path] = {}
    for inst in population.institutions:
        member = inst.profile.member_id
        folder = out / member
        (folder / "models").mkdir(parents=True, exist_ok=True)
        feature_names = list(inst.features)
        path = folder / "features.csv"
        with path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["subject_id", "id_type", *EXPOSURE_COLUMNS, *feature_names])
            for i in np.flatnonzero(inst.has_record):
                writer.writerow(
                    [
                        population.identifiers[i],
                        population.id_type.value,
                        *(int(inst.exposures[c][i]) for c in EXPOSURE_COLUMNS),
                        *(repr(float(inst.features[f][i])) for f in feature_names),
                    ]
                )
        write_json(folder / "models" / f"{MODEL_VERSION}.json", population.models[member].to_dict())
        paths[member] = path
    return paths


def write_applicants(population: Population, path: Path) -> None:
    """The applicant list a lender's loan system would hold (raw identifiers: requester only)."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["subject_id", "id_type"])
        for ident in population.identifiers:
            writer.writerow([ident, population.id_type.value])
