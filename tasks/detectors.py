"""Poisoning detectors: one class per issue type, registered by name (cleanlab's issue-manager pattern).

Each detector is fit on trusted rows and scores untrusted ones: `fit(X, y)` then `score(X, y)` gives one
float per row, higher meaning more suspicious. Thresholds are not the detector's business: the filter
gate calibrates them on out-of-sample trusted scores (`held_out_scores`, see tasks/filter.py).
Where no trusted rows exist, `fit_untrusted(X, y)` fits a robust estimate on the batch itself.
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
    min_threshold: float = -np.inf  # a floor under the calibrated threshold (e.g. a cap on copies)
    row_wise: ClassVar[bool] = False  # a row's score depends on that row alone: the batch may be scored in chunks

    def __init__(self, **options: Any) -> None:
        self.options = options

    def fit(self, X: np.ndarray, y: np.ndarray) -> "Detector":
        raise NotImplementedError

    def fit_untrusted(self, X: np.ndarray, y: np.ndarray) -> "Detector":
        """No trusted rows: fit on the batch itself. The default estimators are already robust (median/MAD)."""
        return self.fit(X, y)

    def score(self, X: np.ndarray, y: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def center_scale(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return robust_center_scale(X, float(self.options.get("scale_floor", 0.25)))

    def held_out_scores(self, X: np.ndarray, y: np.ndarray, folds: int, seed: int) -> np.ndarray:
        """Scores of trusted rows by detectors fit without them (k-fold): what a clean batch looks like."""
        order = np.random.default_rng(seed).permutation(len(X))
        held_out = []
        for part in np.array_split(order, folds):
            rest = np.setdiff1d(order, part)
            held_out.append(type(self)(**self.options).fit(X[rest], y[rest]).score(X[part], y[part]))
        return np.concatenate(held_out)


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


def chunked(fn, X: np.ndarray, y: np.ndarray, *fitted) -> np.ndarray:
    """Apply a jitted per-row scorer chunk by chunk (row_chunks)."""
    out = [np.asarray(fn(xs, ys, *fitted))[:rows] for xs, ys, rows in row_chunks(X, y)]
    return np.concatenate(out) if out else np.zeros(0, np.float32)


def robust_center_scale(X: np.ndarray, floor_share: float) -> tuple[np.ndarray, np.ndarray]:
    """Median and a scale per feature: 1.4826 MAD, or the std where the MAD is 0 (a pixel that is nearly
    always 0), never below `floor_share` of the data's typical std, so one rare but legitimate value is not
    "infinitely" far."""
    X = np.asarray(X, np.float64)
    median = np.median(X, axis=0)
    mad = 1.4826 * np.median(np.abs(X - median), axis=0)
    std = X.std(axis=0)
    typical = float(np.median(std[std > 0])) if (std > 0).any() else 1.0
    scale = np.maximum(np.maximum(mad, std), floor_share * max(typical, 1e-6))
    return median.astype(np.float32), scale.astype(np.float32)


@jax.jit
def _max_abs_z(X, y, median, scale):
    return jnp.max(jnp.abs(X - median) / scale, axis=1)


@register
class RobustZScore(Detector):
    """Largest per-feature robust z-score |x - median| / (1.4826 MAD): extreme values and feature noise."""

    name = "robust_zscore"
    reason = "a feature far outside the trusted data (robust z-score)"
    row_wise = True

    def fit(self, X, y):
        self.median, self.scale = self.center_scale(X)
        return self

    def score(self, X, y):
        return chunked(_max_abs_z, X, y, self.median, self.scale)


@jax.jit
def _max_fence_excess(X, y, q1, q3, iqr):
    return jnp.max(jnp.maximum(jnp.maximum(q1 - X, X - q3), 0.0) / iqr, axis=1)


@register
class IQRFence(Detector):
    """Tukey's fences: how many interquartile ranges the furthest feature lies outside [Q1, Q3]."""

    name = "iqr_fence"
    reason = "a feature beyond the trusted interquartile fences"
    row_wise = True

    def fit(self, X, y):
        X = np.asarray(X, np.float64)
        self.q1, self.q3 = (q.astype(np.float32) for q in np.quantile(X, [0.25, 0.75], axis=0))
        _, scale = self.center_scale(X)
        self.iqr = np.maximum(self.q3 - self.q1, 1.349 * scale)  # 1.349 sigma = the IQR of a normal
        return self

    def score(self, X, y):
        return chunked(_max_fence_excess, X, y, self.q1, self.q3, self.iqr)


@jax.jit
def _mahalanobis(X, y, center, precision_root):
    Z = (X - center) @ precision_root
    return jnp.sqrt(jnp.sum(Z * Z, axis=1))


@register
class RobustMahalanobis(Detector):
    """Mahalanobis distance to the trusted rows (features scaled robustly, a small ridge keeps constant or
    collinear features invertible); on an untrusted batch, a reweighted minimum covariance determinant fit."""

    name = "mahalanobis"
    reason = "an unusual combination of features (robust Mahalanobis distance)"
    row_wise = True

    def fit(self, X, y):
        _, self.scale = self.center_scale(X)
        Z = np.asarray(X, np.float64) / self.scale
        return self._keep(Z.mean(axis=0), np.cov(Z, rowvar=False))

    def fit_untrusted(self, X, y):
        from sklearn.covariance import MinCovDet

        _, self.scale = self.center_scale(X)
        rng = np.random.default_rng(int(self.options.get("seed", 0)))
        sample = np.asarray(X, np.float64)[rng.permutation(len(X))[: int(self.options.get("mcd_rows", 5000))]]
        mcd = MinCovDet(random_state=0).fit(sample / self.scale)  # reweighted: tolerates up to half bad rows
        return self._keep(mcd.location_, mcd.covariance_)

    def _keep(self, location, covariance):
        self.center = (location * self.scale).astype(np.float32)
        # precision = L L^T, so |x L| is the distance; folding 1/scale into L keeps scoring one matmul
        ridge = float(self.options.get("ridge", 0.01)) * np.eye(len(covariance))  # constant or collinear features
        root = np.linalg.cholesky(np.linalg.inv(np.atleast_2d(covariance) + ridge))
        self.precision_root = (root / self.scale[:, None]).astype(np.float32)
        return self

    def score(self, X, y):
        return chunked(_mahalanobis, X, y, self.center, self.precision_root)


def column_moments(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column mean and variance in float64, over row chunks (memory stays flat), merged with Chan et al.'s
    pairwise update."""
    count, mean, m2 = 0, np.zeros(X.shape[1]), np.zeros(X.shape[1])
    for start in range(0, len(X), CHUNK_ROWS * 64):
        chunk = np.asarray(X[start : start + CHUNK_ROWS * 64], np.float64)
        n, chunk_mean = len(chunk), chunk.mean(axis=0)
        delta = chunk_mean - mean
        mean = mean + delta * n / (count + n)
        m2 = m2 + ((chunk - chunk_mean) ** 2).sum(axis=0) + delta**2 * count * n / (count + n)
        count += n
    return mean, m2 / max(count, 1)


@register
class BatchShift(Detector):
    """The batch as a whole: z-statistics of its features' means and log-variances against the trusted rows.
    Every row gets the batch's score, so a shifted batch is flagged whole and refused."""

    name = "batch_shift"
    reason = "the batch's feature mean or variance has shifted from the trusted data"

    def fit(self, X, y):
        X = np.asarray(X, np.float64)
        _, floor = self.center_scale(X)
        self.floor = floor.astype(np.float64) ** 2
        self.mean, self.var = X.mean(axis=0), np.maximum(X.var(axis=0), self.floor)
        return self

    def fit_untrusted(self, X, y):
        self.mean = None  # a batch cannot shift from itself: nothing to compare against
        return self

    def score(self, X, y):
        n = len(X)
        if self.mean is None or n < 2:
            return np.zeros(n, np.float32)
        mean, var = column_moments(X)
        mean_z = (mean - self.mean) / np.sqrt(self.var / n)
        var_z = np.log(np.maximum(var, self.floor) / self.var) * np.sqrt(n / 2)
        return np.full(n, self.statistic(mean_z, var_z), np.float32)

    @staticmethod
    def statistic(mean_z: np.ndarray, var_z: np.ndarray) -> float:
        """Largest shift of one feature, or a diffuse one (noise on every feature: small per feature but
        adding up), as chi-square-like sums standardised to about N(0, 1)."""
        d = len(mean_z)
        diffuse = max(np.sum(mean_z**2) - d, np.sum(var_z**2) - d) / np.sqrt(2 * d)
        return float(max(np.abs(mean_z).max(), np.abs(var_z).max(), diffuse))

    def held_out_scores(self, X, y, folds, seed):
        """Many random halves of the trusted rows, each scored against the other half: one batch each."""
        rng = np.random.default_rng(seed)
        out = []
        for _ in range(int(self.options.get("calibration_splits", 200))):
            order = rng.permutation(len(X))
            half, rest = order[: len(X) // 2], order[len(X) // 2 :]
            out.append(type(self)(**self.options).fit(X[rest], y[rest]).score(X[half], y[half])[0])
        return np.asarray(out)


@register
class BatchPattern(BatchShift):
    """Subtle structured noise: a pattern added to many rows (a sine across the features) moves each feature's
    mean a little but coherently, a peak in the Fourier spectrum of the batch's mean shifts (each shift is
    about N(0, 1) on clean data, so each frequency's amplitude is scaled to about 1). Batch-level, like
    batch_shift: every row gets the batch's score."""

    name = "batch_pattern"
    reason = "a periodic pattern across features in the batch's mean (structured noise)"

    @staticmethod
    def statistic(mean_z, var_z):
        return float(np.max(np.abs(np.fft.rfft(mean_z)[1:])) / np.sqrt(len(mean_z) / 2))


@partial(jax.jit, static_argnames="k")
def _knn_disagreement(X, y, ref, ref_sq, ref_y, mean, std, *, k):
    Z = (X - mean) / std
    d2 = jnp.sum(Z * Z, axis=1, keepdims=True) + ref_sq[None, :] - 2.0 * Z @ ref.T
    _, idx = jax.lax.top_k(-d2, k)
    return jnp.mean(ref_y[idx] != y[:, None], axis=1)


@register
class KNNLabel(Detector):
    """Share of the k nearest trusted neighbours (standardised features) whose label differs: label flips.
    Linear in the batch: each chunk of rows is compared with the trusted rows only."""

    name = "knn_label"
    reason = "label disagrees with its nearest trusted neighbours"
    row_wise = True

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


def _train_cfg(options: dict[str, Any]) -> dict[str, Any]:
    """The detector's own small training recipe (filter.detectors.<name> in params.yaml)."""
    defaults = {"seed": 0, "model": "mlp", "hidden": [128, 64], "epochs": 40, "batch_size": 64,
                "learning_rate": 0.002, "weight_decay": 0.0001}
    return {key: options.get(key, value) for key, value in defaults.items()}


def _classes(*ys: np.ndarray) -> tuple[int, ...]:
    return tuple(range(int(max(int(np.max(y, initial=-1)) for y in ys)) + 1))


@register
class ConfidentLearning(Detector):
    """Confident learning (Northcutt et al.): out-of-fold class probabilities from k models trained at once
    (vmap, tasks.crossval) on the trusted rows plus the batch; the score is the normalised margin by which
    the most likely other class beats the given label."""

    name = "confident_learning"
    reason = "out-of-fold model confidently predicts another label"
    min_threshold = 0.0  # never flag a row whose given label still beats every other class

    def fit(self, X, y):
        self.X_ref, self.y_ref = np.asarray(X, np.float32), np.asarray(y, np.int32)
        return self

    def fit_untrusted(self, X, y):
        return self.fit(X[:0], y[:0])  # out-of-fold over the batch alone is already robust to its labels

    def out_of_fold(self, X, y) -> np.ndarray:
        from tasks import model as models
        from tasks.crossval import cross_validate

        cfg = _train_cfg(self.options)
        spec = models.model_spec(cfg, X, _classes(y, self.y_ref))
        return cross_validate(X, y, spec, cfg, int(self.options.get("folds", 5)))[1]

    def score(self, X, y):
        X_all = np.concatenate([self.X_ref, np.asarray(X, np.float32)])
        y_all = np.concatenate([self.y_ref, np.asarray(y, np.int32)])
        return label_margin(self.out_of_fold(X_all, y_all), y_all)[len(self.X_ref) :]

    def held_out_scores(self, X, y, folds, seed):
        self.fit(X[:0], y[:0])
        return self.score(X, y)  # out-of-fold already: one cross-validation over the trusted rows


def label_margin(proba: np.ndarray, y: np.ndarray) -> np.ndarray:
    """max over other classes of p_j / t_j minus p_y / t_y, with t_j the mean probability of class j over
    rows labelled j (confident learning's per-class thresholds, which correct for class-wise confidence)."""
    n_classes = proba.shape[1]
    counts = np.bincount(y, minlength=n_classes)
    sums = np.zeros((n_classes, n_classes))
    np.add.at(sums, y, proba)
    t = np.where(counts > 0, np.diag(sums) / np.maximum(counts, 1), 1.0)
    ratio = proba / np.maximum(t, 1e-6)
    given = ratio[np.arange(len(y)), y]
    ratio[np.arange(len(y)), y] = -np.inf
    return (ratio.max(axis=1) - given).astype(np.float32)


@register
class NearDuplicates(Detector):
    """Exact and near duplicates, trusted rows and earlier rows counted first: the score is how many copies of
    the point came before it. "Near" is an RMS distance (trusted-scaled features) within `radius` times the
    trusted rows' median nearest-neighbour distance, so the radius follows the data's own density. Not
    quadratic: see `window_pairs`."""

    name = "duplicates"
    reason = "a near copy of an earlier row (duplicates past the cap)"

    @property
    def min_threshold(self) -> float:
        return float(self.options.get("max_copies", 1)) - 1.0  # the first max_copies occurrences are kept

    def fit(self, X, y):
        self.center, self.scale = self.center_scale(X)
        self.ref = self._scaled(X)
        sample = self.ref[np.random.default_rng(0).permutation(len(self.ref))[:20000]]  # enough for a median
        nearest = np.full(len(sample), np.inf)
        for i, j, _ in self._pairs(sample, cell=1.0):
            d2 = np.mean((sample[i] - sample[j]) ** 2, axis=1)  # exact, not the sketch's
            np.minimum.at(nearest, i, d2)
            np.minimum.at(nearest, j, d2)
        typical = float(np.sqrt(np.median(nearest))) if np.isfinite(nearest).any() else 1.0
        self.radius = float(self.options.get("radius", 0.4)) * typical
        return self

    def fit_untrusted(self, X, y):
        self.fit(X, y)  # the nearest-neighbour scale from the batch: copies are a minority of its rows
        self.ref = self.ref[:0]
        return self

    def _scaled(self, X):
        return ((np.asarray(X, np.float32) - self.center) / self.scale).astype(np.float32)

    def _pairs(self, Z, cell, within=np.inf):
        return window_pairs(Z, window=int(self.options.get("window", 16)), grids=int(self.options.get("grids", 3)),
                            dims=int(self.options.get("grid_dims", 4)), cell=cell, seed=int(self.options.get("seed", 0)),
                            within=within)

    def score(self, X, y):
        Z = np.concatenate([self.ref, self._scaled(X)])
        candidates = list(self._pairs(Z, 8 * self.radius, within=4 * self.radius**2))  # sketch distances: slack
        none = np.zeros(0, np.int64)  # an empty batch has no pairs
        i = np.concatenate([none] + [i for i, _, _ in candidates])
        j = np.concatenate([none] + [j for _, j, _ in candidates])
        close = np.mean((Z[i] - Z[j]) ** 2, axis=1) <= self.radius**2  # exact check of the few candidates
        later, earlier = np.maximum(i, j)[close], np.minimum(i, j)[close]
        pairs = np.unique(later.astype(np.int64) * len(Z) + earlier)  # a pair seen by several grids counts once
        copies = np.bincount(pairs // len(Z), minlength=len(Z))
        return copies[len(self.ref) :].astype(np.float32)


@partial(jax.jit, static_argnames="window")
def _distance_to_predecessors(Z_sorted, *, window):
    """d2[o - 1, i]: mean squared difference of sorted row i + window and sorted row i + window - o."""
    rows = Z_sorted.shape[0] - window
    return jnp.stack([
        jnp.mean((Z_sorted[window:] - jax.lax.dynamic_slice_in_dim(Z_sorted, window - o, rows)) ** 2, axis=1)
        for o in range(1, window + 1)
    ])


SKETCH_DIMS = 16


def window_pairs(Z: np.ndarray, window: int, grids: int, dims: int, cell: float, seed: int, within: float = np.inf):
    """Candidate neighbour pairs (i, j, sketched mean squared distance <= within) in O(n log n + n x window),
    never all pairs: rows are sorted by a coarse grid cell (side `cell` in RMS units) on `dims` random
    projections, then by a fine projection, and each row is paired with its `window` predecessors; each of
    `grids` shifted, rotated grids catches the pairs the others split at a cell border. Fixed-size slices keep
    device memory flat."""
    n, d = Z.shape
    rng = np.random.default_rng(seed)
    if d > SKETCH_DIMS:  # compare rows on a random orthonormal sketch: distances kept on average, 4x less work
        basis = np.linalg.qr(rng.standard_normal((d, SKETCH_DIMS)))[0].astype(np.float32)
        Z, d = (Z @ basis) * np.float32(np.sqrt(d / SKETCH_DIMS)), SKETCH_DIMS
    step = min(CHUNK_ROWS * 16, 1 << int(np.ceil(np.log2(max(n, 2)))))  # few compiled shapes
    side = cell * np.sqrt(d / dims)  # a projection on a unit direction scales RMS distances by sqrt(d / dims)
    for _ in range(grids):
        directions = rng.standard_normal((d, dims + 1)).astype(np.float32)
        proj = Z @ (directions / np.linalg.norm(directions, axis=0))
        coarse = np.floor(proj[:, :dims] / side + rng.random(dims)).astype(np.int64)
        cell_id = _cell_ids(coarse)
        order = np.lexsort((proj[:, dims], cell_id))
        for start in range(0, n, step):  # each slice with `window` rows of overlap before it
            rows = order[max(start - window, 0) : start + step]
            lead = window - min(start, window)
            tail = step + window - lead - len(rows)
            padded = np.pad(Z[rows], ((lead, tail), (0, 0)), constant_values=np.inf)  # inf: never close
            d2 = np.asarray(_distance_to_predecessors(padded, window=window))
            rows = np.pad(rows, (lead, tail), constant_values=-1)
            offset, i = np.nonzero(d2 <= within)  # padding's inf and nan never pass
            yield rows[i + window], rows[i + window - offset - 1], d2[offset, i]


def _cell_ids(coarse: np.ndarray) -> np.ndarray:
    """One sortable integer per grid cell (cells are small integers: pack them in 64 bits, 16 per axis)."""
    shifted = coarse - coarse.min(axis=0)
    bits = 64 // coarse.shape[1]
    ids = np.zeros(len(coarse), np.int64)
    for axis in range(coarse.shape[1]):
        ids = (ids << bits) | np.minimum(shifted[:, axis], (1 << bits) - 1)
    return ids


@jax.jit
def _row_power_ratio(X, y, mean, scale, ref_power):
    spectrum = jnp.abs(jnp.fft.rfft((X - mean) / scale, axis=1)[:, 1:]) ** 2  # without the constant term
    return jnp.max(spectrum / ref_power, axis=1)


@register
class PeriodicNoise(Detector):
    """Structured noise: a periodic pattern across the features shows as a peak in the row's Fourier power
    spectrum; the score is the largest ratio of the row's power to the trusted rows' mean power at the same
    frequency (digits have their own 8-pixel period, which the trusted spectrum already holds)."""

    name = "periodic_noise"
    reason = "a periodic pattern across features that the trusted data does not have"
    row_wise = True

    def fit(self, X, y):
        self.mean, self.scale = self.center_scale(X)
        spectrum = np.abs(np.fft.rfft((np.asarray(X, np.float32) - self.mean) / self.scale, axis=1)[:, 1:]) ** 2
        self.ref_power = np.maximum(np.median(spectrum, axis=0), 1e-6).astype(np.float32)  # median: robust
        return self

    def score(self, X, y):
        return chunked(_row_power_ratio, X, y, self.mean, self.scale, self.ref_power)


@register
class SpectralSignature(Detector):
    """Spectral signatures (Tran et al. 2018), per class: poisons that share a trigger or a clean-label
    perturbation pull the model's learned representation of their class along one direction. The score is
    the squared projection on the top singular vector of the class's centred representations, in units of
    the trusted rows' median along that direction."""

    name = "spectral_signature"
    reason = "stands out along the top singular direction of its class's learned representation"

    def fit(self, X, y):
        self.X_ref, self.y_ref = np.asarray(X, np.float32), np.asarray(y, np.int32)
        return self

    def fit_untrusted(self, X, y):
        return self.fit(X[:0], y[:0])

    def score(self, X, y):
        from tasks import model as models
        from tasks.train import embed, fit

        X_all = np.concatenate([self.X_ref, np.asarray(X, np.float32)])
        y_all = np.concatenate([self.y_ref, np.asarray(y, np.int32)])
        cfg = _train_cfg(self.options)
        spec = models.model_spec(cfg, X_all, _classes(y_all))
        Xs = models.scale(X_all, spec)
        graphdef, params, *_ = fit(Xs, y_all, spec, cfg)
        H = np.asarray(embed(graphdef, params, Xs), np.float64)
        trusted = np.arange(len(X_all)) < len(self.X_ref)
        return class_signature_scores(H, y_all, trusted)[len(self.X_ref) :]

    def held_out_scores(self, X, y, folds, seed):
        self.fit(X[:0], y[:0])
        return self.score(X, y)


def class_signature_scores(H: np.ndarray, y: np.ndarray, trusted: np.ndarray) -> np.ndarray:
    """Per class (a loop over classes, not rows): squared projection on the top right singular vector."""
    scores = np.zeros(len(H), np.float32)
    for c in np.unique(y):
        rows = np.flatnonzero(y == c)
        if len(rows) < 3:
            continue
        centred = H[rows] - H[rows].mean(axis=0)
        top = np.linalg.svd(centred, full_matrices=False)[2][0]
        proj = (centred @ top) ** 2
        norm = proj[trusted[rows]] if trusted[rows].any() else proj  # no trusted rows: the class itself
        scores[rows] = proj / max(float(np.median(norm)), 1e-12)
    return scores


def make(name: str, options: dict[str, Any] | None) -> Detector:
    if name not in DETECTORS:
        from tasks.config import PoisongateError

        raise PoisongateError(f"params.yaml: unknown detector {name!r} in filter.detectors; known: {sorted(DETECTORS)}")
    return DETECTORS[name](**(options or {}))
