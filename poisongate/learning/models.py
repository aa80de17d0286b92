"""Flax NNX models and their Orbax checkpoints (the only format poisongate loads models from).

Every model has `embed(x)`, the penultimate representation (spectral-signature gates use it), and
`__call__(x)`, the logits computed from it."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx

from poisongate.config import Recipe
from poisongate.errors import REPAIR_REGISTRY, ConfigError, PoisongateError, RegistryDamaged
from poisongate.schema import Schema, class_indices, image_side
from poisongate.tables import read_matrix, read_table


class MLP(nnx.Module):
    def __init__(self, spec: dict[str, Any], *, rngs: nnx.Rngs) -> None:
        dims = [spec["n_features"], *spec["hidden"]]
        self.hidden = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(dims, dims[1:])])
        self.out = nnx.Linear(dims[-1], len(spec["classes"]), rngs=rngs)

    def embed(self, x: jax.Array) -> jax.Array:
        for layer in self.hidden:
            x = nnx.relu(layer(x))
        return x

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.out(self.embed(x))


class CNN(nnx.Module):
    """Flat features read as a square one-channel image (digits: 8x8); 3x3 convolutions, each halving the
    side by average pooling, then one dense hidden layer per `hidden` entry."""

    def __init__(self, spec: dict[str, Any], *, rngs: nnx.Rngs) -> None:
        self.side = image_side(spec["n_features"])  # checked by model_spec
        channels = [1, *spec["cnn_channels"]]
        self.convs = nnx.List([nnx.Conv(a, b, kernel_size=(3, 3), rngs=rngs) for a, b in zip(channels, channels[1:])])
        side = self.side
        for _ in self.convs:
            side = max(side // 2, 1)
        dims = [side * side * channels[-1], *spec["hidden"]]
        self.hidden = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(dims, dims[1:])])
        self.out = nnx.Linear(dims[-1], len(spec["classes"]), rngs=rngs)

    def embed(self, x: jax.Array) -> jax.Array:
        x = x.reshape(*x.shape[:-1], self.side, self.side, 1)
        for conv in self.convs:
            x = nnx.relu(conv(x))
            if x.shape[-2] > 1:
                x = nnx.avg_pool(x, window_shape=(2, 2), strides=(2, 2))
        x = x.reshape(*x.shape[:-3], -1)
        for layer in self.hidden:
            x = nnx.relu(layer(x))
        return x

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.out(self.embed(x))


MODELS = {"mlp": MLP, "cnn": CNN}


def model_spec(recipe: Recipe, X: np.ndarray, classes: tuple) -> dict[str, Any]:
    """Everything needed to rebuild the model and its input scaling: stored as JSON beside the weights."""
    if recipe.model == "cnn" and image_side(X.shape[1]) is None:
        raise ConfigError(f"params.yaml: train.model cnn needs a square image, but there are {X.shape[1]} feature "
                          "columns; set train.model: mlp or select a square number of data.feature_columns")
    return {
        "model": recipe.model,
        "hidden": list(recipe.hidden),
        "cnn_channels": list(recipe.cnn_channels),
        "n_features": int(X.shape[1]),
        "classes": [c.item() if isinstance(c, np.generic) else c for c in classes],
        "mean": X.mean(axis=0).astype(float).tolist(),
        "std": np.maximum(column_std(X), 1e-6).astype(float).tolist(),
    }


def column_std(X: np.ndarray, block: int = 8) -> np.ndarray:
    """X.std(axis=0), the same numbers, a few columns at a time: the deviations of the whole array at once were
    a copy of it (1M rows: 0.26 GB)."""
    return np.concatenate([X[:, j:j + block].std(axis=0) for j in range(0, X.shape[1], block)])


def build(spec: dict[str, Any], seed: int = 0) -> nnx.Module:
    return MODELS[spec["model"]](spec, rngs=nnx.Rngs(seed))


DEVICE_ALIGNMENT = 64  # bytes: XLA's CPU client uses a host buffer aligned so in place; any other it copies


def empty_for_device(shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
    """An uninitialised array whose data starts on a DEVICE_ALIGNMENT boundary, so that `jax.device_put` on CPU
    takes it without a copy (numpy aligns to 16 bytes: every training on 1M rows copied 0.26 GB, issue 19)."""
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    raw = np.empty(nbytes + DEVICE_ALIGNMENT, np.uint8)
    start = -raw.ctypes.data % DEVICE_ALIGNMENT
    return raw[start:start + nbytes].view(dtype).reshape(shape)


def stack_for_device(*parts: np.ndarray) -> np.ndarray:
    """The parts' rows in one float32 array for `empty_for_device`'s reasons, to be scaled in place."""
    out = empty_for_device((sum(map(len, parts)), *parts[0].shape[1:]), np.float32)
    return np.concatenate(parts, out=out)


def scale(X: np.ndarray, spec: dict[str, Any], out: np.ndarray | None = None) -> np.ndarray:
    """Standardised in float32, into `out` (X itself may be it) or one new array that a CPU device uses in place
    (`empty_for_device`). The caller must not change it while a device array made from it lives."""
    out = empty_for_device(X.shape, np.float32) if out is None else out
    np.subtract(X, np.asarray(spec["mean"], np.float32), out=out, dtype=np.float32)
    out /= np.asarray(spec["std"], np.float32)
    return out


def scaled_rows(path: Path, schema: Schema, recipe: Recipe) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(X scaled, y, spec) of a workspace's training file for `recipe`: only its feature and label columns are
    read, the features straight into one device-ready array, scaled in place (1M rows: 0.26 GB in all)."""
    X = read_matrix(path, list(schema.features), empty_for_device)
    y = class_indices(read_table(path, columns=[schema.label])[schema.label], schema)
    spec = model_spec(recipe, X, schema.classes)
    return scale(X, spec, out=X), y, spec


def save(path: Path, step: int, params: nnx.State, opt_state: Any, meta: dict[str, Any],
         trajectory: tuple = ()) -> None:
    """An Orbax checkpoint: weights, optimizer state and the JSON spec at `step`, and before it the weights of
    its training `trajectory` ((epoch, params), each its own step: the audit's TracIn reads them). Replaces what
    was at `path`."""
    path = Path(path).resolve()  # Orbax needs absolute paths
    if path.exists():
        shutil.rmtree(path)
    with ocp.CheckpointManager(path, options=ocp.CheckpointManagerOptions(max_to_keep=None, create=True)) as mngr:
        for epoch, weights in trajectory:
            if epoch < step:
                mngr.save(epoch, args=ocp.args.Composite(params=ocp.args.StandardSave(weights)))
        mngr.save(step, args=ocp.args.Composite(
            params=ocp.args.StandardSave(params),
            opt_state=ocp.args.StandardSave(opt_state),
            meta=ocp.args.JsonSave(meta),
        ))
        mngr.wait_until_finished()


def load(path: Path) -> tuple[nnx.GraphDef, nnx.State, dict[str, Any]]:
    """Restore weights and spec (not the optimizer state: evaluation does not need it)."""
    path = Path(path).resolve()
    with ocp.CheckpointManager(path) as mngr:
        step = mngr.latest_step()
        if step is None:
            raise PoisongateError(f"{path}: no Orbax checkpoint here; restore it with `dvc pull` or retrain")
        try:
            meta = mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
            graphdef, params = nnx.split(build(meta))
            abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, params)
            params = mngr.restore(step, args=ocp.args.Composite(params=ocp.args.StandardRestore(abstract)))["params"]
        except Exception as e:  # tensorstore, JSON, shape errors: a damaged checkpoint, whichever part broke
            detail = (str(e).splitlines() or [type(e).__name__])[0][:160]
            raise RegistryDamaged(f"{path}: the checkpoint cannot be restored ({detail}); {REPAIR_REGISTRY}") from None
    return graphdef, params, meta


def load_trajectory(path: Path) -> list[tuple[int, nnx.State]]:
    """(epoch, weights) of every step of a checkpoint written by `save`, the final one included."""
    path = Path(path).resolve()
    _, params, meta = load(path)
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, params)
    with ocp.CheckpointManager(path) as mngr:
        return [(step, mngr.restore(step, args=ocp.args.Composite(params=ocp.args.StandardRestore(abstract)))["params"])
                for step in mngr.all_steps()]
