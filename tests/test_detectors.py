import jax
import numpy as np
import pytest
from conftest import blobs
from flax import nnx

from poisongate.detectors import base
from poisongate.detectors import registry as detectors
from poisongate.detectors.confident_learning import label_margin
from poisongate.errors import PoisongateError
from poisongate.poisoning_gate import calibrate, screen
from poisongate.schema import to_arrays


def calibrated(name, options, X, y, fpr, folds=5, seed=0):
    """The detector fit on trusted rows, and its threshold at `fpr`."""
    detector = detectors.make(name, options)
    return detector, calibrate(detector, X, y, fpr, folds, seed)


def test_registry_holds_the_detectors_and_rejects_unknown_names():
    assert {"robust_zscore", "iqr_fence", "mahalanobis", "batch_shift", "batch_pattern", "knn_label",
            "confident_learning", "duplicates", "spectral_signature", "periodic_noise"} <= set(detectors.DETECTORS)
    with pytest.raises(PoisongateError, match="unknown detector 'nope'"):
        detectors.make("nope", {})


def test_robust_zscore_catches_extreme_values():
    X, y = blobs()
    batch, labels = blobs(seed=1)
    batch[:20, 3] = 1e3
    det, threshold = calibrated("robust_zscore", {}, X, y, fpr=0.01, folds=5, seed=0)
    flagged = det.score(batch, labels) > threshold
    assert flagged[:20].all()
    assert flagged[20:].mean() <= 0.05


def test_knn_label_catches_flipped_labels():
    X, y = blobs()
    batch, labels = blobs(seed=1)
    flipped = labels.copy()
    flipped[:30] = (flipped[:30] + 1) % 3
    det, threshold = calibrated("knn_label", {"k": 10}, X, y, fpr=0.01, folds=5, seed=0)
    flagged = det.score(batch, flipped) > threshold
    assert flagged[:30].all()
    assert flagged[30:].mean() <= 0.02


@pytest.mark.parametrize("trusted_rows", [25, 600, 1000])  # fewer groups than 32 rows each; padded; whole groups
def test_knn_label_finds_the_exact_nearest_neighbours(trusted_rows):
    rng = np.random.default_rng(trusted_rows)
    X, batch = rng.normal(size=(trusted_rows, 8)).astype(np.float32), rng.normal(size=(300, 8)).astype(np.float32)
    y, labels = rng.integers(0, 3, trusted_rows), rng.integers(0, 3, 300)  # labels at random: neighbours disagree
    batch[:20] = X[:20]  # exact copies: a distance of 0
    det = detectors.make("knn_label", {"k": 5}).fit(X, y)
    Z, ref = ((a - det.mean) / det.std for a in (batch, X))
    nearest = np.argsort(((Z[:, None, :] - ref[None]) ** 2).sum(axis=2), axis=1, kind="stable")[:, :5]
    assert np.allclose(det.score(batch, labels), (y[nearest] != labels[:, None]).mean(axis=1))


def test_batch_column_moments_match_float64_over_chunks(monkeypatch):
    from poisongate.detectors import batch_shift

    monkeypatch.setattr(batch_shift, "MOMENT_ROWS", 64)  # 1,000 rows: 16 chunks, the last one short
    X = (np.random.default_rng(0).normal(size=(1000, 5)) * [1, 10, 0.1, 3, 1] + [0, 50, -2, 7, 1e3]).astype(np.float32)
    mean, var = batch_shift.column_moments(X, X[:100].mean(axis=0))
    exact = X.astype(np.float64)
    assert np.allclose(mean, exact.mean(axis=0), rtol=1e-6, atol=1e-6)
    assert np.allclose(var, exact.var(axis=0), rtol=1e-4)


def test_scores_do_not_depend_on_chunking(monkeypatch):
    X, y = blobs()
    det = detectors.make("knn_label", {"k": 5}).fit(X, y)
    whole = det.score(X, y)
    monkeypatch.setattr(base, "CHUNK_ROWS", 64)  # 600 rows -> 10 chunks, the last one padded
    assert np.allclose(det.score(X, y), whole)


@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int64])
def test_the_one_selection_median_equals_numpys_bit_for_bit(dtype):
    from poisongate.stats import median_kept

    rng = np.random.default_rng(0)
    for shape in [(1,), (2,), (7,), (8,), (5, 3), (6, 4), (3, 10, 4)]:
        x = (rng.standard_normal(shape) * 3).astype(dtype)
        if x.size > 2:
            x.flat[1] = x.flat[2]  # a tie
        variants = [x, np.where(rng.random(shape) < 0.7, 0, x).astype(dtype)]  # mostly zeros, as pixels are
        if dtype is not np.int64:
            nan = x.copy()
            nan.flat[0] = np.nan
            variants.append(nan)
        for v in variants:
            for axis in [None, *range(v.ndim)]:
                expected = np.median(v, axis=axis, keepdims=True)
                got = median_kept(v, axis)
                assert got.dtype == expected.dtype and got.shape == expected.shape
                np.testing.assert_array_equal(got, expected)


def test_kernels_fused_into_one_call_score_as_each_detector_alone(monkeypatch):
    from poisongate.poisoning_gate import score_chunk

    X, y = blobs()
    batch, labels = blobs(seed=1)
    batch[:5] *= 20  # some rows far out, so that every score spreads
    fitted = {name: detectors.make(name, {}).fit(X, y)
              for name in ("robust_zscore", "iqr_fence", "mahalanobis", "periodic_noise", "knn_label")}
    assert [name for name, d in fitted.items() if d.kernel is None] == ["knn_label"]  # scored on its own, beside
    monkeypatch.setattr(base, "CHUNK_ROWS", 64)  # 600 rows -> 10 chunks, the last one padded
    together = score_chunk(fitted, batch, labels)
    for name, detector in fitted.items():
        np.testing.assert_allclose(together[name], detector.score(batch, labels), rtol=1e-6, err_msg=name)
    zscore = fitted["robust_zscore"]
    np.testing.assert_allclose(together["robust_zscore"],
                               np.max(np.abs(batch - zscore.median) / zscore.scale, axis=1), rtol=1e-6)


TRAINING = {"epochs": 20, "hidden": [32, 16]}  # a small recipe: the synthetic classes are easy
TRAINED = pytest.mark.slow  # trains models (compiling them is most of it): half a minute each on 2 cores
ROW_DETECTORS = ["robust_zscore", "knn_label", "iqr_fence", "mahalanobis", "periodic_noise", "duplicates",
                 pytest.param("confident_learning", marks=TRAINED), pytest.param("spectral_signature", marks=TRAINED)]


@pytest.mark.parametrize("name", ROW_DETECTORS)
def test_calibrated_detectors_keep_false_positives_near_the_target_on_clean_digits(digits, config, name):
    (X_ref, y_ref), (X, y) = digits["reference"], digits["batch"]
    options = config.filter.detectors[name]
    fpr = options.false_positive_rate or config.filter.false_positive_rate
    det, threshold = calibrated(name, options, X_ref, y_ref, fpr=fpr, folds=5, seed=0)
    # a few hundred trusted rows pin a 1% quantile only roughly: allow about one rate's worth of slack
    assert (det.score(X, y) > threshold).mean() <= max(2 * fpr, 0.015)


@pytest.mark.parametrize("name", ["batch_shift", "batch_pattern"])
def test_batch_detectors_pass_both_clean_digit_batches(digits, config, name):
    X_ref, y_ref = digits["reference"]
    det, threshold = calibrated(name, config.filter.detectors[name], X_ref, y_ref, fpr=0.002, folds=5, seed=0)
    for batch in digits["frames"][2]:
        X, y = to_arrays(batch, digits["schema"])
        assert not (det.score(X, y) > threshold).any()


def calibrated_flags(name, options, X, y, batch, labels, fpr=0.01):
    det, threshold = calibrated(name, options, X, y, fpr=fpr, folds=5, seed=0)
    return det.score(batch, labels) > threshold


def test_iqr_fence_catches_extreme_values():
    X, y = blobs()
    batch, labels = blobs(seed=1)
    batch[:20, 5] = -1e3
    flagged = calibrated_flags("iqr_fence", {}, X, y, batch, labels)
    assert flagged[:20].all() and flagged[20:].mean() <= 0.02


def correlated(n, seed):
    """Two strongly correlated features plus noise features: a broken correlation is invisible per feature."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=n)
    X = np.column_stack([a, a + 0.1 * rng.normal(size=n), rng.normal(size=(n, 4))]).astype(np.float32)
    return X, np.zeros(n, np.int32)


def test_mahalanobis_catches_rows_that_break_the_feature_correlation():
    X, y = correlated(600, 0)
    batch, labels = correlated(400, 1)
    batch[:20, 0] = np.where(batch[:20, 0] < 0, -1.5, 1.5)
    batch[:20, 1] = -batch[:20, 0]  # each value in range, the pair impossible
    flagged = calibrated_flags("mahalanobis", {}, X, y, batch, labels)
    assert flagged[:20].all() and flagged[20:].mean() <= 0.02
    zscore = calibrated_flags("robust_zscore", {}, X, y, batch, labels)
    assert zscore[:20].mean() < 0.5  # what the per-feature detector misses


def test_without_trusted_rows_mahalanobis_falls_back_to_a_robust_fit_on_the_batch(config):
    batch, labels = correlated(600, 1)
    batch[:120, 0] = np.where(batch[:120, 0] < 0, -2.0, 2.0)
    batch[:120, 1] = -batch[:120, 0]  # 20% bad rows would drag a plain covariance towards them
    cfg = config.replace("filter", false_positive_rate=0.01, detectors={"mahalanobis": {}}).filter
    result = screen(batch[:0], labels[:0], batch, labels, cfg)
    flagged = result.flags["mahalanobis"]
    assert flagged[:120].mean() >= 0.95 and flagged[120:].mean() <= 0.03


def test_batch_shift_flags_a_shifted_batch_whole_and_a_clean_one_not_at_all():
    X, y = blobs()
    batch, labels = blobs(seed=1)
    assert not calibrated_flags("batch_shift", {}, X, y, batch, labels).any()
    noisy = batch.copy()
    noisy[::4] += X.std(axis=0) * np.random.default_rng(0).normal(size=(150, batch.shape[1])).astype(np.float32)
    assert calibrated_flags("batch_shift", {}, X, y, noisy, labels).all()


def test_batch_pattern_catches_a_sine_added_to_a_third_of_the_rows():
    X, y = blobs(n_features=32)
    batch, labels = blobs(n_features=32, seed=1)
    assert not calibrated_flags("batch_pattern", {}, X, y, batch, labels).any()
    batch[::3] += 0.5 * X.std(axis=0) * np.sin(2 * np.pi * 3 * np.arange(32) / 32).astype(np.float32)
    assert calibrated_flags("batch_pattern", {}, X, y, batch, labels).all()


def test_periodic_noise_catches_rows_carrying_a_strong_periodic_pattern():
    X, y = blobs(n_features=32)
    batch, labels = blobs(n_features=32, seed=1)
    batch[:20] += X.std(axis=0) * np.sin(2 * np.pi * 5 * np.arange(32) / 32).astype(np.float32)
    flagged = calibrated_flags("periodic_noise", {}, X, y, batch, labels)
    assert flagged[:20].all() and flagged[20:].mean() <= 0.02


def test_duplicates_flag_exact_and_noisy_copies_past_the_cap():
    X, y = blobs()
    batch, labels = blobs(seed=1)
    rng = np.random.default_rng(0)
    batch[100:110] = batch[5]  # exact copies of row 5
    batch[200:210] = batch[7] + rng.normal(0, 0.02, size=(10, batch.shape[1]))  # noisy copies of row 7
    batch[300:305] = X[11]  # copies of a trusted row
    copies = np.zeros(len(batch), bool)
    copies[100:110] = copies[200:210] = copies[300:305] = True
    flagged = calibrated_flags("duplicates", {}, X, y, batch, labels)
    assert flagged[copies].all() and flagged[~copies].mean() <= 0.01  # the first occurrence is kept
    scores = detectors.make("duplicates", {}).fit(X, y).score(batch, labels)
    assert scores[109] == 10  # row 5 and nine copies came before it
    capped = calibrated_flags("duplicates", {"max_copies": 3}, X, y, batch, labels)
    assert capped[100:110].sum() == 8 and capped[300:305].sum() == 3  # the original and two copies kept


def test_near_duplicate_search_sees_copies_across_slice_borders(monkeypatch):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(5000, 16)).astype(np.float32)
    X[4000:4010] = X[3]
    trusted = rng.normal(size=(1000, 16)).astype(np.float32)
    det = detectors.make("duplicates", {}).fit(trusted, np.zeros(1000, np.int32))
    whole = det.score(X, np.zeros(5000, np.int32))
    monkeypatch.setattr(base, "CHUNK_ROWS", 16)  # slices of 256 rows instead of one
    assert np.array_equal(det.score(X, np.zeros(5000, np.int32)), whole)
    assert whole[4000:4010].tolist() == list(range(1, 11)) and whole[:4000].sum() == 0


def test_near_duplicate_grids_find_the_same_copies_on_threads_as_in_sequence(monkeypatch):
    from poisongate.detectors import duplicates

    rng = np.random.default_rng(1)
    X = rng.normal(size=(6000, 16)).astype(np.float32)
    X[5000:5020] = X[7] + rng.normal(0, 0.01, size=(20, 16))
    trusted = rng.normal(size=(1000, 16)).astype(np.float32)
    det = detectors.make("duplicates", {}).fit(trusted, np.zeros(1000, np.int32))
    in_sequence = det.score(X, np.zeros(6000, np.int32))
    monkeypatch.setattr(duplicates, "THREADED_ROWS", 0)
    assert np.array_equal(det.score(X, np.zeros(6000, np.int32)), in_sequence)
    assert in_sequence[5000:5020].tolist() == list(range(1, 21))


@TRAINED
def test_confident_learning_catches_flipped_labels_from_out_of_fold_probabilities():
    X, y = blobs(n_per_class=150)
    batch, labels = blobs(n_per_class=100, seed=1)
    flipped = labels.copy()
    flipped[::10] = (flipped[::10] + 1) % 3
    flagged = calibrated_flags("confident_learning", TRAINING, X, y, batch, flipped)
    poisoned = flipped != labels
    assert flagged[poisoned].all() and flagged[~poisoned].mean() <= 0.01


def test_a_linear_label_model_ranks_every_flip_above_the_clean_rows():
    """hidden: [] is softmax regression (no hidden layer), which is all that linearly separable classes need."""
    from poisongate.learning import models

    X, y = blobs(n_per_class=150)
    batch, labels = blobs(n_per_class=100, seed=1)
    flipped = labels.copy()
    flipped[::10] = (flipped[::10] + 1) % 3
    detector = detectors.make("confident_learning", {"hidden": [], "epochs": 20}).fit(X, y)
    recipe = detector.options.recipe(len(X))
    spec = models.model_spec(recipe, X, (0, 1, 2))
    parameters = sum(a.size for a in jax.tree.leaves(nnx.state(models.build(spec), nnx.Param)))
    assert parameters == (X.shape[1] + 1) * 3
    scores = detector.score(batch, flipped)
    poisoned = flipped != labels
    assert scores[poisoned].min() > scores[~poisoned].max()


def test_a_detectors_model_trains_fewer_epochs_on_a_larger_batch():
    from poisongate.detectors.model_options import ModelOptions

    options = ModelOptions(epochs=40, max_examples=1_500_000)
    assert options.recipe(30_000).epochs == 40  # the default 10k-row night: its full schedule
    assert options.recipe(1_000_000).epochs == 2  # 1.5M / 1M rows, rounded up: about as many steps as 40 x 37,500
    assert options.recipe(10**8).epochs == 1


def test_label_margin_follows_confident_learning_per_class_thresholds():
    proba = np.array([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.45, 0.55]])
    y = np.array([0, 0, 1, 0])
    # t = (mean p0 over rows labelled 0, mean p1 over rows labelled 1) = (0.65, 0.7)
    expected = [0.1 / 0.7 - 0.9 / 0.65, 0.4 / 0.7 - 0.6 / 0.65, 0.3 / 0.65 - 0.7 / 0.7, 0.55 / 0.7 - 0.45 / 0.65]
    assert np.allclose(label_margin(proba, y), expected, atol=1e-6)


@TRAINED
def test_spectral_signature_catches_a_backdoor_in_the_target_class():
    X, y = blobs(n_per_class=150, n_features=16)
    batch, labels = blobs(n_per_class=100, n_features=16, seed=1)
    poisoned = np.zeros(len(labels), bool)
    poisoned[np.flatnonzero(labels == 1)[:15]] = True
    batch[poisoned, :3] = 8.0  # the trigger
    labels = np.where(poisoned, 0, labels)  # relabelled to the target class
    flagged = calibrated_flags("spectral_signature", TRAINING, X, y, batch, labels)
    assert flagged[poisoned].all() and flagged[~poisoned].mean() <= 0.02


def test_near_copies_are_found_in_a_large_batch():
    """Grid cells shrink as the batch grows: with cells sized for the trusted rows alone, copies among 300,000
    rows were more than `window` sorted rows apart and 4 in 10 were missed."""
    rng = np.random.default_rng(0)
    n, d = 300_000, 16
    trusted, batch = rng.normal(size=(5000, d)).astype(np.float32), rng.normal(size=(n, d)).astype(np.float32)
    sources = rng.choice(n, 40, replace=False)
    copies = rng.choice(np.setdiff1d(np.arange(n), sources), (40, 5), replace=False)
    batch[copies] = batch[sources][:, None, :] + rng.normal(0, 0.01, (40, 5, d)).astype(np.float32)
    scores = detectors.make("duplicates", {}).fit(trusted, np.zeros(5000, np.int32)).score(batch, np.zeros(n))
    later_of_each_pair = np.maximum(copies, sources[:, None]).ravel()
    assert (scores[later_of_each_pair] >= 1).mean() >= 0.99


def test_spectral_scores_from_the_gram_matrix_equal_those_of_an_svd():
    """The top eigenvector of a class's centred Gram matrix is its top right singular vector: same scores."""
    from poisongate.detectors.spectral_signature import class_signature_scores

    rng = np.random.default_rng(0)
    H = np.maximum(rng.standard_normal((3000, 16)) + rng.standard_normal(16), 0).astype(np.float32)
    H[:120:3, 3] += 3.0  # a planted direction in 40 of class 0's rows
    y, trusted = np.arange(3000) % 3, np.arange(3000) >= 1000
    expected = np.zeros(len(H))
    for c in range(3):
        rows = np.flatnonzero(y == c)
        centred = H[rows].astype(np.float64) - H[rows].astype(np.float64).mean(axis=0)
        proj = (centred @ np.linalg.svd(centred, full_matrices=False)[2][0]) ** 2
        expected[rows] = proj / np.median(proj[trusted[rows]])
    scores = class_signature_scores(lambda: ((start, H[start : start + 700]) for start in range(0, 3000, 700)), y,
                                    trusted)  # in parts, as the detector embeds them
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("spread", [10, 1 << 12])  # packed in 32 bits, or past them: the cells' dense rank
def test_grid_cell_keys_order_cells_as_their_coordinates_do(spread):
    from poisongate.detectors.duplicates import _cell_keys

    coarse = np.random.default_rng(0).integers(-spread, spread, size=(4, 500))  # [dims, rows]
    keys = _cell_keys(coarse)
    lexicographic = np.lexsort(coarse[::-1])  # first coordinate most significant
    assert np.all(np.diff(keys[lexicographic]) >= 0)
    same = np.all(coarse[:, :, None] == coarse[:, None, :], axis=0)
    assert np.array_equal(keys[:, None] == keys[None, :], same)
