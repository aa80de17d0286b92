import jax
import numpy as np
import pytest

from tasks import model as models
from tasks.crossval import cross_validate, fold_of_rows
from tasks.train import accuracy, fit, predict_proba


@pytest.fixture(scope="module")
def trained(digits, params):
    X, y = digits["reference"]
    spec = models.model_spec(params["train"], X, digits["schema"].classes)
    graphdef, weights, opt_state, losses, grad_norms = fit(models.scale(X, spec), y, spec, params["train"])
    return spec, graphdef, weights, opt_state, losses, grad_norms


def test_training_learns_digits(trained, digits):
    spec, graphdef, weights, _, losses, grad_norms = trained
    assert losses.shape[0] == 40 and np.isfinite(losses).all() and np.isfinite(grad_norms).all()
    assert losses[-1].mean() < 0.1 * losses[0].mean()
    X, y = digits["holdout"]
    assert accuracy(graphdef, weights, models.scale(X, spec), y) >= 0.9


def test_training_is_deterministic_for_a_seed(trained, digits, params):
    spec, _, weights, *_ = trained
    X, y = digits["reference"]
    _, again, *_ = fit(models.scale(X, spec), y, spec, params["train"])
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(weights), jax.tree.leaves(again)))


def test_orbax_checkpoint_round_trip(trained, tmp_path, digits):
    spec, graphdef, weights, opt_state, *_ = trained
    models.save(tmp_path / "ckpt", 40, weights, opt_state, spec)
    graphdef2, weights2, spec2 = models.load(tmp_path / "ckpt")
    assert spec2 == spec
    for a, b in zip(jax.tree.leaves(weights), jax.tree.leaves(weights2)):
        assert np.array_equal(np.asarray(a), np.asarray(b))
    X, _ = digits["holdout"]
    Xs = models.scale(X, spec2)
    assert np.array_equal(np.asarray(predict_proba(graphdef, weights, Xs)), np.asarray(predict_proba(graphdef2, weights2, Xs)))


def test_zero_weight_rows_do_not_train(digits, params):
    """Fold masks rely on this: a row with weight 0 must not move the parameters."""
    X, y = digits["reference"]
    spec = models.model_spec(params["train"], X, digits["schema"].classes)
    cfg = {**params["train"], "epochs": 2}
    Xs = models.scale(X, spec)
    W = np.ones((2, len(X)), np.float32)
    W[1, :] = 0.0
    _, weights, *_ = fit(Xs, y, spec, cfg, W)
    initial = models.build(spec, cfg["seed"] + 1)
    from flax import nnx

    untouched = jax.tree.leaves(nnx.split(initial)[1])
    trained_fold1 = [np.asarray(leaf)[1] for leaf in jax.tree.leaves(weights)]
    assert all(np.allclose(a, b) for a, b in zip(untouched, trained_fold1))


def test_cross_validation_folds_partition_rows_and_score(digits, params):
    X, y = digits["reference"]
    fold = fold_of_rows(len(X), 5, 0)
    assert sorted(np.bincount(fold).tolist()) == [108] * 5
    spec = models.model_spec(params["train"], X, digits["schema"].classes)
    fold_accuracy, oof = cross_validate(X, y, spec, params["train"], 5)
    assert len(fold_accuracy) == 5 and min(fold_accuracy) >= 0.85
    assert oof.shape == (len(X), 10) and np.allclose(oof.sum(axis=1), 1.0, atol=1e-5)
