import numpy as np
import pytest

from tasks import detectors
from tasks.config import PoisongateError
from tasks.filter import calibrate

from conftest import blobs


def test_registry_holds_the_detectors_and_rejects_unknown_names():
    assert {"robust_zscore", "knn_label"} <= set(detectors.DETECTORS)
    with pytest.raises(PoisongateError, match="unknown detector 'nope'"):
        detectors.make("nope", {})


def test_robust_zscore_catches_extreme_values():
    X, y = blobs()
    batch, labels = blobs(seed=1)
    batch[:20, 3] = 1e3
    det, threshold = calibrate("robust_zscore", {}, X, y, fpr=0.01, folds=5, seed=0)
    flagged = det.score(batch, labels) > threshold
    assert flagged[:20].all()
    assert flagged[20:].mean() <= 0.05


def test_knn_label_catches_flipped_labels():
    X, y = blobs()
    batch, labels = blobs(seed=1)
    flipped = labels.copy()
    flipped[:30] = (flipped[:30] + 1) % 3
    det, threshold = calibrate("knn_label", {"k": 10}, X, y, fpr=0.01, folds=5, seed=0)
    flagged = det.score(batch, flipped) > threshold
    assert flagged[:30].all()
    assert flagged[30:].mean() <= 0.02


def test_scores_do_not_depend_on_chunking(monkeypatch):
    X, y = blobs()
    det = detectors.make("knn_label", {"k": 5}).fit(X, y)
    whole = det.score(X, y)
    monkeypatch.setattr(detectors, "CHUNK_ROWS", 64)  # 600 rows -> 10 chunks, the last one padded
    assert np.allclose(det.score(X, y), whole)


@pytest.mark.parametrize("name", ["robust_zscore", "knn_label"])
def test_calibrated_detectors_keep_false_positives_near_the_target_on_clean_digits(digits, params, name):
    (X_ref, y_ref), (X, y) = digits["reference"], digits["batch"]
    det, threshold = calibrate(name, params["filter"]["detectors"][name], X_ref, y_ref, fpr=0.01, folds=5, seed=0)
    assert (det.score(X, y) > threshold).mean() <= 0.04
