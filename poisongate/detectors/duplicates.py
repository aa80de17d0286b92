from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from pydantic import Field

from poisongate.detectors import base
from poisongate.detectors.base import Detector, DetectorOptions
from poisongate.detectors.registry import register

SKETCH_DIMS = 16


class DuplicateOptions(DetectorOptions):
    radius: float = Field(0.4, gt=0)  # x the trusted rows' median nearest-neighbour distance
    max_copies: int = Field(1, ge=1)  # occurrences of a point kept before the rest are flagged
    window: int = Field(16, ge=1)  # predecessors each row is compared with, per grid
    grids: int = Field(3, ge=1)
    grid_dims: int = Field(4, ge=1)
    seed: int = 0


@register
class NearDuplicates(Detector):
    """Trusted rows and earlier rows counted first: the score is how many copies of the point came before it.
    "Near" is an RMS distance (trusted-scaled features) within `radius` times the trusted rows' median
    nearest-neighbour distance, so the radius follows the data's own density. Not quadratic: see
    `window_pairs`."""

    name = "duplicates"
    description = "exact and near copies past max_copies (sorted grid buckets, not all pairs)"
    reason = "a near copy of an earlier row (duplicates past the cap)"
    Options = DuplicateOptions

    @property
    def min_threshold(self) -> float:
        return float(self.options.max_copies) - 1.0  # the first max_copies occurrences are kept

    def p_values(self, calibration, scores):
        """Copies are counts: a Poisson tail at the trusted rows' rate of near copies (one more copy than they
        showed, so an empty calibration is no certainty), per earlier row compared (the trusted rows, then the
        batch's rows before it). A rank would floor at 1 / (trusted rows + 1): too coarse for a few copies."""
        from scipy.stats import poisson

        s = np.asarray(scores, np.float64)
        trusted = max(len(self.ref), 1)
        rate = (float(np.sum(calibration)) + 1.0) / max(len(calibration), 1) / trusted
        p = poisson.sf(s - 1.0, rate * (trusted + np.arange(len(s))))
        return np.where(s <= self.min_threshold, 1.0, p)

    def trusted_p_values(self, calibration):
        return self.p_values(calibration, calibration)  # a count's Poisson tail: its own row barely moves the rate

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
        self.radius = self.options.radius * typical
        return self

    def fit_untrusted(self, X, y):
        self.fit(X, y)  # the nearest-neighbour scale from the batch: copies are a minority of its rows
        self.ref = self.ref[:0]
        return self

    def _scaled(self, X):
        return ((np.asarray(X, np.float32) - self.center) / self.scale).astype(np.float32)

    def _pairs(self, Z, cell, within=np.inf):
        o = self.options
        return window_pairs(Z, window=o.window, grids=o.grids, dims=o.grid_dims, cell=cell, seed=o.seed, within=within)

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
    step = min(base.CHUNK_ROWS * 16, 1 << int(np.ceil(np.log2(max(n, 2)))))  # few compiled shapes
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
