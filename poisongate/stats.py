"""Robust statistics shared by the detectors, the poisoning gate and the training monitor."""
from __future__ import annotations

import numpy as np

MAD_TO_SD = 1.4826  # the median absolute deviation of a normal distribution times this is its standard deviation


def median_and_scale(x: np.ndarray, axis: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The median and the MAD as a standard deviation, along `axis`: a centre and scale half the data can't move."""
    median = np.median(x, axis=axis, keepdims=True)
    scale = MAD_TO_SD * np.median(np.abs(x - median), axis=axis, keepdims=True)
    return np.squeeze(median, axis), np.squeeze(scale, axis)
