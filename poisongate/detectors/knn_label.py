from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from pydantic import Field

from poisongate.detectors.base import Detector, DetectorOptions, chunked
from poisongate.detectors.registry import register


class KNNOptions(DetectorOptions):
    k: int = Field(10, ge=1)


@partial(jax.jit, static_argnames="k")
def _knn_disagreement(X, y, ref, ref_sq, ref_y, mean, std, *, k):
    Z = (X - mean) / std
    d2 = jnp.sum(Z * Z, axis=1, keepdims=True) + ref_sq[None, :] - 2.0 * Z @ ref.T
    _, idx = jax.lax.top_k(-d2, k)
    return jnp.mean(ref_y[idx] != y[:, None], axis=1)


@register
class KNNLabel(Detector):
    """Linear in the batch: each chunk of rows is compared with the trusted rows only."""

    name = "knn_label"
    description = ("label flips: the share of the k nearest trusted neighbours (standardised features) "
                   "whose label differs")
    reason = "label disagrees with its nearest trusted neighbours"
    family = "labels"
    light_tail = True  # a bounded score
    Options = KNNOptions
    row_wise = True

    def fit(self, X, y):
        X = np.asarray(X, np.float32)
        self.mean = X.mean(axis=0)
        self.std = np.maximum(X.std(axis=0), 1e-6)
        self.ref = (X - self.mean) / self.std
        self.ref_sq = np.sum(self.ref * self.ref, axis=1)
        self.ref_y = np.asarray(y, np.int32)
        self.k = min(self.options.k, len(X))
        return self

    def score(self, X, y):
        return chunked(
            partial(_knn_disagreement, k=self.k), X, y, self.ref, self.ref_sq, self.ref_y, self.mean, self.std
        )
