"""Training: Flax NNX + Optax, one jitted epoch (a `lax.scan` over steps), data-parallel over every
device: the batch is sharded along a `data` mesh axis, the parameters replicated.

Robust options (params.yaml `train:`), applied in this order in every step: adversarial inputs (FGSM/PGD),
trimmed loss, DP-SGD (per-example clipping + Gaussian noise); then weight decay and gradient clipping in the
optimizer. Monitors: per-step loss, gradient norm and batch accuracy; NaN/inf aborts; loss spikes flagged.
Orbax checkpoints of model + optimizer let a killed run resume and end with the same parameters."""
from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from typing import Any, NamedTuple

import dp_accounting
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from dp_accounting import rdp
from flax import nnx
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P
from numpy.lib.stride_tricks import sliding_window_view

from poisongate.config import Recipe
from poisongate.errors import PoisongateError
from poisongate.learning import models
from poisongate.reports import progress
from poisongate.stats import median_and_scale


@dataclass(frozen=True)
class StepOptions:
    """The recipe's per-step robust options; hashable, as a static argument of the jitted epoch."""

    adversarial: str = "none"  # none | fgsm | pgd
    adv_epsilon: float = 0.0
    pgd_steps: int = 0
    pgd_step_size: float = 0.0
    trim_fraction: float = 0.0
    dp_clip_norm: float = 0.0  # 0: DP-SGD off
    dp_noise_multiplier: float = 0.0


def step_options(recipe: Recipe) -> StepOptions:
    adv, dp = recipe.adversarial, recipe.dp_sgd
    return StepOptions(
        adversarial=adv.method,
        adv_epsilon=adv.epsilon,
        pgd_steps=adv.pgd_steps,
        pgd_step_size=adv.pgd_step_size,
        trim_fraction=recipe.trim_fraction,
        dp_clip_norm=dp.clip_norm if dp.enabled else 0.0,
        dp_noise_multiplier=dp.noise_multiplier,
    )


@cache
def optimizer(learning_rate: float, weight_decay: float, clip_grad_norm: float = 0.0) -> optax.GradientTransformation:
    # Cached so equal settings give the same object: it is a static argument of the jitted epoch.
    adamw = optax.adamw(learning_rate, weight_decay=weight_decay)
    return optax.chain(optax.clip_by_global_norm(clip_grad_norm), adamw) if clip_grad_norm > 0 else adamw


def optimizer_for(recipe: Recipe) -> optax.GradientTransformation:
    return optimizer(recipe.learning_rate, recipe.weight_decay, recipe.clip_grad_norm)


@cache
def data_sharding() -> NamedSharding:
    mesh = jax.make_mesh((jax.device_count(),), ("data",), axis_types=(AxisType.Auto,))
    return NamedSharding(mesh, P(None, "data"))  # [steps, batch, ...]: split each batch across devices


def per_example_loss(params, graphdef, x, y):
    return optax.softmax_cross_entropy_with_integer_labels(nnx.merge(graphdef, params)(x), y)


def weighted_mean(values, w):
    return jnp.sum(w * values) / jnp.maximum(jnp.sum(w), 1.0)


def loss_and_logits(params, graphdef, x, y, w):
    logits = nnx.merge(graphdef, params)(x)
    return weighted_mean(optax.softmax_cross_entropy_with_integer_labels(logits, y), w), logits


def adversarial_inputs(params, graphdef, x, y, r: StepOptions):
    """Worst-case features within an L-inf ball of radius epsilon (features are standardised): FGSM takes one
    signed-gradient step of epsilon; PGD takes pgd_steps steps of pgd_step_size, projected back onto the ball."""
    input_grad = jax.grad(lambda xa: jnp.sum(per_example_loss(params, graphdef, xa, y)))
    if r.adversarial == "fgsm":
        return jax.lax.stop_gradient(x + r.adv_epsilon * jnp.sign(input_grad(x)))

    def pgd_step(xa, _):
        xa = xa + r.pgd_step_size * jnp.sign(input_grad(xa))
        return jnp.clip(xa, x - r.adv_epsilon, x + r.adv_epsilon), None

    xa, _ = jax.lax.scan(pgd_step, x, None, length=r.pgd_steps)
    return jax.lax.stop_gradient(xa)


def trimmed_weights(losses, w, fraction: float):
    """Zero the weight of the highest-loss `fraction` of the batch's real rows (weight > 0; padding is not)."""
    real = w > 0
    n_drop = jnp.floor(fraction * jnp.sum(real)).astype(jnp.int32)
    rank = jnp.argsort(jnp.argsort(-jnp.where(real, jax.lax.stop_gradient(losses), -jnp.inf)))  # 0: highest loss
    return jnp.where(rank < n_drop, 0.0, w)


def private_gradient(params, graphdef, x, y, w, key, r: StepOptions, batch_size: int):
    """DP-SGD: every example's gradient clipped to dp_clip_norm, summed, plus N(0, (noise * clip)^2) per
    coordinate, divided by the fixed batch size (a data-dependent divisor would leak)."""
    def example_grad(xi, yi):
        return jax.grad(lambda p: per_example_loss(p, graphdef, xi[None], yi[None])[0])(params)

    grads = jax.vmap(example_grad)(x, y)
    norms = jax.vmap(optax.tree.norm)(grads)
    scale = w * jnp.minimum(1.0, r.dp_clip_norm / jnp.maximum(norms, 1e-12))
    leaves, treedef = jax.tree.flatten(jax.tree.map(lambda g: jnp.tensordot(scale, g, axes=1), grads))
    keys = jax.random.split(key, len(leaves))
    std = r.dp_noise_multiplier * r.dp_clip_norm
    noised = [leaf + std * jax.random.normal(k, leaf.shape, leaf.dtype) for leaf, k in zip(leaves, keys)]
    return jax.tree.map(lambda g: g / batch_size, jax.tree.unflatten(treedef, noised))


def step_gradient(params, graphdef, r: StepOptions, batch_size: int, x, y, w, key):
    """Loss, batch accuracy and the gradient to apply, with the recipe's options (off ones cost nothing)."""
    if r.adversarial != "none":
        x = adversarial_inputs(params, graphdef, x, y, r)
    if r.trim_fraction > 0:
        w = trimmed_weights(per_example_loss(params, graphdef, x, y), w, r.trim_fraction)
    (loss, logits), grads = jax.value_and_grad(loss_and_logits, has_aux=True)(params, graphdef, x, y, w)
    if r.dp_clip_norm > 0:  # replaces the plain gradient, whose computation jit then drops
        grads = private_gradient(params, graphdef, x, y, w, key, r, batch_size)
    return loss, weighted_mean(jnp.argmax(logits, axis=-1) == y, w), grads


def epoch_order(key, n: int):
    """(the row order of one epoch, the key left for its steps' randomness): one fresh permutation per epoch key."""
    order_key, noise_key = jax.random.split(key)
    return jax.random.permutation(order_key, n), noise_key


def grad_norm(grads):
    """optax.tree.norm(grads), as one dot of the flattened gradient: in the scanned step on XLA CPU a square and a
    tree reduction per leaf was ~11 ops of a ~60-op step, the concatenate + dot is 3 (issue 19)."""
    flat = jnp.concatenate([g.ravel() for g in jax.tree.leaves(grads)])
    return jnp.sqrt(jnp.dot(flat, flat, precision=jax.lax.Precision.HIGHEST))


def _epoch(graphdef, tx, r, sharding, batch_size, params, opt_state, X, y, rows, w, key):
    """One pass over `rows` (indices into X, padded to whole batches at weight 0) in a fresh order; each step
    gathers its own batch, so no shuffled copy of the training set is made. Returns per-step loss, gradient norm
    and batch accuracy, each computed inside the scanned step from the loss, logits and gradient the step already
    has, and written as one [3] vector per step (one in-place update of the scan's output instead of three)."""
    order, key = epoch_order(key, rows.shape[0])
    steps = rows.shape[0] // batch_size
    batches = [a[order].reshape(steps, batch_size) for a in (rows, w)]
    if sharding is not None and sharding.mesh.size > 1:  # on one device the constraint only slows XLA down
        batches = [jax.lax.with_sharding_constraint(b, sharding) for b in batches]

    def train_step(carry, batch):
        params, opt_state = carry
        idx, wb, step_key = batch
        loss, acc, grads = step_gradient(params, graphdef, r, batch_size, X[idx], y[idx], wb, step_key)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), jnp.stack([loss, grad_norm(grads), acc])

    (params, opt_state), monitors = jax.lax.scan(
        train_step, (params, opt_state), (*batches, jax.random.split(key, steps)))
    return params, opt_state, *monitors.T  # losses, grad norms, accuracies: [steps] each


_STATIC = ("graphdef", "tx", "r", "sharding", "batch_size")
train_epoch = jax.jit(_epoch, static_argnames=_STATIC)


@partial(jax.jit, static_argnames=_STATIC)
def train_epoch_folds(graphdef, tx, r, sharding, batch_size, params, opt_state, X, y, rows, w, key):
    """k folds at once: each fold its own parameters, optimizer state and rows; one order of positions."""
    one = partial(_epoch, graphdef, tx, r, sharding, batch_size)
    return jax.vmap(one, in_axes=(0, 0, None, None, 0, 0, None))(params, opt_state, X, y, rows, w, key)


@cache
def _fold_initializer(spec_json: str, tx: optax.GradientTransformation):
    """Jitted: k models' initial parameters (seeds seed..seed+k-1, stacked) and their optimizer states. Building
    k NNX modules eagerly, op by op, cost more than training 5 folds of the digits for 5 epochs."""
    spec = json.loads(spec_json)

    def init(seeds):
        params = jax.vmap(lambda s: nnx.split(models.build(spec, jax.random.key(s)))[1])(seeds)  # as Rngs(seed)
        return params, jax.vmap(tx.init)(params)

    return jax.jit(init)


INFERENCE_ROWS = 65536  # rows per forward pass: a 1M-row batch at once held GBs of activations (issue 19)


@partial(jax.jit, static_argnames="graphdef")
def _proba(graphdef, params, X):
    return jax.nn.softmax(nnx.merge(graphdef, params)(X))


@partial(jax.jit, static_argnames="graphdef")
def _held_out_proba(graphdef, params, X, fold):
    proba = jax.vmap(lambda p: _proba(graphdef, p, X))(params)  # [folds, rows, classes], one chunk of rows
    return jnp.take_along_axis(proba, fold[None, :, None], axis=0)[0]


@partial(jax.jit, static_argnames="graphdef")
def _embed(graphdef, params, X):
    return nnx.merge(graphdef, params).embed(X)


def forward_in_parts(forward, X: np.ndarray, *per_row: np.ndarray, rows: int = INFERENCE_ROWS):
    """(first row, forward(X, *per_row) of at most `rows` rows from there), part after part; beyond one part the
    last is zero-padded (only it is copied), so at most two shapes are ever compiled."""
    if len(X) <= rows:
        yield 0, np.asarray(forward(X, *per_row))
        return
    for start in range(0, len(X), rows):
        chunks = [a[start:start + rows] for a in (X, *per_row)]
        n = len(chunks[0])
        if n < rows:
            chunks = [np.concatenate([c, np.zeros((rows - n, *c.shape[1:]), c.dtype)]) for c in chunks]
        yield start, np.asarray(forward(*chunks))[:n]


def in_row_chunks(forward, X: np.ndarray, *per_row: np.ndarray, rows: int = INFERENCE_ROWS) -> np.ndarray:
    """forward(X, *per_row) in parts (`forward_in_parts`) written into one output array (joining the parts held
    the output twice: 0.26 GB more for 1M rows' embeddings)."""
    out = None
    for start, part in forward_in_parts(forward, X, *per_row, rows=rows):
        if out is None:
            out = np.empty((len(X), *part.shape[1:]), part.dtype)
        out[start:start + len(part)] = part
    return out


def predict_proba(graphdef, params, X) -> np.ndarray:
    return in_row_chunks(partial(_proba, graphdef, params), X)


def model_proba(graphdef, params, spec: dict[str, Any], X: np.ndarray, rows: int = INFERENCE_ROWS) -> np.ndarray:
    """Probabilities of a saved model on unscaled rows, scaled a chunk at a time: the promotion gate scaled 1M
    accepted rows whole per model compared, 0.26 GB each (issue 19)."""
    return in_row_chunks(lambda chunk: _proba(graphdef, params, models.scale(chunk, spec)), X, rows=rows)


def held_out_proba(graphdef, params, X, fold: np.ndarray) -> np.ndarray:
    """[rows, classes]: each row's probabilities from the model of its fold (fold models' parameters stacked on a
    leading axis); the [folds, rows, classes] of every model on every row is never held (1M rows: 0.2 GB). Every
    model sees each chunk, so a chunk has INFERENCE_ROWS / folds rows: activations as for one model."""
    folds = len(jax.tree.leaves(params)[0])
    return in_row_chunks(partial(_held_out_proba, graphdef, params), X, fold.astype(np.int32),
                         rows=max(1, INFERENCE_ROWS // folds))


def embed_in_parts(graphdef, params, X):
    return forward_in_parts(partial(_embed, graphdef, params), X)


def rows_to_train(W: np.ndarray, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, weights), each [models, m], m a whole number of batches: the rows of nonzero weight each model
    (W[i]) trains on and their weights, padded with row 0 at weight 0. A fold carried its held-out fifth at
    weight 0 before: a quarter more steps for nothing (issue 19)."""
    kept = [np.flatnonzero(wk > 0) for wk in W]
    m = max(map(len, kept))
    m += -m % batch_size
    rows, weights = np.zeros((len(W), m), np.int32), np.zeros((len(W), m), np.float32)
    for i, (wk, r) in enumerate(zip(W, kept)):
        rows[i, :len(r)], weights[i, :len(r)] = r, wk[r]
    return rows, weights


def fold_groups(folds: int) -> list[slice]:
    """How k folds are split into groups trained side by side in threads, each group vmapped. On CPU one
    vmapped group runs on one core (a batch-64 step is too small for XLA to spread): one group per core
    (issue 19: 2.0-2.9x vs folds in sequence on 2 cores, against 1.2-1.6x for one vmapped group). On an
    accelerator, or over several devices (each batch already split across them), one group."""
    if jax.default_backend() != "cpu" or jax.device_count() > 1:
        return [slice(None)]
    bounds = np.linspace(0, folds, min(folds, len(os.sched_getaffinity(0))) + 1).round().astype(int)
    return [slice(int(lo), int(hi)) for lo, hi in zip(bounds[:-1], bounds[1:])]


def batch_size_for(recipe: Recipe) -> int:
    n_dev = jax.device_count()
    return max(n_dev, recipe.batch_size // n_dev * n_dev)  # divisible by the device count


class Trained(NamedTuple):
    graphdef: nnx.GraphDef
    params: nnx.State
    opt_state: Any
    losses: np.ndarray  # [epochs, (folds,) steps]
    grad_norms: np.ndarray
    accuracies: np.ndarray
    trajectory: tuple = ()  # (epoch, params) at every checkpoint epoch: what the audit's TracIn sums over


CURVES = ("losses", "grad_norms", "accuracies")


class NonFiniteTraining(PoisongateError):
    """Loss or gradient became NaN/inf: the run stops before anything is saved or registered."""


def check_finite(epoch: int, losses: np.ndarray, grad_norms: np.ndarray) -> None:
    bad = ~(np.isfinite(losses) & np.isfinite(grad_norms))
    if bad.any():
        step = int(np.argwhere(bad)[0][-1])
        raise NonFiniteTraining(
            f"data/clean.parquet: training loss or gradient became NaN/inf at epoch {epoch} step {step}; lower "
            "train.learning_rate or set train.clip_grad_norm in params.yaml, and look for extreme values in the data")


def fingerprint(X, y, rows, w, spec: dict[str, Any], recipe: Recipe) -> str:
    """Data + every setting that changes the parameter trajectory (not the number of epochs: a longer run
    resumes a shorter one's checkpoint, nor the monitor or checkpoint settings of `train`)."""
    trajectory = recipe.model_dump(include=set(Recipe.model_fields) - {"epochs"})
    h = hashlib.sha256(json.dumps([spec, trajectory], sort_keys=True, default=str).encode())
    for a in (X, y, rows, w):
        h.update(np.ascontiguousarray(a))  # the buffer itself: tobytes() copied the whole training set
    return h.hexdigest()


class Checkpoints:
    """Orbax CheckpointManager of (params, optimizer state, curves so far) every `every` epochs, keyed by a
    fingerprint of data + settings so that a checkpoint of other data is never resumed."""

    def __init__(self, directory: Path, every: int, key: str) -> None:
        self.every, self.key = every, key
        # Every checkpoint is kept until the candidate is saved: they are its trajectory (Trained.trajectory).
        self.mngr = ocp.CheckpointManager(Path(directory).resolve(),  # Orbax needs absolute paths
                                          options=ocp.CheckpointManagerOptions(max_to_keep=None, create=True))

    def resume(self, params, opt_state):
        """(epochs done, params, opt_state, curves, trajectory) from the latest matching checkpoint, or None."""
        step = self.mngr.latest_step()
        if step is None:
            return None
        meta = self.mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        if meta["fingerprint"] != self.key:  # another run's: start afresh
            for old in self.mngr.all_steps():
                self.mngr.delete(old)
            return None
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, (params, opt_state))
        got = self.mngr.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract), curves=ocp.args.StandardRestore()))
        trajectory = [(s, self.mngr.restore(s, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(abstract)))["state"][0]) for s in self.mngr.all_steps() if s < step]
        return (step, *got["state"], [np.asarray(got["curves"][name]) for name in CURVES],
                [*trajectory, (step, got["state"][0])])

    def maybe_save(self, epochs_done: int, last: bool, params, opt_state, curves) -> None:
        if epochs_done % self.every and not last:
            return
        self.mngr.save(epochs_done, args=ocp.args.Composite(
            state=ocp.args.StandardSave((params, opt_state)),
            curves=ocp.args.StandardSave(dict(zip(CURVES, (np.stack(c) for c in curves)))),
            meta=ocp.args.JsonSave({"fingerprint": self.key})), force=True)
        self.mngr.wait_until_finished()

    def close(self) -> None:
        self.mngr.close()


def train_model(X: np.ndarray, y: np.ndarray, spec: dict[str, Any], recipe: Recipe, W: np.ndarray | None = None,
                checkpoint_dir: Path | None = None, checkpoint_every: int | None = None) -> Trained:
    """Train one model (W None) or len(W) models at once, one per row-weight vector. X is already scaled.
    `checkpoint_every` (train.checkpoint_every: the caller says, no default here): the parameters after every such
    epoch and the last are kept in memory (Trained.trajectory, one model only); with `checkpoint_dir` they are also
    Orbax checkpoints of model + optimizer, and a killed run resumes from the latest matching one."""
    if checkpoint_dir is not None and checkpoint_every is None:
        raise ValueError("checkpoint_dir needs checkpoint_every")
    bs = batch_size_for(recipe)
    folds = None if W is None else len(W)
    y = y.astype(np.int32)
    rows, w = rows_to_train(np.ones((1, len(X)), np.float32) if W is None else W, bs)
    if W is None:
        rows, w = rows[0], w[0]
    tx, r = optimizer_for(recipe), step_options(recipe)
    sharding = data_sharding()
    replicated = NamedSharding(sharding.mesh, P())
    seed = recipe.seed
    graphdef, params = nnx.split(models.build(spec, seed))
    if folds is not None:  # one initialisation per fold (seed + fold), stacked on a leading axis for vmap
        params, opt_state = _fold_initializer(json.dumps(spec, sort_keys=True), tx)(seed + jnp.arange(folds))
    params = jax.device_put(params, replicated)
    opt_state = jax.device_put(opt_state, replicated) if folds else tx.init(params)
    curves: list[list[np.ndarray]] = [[], [], []]  # losses, grad norms, accuracies: one array per epoch
    start, ckpt, trajectory = 0, None, []
    if checkpoint_dir is not None:
        ckpt = Checkpoints(checkpoint_dir, checkpoint_every, fingerprint(X, y, rows, w, spec, recipe))
        resumed = ckpt.resume(params, opt_state)
        if resumed is not None:
            start, params, opt_state, saved, trajectory = resumed
            curves = [list(c) for c in saved]
    X, y, rows, w = (jax.device_put(a, replicated) for a in (X, y, rows, w))
    key = jax.random.key(seed)
    epochs = recipe.epochs
    step_fn = train_epoch if folds is None else train_epoch_folds

    def epoch_of(params, opt_state, rows, w, key):
        out = step_fn(graphdef, tx, r, sharding, bs, params, opt_state, X, y, rows, w, key)
        return jax.block_until_ready(out)  # STACK_NOTES: back-to-back multi-device steps can abort on 2 cores

    groups = [slice(None)] if folds is None else fold_groups(folds)
    states = [(params, opt_state, rows, w)] if folds is None else [
        (*jax.tree.map(lambda a, g=g: a[g], (params, opt_state)), rows[g], w[g]) for g in groups]
    what = f"cross-validation, {folds} folds in {len(groups)} group(s) at once: epochs" if folds else "training: epochs"
    try:
        with progress.bar(what, epochs - start) as advance, ThreadPoolExecutor(len(groups)) as pool:
            for epoch in range(start, epochs):
                epoch_key = jax.random.fold_in(key, epoch)
                outs = list(pool.map(lambda state, k=epoch_key: epoch_of(*state, k), states))
                states = [(*out[:2], *state[2:]) for out, state in zip(outs, states)]
                for i, store in enumerate(curves):  # [steps] or, of the folds, [folds, steps]
                    store.append(np.concatenate([np.asarray(out[2 + i]) for out in outs]))
                check_finite(epoch, curves[0][-1], curves[1][-1])
                params, opt_state = states[0][:2]  # one model: its state (fold groups are joined after the loop)
                if checkpoint_every and folds is None and ((epoch + 1) % checkpoint_every == 0 or epoch + 1 == epochs):
                    trajectory.append((epoch + 1, params))
                if ckpt is not None:
                    ckpt.maybe_save(epoch + 1, epoch + 1 == epochs, params, opt_state, curves)
                advance()
    finally:
        if ckpt is not None:
            ckpt.close()
    if folds is not None:
        params, opt_state = jax.tree.map(lambda *parts: jnp.concatenate(parts), *(state[:2] for state in states))
    return Trained(graphdef, params, opt_state, *(np.stack(c) for c in curves), tuple(trajectory))


def fit(X: np.ndarray, y: np.ndarray, spec: dict[str, Any], recipe: Recipe, W: np.ndarray | None = None):
    """(graphdef, params, opt_state, losses, grad_norms): the five values callers of the spine unpack."""
    return tuple(train_model(X, y, spec, recipe, W))[:5]


def loss_spikes(losses: np.ndarray, window: int, threshold: float, min_scale: float) -> list[dict[str, float]]:
    """Steps whose loss lies more than `threshold` robust z-scores (median/MAD) above the previous `window`
    steps. `min_scale` floors the MAD so that a converged, near-constant loss does not flag noise."""
    if len(losses) <= window:
        return []
    past = sliding_window_view(losses[:-1], window)  # past[i]: the window before step i + window
    median, mad = median_and_scale(past, axis=1)
    z = (losses[window:] - median) / np.maximum(mad, min_scale)
    return [{"step": int(i + window), "loss": float(losses[i + window]), "zscore": float(z[i])}
            for i in np.flatnonzero(z > threshold)]


def privacy_spent(recipe: Recipe, n_rows: int) -> float:
    """(epsilon) of DP-SGD at train.dp_sgd.delta, by the RDP accountant; batches are treated as Poisson samples
    of rate batch/n (the usual accounting for shuffled batches)."""
    batch = batch_size_for(recipe)
    steps = recipe.epochs * -(-n_rows // batch)
    event = dp_accounting.SelfComposedDpEvent(dp_accounting.PoissonSampledDpEvent(
        min(1.0, batch / n_rows), dp_accounting.GaussianDpEvent(recipe.dp_sgd.noise_multiplier)), steps)
    accountant = rdp.RdpAccountant()
    accountant.compose(event)
    return float(accountant.get_epsilon(recipe.dp_sgd.delta))


def accuracy(graphdef, params, X: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.asarray(predict_proba(graphdef, params, X)).argmax(axis=1) == y))
