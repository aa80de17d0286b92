"""The promotion gate's rule: the candidate is judged on the golden holdout by paired tests against the current
champion and against a model of the same recipe trained on the trusted reference alone, and its
cross-validation folds against what folds of their size vary by chance; every check is recorded with its
statistic, p-value and bound."""
from __future__ import annotations

from typing import Any

import numpy as np

from poisongate.config import PromoteConfig
from poisongate.learning.training import model_proba

EPS = 1e-9  # float noise: an equal model is not a drop


def evaluate(graphdef, params, spec: dict[str, Any], X: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    pred = model_proba(graphdef, params, spec, X).argmax(axis=1)
    n = len(spec["classes"])
    confusion = np.zeros((n, n), dtype=np.int64)
    np.add.at(confusion, (y, pred), 1)
    recall = confusion.diagonal() / np.maximum(confusion.sum(axis=1), 1)
    return {
        "accuracy": float((pred == y).mean()),
        "class_recall": {str(c): float(r) for c, r in zip(spec["classes"], recall)},
        "confusion": confusion.tolist(),
    }


def check(name: str, value: float | None, threshold: float | None, passed: bool | None,
           p_value: float | None = None) -> dict[str, Any]:
    return {"check": name, "value": value, "p_value": p_value, "threshold": threshold, "passed": passed}


def mcnemar(worse: np.ndarray, better: np.ndarray) -> float:
    """Exact one-sided McNemar (Dietterich 1998): p of at least this many rows only the reference model gets
    right, among the rows the two models disagree on."""
    return mcnemar_p(int(worse.sum()), int(better.sum()))


def mcnemar_p(b: int, c: int) -> float:
    """Exact one-sided McNemar of b discordant rows one way against c the other."""
    from scipy.stats import binomtest

    return 1.0 if b + c == 0 else float(binomtest(b, b + c, 0.5, alternative="greater").pvalue)


def paired_margin_p(worse: np.ndarray, better: np.ndarray, margin: float) -> float:
    """One-sided score test (restricted MLE, as Tango 1998) of H0: the candidate's share of rows lost minus won
    is at most `margin` (non-inferiority) on paired rows. Margin 0 returns 0: exact McNemar alone judges."""
    from scipy.stats import norm

    n, b, c = len(worse), int(worse.sum()), int(better.sum())
    if margin <= 0 or n == 0:
        return 0.0
    m = n - b - c  # the MLE of P(lost) under drop = margin: the root of this quadratic in its range
    roots = np.roots([-2.0 * n, b * (1 + 3 * margin) + c * (1 + margin) + 2 * m * margin, -b * margin * (1 + margin)])
    lo, hi = margin, (1 + margin) / 2
    lost = min((float(r.real) for r in roots if abs(r.imag) < 1e-12 and lo - 1e-12 <= r.real <= hi + 1e-12),
               key=lambda r: abs(r - (b / n)), default=lo)
    variance = max(2 * lost - margin - margin**2, 1e-12) / n  # P(lost) + P(won) - margin^2, P(won) = P(lost) - margin
    return float(norm.sf(((b - c) / n - margin) / np.sqrt(variance)))


def paired_checks(who: str, candidate: np.ndarray, other: np.ndarray, y: np.ndarray, classes: tuple,
                  bound: float, class_margin: float = 0.0) -> list[dict[str, Any]]:
    """The candidate vs another model on the same holdout rows: overall (exact McNemar), and per class
    (Bonferroni), where a class must be significantly worse both than equal (McNemar) and than `class_margin`
    below the other model's recall (score test): a retrain moves class boundaries by a point or two by chance,
    which a large holdout calls significant."""
    lost, won = (other == y) & (candidate != y), (candidate == y) & (other != y)
    drop = float((other == y).mean() - (candidate == y).mean())
    p = mcnemar(lost, won)
    per_class = [min(1.0, max(mcnemar(lost[y == i], won[y == i]),
                              paired_margin_p(lost[y == i], won[y == i], class_margin)) * len(classes))
                 for i in range(len(classes))]
    i = int(np.argmin(per_class))
    recall_drop = float(lost[y == i].sum() - won[y == i].sum()) / max(int((y == i).sum()), 1)
    p_class, worst = per_class[i], classes[i]
    margin = f", beyond a margin of {class_margin:g}" if class_margin > 0 else ""
    return [
        check(f"not worse than the {who} (exact McNemar; value: accuracy drop)", drop, bound, p >= bound, p),
        check(f"no class worse than with the {who} (McNemar per class{margin}, Bonferroni; class {worst}, value: "
               "its recall drop)", recall_drop, bound, p_class >= bound, p_class),
    ]


def fold_checks(cv: dict[str, Any], bound: float) -> list[dict[str, Any]]:
    """Is the worst fold below what the other folds predict? Its externally studentized residual against them,
    Student t with k - 2 degrees of freedom (one-sided, Bonferroni over the folds). Folds' models are separate
    trainings, so their accuracies vary by more than their rows' binomial sampling; folds of one size share that
    variance, which the other folds estimate (at least the binomial variance of a fold of their size). A
    binomial-only null (chi-square, Fisher) refused clean candidates (issue 19); with 5 folds this catches a fold
    whose training failed, not a point or two."""
    from scipy.stats import t

    accuracy, rows = np.asarray(cv["fold_accuracy"], np.float64), float(np.mean(cv["fold_rows"]))
    k, worst = len(accuracy), int(np.argmin(accuracy))
    if k < 3:
        return [check("worst fold not below the others (needs 3 folds)", None, bound, None)]
    others = np.delete(accuracy, worst)
    mean = float(others.mean())
    variance = max(float(others.var(ddof=1)), max(mean * (1 - mean), 1 / rows) / rows)
    z = (mean - accuracy[worst]) / np.sqrt(variance * (1 + 1 / (k - 1)))
    p = min(1.0, float(t.sf(z, k - 2)) * k)
    return [check(f"worst fold (fold {worst}) not below the others (studentized residual, Bonferroni; value: its gap "
                  "to their mean)", mean - float(accuracy[worst]), bound, p >= bound, p)]


def decide(y: np.ndarray, classes: tuple, candidate: np.ndarray, champion: np.ndarray | None,
           baseline: np.ndarray, cv: dict[str, Any], cfg: PromoteConfig,
           training: dict[str, Any] | None = None, extra: list[dict[str, Any]] = ()) -> dict[str, Any]:
    """Every check with its statistic, p-value, bound and verdict (None: not applicable or reported only).
    Predictions are on the golden holdout (labels `y`): the candidate's, the champion's (None for the first
    model) and the baseline's (the same recipe trained on the trusted reference alone: the data's own floor).
    The statistical checks share promote.alpha (Bonferroni); the absolute floors, the practical margin and the
    loss-spike bound are user settings, each off when null. `extra`: checks made elsewhere (the output monitor's
    target-class pull, at its own alpha)."""
    training = training or {}
    tests = 2 * (2 if champion is not None else 1) + 1
    bound = cfg.alpha / tests
    checks = paired_checks("trusted-reference model", candidate, baseline, y, classes, bound, cfg.class_recall_margin)
    if champion is not None:
        checks += paired_checks("champion", candidate, champion, y, classes, bound, cfg.class_recall_margin)
    checks += fold_checks(cv, bound)
    accuracy = float((candidate == y).mean())
    recall = [float((candidate[y == i] == i).mean()) for i in range(len(classes)) if (y == i).any()]
    nonfinite = bool(training.get("nonfinite", False))
    spikes = len(training.get("loss_spikes") or [])
    drop = None if champion is None else float((champion == y).mean()) - accuracy
    optional = [
        ("holdout accuracy >= floor", accuracy, cfg.min_accuracy, lambda v, t: v >= t),
        ("every class recall >= floor", min(recall), cfg.min_class_recall, lambda v, t: v >= t),
        ("accuracy drop vs champion <= practical margin", drop, cfg.max_accuracy_drop, lambda v, t: v <= t + EPS),
        ("training loss spikes <= bound", spikes, cfg.max_loss_spikes, lambda v, t: v <= t),
    ]
    checks += [check(name, value, t, None if t is None or value is None else bool(ok(value, t)))
               for name, value, t, ok in optional]
    checks.append(check("training loss finite", float(nonfinite), 0, not nonfinite))
    checks += list(extra)
    failed = [c for c in checks if c["passed"] is False]
    return {
        "passed": not failed,
        "reason": "promoted" if not failed else "model refused: " + "; ".join(_failure(c) for c in failed),
        "checks": checks,
    }


def _failure(check: dict[str, Any]) -> str:
    if check["p_value"] is not None:
        return f"{check['check']}: p={check['p_value']:.2g} < {check['threshold']:.2g} (value {check['value']:.4f})"
    return f"{check['check']} failed ({check['value']:.4f} vs {check['threshold']})"
