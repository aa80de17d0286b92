import jax.numpy as jnp
import numpy as np
from pydantic import Field

from poisongate.detectors.base import Detector, DetectorOptions
from poisongate.detectors.registry import register


class MahalanobisOptions(DetectorOptions):
    ridge: float = Field(0.01, gt=0)  # added to the covariance: constant or collinear features stay invertible
    mcd_rows: int = Field(5000, ge=2)  # rows sampled for the minimum covariance determinant (untrusted fit)
    seed: int = 0


def mahalanobis_distance(X, y, center, precision_root):
    Z = (X - center) @ precision_root
    return jnp.sqrt(jnp.sum(Z * Z, axis=1))


@register
class RobustMahalanobis(Detector):
    name = "mahalanobis"
    description = ("rows off the trusted covariance: Mahalanobis distance (features scaled robustly; a reweighted "
                   "minimum covariance determinant fit when there are no trusted rows)")
    reason = "an unusual combination of features"
    Options = MahalanobisOptions
    row_wise = True
    kernel = staticmethod(mahalanobis_distance)

    def fit(self, X, y):
        _, self.scale = self.center_scale(X)
        Z = np.asarray(X, np.float64) / self.scale
        return self._keep(Z.mean(axis=0), np.cov(Z, rowvar=False))

    def fit_untrusted(self, X, y):
        from sklearn.covariance import MinCovDet

        _, self.scale = self.center_scale(X)
        rng = np.random.default_rng(self.options.seed)
        sample = np.asarray(X, np.float64)[rng.permutation(len(X))[: self.options.mcd_rows]]
        mcd = MinCovDet(random_state=0).fit(sample / self.scale)  # reweighted: tolerates up to half bad rows
        return self._keep(mcd.location_, mcd.covariance_)

    def _keep(self, location, covariance):
        self.center = (location * self.scale).astype(np.float32)
        # precision = L L^T, so |x L| is the distance; folding 1/scale into L keeps scoring one matmul
        ridge = self.options.ridge * np.eye(len(covariance))
        root = np.linalg.cholesky(np.linalg.inv(np.atleast_2d(covariance) + ridge))
        self.precision_root = (root / self.scale[:, None]).astype(np.float32)
        return self

    def kernel_args(self):
        return self.center, self.precision_root
