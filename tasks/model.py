"""Flax NNX models and their Orbax checkpoints (the only format poisongate loads models from)."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from flax import nnx


class MLP(nnx.Module):
    def __init__(self, n_features: int, hidden: list[int], n_classes: int, *, rngs: nnx.Rngs) -> None:
        dims = [n_features, *hidden]
        self.hidden = nnx.List([nnx.Linear(a, b, rngs=rngs) for a, b in zip(dims, dims[1:])])
        self.out = nnx.Linear(dims[-1], n_classes, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        for layer in self.hidden:
            x = nnx.relu(layer(x))
        return self.out(x)


MODELS = {"mlp": MLP}


def model_spec(train_cfg: dict[str, Any], X: np.ndarray, classes: tuple) -> dict[str, Any]:
    """Everything needed to rebuild the model and its input scaling: stored as JSON beside the weights."""
    return {
        "model": train_cfg["model"],
        "hidden": [int(h) for h in train_cfg["hidden"]],
        "n_features": int(X.shape[1]),
        "classes": [c.item() if isinstance(c, np.generic) else c for c in classes],
        "mean": X.mean(axis=0).astype(float).tolist(),
        "std": np.maximum(X.std(axis=0), 1e-6).astype(float).tolist(),
    }


def build(spec: dict[str, Any], seed: int = 0) -> nnx.Module:
    return MODELS[spec["model"]](spec["n_features"], spec["hidden"], len(spec["classes"]), rngs=nnx.Rngs(seed))


def scale(X: np.ndarray, spec: dict[str, Any]) -> np.ndarray:
    return ((X - np.asarray(spec["mean"], np.float32)) / np.asarray(spec["std"], np.float32)).astype(np.float32)


def save(path: Path, step: int, params: nnx.State, opt_state: Any, meta: dict[str, Any]) -> None:
    """One Orbax checkpoint: weights, optimizer state and the JSON spec. Replaces what was at `path`."""
    path = Path(path).resolve()  # Orbax needs absolute paths
    if path.exists():
        shutil.rmtree(path)
    with ocp.CheckpointManager(path, options=ocp.CheckpointManagerOptions(max_to_keep=1, create=True)) as mngr:
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
            from tasks.config import PoisongateError

            raise PoisongateError(f"{path}: no Orbax checkpoint here; restore it with `dvc pull` or retrain")
        meta = mngr.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        graphdef, params = nnx.split(build(meta))
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, params)
        params = mngr.restore(step, args=ocp.args.Composite(params=ocp.args.StandardRestore(abstract)))["params"]
    return graphdef, params, meta
