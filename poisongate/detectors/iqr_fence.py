import jax.numpy as jnp
import numpy as np

from poisongate.detectors.base import Detector
from poisongate.detectors.registry import register


def max_fence_excess(X, y, q1, q3, iqr):
    return jnp.max(jnp.maximum(jnp.maximum(q1 - X, X - q3), 0.0) / iqr, axis=1)


@register
class IQRFence(Detector):
    name = "iqr_fence"
    description = "extreme values: how many interquartile ranges the furthest feature lies outside [Q1, Q3] (Tukey)"
    reason = "a feature beyond the trusted interquartile fences"
    row_wise = True
    kernel = staticmethod(max_fence_excess)

    def fit(self, X, y):
        X = np.asarray(X, np.float64)
        self.q1, self.q3 = (q.astype(np.float32) for q in np.quantile(X, [0.25, 0.75], axis=0))
        _, scale = self.center_scale(X)
        self.iqr = np.maximum(self.q3 - self.q1, 1.349 * scale)  # 1.349 sigma = the IQR of a normal
        return self

    def kernel_args(self):
        return self.q1, self.q3, self.iqr
