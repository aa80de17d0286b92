"""The detector base class and the chunked scoring every row-wise detector shares.

A detector is fit on trusted rows and scores untrusted ones: `fit(X, y)` then `score(X, y)` gives one float per
row, higher meaning more suspicious. A row-wise detector whose score is one pure jax function of the row and its
fitted arrays says so (`kernel`, `kernel_args`): the gate then scores a chunk with every such kernel in one
compiled call (`fused_scores`), so each chunk is read once while it is in cache.

Thresholds are not the detector's business: the poisoning gate calibrates them on out-of-sample trusted scores
(`held_out_scores`). Where no trusted rows exist, `fit_untrusted(X, y)` fits a robust estimate on the batch
itself."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, ClassVar

import jax
import numpy as np
from pydantic import Field

from poisongate.config import Rate, Section
from poisongate.stats import median_and_scale

CHUNK_ROWS = 4096  # rows scored per device call: memory stays flat as batches grow


class DetectorOptions(Section):
    """Options every detector takes (params.yaml filter.detectors.<name>)."""

    false_positive_rate: Rate | None = None  # None: filter.false_positive_rate
    scale_floor: float = Field(0.25, gt=0)  # a feature's scale is never below this share of the typical std


class Detector:
    name: ClassVar[str]  # the key in params.yaml filter.detectors
    description: ClassVar[str]  # what it catches (README, `poisongate detectors`)
    reason: ClassVar[str]  # what a high score means: written beside the score in the quarantine
    Options: ClassVar[type[DetectorOptions]] = DetectorOptions
    row_wise: ClassVar[bool] = False  # a row's score depends on that row alone: the batch may be scored in chunks
    batch_level: ClassVar[bool] = False  # one score for the whole batch: a test of the batch, not of its rows
    family: ClassVar[str] = "features"  # what it judges, features or labels: p-values combine within a family
    # Scores trusted and batch rows in one fit (a model trained on both): the trusted rows' scores from that same
    # fit, set by score() as `trusted_scores`, are its calibration: exchangeable with the batch's under the null,
    # where scores from a separate fit are not (another network, another spread).
    transductive: ClassVar[bool] = False
    # Scores bounded or lighter-tailed than an exponential (a share of neighbours, a probability margin): the
    # conformal tail may be fitted as exponential. Otherwise it is fitted as Pareto, safe for any tail.
    light_tail: ClassVar[bool] = False
    min_threshold: float = -np.inf  # a floor under the calibrated threshold (e.g. a cap on copies)
    # A pure jax scorer (X, y, *kernel_args()) -> one score per row, as a staticmethod; None: score() is the
    # detector's own. A kernel is fused with the other detectors' into one compiled call per chunk.
    kernel: ClassVar[Callable[..., Any] | None] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        missing = [a for a in ("name", "description", "reason") if not isinstance(cls.__dict__.get(a), str)]
        if missing:  # each detector says for itself what it is; a subclass does not inherit its parent's words
            raise TypeError(f"detector {cls.__name__} must define {', '.join(missing)}")

    def __init__(self, options: DetectorOptions | None = None) -> None:
        self.options = options if options is not None else self.Options()

    def fit(self, X: np.ndarray, y: np.ndarray) -> Detector:
        raise NotImplementedError

    def fit_untrusted(self, X: np.ndarray, y: np.ndarray) -> Detector:
        """No trusted rows: fit on the batch itself. The default estimators are already robust (median/MAD)."""
        return self.fit(X, y)

    def kernel_args(self) -> tuple[np.ndarray, ...]:
        """The fitted arrays `kernel` takes after (X, y)."""
        raise NotImplementedError

    def score(self, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        if self.kernel is None:
            raise NotImplementedError
        return fused_scores([self], X, y)[0]

    def p_values(self, calibration: np.ndarray, scores: np.ndarray) -> np.ndarray:
        """Each score's p-value against the trusted rows' out-of-sample scores (conformal, poisoning_gate)."""
        from poisongate.poisoning_gate import conformal_p

        return conformal_p(calibration, scores, floor=self.min_threshold, light_tail=self.light_tail)

    def trusted_p_values(self, calibration: np.ndarray) -> np.ndarray:
        """Each trusted row's p-value against the other trusted rows (what the combined p-value is calibrated on)."""
        from poisongate.poisoning_gate import conformal_p

        return conformal_p(calibration, calibration, floor=self.min_threshold, leave_one_out=True,
                           light_tail=self.light_tail)

    def center_scale(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return robust_center_scale(X, self.options.scale_floor)

    def held_out_scores(self, X: np.ndarray, y: np.ndarray, folds: int, seed: int) -> np.ndarray:
        """Scores of trusted rows by detectors fit without them (k-fold), in row order: what a clean batch looks
        like. Row order matters: a trusted row's p-values from every detector are combined."""
        order = np.random.default_rng(seed).permutation(len(X))
        held_out = np.zeros(len(X), np.float64)
        for part in np.array_split(order, folds):
            rest = np.setdiff1d(order, part)
            held_out[part] = type(self)(self.options).fit(X[rest], y[rest]).score(X[part], y[part])
        return held_out


def row_chunks(X: np.ndarray, y: np.ndarray, rows: int | None = None):
    """(X chunk, y chunk, real rows) in fixed-size chunks of `rows` (default CHUNK_ROWS), the last one
    zero-padded: one compiled shape, bounded device memory."""
    n = len(X)
    size = min(rows or CHUNK_ROWS, max(n, 1))
    for start in range(0, n, size):
        xs, ys = X[start : start + size], y[start : start + size]
        pad = size - len(xs)
        if pad:
            xs = np.concatenate([xs, np.zeros((pad, X.shape[1]), X.dtype)])
            ys = np.concatenate([ys, np.zeros(pad, y.dtype)])
        yield xs, ys, size - pad


def chunked(fn, X: np.ndarray, y: np.ndarray, *fitted, rows: int | None = None) -> np.ndarray:
    """Apply a jitted per-row scorer chunk by chunk (row_chunks, `rows` per chunk)."""
    out = [np.asarray(fn(xs, ys, *fitted))[:real] for xs, ys, real in row_chunks(X, y, rows)]
    return np.concatenate(out) if out else np.zeros(0, np.float32)


@partial(jax.jit, static_argnums=0)
def _fused(kernels: tuple[Callable[..., Any], ...], X, y, args: tuple):
    return tuple(kernel(X, y, *a) for kernel, a in zip(kernels, args))


def fused_scores(detectors: Sequence[Detector], X: np.ndarray, y: np.ndarray) -> list[np.ndarray]:
    """Each detector's `kernel` scores of the rows, all kernels in one compiled call per chunk (row_chunks). At 1M
    rows x 64 features: robust_zscore, iqr_fence, mahalanobis and periodic_noise 0.26 s fused, 0.45 s one by one
    (benchmarks/results/gates_speed.json)."""
    kernels, args = tuple(d.kernel for d in detectors), tuple(d.kernel_args() for d in detectors)
    parts = [[np.asarray(s)[:real] for s in _fused(kernels, xs, ys, args)] for xs, ys, real in row_chunks(X, y)]
    if not parts:
        return [np.zeros(0, np.float32) for _ in detectors]
    return [np.concatenate(column) for column in zip(*parts)]


def robust_center_scale(X: np.ndarray, floor_share: float) -> tuple[np.ndarray, np.ndarray]:
    """Median and a scale per feature: the MAD as a std, or the std where the MAD is 0 (a pixel that is nearly
    always 0), never below `floor_share` of the data's typical std, so one rare but legitimate value is not
    "infinitely" far."""
    X = np.asarray(X, np.float64)
    median, mad = median_and_scale(X, axis=0)
    std = X.std(axis=0)
    typical = float(np.median(std[std > 0])) if (std > 0).any() else 1.0
    scale = np.maximum(np.maximum(mad, std), floor_share * max(typical, 1e-6))
    return median.astype(np.float32), scale.astype(np.float32)
