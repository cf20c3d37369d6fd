"""Plaintext logistic regression and the metrics a credit model is judged by.

Two fits, both pure:

* :func:`fit_pooled` — the reference a federated model is measured against: ordinary logistic
  regression (exact sigmoid, L2 on the weights, not the intercept) on all features pooled, solved
  to convergence by scikit-learn. Only experiments on one machine can pool; the network never does.
* :func:`fit_taylor_gd` — the same algorithm the federated protocol runs (first-order Taylor
  loss, full-batch gradient descent with heavy-ball momentum, early stopping on the validation
  loss), in the clear. The protocol must reproduce it to rounding, which is how its
  losslessness is tested.

The Taylor loss replaces ``log(1 + e^{-s z})`` by ``log 2 - s z / 2 + z² / 8`` (``s = 2y - 1``);
its gradient ``(0.5 + z/4 - y)·x`` is linear in the logit, which is what lets every step run
under additively homomorphic encryption.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class GdSettings:
    """Optimizer settings shared by the federated protocol and its plaintext replica."""

    l2: float = 0.01
    learning_rate: float = 4.0  # WOE features are small (|WOE| < 3, low variance)
    momentum: float = 0.5
    max_epochs: int = 30
    patience: int = 3
    tolerance: float = 1e-5

    def __post_init__(self) -> None:
        if self.l2 < 0 or self.learning_rate <= 0 or not 0 <= self.momentum < 1:
            raise ValueError("l2 >= 0, learning_rate > 0 and 0 <= momentum < 1 are required")
        if self.max_epochs < 1 or self.patience < 1:
            raise ValueError("max_epochs and patience must be at least 1")


@dataclass(frozen=True)
class LinearModel:
    intercept: float
    weights: FloatArray

    def logits(self, x: FloatArray) -> FloatArray:
        return np.asarray(self.intercept + x @ self.weights, dtype=float)


def taylor_loss(z: FloatArray, y: IntArray) -> float:
    """Mean first-order Taylor logistic loss (what the protocol minimizes)."""
    return float(np.mean(math.log(2.0) - (y - 0.5) * z + z * z / 8.0))


def fit_taylor_gd(
    x_train: FloatArray,
    y_train: IntArray,
    x_valid: FloatArray,
    y_valid: IntArray,
    settings: GdSettings,
) -> tuple[LinearModel, int]:
    """Plaintext replica of the federated optimizer; returns the best model and its epoch.

    Epoch e evaluates the validation loss of w_e, decides (:func:`early_stopping`), and unless
    stopping takes one gradient step (epoch 0 is the zero model).
    """
    n, d = x_train.shape
    a = np.hstack([np.ones((n, 1)), x_train])
    av = np.hstack([np.ones((x_valid.shape[0], 1)), x_valid])
    w = np.zeros(d + 1)
    v = np.zeros(d + 1)
    reg = np.ones(d + 1) * settings.l2
    reg[0] = 0.0
    best = (math.inf, w.copy(), 0)
    stale = 0
    rate = settings.learning_rate
    for epoch in range(settings.max_epochs + 1):
        loss = taylor_loss(av @ w, y_valid)
        decision = early_stopping(loss, best[0], stale, settings)
        stale = decision.stale
        if decision.best:
            best = (loss, w.copy(), epoch)
        if decision.stop or epoch == settings.max_epochs:
            break
        if decision.back_off:  # no step from the overshot weights: start again from the best
            w, v, rate = best[1].copy(), np.zeros(d + 1), rate / 2
            continue
        residual = 0.5 + 0.25 * (a @ w) - y_train
        grad = a.T @ residual / n + reg * w
        v = settings.momentum * v - rate * grad
        w = w + v
    _, wb, epoch = best
    return LinearModel(float(wb[0]), wb[1:].copy()), epoch


@dataclass(frozen=True)
class StopDecision:
    best: bool  # this epoch's weights are the best so far
    stop: bool
    back_off: bool  # the loss rose: restart from the best weights with half the step
    stale: int


def early_stopping(loss: float, best_loss: float, stale: int, settings: GdSettings
                   ) -> StopDecision:
    """One epoch's verdict, shared by the protocol (at the guest) and the replica.

    Improvement by ``tolerance`` resets the count; ``patience`` epochs without one stop; a loss
    above the best (an overshooting step) also sends everyone back to the best weights with
    half the learning rate (the next epoch steps from there), so a step size too large for
    the data cannot ruin a run.
    """
    if loss < best_loss - settings.tolerance:
        return StopDecision(True, False, False, 0)
    stale += 1
    return StopDecision(False, stale >= settings.patience,
                        loss > best_loss + settings.tolerance, stale)


def fit_pooled(x: FloatArray, y: IntArray, l2: float) -> LinearModel:
    """Exact-sigmoid L2 logistic regression to convergence (the pooled reference)."""
    from sklearn.linear_model import LogisticRegression  # heavy: only when fitting

    c = 1.0 / (l2 * len(y)) if l2 > 0 else 1e12
    model = LogisticRegression(C=c, max_iter=5000, tol=1e-8)
    model.fit(x, y)
    return LinearModel(float(model.intercept_[0]), np.asarray(model.coef_[0], dtype=float))


@dataclass(frozen=True)
class Metrics:
    auc: float
    ks: float
    n: int
    default_rate: float

    def as_dict(self) -> dict[str, float | int]:
        return {
            "auc": round(self.auc, 6),
            "ks": round(self.ks, 6),
            "n": self.n,
            "default_rate": round(self.default_rate, 6),
        }


def evaluate(scores: FloatArray, y: IntArray) -> Metrics:
    """AUC and KS of risk scores (higher = riskier) against the labels."""
    from sklearn.metrics import roc_auc_score, roc_curve  # heavy: only when measuring

    if len(np.unique(y)) < 2:
        raise ValueError("both classes are needed to measure AUC and KS")
    fpr, tpr, _ = roc_curve(y, scores)
    return Metrics(
        auc=float(roc_auc_score(y, scores)),
        ks=float(np.max(tpr - fpr)),
        n=len(y),
        default_rate=float(np.mean(y)),
    )
