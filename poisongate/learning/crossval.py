"""k-fold cross-validation of a recipe, all folds trained at once (vmap, each fold its own optimizer state)."""
from __future__ import annotations

from typing import Any

import numpy as np

from poisongate.config import Recipe
from poisongate.learning import models
from poisongate.learning.training import fit, held_out_proba


def fold_of_rows(n: int, k: int, seed: int) -> np.ndarray:
    fold = np.empty(n, dtype=np.int32)
    for i, part in enumerate(np.array_split(np.random.default_rng(seed).permutation(n), k)):
        fold[part] = i
    return fold


def cross_validate(X: np.ndarray, y: np.ndarray, spec: dict[str, Any], recipe: Recipe, k: int):
    """Per-fold accuracy and out-of-fold class probabilities for every row."""
    return out_of_fold(models.scale(X, spec), y, spec, recipe, k)


def out_of_fold(Xs: np.ndarray, y: np.ndarray, spec: dict[str, Any], recipe: Recipe, k: int):
    """cross_validate of rows already scaled (`models.scale`), for a caller that frees the unscaled ones."""
    fold = fold_of_rows(len(Xs), k, recipe.seed)
    W = (fold[None, :] != np.arange(k)[:, None]).astype(np.float32)  # fold i trains on every row not in fold i
    graphdef, params, *_ = fit(Xs, y, spec, recipe, W)
    oof = held_out_proba(graphdef, params, Xs, fold)
    correct = oof.argmax(axis=1) == y
    return [float(correct[fold == i].mean()) for i in range(k)], oof


def summary(fold_accuracy: list[float], rows: int) -> dict[str, Any]:
    """What the promotion gate reads of a cross-validation of `rows` rows."""
    return {
        "folds": len(fold_accuracy),
        "fold_accuracy": list(fold_accuracy),
        "fold_rows": [len(part) for part in np.array_split(np.arange(rows), len(fold_accuracy))],
        "mean_accuracy": float(np.mean(fold_accuracy)),
        "spread": float(np.max(fold_accuracy) - np.min(fold_accuracy)),
    }
