"""Stage `train`: Flax NNX + Optax, one jitted epoch (a `lax.scan` over steps), data-parallel over every
device: the batch is sharded along a `data` mesh axis, the parameters replicated."""
from __future__ import annotations

import csv
import time
from functools import lru_cache, partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import AxisType, NamedSharding, PartitionSpec as P

from tasks import model as models
from tasks.config import Workspace, atomic_path
from tasks.data import read_table, schema_from_reference, to_arrays


@lru_cache(maxsize=None)
def optimizer(learning_rate: float, weight_decay: float) -> optax.GradientTransformation:
    # Cached so equal settings give the same object: it is a static argument of the jitted epoch.
    return optax.adamw(learning_rate, weight_decay=weight_decay)


@lru_cache(maxsize=None)
def data_sharding() -> NamedSharding:
    mesh = jax.make_mesh((jax.device_count(),), ("data",), axis_types=(AxisType.Auto,))
    return NamedSharding(mesh, P(None, "data"))  # [steps, batch, features]: split each batch across devices


def loss_fn(params, graphdef, x, y, w):
    logits = nnx.merge(graphdef, params)(x)
    ce = optax.softmax_cross_entropy_with_integer_labels(logits, y)
    return jnp.sum(w * ce) / jnp.maximum(jnp.sum(w), 1.0)


def _epoch(graphdef, tx, sharding, batch_size, params, opt_state, X, y, w, key):
    """One pass over the (padded) rows in a fresh order; returns per-step loss and gradient norm."""
    perm = jax.random.permutation(key, X.shape[0])
    steps = X.shape[0] // batch_size
    xb, yb, wb = (a[perm].reshape(steps, batch_size, *a.shape[1:]) for a in (X, y, w))
    if sharding is not None:
        xb = jax.lax.with_sharding_constraint(xb, sharding)

    def train_step(carry, batch):
        params, opt_state = carry
        loss, grads = jax.value_and_grad(loss_fn)(params, graphdef, *batch)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), (loss, optax.tree.norm(grads))

    (params, opt_state), (losses, grad_norms) = jax.lax.scan(train_step, (params, opt_state), (xb, yb, wb))
    return params, opt_state, losses, grad_norms


_STATIC = ("graphdef", "tx", "sharding", "batch_size")
train_epoch = jax.jit(_epoch, static_argnames=_STATIC)


@partial(jax.jit, static_argnames=_STATIC)
def train_epoch_folds(graphdef, tx, sharding, batch_size, params, opt_state, X, y, W, key):
    """k folds at once: each fold its own parameters and optimizer state, its own row weights W[k]."""
    one = partial(_epoch, graphdef, tx, sharding, batch_size)
    return jax.vmap(one, in_axes=(0, 0, None, None, 0, None))(params, opt_state, X, y, W, key)


@partial(jax.jit, static_argnames="graphdef")
def predict_proba(graphdef, params, X):
    return jax.nn.softmax(nnx.merge(graphdef, params)(X))


def pad_rows(X: np.ndarray, y: np.ndarray, w: np.ndarray, batch_size: int):
    """Pad to whole batches with zero-weight rows, so every step has the same shape."""
    n_pad = -len(X) % batch_size
    return (
        np.concatenate([X, np.zeros((n_pad, X.shape[1]), X.dtype)]),
        np.concatenate([y, np.zeros(n_pad, y.dtype)]),
        np.concatenate([w, np.zeros(w.shape[:-1] + (n_pad,), w.dtype)], axis=-1),
    )


def batch_size_for(cfg: dict[str, Any]) -> int:
    n_dev = jax.device_count()
    return max(n_dev, int(cfg["batch_size"]) // n_dev * n_dev)  # divisible by the device count


def fit(X: np.ndarray, y: np.ndarray, spec: dict[str, Any], cfg: dict[str, Any], W: np.ndarray | None = None):
    """Train one model (W None) or len(W) models at once, one per row-weight vector. X is already scaled."""
    bs = batch_size_for(cfg)
    folds = None if W is None else len(W)
    w = np.ones(len(X), np.float32) if W is None else W.astype(np.float32)
    X, y, w = pad_rows(X, y.astype(np.int32), w, bs)
    tx = optimizer(float(cfg["learning_rate"]), float(cfg["weight_decay"]))
    sharding = data_sharding()
    replicated = NamedSharding(sharding.mesh, P())
    seed = int(cfg["seed"])
    graphdef, params = nnx.split(models.build(spec, seed))
    if folds is not None:  # one initialisation per fold, stacked on a leading axis for vmap
        inits = [params] + [nnx.split(models.build(spec, seed + k))[1] for k in range(1, folds)]
        params = jax.tree.map(lambda *leaves: jnp.stack(leaves), *inits)
    params = jax.device_put(params, replicated)
    opt_state = jax.vmap(tx.init)(params) if folds else tx.init(params)
    X, y = jax.device_put(X, replicated), jax.device_put(y, replicated)
    w = jax.device_put(w, replicated)
    key = jax.random.key(seed)
    step_fn = train_epoch if folds is None else train_epoch_folds
    history = []
    for epoch in range(int(cfg["epochs"])):
        params, opt_state, losses, grad_norms = step_fn(graphdef, tx, sharding, bs, params, opt_state, X, y, w, jax.random.fold_in(key, epoch))
        jax.block_until_ready(losses)  # see STACK_NOTES: back-to-back multi-device steps can abort on 2 cores
        history.append((losses, grad_norms))
    losses = np.stack([np.asarray(l) for l, _ in history])  # [epochs, (folds,) steps]
    grad_norms = np.stack([np.asarray(g) for _, g in history])
    return graphdef, params, opt_state, losses, grad_norms


def accuracy(graphdef, params, X: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(np.asarray(predict_proba(graphdef, params, X)).argmax(axis=1) == y))


def train(ws: Workspace, params: dict[str, Any]) -> dict[str, Any]:
    """Train the candidate on data/clean.parquet and checkpoint it to models/candidate (Orbax)."""
    cfg = params["train"]
    clean = read_table(ws.clean)
    schema = schema_from_reference(read_table(ws.reference), params["data"], ws.reference)
    X, y = to_arrays(clean, schema)
    spec = models.model_spec(cfg, X, schema.classes)
    Xs = models.scale(X, spec)
    start = time.perf_counter()
    graphdef, weights, opt_state, losses, grad_norms = fit(Xs, y, spec, cfg)
    seconds = time.perf_counter() - start
    models.save(ws.candidate, int(cfg["epochs"]), weights, opt_state, spec)
    with atomic_path(ws.path("reports", "train_curve.csv")) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["epoch", "loss", "grad_norm"])
        for epoch, (l, g) in enumerate(zip(losses.mean(axis=-1), grad_norms.mean(axis=-1))):
            writer.writerow([epoch, f"{l:.6f}", f"{g:.6f}"])
    return {
        "rows": len(clean),
        "epochs": int(cfg["epochs"]),
        "devices": jax.device_count(),
        "final_loss": float(losses[-1].mean()),
        "train_accuracy": accuracy(graphdef, weights, Xs, y),
        "seconds": seconds,
        "samples_per_second": len(clean) * int(cfg["epochs"]) / seconds,
    }
