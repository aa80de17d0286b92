import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from pydantic import Field

from poisongate.detectors import base
from poisongate.detectors.base import Detector, DetectorOptions
from poisongate.detectors.registry import register

SKETCH_DIMS = 16
PREFILTER_DIMS = 8  # sketch coordinates summed first: a pair whose partial sum is already too far is dropped
CELL_ROWS_PER_WINDOW = 8  # a grid cell holds at most this many windows of rows, on average (see _cell_side)
SAMPLE_ROWS = 20000  # rows that estimate the cells' crowding
MAX_HALVINGS = 8
# Rows (trusted + batch) from which the grids run on threads: below it their small numpy calls mostly wait on
# each other for the GIL (10k-row batch: 24-31 ms on threads, 15 ms in sequence; 100k: 57 vs 62 ms; 1M: 0.51-0.54
# vs 0.68-0.83 s).
THREADED_ROWS = 100_000


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
        d = X.shape[1]
        # Rows are compared on a random orthonormal sketch (distances kept on average, less work); scaling and
        # sketching are one matrix, so a batch is never copied scaled.
        basis = (np.linalg.qr(np.random.default_rng(self.options.seed).standard_normal((d, SKETCH_DIMS)))[0]
                 * np.sqrt(d / SKETCH_DIMS)) if d > SKETCH_DIMS else np.eye(d)
        self.projection = (basis / self.scale[:, None]).astype(np.float32)
        self.offset = (self.center @ self.projection).astype(np.float32)
        self.ref = self._scaled(X)
        self.ref_sketch = self._sketch(X)
        sample = np.random.default_rng(0).permutation(len(self.ref))[:20000]  # enough for a median
        rows = self.ref[sample]
        per_grid = self._on_grids(self.ref_sketch[sample], 1.0, lambda order: _nearest_in_order(rows[order], order,
                                                                                                self.options.window))
        nearest = np.min(np.stack([np.full(len(sample), np.inf), *per_grid]), axis=0)  # exact, not the sketch's
        typical = float(np.sqrt(np.median(nearest))) if np.isfinite(nearest).any() else 1.0
        self.radius = self.options.radius * typical
        return self

    def fit_untrusted(self, X, y):
        self.fit(X, y)  # the nearest-neighbour scale from the batch: copies are a minority of its rows
        self.ref, self.ref_sketch = self.ref[:0], self.ref_sketch[:0]
        return self

    def _scaled(self, X):
        return ((np.asarray(X, np.float32) - self.center) / self.scale).astype(np.float32)

    def _sketch(self, X):
        return np.asarray(X, np.float32) @ self.projection - self.offset

    def _on_grids(self, S, cell, fn):
        o = self.options
        return on_grids(S, fn, window=o.window, grids=o.grids, dims=o.grid_dims, cell=cell, seed=o.seed)

    def score(self, X, y):
        m = len(self.ref)
        S = np.concatenate([self.ref_sketch, self._sketch(X)])
        lead = np.ascontiguousarray(S[:, :PREFILTER_DIMS].T)  # once for every grid: gathered by rows below
        within = 4 * self.radius**2  # on sketch distances: slack
        candidates = self._on_grids(S, 8 * self.radius,
                                    lambda order: _window_pairs_in_order(S, lead, order, self.options.window, within))
        none = np.zeros(0, np.int64)  # an empty batch has no pairs
        i = np.concatenate([none] + [i for i, _, _ in candidates])
        j = np.concatenate([none] + [j for _, j, _ in candidates])

        def rows(index):  # trusted-scaled rows of the concatenation [trusted; batch], only where asked
            out = np.empty((len(index), X.shape[1]), np.float32)
            trusted = index < m
            out[trusted] = self.ref[index[trusted]]
            out[~trusted] = self._scaled(X[index[~trusted] - m])
            return out

        close = np.mean((rows(i) - rows(j)) ** 2, axis=1) <= self.radius**2  # exact check of the few candidates
        later, earlier = np.maximum(i, j)[close], np.minimum(i, j)[close]
        pairs = np.unique(later.astype(np.int64) * len(S) + earlier)  # a pair seen by several grids counts once
        copies = np.bincount(pairs // len(S), minlength=len(S))
        return copies[m:].astype(np.float32)


def on_grids(S: np.ndarray, fn, window: int, grids: int, dims: int, cell: float, seed: int) -> list:
    """[fn(order) for each grid]: neighbours in O(n log n + n x window), never all pairs. In each grid's order, rows
    are sorted by a coarse grid cell (side `cell` in RMS units, smaller in a crowded batch: `_cell_side`) on `dims`
    random projections, then by a fine projection, so that a row's near neighbours are mostly among its `window`
    predecessors; each of `grids` shifted, rotated grids catches the pairs the others split at a cell border. Past
    THREADED_ROWS rows the grids run on threads (numpy releases the GIL)."""
    n, d = S.shape
    rng = np.random.default_rng(seed)
    side = _cell_side(S, cell * np.sqrt(d / dims), dims, window, rng)  # sqrt(d / dims): a unit projection's scale
    draws = [(rng.standard_normal((d, dims + 1)).astype(np.float32), rng.random(dims)) for _ in range(grids)]

    def one_grid(draw):
        directions, shift = draw
        proj = (directions / np.linalg.norm(directions, axis=0)).T @ S.T  # [dims + 1, rows]: rows contiguous
        return fn(_grid_order(np.floor(proj[:dims] / side + shift[:, None]).astype(np.int64), proj[dims]))

    if n < THREADED_ROWS:
        return [one_grid(draw) for draw in draws]
    with ThreadPoolExecutor(max_workers=min(grids, os.cpu_count() or 1)) as pool:
        return list(pool.map(one_grid, draws))


def _nearest_in_order(sorted_rows: np.ndarray, order: np.ndarray, window: int) -> np.ndarray:
    """Per row (original order), the smallest mean squared distance to the rows within `window` of it in `order`."""
    nearest = np.full(len(order), np.inf)
    for offset in range(1, min(window, len(order) - 1) + 1):
        d2 = np.mean((sorted_rows[offset:] - sorted_rows[:-offset]) ** 2, axis=1)
        nearest[offset:] = np.minimum(nearest[offset:], d2)
        nearest[:-offset] = np.minimum(nearest[:-offset], d2)
    out = np.empty_like(nearest)
    out[order] = nearest
    return out


def _window_pairs_in_order(S: np.ndarray, lead: np.ndarray, order: np.ndarray, window: int, within: float):
    """(i, j, d2) of each row of S and its `window` predecessors in `order` within `within`. The predecessors are
    compared on the PREFILTER_DIMS coordinates of `lead` ([PREFILTER_DIMS, rows]: S's first columns, transposed)
    first (a lower bound of the distance), in slices of rows that stay in cache; only the few pairs that pass are
    compared on all coordinates. Only `lead` is put in order, a contiguous gather per coordinate: S[order] whole
    took 0.11 s of a grid's 0.4 s at 1M rows."""
    n, d = S.shape
    bound = d * within * (1 + 1e-4)  # a partial sum of squares never exceeds the whole (slack: float rounding)
    lead = np.take(lead, order, axis=1)
    later, earlier, d2 = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0, np.float32)]
    for start in range(0, n, base.CHUNK_ROWS * 16):  # rows start..stop, each with its predecessors (also before)
        rows, offset = _close_predecessors(lead, start, min(start + base.CHUNK_ROWS * 16, n), window, bound)
        dist = np.mean((S[order[rows]] - S[order[rows - offset]]) ** 2, axis=1)
        keep = dist <= within  # nan never passes
        later.append(rows[keep])
        earlier.append((rows - offset)[keep])
        d2.append(dist[keep])
    later, earlier, d2 = (np.concatenate(parts) for parts in (later, earlier, d2))
    return order[later], order[earlier], d2


def _cell_side(S: np.ndarray, side: float, dims: int, window: int, rng: np.random.Generator) -> float:
    """The grid's side: `side`, halved while the cell an average row sits in would hold more than
    CELL_ROWS_PER_WINDOW x window rows (estimated on a sample). In a crowded cell the rows between a row and its
    near copy in sorted order outnumber the window, and the copy is missed: at a million rows most were."""
    n, d = S.shape
    sample = S[rng.permutation(n)[:SAMPLE_ROWS]]
    directions = rng.standard_normal((d, dims)).astype(np.float32)
    proj = (directions / np.linalg.norm(directions, axis=0)).T @ sample.T
    for _ in range(MAX_HALVINGS):
        counts = np.unique(_cell_keys(np.floor(proj / side).astype(np.int64)), return_counts=True)[1]
        if np.sum(counts.astype(np.float64) ** 2) / len(sample) * n / len(sample) <= CELL_ROWS_PER_WINDOW * window:
            break
        side /= 2
    return side


def _close_predecessors(lead: np.ndarray, start: int, stop: int, window: int, bound: float):
    """(sorted position, offset) of every row in start..stop and predecessor `offset` rows before it whose squared
    distance on the leading coordinates is within `bound`."""
    positions, offsets = [], []
    for offset in range(1, window + 1):
        first = max(start, offset)
        if first >= stop:
            break
        diff = lead[:, first:stop] - lead[:, first - offset : stop - offset]
        found = np.flatnonzero(np.einsum("ij,ij->j", diff, diff) <= bound) + first
        positions.append(found)
        offsets.append(np.full(len(found), offset))
    none = np.zeros(0, np.int64)
    return np.concatenate([none, *positions]), np.concatenate([none, *offsets])


def _cell_keys(coarse: np.ndarray) -> np.ndarray:
    """One int64 per grid cell (coarse: [dims, rows]), below 2^32, in the cells' lexicographic order: the cell
    coordinates packed in as few bits as they need, or their dense rank where that is more than 32 bits.
    Coordinates are rows, each contiguous: reductions along a [rows, 4] array's columns were half the time."""
    if not coarse.shape[1]:
        return np.zeros(0, np.int64)
    shifted = coarse - coarse.min(axis=1, keepdims=True)
    widths = [max(int(v).bit_length(), 1) for v in shifted.max(axis=1)]
    if sum(widths) > 32:
        return np.unique(shifted.T, axis=0, return_inverse=True)[1].reshape(-1).astype(np.int64)
    keys = np.zeros(coarse.shape[1], np.int64)
    for axis, width in enumerate(widths):
        keys <<= width
        keys |= shifted[axis]
    return keys


def _grid_order(coarse: np.ndarray, fine: np.ndarray) -> np.ndarray:
    """Rows by grid cell, then by `fine` (np.lexsort((fine, cell))), as one argsort of int64 keys: the cell in the
    high 32 bits, the float32 fine projection's order-preserving bits in the low 32. Not a stable sort (4x
    faster at 1M rows): rows with equal keys lie side by side in any order, which finds the same pairs."""
    bits = np.ascontiguousarray(fine, np.float32).view(np.uint32).astype(np.int64)
    sortable = np.where(bits >= 1 << 31, (1 << 32) - 1 - bits, bits | (1 << 31))  # negatives reversed, below 0
    return np.argsort((_cell_keys(coarse) << 32) | sortable)
