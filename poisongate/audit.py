"""The post-training audit: which accepted rows pulled the candidate away from the golden holdout.

Influence is TracIn (Pruthi et al. 2020) over the candidate's training trajectory (its Orbax checkpoints): a
gradient step on row i at checkpoint c changes a holdout loss L by about -lr <grad l_i(c), grad L(c)>, so a row's
harm to L is the sum over checkpoints of lr times minus that dot product. L is each class's holdout loss and a
row's harm the largest over classes: each row's dot with one direction per class is a forward-mode derivative
(`gradient_dots`: jitted, over chunks of rows).

Tonight's rows are judged against the trusted rows' harm (trained on alike, so exchangeable with clean rows
under the null) by a conformal p-value; a row at or below audit.false_alarm_rate is flagged, so a clean batch
has at most that share flagged in expectation, over draws of the trusted rows (with one fixed reference, a
night's share can sit above it: README "The audit")."""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from poisongate.config import AuditConfig
from poisongate.learning import models
from poisongate.learning.training import in_row_chunks
from poisongate.poisoning_gate import conformal_p, histogram
from poisongate.schema import plain


def _mean_loss(params, graphdef, X, y, w):
    losses = optax.softmax_cross_entropy_with_integer_labels(nnx.merge(graphdef, params)(X), y)
    return jnp.sum(w * losses) / jnp.maximum(jnp.sum(w), 1.0)


@partial(jax.jit, static_argnames=("graphdef", "n_classes"))
def class_holdout_gradients(graphdef, params, X, y, n_classes: int):
    """The gradient of the holdout's mean loss over each class's rows, stacked on a leading class axis."""
    W = (y[None, :] == jnp.arange(n_classes)[:, None]).astype(jnp.float32)
    return jax.vmap(jax.grad(_mean_loss), in_axes=(None, None, None, None, 0))(params, graphdef, X, y, W)


@partial(jax.jit, static_argnames="graphdef")
def gradient_dots(graphdef, params, directions, X, y):
    """[rows, classes]: <grad of row i's loss, direction k>, each a directional derivative: one forward-mode pass
    (jvp) per direction gives it for every row at once. Per-example gradients (vmap of grad) gave the same
    numbers 1,259 s for a 1M-row night's audit (issue 19), materialising a parameter vector per row."""
    def row_losses(p):
        return optax.softmax_cross_entropy_with_integer_labels(nnx.merge(graphdef, p)(X), y)

    return jax.vmap(lambda d: jax.jvp(row_losses, (params,), (d,))[1])(directions).T


def harm(graphdef, trajectory: list[tuple[int, Any]], learning_rate: float, X: np.ndarray, y: np.ndarray,
         X_holdout: np.ndarray, y_holdout: np.ndarray, chunk_rows: int, n_classes: int) -> np.ndarray:
    """Per training row (X scaled as the model reads it), its TracIn harm to the holdout loss: the most it raises
    any one class's holdout loss (a flipped row hurts the class it looks like and helps the one it is labelled,
    so the sum over classes would cancel). Higher hurts more. In chunks of `chunk_rows` (the last zero-padded:
    one compiled shape) so memory stays flat as rows grow."""
    X, y = np.asarray(X, np.float32), np.asarray(y, np.int32)
    total = np.zeros((len(X), n_classes))
    for _, params in trajectory:
        directions = class_holdout_gradients(graphdef, params, X_holdout, y_holdout.astype(np.int32), n_classes)
        dots = in_row_chunks(partial(gradient_dots, graphdef, params, directions), X, y, rows=max(1, chunk_rows))
        total -= learning_rate * np.asarray(dots, np.float64)
    return total.max(axis=1)


@dataclass(frozen=True)
class Judgement:
    """Tonight's rows against the trusted rows' harm."""

    p_values: np.ndarray
    flagged: np.ndarray
    threshold: float  # the smallest harm whose p-value is at most the rate


def audit_rows(graphdef, trajectory: list[tuple[int, Any]], spec: dict[str, Any], X: np.ndarray, y: np.ndarray,
               trusted: np.ndarray, tonight: np.ndarray, X_holdout: np.ndarray, y_holdout: np.ndarray,
               learning_rate: float, cfg: AuditConfig) -> tuple[np.ndarray, np.ndarray, Judgement]:
    """The harm of the trusted rows and of tonight's (raw features; the model's scaling is applied here; no other
    training row is read, so the cost follows the batch, not the accumulated training set), and tonight's rows
    judged against the trusted rows'."""
    rows = np.flatnonzero(trusted | tonight)
    h = harm(graphdef, trajectory, learning_rate, models.scale(X[rows], spec), y[rows],
             models.scale(X_holdout, spec), y_holdout, cfg.chunk_rows, len(spec["classes"]))
    trusted_harm, tonight_harm = h[trusted[rows]], h[tonight[rows]]
    return trusted_harm, tonight_harm, judge(trusted_harm, tonight_harm, cfg.false_alarm_rate)


def judge(trusted: np.ndarray, tonight: np.ndarray, rate: float) -> Judgement:
    """Conformal p-values of tonight's harm against the trusted rows' (a fitted tail past their top ranks, as the
    poisoning gate's, on log excesses: a few hard trusted rows make the harm's tail heavy); flagged: p <= rate."""
    p = conformal_p(trusted, tonight)
    return Judgement(p, p <= rate, threshold_at(trusted, rate))


def threshold_at(trusted: np.ndarray, rate: float) -> float:
    """The harm at which the p-value falls to `rate` (bisection: the p-value does not increase with the harm)."""
    trusted = np.asarray(trusted, np.float64)
    if not len(trusted):
        return float("inf")
    spread = float(np.ptp(trusted)) or 1.0
    lo, hi = float(trusted.min()), float(trusted.max()) + spread
    while conformal_p(trusted, np.array([hi]))[0] > rate:
        lo, hi = hi, hi + 2 * (hi - lo)
        if hi > 1e12 * spread:
            return float("inf")
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if conformal_p(trusted, np.array([mid]))[0] > rate else (lo, mid)
    return hi


def summary(judgement: Judgement, tonight_harm: np.ndarray, trusted_harm: np.ndarray, ids: np.ndarray, rate: float,
            checkpoints: list[int], top: int = 10) -> dict[str, Any]:
    """The audit's statistic, p-values and bound: counts, the most harmful rows of tonight, the histograms."""
    order = np.argsort(-tonight_harm)
    row = lambda i: {"id": plain(ids[i]), "harm": float(tonight_harm[i]), "p_value": float(judgement.p_values[i])}  # noqa: E731
    return {
        "rows_judged": int(len(tonight_harm)),
        "trusted_rows": int(len(trusted_harm)),
        "checkpoints": checkpoints,
        "false_alarm_rate": rate,
        "threshold": judgement.threshold,
        "flagged": int(judgement.flagged.sum()),
        "most_harmful": [row(i) for i in order[:top]],
        "flagged_rows": [row(i) for i in np.flatnonzero(judgement.flagged)],
        "influence_histograms": {"tonight": histogram(tonight_harm, judgement.threshold),
                                 "trusted": histogram(trusted_harm, judgement.threshold)},
    }
