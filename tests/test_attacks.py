import numpy as np
import pytest

from poisongate.attacks import ATTACKS, add_trigger, attack_success_rate, simulate
from poisongate.errors import PoisongateError

ROW_ATTACKS = sorted(set(ATTACKS) - {"irrelevant_features"})


def expected_count(name, y, rate, options):
    if name == "targeted_flip":
        return round(rate * int((y == options["source"]).sum()))
    return round(rate * len(y))


@pytest.mark.parametrize("name", ROW_ATTACKS)
@pytest.mark.parametrize("rate", [0.1, 0.3])
def test_attack_poisons_exact_share_deterministically_and_leaves_the_rest(digits, config, name, rate):
    X, y = digits["batch"]
    options = config.simulate.options.get(name)
    Xp, yp, mask = simulate(X, y, name, rate, seed=3, n_classes=10, options=options)
    assert mask.sum() == expected_count(name, y, rate, options or {}) > 0
    assert Xp.dtype == X.dtype and Xp.shape == X.shape
    changed = (Xp != X).any(axis=1) | (yp != y)
    assert np.array_equal(changed, mask)  # every poisoned row changed, every other row byte-identical
    assert np.array_equal(Xp[~mask].tobytes(), X[~mask].tobytes())
    assert np.array_equal(yp[~mask], y[~mask])
    Xq, yq, mask2 = simulate(X, y, name, rate, seed=3, n_classes=10, options=options)
    assert np.array_equal(mask, mask2) and np.array_equal(Xp, Xq) and np.array_equal(yp, yq)
    _, _, other = simulate(X, y, name, rate, seed=4, n_classes=10, options=options)
    assert not np.array_equal(mask, other)  # the seed matters


@pytest.mark.parametrize("rate,extra", [(0.1, 6), (0.3, 19), (0.001, 1)])
def test_irrelevant_features_append_columns_and_keep_the_original_ones(digits, rate, extra):
    X, y = digits["batch"]
    Xp, yp, mask = simulate(X, y, "irrelevant_features", rate, seed=3, n_classes=10)
    assert Xp.shape == (len(X), X.shape[1] + extra) and mask.all()
    assert np.array_equal(Xp[:, : X.shape[1]].tobytes(), np.ascontiguousarray(X).tobytes()) and np.array_equal(yp, y)
    assert np.array_equal(Xp, simulate(X, y, "irrelevant_features", rate, seed=3, n_classes=10)[0])
    # no relation to the label: class means of the extra columns differ by noise only
    means = np.array([Xp[y == c, X.shape[1]:].mean() for c in range(10)])
    per_class = np.bincount(y, minlength=10).min()
    assert np.ptp(means) < 6 * Xp[:, X.shape[1]:].std() / np.sqrt(per_class)  # 6 standard errors of a class mean


def test_outliers_lie_far_outside_the_data_range(digits):
    X, y = digits["batch"]
    Xp, _, mask = simulate(X, y, "outliers", 0.2, seed=0, n_classes=10)
    assert (Xp[mask].max(axis=1) > X.max() + 5 * (X.max() - X.min()) - 1e-3).all()


def test_targeted_flip_moves_only_the_source_class_to_the_target(digits):
    X, y = digits["batch"]
    _, yp, mask = simulate(X, y, "targeted_flip", 0.5, seed=0, n_classes=10, options={"source": 1, "target": 7})
    assert (y[mask] == 1).all() and (yp[mask] == 7).all()


def test_noise_is_scaled_to_each_feature_std(digits):
    X, y = digits["batch"]
    for name in ("gaussian_noise", "uniform_noise"):
        Xp, _, mask = simulate(X, y, name, 0.4, seed=0, n_classes=10, options={"scale": 1.0})
        ratio = (Xp[mask] - X[mask]).std(axis=0) / np.maximum(X.std(axis=0), 1e-9)
        assert np.all(np.abs(ratio[X.std(axis=0) > 0] - 1.0) < 0.35), name
        assert np.all((Xp[mask] == X[mask])[:, X.std(axis=0) == 0])  # constant features stay constant


def test_mass_duplicates_copy_a_few_rows_of_one_class(digits):
    X, y = digits["batch"]
    Xp, yp, mask = simulate(X, y, "mass_duplicates", 0.3, seed=0, n_classes=10, options={"points": 3})
    assert len(np.unique(Xp[mask], axis=0)) == 3 and len(np.unique(yp[mask])) == 1
    copies = {row.tobytes() for row in Xp[mask]}
    assert copies <= {row.tobytes() for row in X[~mask]}  # exact copies of untouched rows


def test_noisy_duplicates_are_close_to_a_few_source_rows(digits):
    X, y = digits["batch"]
    Xp, yp, mask = simulate(X, y, "noisy_duplicates", 0.2, seed=0, n_classes=10, options={"copies": 10, "scale": 0.1})
    d = np.linalg.norm(Xp[mask][:, None, :] - X[~mask][None, :, :], axis=2)
    nearest = d.argmin(axis=1)
    assert len(np.unique(nearest)) <= -(-mask.sum() // 10)  # about `copies` copies of each source row
    assert np.array_equal(yp[mask], y[~mask][nearest])  # with the source row's label


@pytest.mark.parametrize("along", ["features", "rows"])
def test_sine_pattern_is_small_and_periodic(digits, along):
    X, y = digits["batch"]
    options = {"frequency": 4.0, "amplitude": 0.2, "along": along}
    Xp, _, mask = simulate(X, y, "sine_pattern", 0.3, seed=0, n_classes=10, options=options)
    delta = (Xp[mask] - X[mask]).astype(np.float64)
    assert np.all(np.abs(delta) <= 0.2 * X.std(axis=0) + 1e-4)
    if along == "features":  # the same wave on every poisoned row
        wave = delta / np.where(X.std(axis=0) > 0, 0.2 * X.std(axis=0), np.inf)
        assert np.allclose(wave[:, X.std(axis=0) > 0], wave[0, X.std(axis=0) > 0], atol=1e-3)


def test_backdoor_stamps_the_trigger_and_relabels_to_the_target(digits):
    X, y = digits["batch"]
    Xp, yp, mask = simulate(X, y, "backdoor", 0.1, seed=0, n_classes=10, options={"target": 0, "patch": 3})
    assert (y[mask] != 0).all() and (yp[mask] == 0).all()
    corner = Xp[mask].reshape(-1, 8, 8)[:, -3:, -3:]
    assert (corner == X.max()).all()
    assert np.array_equal(Xp[mask].reshape(-1, 8, 8)[:, :5], X[mask].reshape(-1, 8, 8)[:, :5])


def test_attack_success_rate_counts_triggered_victims_sent_to_the_target(digits):
    X, y = digits["holdout"]
    assert attack_success_rate(lambda Z: np.zeros(len(Z), int), X, y, target=0) == 1.0
    assert attack_success_rate(lambda Z: np.ones(len(Z), int), X, y, target=0) == 0.0
    # a model that answers "target" exactly when it sees the trigger
    def triggered(Z):
        return np.where((Z.reshape(-1, 8, 8)[:, -3:, -3:] == X.max()).all(axis=(1, 2)), 0, 1)

    assert attack_success_rate(triggered, X, y, target=0) == 1.0
    assert triggered(X[y != 0]).mean() > 0.99  # the clean rows do not carry the trigger


def test_backdoor_needs_square_images():
    with pytest.raises(PoisongateError, match="square-image rows"):
        add_trigger(np.zeros((4, 10), np.float32))


def test_unknown_attack_and_unknown_option_are_clear_errors(digits):
    with pytest.raises(PoisongateError, match="unknown attack 'nope'"):
        simulate(*digits["batch"], "nope", 0.1, 0, 10)
    with pytest.raises(PoisongateError, match="simulate.options.sine_pattern"):
        simulate(*digits["batch"], "sine_pattern", 0.1, 0, 10, options={"freq": 2})


def test_rate_beyond_what_can_be_poisoned_is_a_clear_error(digits):
    with pytest.raises(PoisongateError, match="lower the rate"):
        simulate(*digits["batch"], "backdoor", 0.99, 0, 10)


def test_simulate_in_ingest_adds_the_irrelevant_columns_to_the_batch(digits, config):
    from poisongate.attacks import poison

    _, _, batches = digits["frames"]
    sim = config.replace("simulate", attack="irrelevant_features", rate=0.1).simulate
    poisoned, mask = poison(batches[0], digits["schema"], sim)
    assert list(poisoned.columns) == list(batches[0].columns) + [f"irrelevant_{i}" for i in range(6)]
    assert poisoned[batches[0].columns].equals(batches[0]) and mask.all()
