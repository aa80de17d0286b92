"""Poisoning attacks from the threat model (DESIGN.md), for `poisongate run --simulate` and `poisongate redteam`.

Every attack is `fn(X, y, rate, rng, n_classes, **options) -> (X, y, mask)`: seeded through `rng`, it poisons
exactly round(rate * n) rows and returns the mask of those rows; every other row comes back byte-identical.
Options (params.yaml `simulate.options.<attack>`) are keyword-only with defaults. Two attacks read `rate`
differently, because of what they are:
- `targeted_flip` flips round(rate * n_source) rows of the source class (only those rows can be flipped);
- `irrelevant_features` appends round(rate * n_features) columns (at least 1) of noise to every row: the mask is
  all True (every row carries them) and the original columns come back byte-identical.
"""
from __future__ import annotations

import inspect
from collections.abc import Callable
from functools import partial

import numpy as np
import pandas as pd

from poisongate.config import SimulateConfig
from poisongate.errors import ConfigError, PoisongateError
from poisongate.schema import Schema, image_side, to_arrays

Attack = Callable[..., tuple[np.ndarray, np.ndarray, np.ndarray]]
ATTACKS: dict[str, Attack] = {}


def attack(name: str):
    def register(fn: Attack) -> Attack:
        ATTACKS[name] = fn
        return fn

    return register


def _choose(n: int, rate: float, rng: np.random.Generator, among: np.ndarray | None = None) -> np.ndarray:
    """Exactly round(rate * n) rows, drawn without replacement from `among` (default: every row)."""
    among = np.arange(n) if among is None else among
    count = int(round(rate * n))
    if count > len(among):
        raise PoisongateError(f"attack rate {rate} needs {count} rows but only {len(among)} can be poisoned; "
                              "lower the rate")
    mask = np.zeros(n, dtype=bool)
    mask[rng.choice(among, size=count, replace=False)] = True
    return mask


def _feature_std(X: np.ndarray) -> np.ndarray:
    return X.astype(np.float64).std(axis=0)


@attack("label_flip")
def label_flip(X, y, rate, rng, n_classes):
    """Uniform label flipping: each chosen row gets a different class, drawn uniformly."""
    mask = _choose(len(y), rate, rng)
    y = y.copy()
    shift = rng.integers(1, n_classes, size=int(mask.sum()))
    y[mask] = (y[mask] + shift) % n_classes
    return X, y, mask


@attack("boundary_flip")
def boundary_flip(X, y, rate, rng, n_classes):
    """Label flips where they are hardest to see: round(rate * n) rows drawn among the 2 x that many nearest
    another class (smallest gap between the distances to their own and to the nearest other class centroid,
    standardised features) get that class's label. They sit where clean rows of both classes mix, so row checks
    let them through."""
    Z = (X - X.mean(axis=0)) / np.maximum(X.std(axis=0), 1e-6)  # constant columns (digits' corners) count 0
    present = np.unique(y)
    centroids = np.stack([Z[y == c].mean(axis=0) for c in present])
    d = ((Z[:, None, :] - centroids[None]) ** 2).sum(axis=-1)
    own = np.searchsorted(present, y)
    others = d.copy()
    others[np.arange(len(y)), own] = np.inf
    nearest = others.argmin(axis=1)
    gap = others[np.arange(len(y)), nearest] - d[np.arange(len(y)), own]
    count = int(round(rate * len(y)))
    mask = np.zeros(len(y), dtype=bool)
    mask[rng.choice(np.argsort(gap, kind="stable")[: 2 * count], size=count, replace=False)] = True
    y = y.copy()
    y[mask] = present[nearest[mask]]
    return X, y, mask


@attack("targeted_flip")
def targeted_flip(X, y, rate, rng, n_classes, *, source=3, target=8):
    """Targeted flipping: round(rate * n_source) rows of class `source` relabelled `target` (class indices)."""
    if not (0 <= source < n_classes and 0 <= target < n_classes and source != target):
        raise PoisongateError(f"params.yaml: simulate.options.targeted_flip source={source} target={target}; "
                              f"use two different class indices in 0..{n_classes - 1}")
    of_source = np.flatnonzero(y == source)
    mask = np.zeros(len(y), dtype=bool)
    mask[of_source] = _choose(len(of_source), rate, rng)
    y = y.copy()
    y[mask] = target
    return X, y, mask


def _noise(X, y, rate, rng, n_classes, *, kind, scale=1.0):
    """Feature corruption: noise of `scale` times each feature's std added to every feature of the chosen rows.
    Uniform noise is drawn on [-sqrt(3), sqrt(3)] so both kinds have unit variance before scaling."""
    mask = _choose(len(y), rate, rng)
    shape = (int(mask.sum()), X.shape[1])
    unit = rng.standard_normal(shape) if kind == "gaussian" else rng.uniform(-np.sqrt(3), np.sqrt(3), shape)
    X = X.copy()
    X[mask] = (X[mask] + scale * _feature_std(X) * unit).astype(X.dtype)
    return X, y, mask


attack("gaussian_noise")(partial(_noise, kind="gaussian"))
attack("uniform_noise")(partial(_noise, kind="uniform"))


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


@attack("irrelevant_features")
def irrelevant_features(X, y, rate, rng, n_classes):
    """Irrelevant features: round(rate * n_features) extra columns (at least 1) of Gaussian noise with the data's
    median feature std, independent of the label. Every row carries them, so the mask is all True."""
    extra = max(1, int(round(rate * X.shape[1])))
    std = _feature_std(X)
    scale = float(np.median(std[std > 0])) if (std > 0).any() else 1.0
    noise = (scale * rng.standard_normal((len(X), extra))).astype(X.dtype)
    return np.concatenate([X, noise], axis=1), y, np.ones(len(y), dtype=bool)


@attack("noisy_duplicates")
def noisy_duplicates(X, y, rate, rng, n_classes, *, copies=10, scale=0.1):
    """Duplication with noise: the chosen rows become noisy copies (noise `scale` x feature std) of a few
    untouched rows, about `copies` copies each, with those rows' labels."""
    if copies < 1:
        raise ConfigError(f"params.yaml: simulate.options.noisy_duplicates.copies = {copies}; use 1 or more")
    mask = _choose(len(y), rate, rng)
    count = int(mask.sum())
    sources = rng.choice(np.flatnonzero(~mask), size=max(1, -(-count // copies)), replace=False)
    picked = rng.choice(sources, size=count)
    X, y = X.copy(), y.copy()
    X[mask] = (X[picked] + scale * _feature_std(X) * rng.standard_normal((count, X.shape[1]))).astype(X.dtype)
    y[mask] = y[picked]
    return X, y, mask


@attack("mass_duplicates")
def mass_duplicates(X, y, rate, rng, n_classes, *, points=3):
    """Mass duplication: the chosen rows become exact copies of `points` untouched rows of one random class,
    an artificial class imbalance."""
    if points < 1:
        raise ConfigError(f"params.yaml: simulate.options.mass_duplicates.points = {points}; use 1 or more")
    mask = _choose(len(y), rate, rng)
    classes, counts = np.unique(y[~mask], return_counts=True)
    cls = rng.choice(classes[counts >= points])
    sources = rng.choice(np.flatnonzero(~mask & (y == cls)), size=points, replace=False)
    picked = sources[np.arange(int(mask.sum())) % points]
    X, y = X.copy(), y.copy()
    X[mask], y[mask] = X[picked], y[picked]
    return X, y, mask


@attack("sine_pattern")
def sine_pattern(X, y, rate, rng, n_classes, *, frequency=3.0, amplitude=0.3, along="features"):
    """Subtle structured noise: amplitude x feature std x sin(2 pi frequency t / T + phase), with t the feature
    index (`along: features`) or the row's position in the data (`along: rows`, for time-ordered rows)."""
    if along not in ("features", "rows"):
        raise PoisongateError(f"params.yaml: simulate.options.sine_pattern.along={along!r}; use features or rows")
    mask = _choose(len(y), rate, rng)
    phase = rng.uniform(0, 2 * np.pi)
    if along == "features":
        wave = np.sin(2 * np.pi * frequency * np.arange(X.shape[1]) / X.shape[1] + phase)[None, :]
    else:
        wave = np.sin(2 * np.pi * frequency * np.flatnonzero(mask) / len(y) + phase)[:, None]
    X = X.copy()
    X[mask] = (X[mask] + amplitude * _feature_std(X) * wave).astype(X.dtype)
    return X, y, mask


def add_trigger(X: np.ndarray, *, patch: int = 3, value: float | None = None) -> np.ndarray:
    """Stamp a `patch` x `patch` square of `value` (default: the data's maximum) into the bottom-right corner of
    every row, read as a square image (8 x 8 for the default digits)."""
    side = image_side(X.shape[1])
    if side is None or not 0 < patch <= side:
        raise PoisongateError(f"backdoor needs square-image rows (n_features = side^2, patch <= side); got "
                              f"{X.shape[1]} features and patch {patch}: use image data or another attack")
    images = X.reshape(len(X), side, side).copy()
    images[:, -patch:, -patch:] = X.max() if value is None else value
    return images.reshape(X.shape)


@attack("backdoor")
def backdoor(X, y, rate, rng, n_classes, *, target=0, patch=3, value=None):
    """Backdoor: chosen rows not of class `target` get the trigger patch and the label `target`."""
    mask = _choose(len(y), rate, rng, among=np.flatnonzero(y != target))
    X, y = X.copy(), y.copy()
    X[mask] = add_trigger(X[mask], patch=patch, value=X.max() if value is None else value)
    y[mask] = target
    return X, y, mask


def attack_success_rate(predict: Callable[[np.ndarray], np.ndarray], X: np.ndarray, y: np.ndarray, *,
                        target=0, patch=3, value=None) -> float:
    """Share of clean test rows not of class `target` that `predict` assigns to `target` once triggered."""
    victims = X[y != target]
    triggered = add_trigger(victims, patch=patch, value=X.max() if value is None else value)
    return float(np.mean(np.asarray(predict(triggered)) == target)) if len(victims) else 0.0


def simulate(X: np.ndarray, y: np.ndarray, name: str, rate: float, seed: int, n_classes: int,
             options: dict | None = None):
    if name not in ATTACKS:
        raise PoisongateError(f"unknown attack {name!r} in simulate.attack; choose one of {sorted(ATTACKS)}")
    fn, args = ATTACKS[name], (X, y, float(rate), np.random.default_rng(seed), n_classes)
    try:
        inspect.signature(fn).bind(*args, **(options or {}))
    except TypeError as e:  # an option this attack does not have
        raise ConfigError(f"params.yaml: simulate.options.{name}: {e}; "
                          "see poisongate/attacks.py for its options") from None
    return fn(*args, **(options or {}))


def poison(frame: pd.DataFrame, schema: Schema, sim: SimulateConfig) -> tuple[pd.DataFrame, np.ndarray]:
    """Apply the `simulate` attack to a batch (a demonstration of the gates, never on by default): the
    poisoned frame and the mask of poisoned rows."""
    if sim.attack == "none" or sim.rate <= 0:
        return frame, np.zeros(len(frame), dtype=bool)
    X, y = to_arrays(frame, schema)
    X, y, mask = simulate(X, y, sim.attack, sim.rate, sim.seed, len(schema.classes), sim.options.get(sim.attack))
    poisoned = frame.copy()
    columns = list(schema.features) + [f"irrelevant_{i}" for i in range(X.shape[1] - len(schema.features))]
    poisoned[columns] = pd.DataFrame(X, columns=columns, index=frame.index)
    labels = pd.Series(np.asarray(schema.classes, dtype=object)[y], index=frame.index)
    poisoned[schema.label] = labels.astype(frame[schema.label].dtype)
    return poisoned, mask
