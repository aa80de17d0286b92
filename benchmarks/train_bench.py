"""Training benchmarks, each against a named baseline measured in the same run (medians of --repeats):

1. step throughput of poisongate's jitted epoch (with its per-step monitors: loss, gradient norm, batch accuracy)
   vs a bare jitted loop doing the same updates without monitors: the same shuffled batches (the same row order,
   training.epoch_order, drawn inside the jitted epoch), the same row weights (weighted mean loss), the same
   optimizer: overhead target <= 10%.
   Also reported, for comparison with older results: a loop over the rows in order, unweighted (no shuffle at all);
2. k = 5 folds trained at once (vmap) vs 5 folds one after another, both through `fit` as cross-validation calls
   it: on 1797 rows x 5 epochs of the plain recipe (fixed costs dominate) and on params.yaml's own recipe
   (40 epochs), as the crossval stage runs it: target >= 2x;
3. cost factor of DP-SGD and of PGD adversarial training vs plain training;
4. holdout accuracy on the default data with 20% of training labels flipped: each robust option alone and all
   combined vs plain training.

    uv run python benchmarks/train_bench.py --repeats 5 --out benchmarks/results/train_bench.json
    (--skip-label-flips: sections 1-3 alone)
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

import jax
import numpy as np
import optax
from flax import nnx

from poisongate import config as configuration
from poisongate.attacks import simulate
from poisongate.config import Recipe
from poisongate.learning import models
from poisongate.learning.training import (
    accuracy,
    batch_size_for,
    data_sharding,
    epoch_order,
    fit,
    fold_groups,
    optimizer_for,
    privacy_spent,
    step_options,
    train_epoch,
    train_model,
    weighted_mean,
)
from poisongate.schema import schema_from_reference, to_arrays
from poisongate.sources import load_digits_frame, split_default

ROOT = Path(__file__).resolve().parents[1]
CONFIG = configuration.load(ROOT / "params.yaml")


def recipe_with(**overrides) -> Recipe:
    """params.yaml's `train` recipe with some keys changed (nested sections such as dp_sgd merged key by key),
    validated as params.yaml is."""
    return CONFIG.replace("train", **overrides).train if overrides else CONFIG.train


PLAIN = recipe_with(weight_decay=0.0)  # every robust option off


def median_seconds(fns: dict, repeats: int) -> dict:
    """Median wall time of each function; runs are interleaved so that load from other jobs on a shared
    machine falls on all of them alike."""
    for fn in fns.values():
        jax.block_until_ready(fn())  # compile
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            jax.block_until_ready(fn())
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def bare_epoch(graphdef, tx, batch_size, params, opt_state, X, y, w, key):
    """The baseline: a scan of value_and_grad + optimizer update over batches of rows in the epoch's order
    (training.epoch_order of `key`, each step gathering its rows as poisongate's does), the weighted mean loss as
    poisongate's, nothing recorded per step. `key` None: the rows in order, unweighted (the baseline of results
    before issue 19, which left poisongate's shuffle out of the comparison)."""
    steps = X.shape[0] // batch_size
    if key is None:  # plain slices of the rows in order
        xs, batch_of = (X.reshape(steps, batch_size, -1), y.reshape(steps, batch_size), w.reshape(steps, -1)), None
    else:
        xs = epoch_order(key, X.shape[0])[0].reshape(steps, batch_size)
        batch_of = lambda idx: (X[idx], y[idx], w[idx])  # noqa: E731

    def step(carry, batch):
        params, opt_state = carry
        xb, yb, wb = batch if batch_of is None else batch_of(batch)

        def loss(p):
            ce = optax.softmax_cross_entropy_with_integer_labels(nnx.merge(graphdef, p)(xb), yb)
            return ce.mean() if key is None else weighted_mean(ce, wb)

        grads = jax.grad(loss)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), None

    return jax.lax.scan(step, (params, opt_state), xs)[0][0]


bare_epoch = jax.jit(bare_epoch, static_argnames=("graphdef", "tx", "batch_size"))


def synthetic(n: int, d: int = 64, classes: int = 10, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)).astype(np.float32), rng.integers(0, classes, n).astype(np.int32)


def epoch_fn(cfg: Recipe, X: np.ndarray, y: np.ndarray):
    """One epoch of poisongate's jitted training (what `fit` calls once per epoch)."""
    spec = models.model_spec(cfg, X, tuple(range(10)))
    graphdef, params = nnx.split(models.build(spec, 0))
    tx = optimizer_for(cfg)
    rows, w = np.arange(len(X), dtype=np.int32), np.ones(len(X), np.float32)
    X, y, rows, w = jax.device_put((X, y, rows, w))  # as `fit` does: on device once
    args = (graphdef, tx, step_options(cfg), data_sharding(), batch_size_for(cfg), params, tx.init(params), X, y,
            rows, w, jax.random.key(0))
    return lambda: train_epoch(*args)[2]


def throughput(repeats: int) -> dict:
    X, y = synthetic(32768)
    bs = batch_size_for(PLAIN)
    spec = models.model_spec(PLAIN, X, tuple(range(10)))
    graphdef, params = nnx.split(models.build(spec, 0))
    tx = optimizer_for(PLAIN)
    Xd, yd, wd = jax.device_put((X, y, np.ones(len(X), np.float32)))
    key = jax.random.key(0)  # poisongate's epoch draws its row order from it the same way
    state = tx.init(params)  # once, as epoch_fn does: not timed
    s = median_seconds({
        "bare_loop": lambda: bare_epoch(graphdef, tx, bs, params, state, Xd, yd, wd, key),
        "unshuffled_loop": lambda: bare_epoch(graphdef, tx, bs, params, state, Xd, yd, wd, None),
        "poisongate": epoch_fn(PLAIN, X, y)}, repeats)
    return {"rows": len(X), "batch": bs, "model": f"mlp {list(PLAIN.hidden)}",
            "baseline": "bare jitted loop, the same updates without monitors: the same shuffled batches "
                        "(training.epoch_order, in the jitted epoch), the same row weights, the same optimizer",
            **{f"{name}_samples_per_s": len(X) / seconds for name, seconds in s.items()},
            "overhead": s["poisongate"] / s["bare_loop"] - 1, "target_overhead": 0.10,
            "overhead_vs_unshuffled_loop": s["poisongate"] / s["unshuffled_loop"] - 1}


def folds(repeats: int, k: int = 5) -> dict:
    """k folds through `fit`: all at once (vmapped; on CPU one vmapped group per core, side by side in threads,
    training.fold_groups) vs one after another (each fold's own rows, one model at a time), with the fold
    weights cross-validation builds; on the digits' size and on 20,000 rows, where a step's matmuls dominate."""
    out = {"k": k, "target_speedup": 2.0, "fold_groups": len(fold_groups(k))}
    cases = (("plain_5_epochs", 1797, PLAIN.model_copy(update={"epochs": 5})),
             ("pipeline_recipe", 1797, CONFIG.train),
             ("pipeline_recipe_20k_rows_5_epochs", 20_000, CONFIG.train.model_copy(update={"epochs": 5})))
    for name, n, cfg in cases:
        X, y = synthetic(n)
        W = (np.arange(len(X))[None, :] % k != np.arange(k)[:, None]).astype(np.float32)
        spec = models.model_spec(cfg, X, tuple(range(10)))
        s = median_seconds({"vmapped": lambda X=X, y=y, W=W, spec=spec, cfg=cfg: fit(X, y, spec, cfg, W)[3],
                            "sequential": lambda X=X, y=y, W=W, spec=spec, cfg=cfg: [
                                fit(X[W[i] > 0], y[W[i] > 0], spec, cfg)[3] for i in range(k)]}, repeats)
        out[name] = {"rows": n, "epochs": cfg.epochs, "vmapped_s": s["vmapped"], "sequential_s": s["sequential"],
                     "speedup": s["sequential"] / s["vmapped"]}
    out["speedup"] = min(out[name]["speedup"] for name, *_ in cases)
    return out


def cost_factors(repeats: int) -> dict:
    X, y = synthetic(4096)
    s = median_seconds({"plain": epoch_fn(PLAIN, X, y),
                        "dp_sgd": epoch_fn(recipe_with(weight_decay=0.0, dp_sgd={"enabled": True}), X, y),
                        "pgd": epoch_fn(recipe_with(weight_decay=0.0, adversarial={"method": "pgd"}), X, y)}, repeats)
    return {"rows": len(X), "plain_epoch_s": s["plain"], "dp_sgd_factor": s["dp_sgd"] / s["plain"],
            "pgd_factor": s["pgd"] / s["plain"], "pgd_steps": PLAIN.adversarial.pgd_steps}


# Overrides of PLAIN; a nested section (adversarial, dp_sgd) is merged key by key over PLAIN's.
ROBUST = {
    "plain": {},
    "weight_decay_1e-2": {"weight_decay": 1e-2},
    "clip_grad_norm_1": {"clip_grad_norm": 1.0},
    "trim_20%": {"trim_fraction": 0.2},
    "fgsm": {"adversarial": {"method": "fgsm"}},
    "pgd": {"adversarial": {"method": "pgd"}},
    "dp_sgd": {"dp_sgd": {"enabled": True}},
}
ROBUST["combined"] = {k: v for name in ROBUST for k, v in ROBUST[name].items()}  # pgd wins over fgsm


def flipped_label_accuracy(seeds: int) -> dict:
    """Train on the default data's reference + incoming rows with 20% of labels flipped; score the holdout."""
    reference, holdout, batches = split_default(load_digits_frame(), CONFIG.data.split)
    schema = schema_from_reference(reference, CONFIG.data, "reference")
    parts = [to_arrays(f, schema) for f in (reference, *batches)]
    X, y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    Xh, yh = to_arrays(holdout, schema)
    out = {}
    for name, overrides in ROBUST.items():
        cfg = recipe_with(**{"weight_decay": 0.0, **overrides})
        accs, epsilon = [], None
        for seed in range(seeds):
            Xp, yp, _ = simulate(X, y, "label_flip", 0.2, seed, len(schema.classes))
            spec = models.model_spec(cfg, Xp, schema.classes)
            t = train_model(models.scale(Xp, spec), yp, spec, cfg.model_copy(update={"seed": seed}))
            accs.append(accuracy(t.graphdef, t.params, models.scale(Xh, spec), yh))
        if cfg.dp_sgd.enabled:
            epsilon = privacy_spent(cfg, len(X))
        out[name] = {"holdout_accuracy_median": statistics.median(accs), "per_seed": accs, "dp_epsilon": epsilon}
        print(f"  {name:<18} holdout accuracy {statistics.median(accs):.4f}  "
              f"(seeds {', '.join(f'{a:.3f}' for a in accs)})", flush=True)
    plain = out["plain"]["holdout_accuracy_median"]
    for v in out.values():
        v["vs_plain"] = v["holdout_accuracy_median"] - plain
    return {"rows": len(X), "flip_rate": 0.2, "seeds": seeds, "options": out}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--skip-label-flips", action="store_true", help="sections 1-3 only (the speed figures)")
    args = parser.parse_args()
    result = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
              "machine": f"{platform.machine()}, {os.cpu_count()} cores shared with other jobs, "
                         f"{jax.devices()[0].platform}",
              "command": f"uv run python benchmarks/train_bench.py --repeats {args.repeats} --seeds {args.seeds}"
                         + (" --skip-label-flips" if args.skip_label_flips else ""),
              "repeats": args.repeats}
    t = result["throughput"] = throughput(args.repeats)
    print(f"throughput: bare loop (same shuffle, weights, updates; no monitors) {t['bare_loop_samples_per_s']:.0f} "
          f"samples/s, poisongate {t['poisongate_samples_per_s']:.0f}: overhead {t['overhead']:+.1%} (target <= 10%); "
          f"vs an unshuffled, unweighted loop ({t['unshuffled_loop_samples_per_s']:.0f} samples/s): "
          f"{t['overhead_vs_unshuffled_loop']:+.1%}", flush=True)
    f = result["folds"] = folds(args.repeats)
    for name in ("plain_5_epochs", "pipeline_recipe", "pipeline_recipe_20k_rows_5_epochs"):
        g = f[name]
        print(f"k=5 folds in {f['fold_groups']} group(s), {name} ({g['rows']} rows, {g['epochs']} epochs): sequential "
              f"{g['sequential_s']:.2f} s, vmapped {g['vmapped_s']:.2f} s: {g['speedup']:.2f}x (target >= 2x)",
              flush=True)
    c = result["cost"] = cost_factors(args.repeats)
    print(f"cost vs plain epoch ({c['plain_epoch_s'] * 1e3:.1f} ms): DP-SGD {c['dp_sgd_factor']:.2f}x, "
          f"PGD-{c['pgd_steps']} {c['pgd_factor']:.2f}x", flush=True)
    if not args.skip_label_flips:
        print("20% label flips, default data:", flush=True)
        result["label_flips"] = flipped_label_accuracy(args.seeds)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
