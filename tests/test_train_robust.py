"""Each robust training option does what params.yaml says it does (small model, mostly eager: cheap)."""
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import blobs, recipe
from flax import nnx

from poisongate.errors import ConfigError
from poisongate.learning import models
from poisongate.learning.training import (
    StepOptions,
    accuracy,
    adversarial_inputs,
    optimizer,
    per_example_loss,
    privacy_spent,
    private_gradient,
    step_gradient,
    step_options,
    train_model,
    trimmed_weights,
)

CFG = recipe(hidden=[16], epochs=15, batch_size=32, learning_rate=0.01, weight_decay=0.0,
             dp_sgd={"enabled": False, "delta": 1e-5, "noise_multiplier": 1.0, "clip_norm": 1.0})


@pytest.fixture(scope="module")
def small():
    X, y = blobs(n_per_class=40)
    spec = models.model_spec(CFG, X, (0, 1, 2))
    graphdef, params = nnx.split(models.build(spec, 0))
    return models.scale(X, spec), y, spec, graphdef, params


def tree_norm(tree):
    return float(optax.tree.norm(tree))


def test_weight_decay_shrinks_weights_without_gradient(small):
    *_, params = small
    zero = jax.tree.map(jnp.zeros_like, params)
    for wd, shrinks in ((0.0, False), (0.5, True)):
        tx = optimizer(0.1, wd)
        updates, _ = tx.update(zero, tx.init(params), params)
        after = optax.apply_updates(params, updates)
        assert (tree_norm(after) < tree_norm(params) * 0.96) is shrinks


def test_gradient_clipping_rescales_a_spike_to_the_clip_norm(small):
    """With clipping, the optimizer sees a spiking gradient exactly as if its norm were the clip norm."""
    *_, params = small
    grad = jax.tree.map(jnp.ones_like, params)
    spike = jax.tree.map(lambda g: 1000.0 * g, grad)
    clip_to = tree_norm(grad)
    rescaled = jax.tree.map(lambda g: g * clip_to / tree_norm(spike), spike)

    def last_update(tx, last):
        state = tx.init(params)
        for _ in range(5):
            _, state = tx.update(grad, state, params)
        return tx.update(last, state, params)[0]

    clipped, expected = last_update(optimizer(0.01, 0.0, clip_to), spike), last_update(optimizer(0.01, 0.0), rescaled)
    unclipped = last_update(optimizer(0.01, 0.0), spike)
    assert all(np.allclose(a, b, rtol=1e-5) for a, b in zip(jax.tree.leaves(clipped), jax.tree.leaves(expected)))
    assert not all(np.allclose(a, b, rtol=1e-2) for a, b in zip(jax.tree.leaves(clipped), jax.tree.leaves(unclipped)))


def test_trimmed_loss_drops_the_highest_loss_real_rows():
    losses = jnp.array([0.1, 5.0, 0.2, 3.0, 0.3, 9.0, 0.0, 0.0])
    w = jnp.array([1, 1, 1, 1, 1, 0, 0, 0], jnp.float32)  # the 9.0 row is padding: never counts
    kept = np.asarray(trimmed_weights(losses, w, 0.4))  # floor(0.4 * 5 real rows) = 2 dropped
    assert kept.tolist() == [1, 0, 1, 0, 1, 0, 0, 0]


def test_trimmed_step_gradient_ignores_flipped_rows(small):
    X, y, _, graphdef, params = small
    x, labels = jnp.asarray(X[:32]), jnp.asarray(y[:32])
    flipped = labels.at[:3].set((labels[:3] + 1) % 3)  # 3 of 32 rows poisoned: trained model finds them costly
    w = jnp.ones(32)
    trimmed = StepOptions(trim_fraction=0.1)
    losses = per_example_loss(params, graphdef, x, flipped)
    drop = np.asarray(trimmed_weights(losses, w, 0.1)) == 0
    _, _, grads = step_gradient(params, graphdef, trimmed, 32, x, flipped, w, jax.random.key(0))
    _, _, expected = step_gradient(params, graphdef, StepOptions(), 32, x, flipped, jnp.asarray(~drop, jnp.float32),
                                   jax.random.key(0))
    assert drop.sum() == 3
    assert all(np.allclose(a, b, atol=1e-6) for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(expected)))


def test_dp_sgd_clips_every_example_and_adds_calibrated_noise(small):
    X, y, _, graphdef, params = small
    x, labels, w = jnp.asarray(X[:16]), jnp.asarray(y[:16]), jnp.ones(16)
    x = x.at[0].multiply(1000.0)  # one extreme row: its gradient is huge before clipping
    quiet = StepOptions(dp_clip_norm=0.5, dp_noise_multiplier=0.0)
    clipped_sum = private_gradient(params, graphdef, x, labels, w, jax.random.key(0), quiet, 1)
    assert tree_norm(clipped_sum) <= 16 * 0.5 + 1e-4  # each of 16 examples contributes at most the clip norm
    alone = private_gradient(params, graphdef, x[:1], labels[:1], w[:1], jax.random.key(0), quiet, 1)
    assert tree_norm(alone) == pytest.approx(0.5, rel=1e-4)
    noisy = StepOptions(dp_clip_norm=0.5, dp_noise_multiplier=2.0)
    noised = private_gradient(params, graphdef, x, labels, w, jax.random.key(1), noisy, 16)
    noise = np.concatenate([np.ravel(a - b / 16)
                            for a, b in zip(jax.tree.leaves(noised), jax.tree.leaves(clipped_sum))])
    assert np.std(noise) == pytest.approx(2.0 * 0.5 / 16, rel=0.1)


def test_privacy_accountant_epsilon():
    def eps(noise, epochs):
        return privacy_spent(recipe(CFG, epochs=epochs, batch_size=256,
                                    dp_sgd={"noise_multiplier": noise, "delta": 1e-5}), 60_000)

    # The MNIST setting of Abadi et al. 2016 (noise 1.1, batch 256, 60 epochs, delta 1e-5): epsilon near 3.
    assert 2.0 < eps(1.1, 60) < 3.5
    assert eps(2.0, 60) < eps(1.1, 60) < eps(1.1, 120)


def test_adversarial_inputs_stay_in_the_ball_and_raise_the_loss(small):
    X, y, _, graphdef, params = small
    x, labels = jnp.asarray(X[:64]), jnp.asarray(y[:64])
    base = float(per_example_loss(params, graphdef, x, labels).mean())
    fgsm = adversarial_inputs(params, graphdef, x, labels, StepOptions(adversarial="fgsm", adv_epsilon=0.3))
    pgd = adversarial_inputs(params, graphdef, x, labels,
                             StepOptions(adversarial="pgd", adv_epsilon=0.3, pgd_steps=5, pgd_step_size=0.1))
    assert float(jnp.abs(fgsm - x).max()) == pytest.approx(0.3, abs=1e-5)
    assert float(jnp.abs(pgd - x).max()) <= 0.3 + 1e-5
    fgsm_loss = float(per_example_loss(params, graphdef, fgsm, labels).mean())
    pgd_loss = float(per_example_loss(params, graphdef, pgd, labels).mean())
    assert base < fgsm_loss and base < pgd_loss


def test_recipe_rejects_unknown_attack(config):
    with pytest.raises(ConfigError, match=r"train\.adversarial\.method = 'cw'"):
        config.replace("train", adversarial={**config.train.adversarial.model_dump(), "method": "cw"})


@pytest.mark.slow
def test_pgd_training_resists_pgd_and_all_options_together_learn(digits):
    """Trained end to end on digits: PGD training is more robust to a PGD attack than plain training; every
    option on at once still learns."""
    X, y = digits["reference"]
    Xh, yh = digits["holdout"]
    spec = models.model_spec(CFG, X, digits["schema"].classes)
    X, Xh = models.scale(X, spec), jnp.asarray(models.scale(Xh, spec))
    pgd = {"method": "pgd", "epsilon": 0.5, "pgd_steps": 5, "pgd_step_size": 0.2}
    attack = step_options(recipe(CFG, adversarial=pgd))

    def attacked_accuracy(t):
        return accuracy(t.graphdef, t.params, np.asarray(adversarial_inputs(t.params, t.graphdef, Xh, yh, attack)), yh)

    plain, robust = train_model(X, y, spec, CFG), train_model(X, y, spec, recipe(CFG, adversarial=pgd))
    assert attacked_accuracy(robust) > attacked_accuracy(plain) + 0.1
    every = recipe(CFG, adversarial=pgd, weight_decay=1e-3, clip_grad_norm=1.0, trim_fraction=0.1,
                   dp_sgd={"enabled": True, "clip_norm": 1.0, "noise_multiplier": 0.5, "delta": 1e-5})
    together = train_model(X, y, spec, every)
    assert (np.isfinite(together.losses).all()
            and accuracy(together.graphdef, together.params, np.asarray(Xh), yh) > 0.7)  # chance: 0.1
