"""Stage `crossval`: k-fold cross-validation of the candidate's recipe, all folds trained at once (vmap)."""
from __future__ import annotations

from typing import Any

import jax
import numpy as np

from tasks import model as models
from tasks.config import Workspace
from tasks.data import read_table, schema_from_reference, to_arrays
from tasks.train import fit, predict_proba


def fold_of_rows(n: int, k: int, seed: int) -> np.ndarray:
    fold = np.empty(n, dtype=np.int32)
    for i, part in enumerate(np.array_split(np.random.default_rng(seed).permutation(n), k)):
        fold[part] = i
    return fold


def cross_validate(X: np.ndarray, y: np.ndarray, spec: dict[str, Any], cfg: dict[str, Any], k: int):
    """Per-fold accuracy and out-of-fold class probabilities for every row."""
    fold = fold_of_rows(len(X), k, int(cfg["seed"]))
    W = (fold[None, :] != np.arange(k)[:, None]).astype(np.float32)  # fold i trains on every row not in fold i
    Xs = models.scale(X, spec)
    graphdef, params, *_ = fit(Xs, y, spec, cfg, W)
    proba = np.asarray(jax.vmap(lambda p: predict_proba(graphdef, p, Xs))(params))  # [k, n, classes]
    oof = proba[fold, np.arange(len(X))]
    correct = oof.argmax(axis=1) == y
    return [float(correct[fold == i].mean()) for i in range(k)], oof


def crossval(ws: Workspace, params: dict[str, Any]) -> dict[str, Any]:
    clean = read_table(ws.clean)
    schema = schema_from_reference(read_table(ws.reference), params["data"], ws.reference)
    X, y = to_arrays(clean, schema)
    spec = models.model_spec(params["train"], X, schema.classes)
    fold_accuracy, _ = cross_validate(X, y, spec, params["train"], int(params["crossval"]["folds"]))
    return {
        "folds": len(fold_accuracy),
        "fold_accuracy": fold_accuracy,
        "mean_accuracy": float(np.mean(fold_accuracy)),
        "spread": float(np.max(fold_accuracy) - np.min(fold_accuracy)),
    }
