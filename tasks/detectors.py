"""Poisoning detectors: one class per issue type, registered by name (cleanlab's issue-manager pattern).

Each detector is fit on trusted rows and scores untrusted ones: `fit(X, y)` then `score(X, y)` gives one
float per row, higher meaning more suspicious. Thresholds are not the detector's business: the filter
gate calibrates them on out-of-sample trusted scores (see tasks/filter.py).
"""
from __future__ import annotations

from functools import partial
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
import numpy as np

DETECTORS: dict[str, type["Detector"]] = {}
CHUNK_ROWS = 4096  # rows scored per device call: memory stays flat as batches grow


def register(cls: type["Detector"]) -> type["Detector"]:
    DETECTORS[cls.name] = cls
    return cls


class Detector:
    name: ClassVar[str]
    reason: ClassVar[str]  # what a high score means, for people reading the quarantine

    def __init__(self, **options: Any) -> None:
        self.options = options

    def fit(self, X: np.ndarray, y: np.ndarray) -> "Detector":
        raise NotImplementedError

    def score(self, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        raise NotImplementedError


def chunked(fn, X: np.ndarray, y: np.ndarray, *fitted) -> np.ndarray:
    """Apply a jitted per-row scorer in fixed-size chunks (one compiled shape, bounded device memory)."""
    n = len(X)
    size = min(CHUNK_ROWS, max(n, 1))
    out = []
    for start in range(0, n, size):
        xs, ys = X[start : start + size], y[start : start + size]
        pad = size - len(xs)
        if pad:
            xs = np.concatenate([xs, np.zeros((pad, X.shape[1]), X.dtype)])
            ys = np.concatenate([ys, np.zeros(pad, y.dtype)])
        out.append(np.asarray(fn(xs, ys, *fitted))[: size - pad])
    return np.concatenate(out) if out else np.zeros(0, np.float32)


@jax.jit
def _max_abs_z(X, y, median, scale):
    return jnp.max(jnp.abs(X - median) / scale, axis=1)


@register
class RobustZScore(Detector):
    """Largest per-feature robust z-score |x - median| / (1.4826 MAD): extreme values and feature noise."""

    name = "robust_zscore"
    reason = "a feature far outside the trusted data (robust z-score)"

    def fit(self, X, y):
        X = np.asarray(X, np.float64)
        self.median = np.median(X, axis=0)
        mad = 1.4826 * np.median(np.abs(X - self.median), axis=0)
        # Sparse features (a pixel that is nearly always 0) have MAD 0: fall back to the std, then to a
        # floor tied to the data's typical spread, so one rare but legitimate value is not "infinitely" far.
        std = X.std(axis=0)
        floor = float(self.options.get("scale_floor", 0.25)) * max(float(np.median(std[std > 0])) if (std > 0).any() else 1.0, 1e-6)
        self.scale = np.maximum(np.maximum(mad, std), floor)
        return self

    def score(self, X, y):
        return chunked(_max_abs_z, X, y, self.median.astype(np.float32), self.scale.astype(np.float32))


@partial(jax.jit, static_argnames="k")
def _knn_disagreement(X, y, ref, ref_sq, ref_y, mean, std, *, k):
    Z = (X - mean) / std
    d2 = jnp.sum(Z * Z, axis=1, keepdims=True) + ref_sq[None, :] - 2.0 * Z @ ref.T
    _, idx = jax.lax.top_k(-d2, k)
    return jnp.mean(ref_y[idx] != y[:, None], axis=1)


@register
class KNNLabel(Detector):
    """Share of the k nearest trusted neighbours (standardised features) whose label differs: label flips."""

    name = "knn_label"
    reason = "label disagrees with its nearest trusted neighbours"

    def fit(self, X, y):
        X = np.asarray(X, np.float32)
        self.mean = X.mean(axis=0)
        self.std = np.maximum(X.std(axis=0), 1e-6)
        self.ref = (X - self.mean) / self.std
        self.ref_sq = np.sum(self.ref * self.ref, axis=1)
        self.ref_y = np.asarray(y, np.int32)
        self.k = min(int(self.options.get("k", 10)), len(X))
        return self

    def score(self, X, y):
        return chunked(
            partial(_knn_disagreement, k=self.k), X, y, self.ref, self.ref_sq, self.ref_y, self.mean, self.std
        )


def make(name: str, options: dict[str, Any] | None) -> Detector:
    if name not in DETECTORS:
        from tasks.config import PoisongateError

        raise PoisongateError(f"params.yaml: unknown detector {name!r} in filter.detectors; known: {sorted(DETECTORS)}")
    return DETECTORS[name](**(options or {}))
