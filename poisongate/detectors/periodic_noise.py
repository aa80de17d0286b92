import jax
import jax.numpy as jnp
import numpy as np

from poisongate.detectors.base import Detector, chunked
from poisongate.detectors.registry import register


def fourier_basis(d: int) -> np.ndarray:
    """[d, 2K]: the real and imaginary parts of the real DFT over d features at frequencies 1..d // 2 (no constant
    term), so a row's spectrum is one matrix product: at 64 features a matmul is 3x faster than an FFT per row."""
    angle = 2 * np.pi * np.outer(np.arange(d), np.arange(1, d // 2 + 1)) / d
    return np.concatenate([np.cos(angle), -np.sin(angle)], axis=1)


@jax.jit
def _row_power_ratio(X, y, basis, offset, inverse_ref_power):
    coefficients = jnp.dot(X, basis, precision="highest") - offset  # of the standardised row: scaling folded in
    k = basis.shape[1] // 2
    power = coefficients[:, :k] ** 2 + coefficients[:, k:] ** 2
    return jnp.max(power * inverse_ref_power, axis=1)


@register
class PeriodicNoise(Detector):
    """The score is the largest ratio of the row's Fourier power to the trusted rows' median power at the same
    frequency (digits have their own 8-pixel period, which the trusted spectrum already holds)."""

    name = "periodic_noise"
    description = "structured (sine) noise: a peak in a row's Fourier power spectrum across features"
    reason = "a periodic pattern across features that the trusted data does not have"
    row_wise = True

    def fit(self, X, y):
        mean, scale = self.center_scale(X)
        basis = fourier_basis(X.shape[1]) / scale.astype(np.float64)[:, None]  # ((x - mean) / scale) @ basis
        self.basis, self.offset = basis.astype(np.float32), (mean @ basis).astype(np.float32)
        k = basis.shape[1] // 2
        coefficients = np.asarray(X, np.float64) @ basis - mean @ basis
        spectrum = coefficients[:, :k] ** 2 + coefficients[:, k:] ** 2
        self.inverse_ref_power = 1.0 / np.maximum(np.median(spectrum, axis=0), 1e-6).astype(np.float32)  # robust
        return self

    def score(self, X, y):
        return chunked(_row_power_ratio, X, y, self.basis, self.offset, self.inverse_ref_power)
