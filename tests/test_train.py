import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from poisongate.errors import PoisongateError
from poisongate.learning import models
from poisongate.learning.crossval import cross_validate, fold_of_rows
from poisongate.learning.training import NonFiniteTraining, accuracy, fit, loss_spikes, predict_proba, train_model
from poisongate.tables import write_table
from poisongate.workspace import Workspace
from tasks import run_stage


@pytest.fixture(scope="module")
def trained(digits, config):
    X, y = digits["reference"]
    spec = models.model_spec(config.train, X, digits["schema"].classes)
    graphdef, weights, opt_state, losses, grad_norms = fit(models.scale(X, spec), y, spec, config.train)
    return spec, graphdef, weights, opt_state, losses, grad_norms


def test_training_learns_digits(trained, digits):
    spec, graphdef, weights, _, losses, grad_norms = trained
    assert losses.shape[0] == 40 and np.isfinite(losses).all() and np.isfinite(grad_norms).all()
    assert losses[-1].mean() < 0.1 * losses[0].mean()
    X, y = digits["holdout"]
    assert accuracy(graphdef, weights, models.scale(X, spec), y) >= 0.9


def test_training_is_deterministic_for_a_seed(trained, digits, config):
    spec, _, weights, *_ = trained
    X, y = digits["reference"]
    _, again, *_ = fit(models.scale(X, spec), y, spec, config.train)
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
    assert np.array_equal(np.asarray(predict_proba(graphdef, weights, Xs)),
                          np.asarray(predict_proba(graphdef2, weights2, Xs)))


def test_zero_weight_rows_do_not_train(digits, config):
    """Fold masks rely on this: a row with weight 0 must not move the parameters."""
    X, y = digits["reference"]
    spec = models.model_spec(config.train, X, digits["schema"].classes)
    cfg = config.train.model_copy(update={"epochs": 2})
    Xs = models.scale(X, spec)
    W = np.ones((2, len(X)), np.float32)
    W[1, :] = 0.0
    _, weights, *_ = fit(Xs, y, spec, cfg, W)
    initial = models.build(spec, cfg.seed + 1)
    from flax import nnx

    untouched = jax.tree.leaves(nnx.split(initial)[1])
    trained_fold1 = [np.asarray(leaf)[1] for leaf in jax.tree.leaves(weights)]
    assert all(np.allclose(a, b) for a, b in zip(untouched, trained_fold1))


def test_cross_validation_folds_partition_rows_and_score(digits, config):
    X, y = digits["reference"]
    fold = fold_of_rows(len(X), 5, 0)
    assert sorted(np.bincount(fold).tolist()) == [108] * 5
    spec = models.model_spec(config.train, X, digits["schema"].classes)
    fold_accuracy, oof = cross_validate(X, y, spec, config.train, 5)
    assert len(fold_accuracy) == 5 and min(fold_accuracy) >= 0.85
    assert oof.shape == (len(X), 10) and np.allclose(oof.sum(axis=1), 1.0, atol=1e-5)


def test_oof_rows_are_exactly_the_held_out_fold_predictions(digits, config):
    """Row r's out-of-fold probabilities come from the one model that did not train on r."""
    X, y = digits["reference"]
    cfg = config.train.model_copy(update={"epochs": 5})
    spec = models.model_spec(cfg, X, digits["schema"].classes)
    _, oof = cross_validate(X, y, spec, cfg, 5)
    fold = fold_of_rows(len(X), 5, cfg.seed)
    W = (fold[None, :] != np.arange(5)[:, None]).astype(np.float32)
    Xs = models.scale(X, spec)
    graphdef, fold_params, *_ = fit(Xs, y, spec, cfg, W)
    proba = np.stack([np.asarray(predict_proba(graphdef, jax.tree.map(lambda a, i=i: a[i], fold_params), Xs))
                      for i in range(5)])
    assert np.allclose(oof, proba[fold, np.arange(len(X))], atol=1e-6)
    assert not np.allclose(oof, proba[(fold + 1) % 5, np.arange(len(X))], atol=1e-3)


def test_folds_trained_in_groups_side_by_side_match_one_vmapped_group(digits, config, monkeypatch):
    """On CPU the folds run as one vmapped group per core, in threads: the split must not change any fold's model.
    A fold steps over its own rows only."""
    from poisongate.learning import training

    X, y = digits["reference"]
    cfg = config.train.model_copy(update={"epochs": 2})
    spec = models.model_spec(cfg, X, digits["schema"].classes)
    Xs = models.scale(X, spec)
    fold = fold_of_rows(len(X), 3, cfg.seed)
    W = (fold[None, :] != np.arange(3)[:, None]).astype(np.float32)

    def trained(groups, W=W):
        monkeypatch.setattr(training, "fold_groups", lambda k: groups)
        return fit(Xs, y, spec, cfg, W)

    one, split = trained([slice(None)]), trained([slice(0, 1), slice(1, 3)])
    for a, b in zip(jax.tree.leaves(one[1:4]), jax.tree.leaves(split[1:4])):
        assert a.shape == b.shape and np.allclose(a, b, rtol=1e-5, atol=1e-6)
    assert one[3].shape[:2] == (cfg.epochs, 3)  # losses: [epochs, folds, steps]
    steps = -(-int(W[0].sum()) // training.batch_size_for(cfg))
    assert one[3].shape[2] == steps  # a fold steps over its own rows, not over the held-out ones at weight 0


def test_every_model_embeds_its_penultimate_layer(digits, config):
    X, _ = digits["reference"]
    for name, width in (("mlp", config.train.hidden[-1]), ("cnn", config.train.hidden[-1])):
        spec = models.model_spec(config.train.model_copy(update={"model": name}), X, digits["schema"].classes)
        model = models.build(spec)
        x = models.scale(X[:7], spec)
        assert model.embed(x).shape == (7, width)
        assert np.allclose(model(x), model.out(model.embed(x)))


def test_cnn_needs_square_image_features(config):
    with pytest.raises(PoisongateError, match="train.model cnn needs a square image"):
        models.model_spec(config.train.model_copy(update={"model": "cnn"}), np.zeros((4, 10), np.float32), (0, 1))


@pytest.mark.slow
def test_cnn_learns_digits(digits, config):
    X, y = digits["reference"]
    cfg = config.train.model_copy(update={"model": "cnn", "epochs": 20})
    spec = models.model_spec(cfg, X, digits["schema"].classes)
    graphdef, weights, *_ = fit(models.scale(X, spec), y, spec, cfg)
    Xh, yh = digits["holdout"]
    assert accuracy(graphdef, weights, models.scale(Xh, spec), yh) >= 0.9


def test_nonfinite_loss_aborts_training(digits, config):
    X, y = digits["reference"]
    cfg = config.train.model_copy(update={"epochs": 3})
    spec = models.model_spec(cfg, X, digits["schema"].classes)
    Xs = models.scale(X, spec)
    Xs[17, 3] = np.inf
    with pytest.raises(NonFiniteTraining, match=r"NaN/inf at epoch 0 step \d+; lower train.learning_rate") as err:
        train_model(Xs, y, spec, cfg)
    assert "\n" not in str(err.value)


def test_loss_spikes_are_flagged_against_the_running_window():
    rng = np.random.default_rng(0)
    losses = np.linspace(2.0, 0.2, 300) + rng.normal(0, 0.02, 300)
    assert loss_spikes(losses, 50, 6.0, 0.05) == []  # a steady decrease with noise is no spike
    losses[200] = 3.0
    spikes = loss_spikes(losses, 50, 6.0, 0.05)
    assert [s["step"] for s in spikes] == [200] and spikes[0]["loss"] == pytest.approx(3.0) and spikes[0]["zscore"] > 6


def train_workspace(tmp_path, digits, config, **train_cfg):
    reference, _, batches = digits["frames"]
    ws = Workspace(tmp_path)
    write_table(reference, ws.reference)
    write_table(batches[0], ws.clean)
    return ws, config.replace("train", epochs=4, **train_cfg)


def test_train_stage_reports_monitors_and_writes_dvc_plots(tmp_path, digits, config):
    ws, p = train_workspace(tmp_path, digits, config)
    summary = run_stage(ws, "train", p)
    report = json.loads(ws.report("train").read_text())
    assert report["nonfinite"] is False and isinstance(report["loss_spikes"], list) and report["dp_epsilon"] is None
    assert summary["train_accuracy"] > 0.5 and (ws.candidate).exists() and not ws.path("models", "training").exists()
    steps = (summary["rows"] + 63) // 64 * 4
    curve = ws.path("reports", "train_curve.csv").read_text().splitlines()
    assert curve[0] == "step,epoch,loss,grad_norm,accuracy" and len(curve) == 1 + steps
    assert ws.path("reports", "train_accuracy.csv").read_text().splitlines()[0] == "epoch,loss,accuracy"


@pytest.mark.slow
def test_train_stage_with_dp_sgd_reports_its_privacy(tmp_path, digits, config):
    ws, p = train_workspace(tmp_path, digits, config, dp_sgd={**config.train.dp_sgd.model_dump(), "enabled": True})
    summary = run_stage(ws, "train", p)
    assert 0 < summary["dp_epsilon"] < np.inf and summary["dp_delta"] == p.train.dp_sgd.delta


def test_train_stage_aborts_on_nan_and_saves_no_candidate(tmp_path, digits, config):
    ws, p = train_workspace(tmp_path, digits, config, learning_rate=1e30)
    with pytest.raises(NonFiniteTraining):
        run_stage(ws, "train", p)
    assert json.loads(ws.report("train").read_text())["nonfinite"] is True
    assert not ws.candidate.exists()


def test_compiled_programs_are_kept_on_disk_for_the_next_process(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_") and k != "XDG_CACHE_HOME"}
    code = "import poisongate, jax, jax.numpy as jnp; jax.jit(lambda x: x * 2)(jnp.ones(3)).block_until_ready()"
    subprocess.run([sys.executable, "-c", code], env={**env, "HOME": str(tmp_path)}, check=True)
    assert list((tmp_path / ".cache" / "poisongate" / "jax").glob("*-cache"))  # importing poisongate turned it on



def test_scaled_rows_reach_a_cpu_device_without_a_copy_and_keep_their_numbers(digits, config):
    """models.scale's output is 64-byte aligned, so jax.device_put on CPU uses it in place (a 1M-row training set
    is not copied again); in place (out=X) or not, the numbers are (X - mean) / std in float32; and the spec's
    std, taken a few columns at a time, is numpy's own."""
    X, _ = digits["reference"]
    spec = models.model_spec(config.train, X, digits["schema"].classes)
    assert spec["std"] == np.maximum(X.std(axis=0), 1e-6).astype(float).tolist()
    expected = (X - np.asarray(spec["mean"], np.float32)) / np.asarray(spec["std"], np.float32)
    Xs = models.scale(X, spec)
    np.testing.assert_array_equal(Xs, expected)
    assert Xs.ctypes.data % models.DEVICE_ALIGNMENT == 0
    assert jax.default_backend() != "cpu" or jax.device_put(Xs).unsafe_buffer_pointer() == Xs.ctypes.data
    stacked = models.stack_for_device(X[:100], X[100:])
    assert models.scale(stacked, spec, out=stacked) is stacked
    np.testing.assert_array_equal(stacked, expected)


def test_inference_in_chunks_writes_the_numbers_of_one_pass(trained, digits):
    from poisongate.learning.training import held_out_proba, in_row_chunks

    spec, graphdef, weights, *_ = trained
    Xs = models.scale(digits["holdout"][0], spec)
    whole = predict_proba(graphdef, weights, Xs)
    for rows in (64, 100, len(Xs) - 1):  # the last chunk padded, or not
        np.testing.assert_allclose(in_row_chunks(lambda x: predict_proba(graphdef, weights, x), Xs, rows=rows),
                                   whole, rtol=1e-5, atol=1e-6)
    stacked = jax.tree.map(lambda a: np.stack([a, a]), weights)  # two fold models, equal: any fold gives `whole`
    fold = np.arange(len(Xs)) % 2
    np.testing.assert_allclose(held_out_proba(graphdef, stacked, Xs, fold), whole, rtol=1e-5, atol=1e-6)


def test_a_saved_model_scales_rows_a_chunk_at_a_time_to_the_numbers_of_the_whole(trained, digits):
    from poisongate.learning import training

    spec, graphdef, weights, *_ = trained
    X = digits["holdout"][0]
    whole = predict_proba(graphdef, weights, models.scale(X, spec))
    chunked = training.model_proba(graphdef, weights, spec, X, rows=100)  # several chunks, the last one padded
    np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-6)
