import jax.numpy as jnp
import numpy as np

from poisongate.detectors.base import Detector
from poisongate.detectors.registry import register


def row_power_ratio(X, y, mean, scale, ref_power):
    spectrum = jnp.abs(jnp.fft.rfft((X - mean) / scale, axis=1)[:, 1:]) ** 2  # without the constant term
    return jnp.max(spectrum / ref_power, axis=1)


@register
class PeriodicNoise(Detector):
    """The score is the largest ratio of the row's Fourier power to the trusted rows' median power at the same
    frequency (digits have their own 8-pixel period, which the trusted spectrum already holds)."""

    name = "periodic_noise"
    description = "structured (sine) noise: a peak in a row's Fourier power spectrum across features"
    reason = "a periodic pattern across features that the trusted data does not have"
    row_wise = True
    kernel = staticmethod(row_power_ratio)

    def fit(self, X, y):
        self.mean, self.scale = self.center_scale(X)
        spectrum = np.abs(np.fft.rfft((np.asarray(X, np.float32) - self.mean) / self.scale, axis=1)[:, 1:]) ** 2
        self.ref_power = np.maximum(np.median(spectrum, axis=0), 1e-6).astype(np.float32)  # median: robust
        return self

    def kernel_args(self):
        return self.mean, self.scale, self.ref_power
