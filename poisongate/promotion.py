"""The promotion gate's rule: the candidate is judged on the golden holdout, against absolute floors and
against the current champion; every check is recorded with its value and threshold."""
from __future__ import annotations

from typing import Any

import numpy as np

from poisongate.config import PromoteConfig
from poisongate.learning import models
from poisongate.learning.training import predict_proba

EPS = 1e-9  # float noise: an equal model is not a drop


def evaluate(graphdef, params, spec: dict[str, Any], X: np.ndarray, y: np.ndarray) -> dict[str, Any]:
    pred = np.asarray(predict_proba(graphdef, params, models.scale(X, spec))).argmax(axis=1)
    n = len(spec["classes"])
    confusion = np.zeros((n, n), dtype=np.int64)
    np.add.at(confusion, (y, pred), 1)
    recall = confusion.diagonal() / np.maximum(confusion.sum(axis=1), 1)
    return {
        "accuracy": float((pred == y).mean()),
        "class_recall": {str(c): float(r) for c, r in zip(spec["classes"], recall)},
        "confusion": confusion.tolist(),
    }


def _check(name: str, value: float | None, threshold: float, passed: bool | None) -> dict[str, Any]:
    return {"check": name, "value": value, "threshold": threshold, "passed": passed}


def largest_fold_gap(fold_accuracy: list[float]) -> float:
    """How far the worst fold lies below the median of the other folds: a poisoned fold stands out."""
    acc = np.asarray(fold_accuracy, np.float64)
    if len(acc) < 2:
        return 0.0
    return float(max(np.median(np.delete(acc, i)) - acc[i] for i in range(len(acc))))  # k folds, not rows


def decide(candidate: dict[str, Any], champion: dict[str, Any] | None, cv: dict[str, Any], cfg: PromoteConfig,
           training: dict[str, Any] | None = None) -> dict[str, Any]:
    """Every check with its value, threshold and verdict (None: not applicable). `training` is the train
    stage's summary; its monitor flags `nonfinite` and `loss_spikes` are read when present."""
    training = training or {}
    worst_class = min(candidate["class_recall"].values())
    fold_gap = largest_fold_gap(cv["fold_accuracy"]) if "fold_accuracy" in cv else None
    spikes = len(training.get("loss_spikes") or [])
    nonfinite = bool(training.get("nonfinite", False))
    checks = [
        _check("holdout accuracy >= floor", candidate["accuracy"], cfg.min_accuracy,
               candidate["accuracy"] >= cfg.min_accuracy),
        _check("every class recall >= floor", worst_class, cfg.min_class_recall, worst_class >= cfg.min_class_recall),
        _check("cv fold spread <= bound", cv["spread"], cfg.max_cv_spread, cv["spread"] <= cfg.max_cv_spread),
        _check("worst fold below median of the others <= bound", fold_gap, cfg.max_fold_gap,
               None if fold_gap is None else fold_gap <= cfg.max_fold_gap),
        _check("training loss finite", float(nonfinite), 0, not nonfinite),
        _check("training loss spikes <= bound", spikes, cfg.max_loss_spikes, spikes <= cfg.max_loss_spikes),
    ]
    if champion is None:  # the first model only has to clear the floors
        checks += [_check("accuracy drop vs champion <= bound", None, cfg.max_accuracy_drop, None),
                   _check("largest class recall drop vs champion <= bound", None, cfg.max_class_recall_drop, None)]
    else:
        drop = champion["accuracy"] - candidate["accuracy"]
        class_drop, worst = max((champion["class_recall"][c] - r, c) for c, r in candidate["class_recall"].items())
        checks += [
            _check("accuracy drop vs champion <= bound", drop, cfg.max_accuracy_drop,
                   drop <= cfg.max_accuracy_drop + EPS),
            _check(f"largest class recall drop vs champion <= bound (class {worst})", class_drop,
                   cfg.max_class_recall_drop, class_drop <= cfg.max_class_recall_drop + EPS),
        ]
    failed = [c for c in checks if c["passed"] is False]
    return {
        "passed": not failed,
        "reason": "promoted" if not failed else "model refused: " + "; ".join(
            f"{c['check']} failed ({c['value']:.4f} vs {c['threshold']})" for c in failed),
        "checks": checks,
    }
