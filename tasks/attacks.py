"""Poisoning attacks, for `poisongate run --simulate`: seeded, each returns the poisoned data and the mask
of the rows it touched. Rows it did not touch come back byte-identical."""
from __future__ import annotations

from typing import Callable

import numpy as np

Attack = Callable[[np.ndarray, np.ndarray, float, np.random.Generator, int], tuple[np.ndarray, np.ndarray, np.ndarray]]
ATTACKS: dict[str, Attack] = {}


def attack(name: str):
    def register(fn: Attack) -> Attack:
        ATTACKS[name] = fn
        return fn

    return register


def _choose(n: int, rate: float, rng: np.random.Generator) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    mask[rng.choice(n, size=int(round(rate * n)), replace=False)] = True
    return mask


@attack("label_flip")
def label_flip(X, y, rate, rng, n_classes):
    """Uniform label flipping: each chosen row gets a different class, drawn uniformly."""
    mask = _choose(len(y), rate, rng)
    y = y.copy()
    shift = rng.integers(1, n_classes, size=int(mask.sum()))
    y[mask] = (y[mask] + shift) % n_classes
    return X, y, mask


@attack("outliers")
def outliers(X, y, rate, rng, n_classes):
    """Extreme values: a tenth of the features of each chosen row set 5-10 ranges past the column maximum."""
    mask = _choose(len(y), rate, rng)
    X = X.copy()
    lo, hi = X.min(axis=0), X.max(axis=0)
    span = np.maximum(hi - lo, 1.0)
    n_feat = max(1, X.shape[1] // 10)
    rows = np.flatnonzero(mask)[:, None]
    cols = np.argsort(rng.random((len(rows), X.shape[1])), axis=1)[:, :n_feat]  # distinct columns per row
    X[rows, cols] = hi[cols] + rng.uniform(5.0, 10.0, size=cols.shape) * span[cols]
    return X, y, mask


def simulate(X: np.ndarray, y: np.ndarray, name: str, rate: float, seed: int, n_classes: int):
    if name not in ATTACKS:
        from tasks.config import PoisongateError

        raise PoisongateError(f"unknown attack {name!r} in simulate.attack; choose one of {sorted(ATTACKS)}")
    return ATTACKS[name](X, y, float(rate), np.random.default_rng(seed), n_classes)
