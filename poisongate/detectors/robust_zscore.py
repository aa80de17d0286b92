import jax.numpy as jnp

from poisongate.detectors.base import Detector
from poisongate.detectors.registry import register


def max_abs_z(X, y, median, scale):
    return jnp.max(jnp.abs(X - median) / scale, axis=1)


@register
class RobustZScore(Detector):
    name = "robust_zscore"
    description = "extreme values: the largest per-feature robust z-score |x - median| / scale (MAD)"
    reason = "a feature far outside the trusted data"
    row_wise = True
    kernel = staticmethod(max_abs_z)

    def fit(self, X, y):
        self.median, self.scale = self.center_scale(X)
        return self

    def kernel_args(self):
        return self.median, self.scale
