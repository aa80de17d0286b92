"""The poisoning gate at scale vs what a user would run instead (scikit-learn's IsolationForest), same rows, same run.

Synthetic float32 rows: 64 correlated Gaussian features around 10 class means, a trusted reference of 20,000 rows
and batches of --rows rows, each size in a fresh process (its peak resident set size is that size's alone).

1. Speed of the feature detectors (robust_zscore, iqr_fence, mahalanobis, periodic_noise, batch_shift,
   batch_pattern, duplicates), fit on the reference, scoring the batch as the gate does (the detectors with a
   kernel in one compiled call per chunk; each one alone is timed too), vs IsolationForest (default settings: one
   core; and with n_jobs=-1, as duplicates' grids use every core past 100,000 rows) fit on the same reference and
   scoring the same batch. Medians of --repeats rounds, interleaved; below 1M rows more rounds (`rounds`), as the
   shared machine's noise is larger than a 10k-row batch's milliseconds.
2. Efficacy on the same rows: AUROC of the gate's combined feature p-value (its ranking of rows, from
   `poisoning_gate.screen` with those detectors) vs IsolationForest's score, on 1% of the batch poisoned with the
   product's own attacks (poisongate/attacks.py: gaussian_noise, outliers).
3. The whole gate as shipped (`screen` with params.yaml's filter section: every default detector, the label and
   model-based ones included): seconds, once, at the sizes --whole-gate names.

    uv run python benchmarks/gates_speed.py --rows 10000 100000 1000000 --repeats 3 --whole-gate 10000 100000
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FEATURES, CLASSES, TRUSTED = 64, 10, 20_000
FEATURE_DETECTORS = ["robust_zscore", "iqr_fence", "mahalanobis", "periodic_noise", "batch_shift", "batch_pattern",
                     "duplicates"]
ATTACKS, POISON_RATE = ("gaussian_noise", "outliers"), 0.01


def rows(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(X float32 [n, 64], y int32): correlated Gaussian features around one mean per class."""
    rng = np.random.default_rng(seed)
    fixed = np.random.default_rng(0)
    mixing = fixed.normal(size=(FEATURES, FEATURES)).astype(np.float32) / np.sqrt(FEATURES)
    means = fixed.normal(0, 1.5, size=(CLASSES, FEATURES)).astype(np.float32)
    y = rng.integers(0, CLASSES, n).astype(np.int32)
    X = np.empty((n, FEATURES), np.float32)
    for start in range(0, n, 500_000):  # generate in blocks: the float64 draw would double the peak
        block = rng.standard_normal((min(500_000, n - start), FEATURES), dtype=np.float32)
        X[start : start + len(block)] = block @ mixing + means[y[start : start + len(block)]]
    return X, y


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def median_seconds(fns: dict, repeats: int) -> dict[str, float]:
    """Median wall time of each function, runs interleaved so that other load falls on all of them alike."""
    times = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


def feature_config(names):
    from poisongate import config as configuration

    cfg = configuration.load(ROOT / "params.yaml").filter
    return cfg.model_copy(update={"detectors": {k: v for k, v in cfg.detectors.items() if k in names}})


def rounds(n: int, repeats: int) -> int:
    """--repeats at 1M rows, up to 10x as many on smaller batches: at 10k rows each round takes milliseconds."""
    return repeats * min(10, max(1, 1_000_000 // max(n, 1)))


def one_size(n: int, repeats: int, whole_gate: bool) -> dict:
    from sklearn.ensemble import IsolationForest
    from sklearn.metrics import roc_auc_score

    from poisongate import config as configuration
    from poisongate import poisoning_gate as gate
    from poisongate.attacks import simulate
    from poisongate.detectors import registry as detectors
    from poisongate.detectors.base import fused_scores

    (trusted, trusted_y), (batch, labels) = rows(TRUSTED, 1), rows(n, 2)
    cfg = feature_config(FEATURE_DETECTORS)
    start = time.perf_counter()
    fitted = {name: detectors.make(name, cfg.detectors[name]).fit(trusted, trusted_y) for name in FEATURE_DETECTORS}
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    forest = IsolationForest(random_state=0).fit(trusted)  # default settings: one core
    forest_fit_s = time.perf_counter() - start
    forest_all_cores = IsolationForest(random_state=0, n_jobs=-1).fit(trusted)
    for det in fitted.values():  # compile once, outside the timing
        det.score(batch[:5000], labels[:5000])
    kernels = [det for det in fitted.values() if det.kernel is not None]
    fns = {name: (lambda d=det: d.score(batch, labels)) for name, det in fitted.items()}
    # as the gate scores them: every detector with a kernel in one compiled call per chunk
    fns["kernels_fused"] = lambda: fused_scores(kernels, batch, labels)
    fns["isolation_forest"] = lambda: forest.score_samples(batch)
    fns["isolation_forest_all_cores"] = lambda: forest_all_cores.score_samples(batch)
    fused_scores(kernels, batch[:5000], labels[:5000])
    n_rounds = rounds(n, repeats)
    seconds = median_seconds(fns, n_rounds)
    ours = seconds["kernels_fused"] + sum(seconds[name] for name, det in fitted.items() if det.kernel is None)
    one_by_one = sum(seconds[name] for name in FEATURE_DETECTORS)
    result = {"rows": n, "rounds": n_rounds, "seconds": seconds, "seconds_feature_detectors": ours,
              "seconds_without_duplicates": ours - seconds["duplicates"],
              "seconds_one_by_one": one_by_one,
              "ratio_isolation_forest_over_one_by_one": seconds["isolation_forest"] / one_by_one,
              "seconds_isolation_forest": seconds["isolation_forest"],
              "ratio_isolation_forest_over_ours": seconds["isolation_forest"] / ours, "target_ratio": 10.0,
              "ratio_isolation_forest_all_cores_over_ours": seconds["isolation_forest_all_cores"] / ours,
              "fit_seconds": {"feature_detectors": fit_s, "isolation_forest": forest_fit_s}}

    # Efficacy: the gate's own ranking (its combined feature p-value: every row-level feature detector, calibrated
    # on the trusted rows) vs the forest's, on the same poisoned rows.
    row_cfg = feature_config([k for k in FEATURE_DETECTORS if not detectors.DETECTORS[k].batch_level])
    auroc = {}
    for i, attack in enumerate(ATTACKS):
        poisoned, _, mask = simulate(batch, labels, attack, POISON_RATE, seed=i, n_classes=CLASSES)
        screening = gate.screen(trusted, trusted_y, poisoned, labels, row_cfg)
        ours_auc = roc_auc_score(mask, -np.log(np.maximum(screening.combined, 1e-300)))
        forest_auc = roc_auc_score(mask, -forest.score_samples(poisoned))
        auroc[attack] = {"ours": float(ours_auc), "isolation_forest": float(forest_auc),
                         "quarantined": int(screening.quarantined.sum()),
                         "quarantined_poisoned": int((screening.quarantined & mask).sum()),
                         "poisoned": int(mask.sum())}
        del poisoned
    result["auroc"] = auroc
    if whole_gate:
        shipped = configuration.load(ROOT / "params.yaml").filter
        start = time.perf_counter()
        screening = gate.screen(trusted, trusted_y, batch, labels, shipped)
        result["whole_gate"] = {"seconds": time.perf_counter() - start, "detectors": list(shipped.detectors),
                                "quarantined_clean_rows": int(screening.quarantined.sum()),
                                "batch_tests_failed": sorted(screening.firing())}
    result["peak_rss_mb"] = peak_mb()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--whole-gate", type=int, nargs="*", default=[], metavar="ROWS",
                        help="the sizes at which to time the whole gate as shipped too (minutes at 1M rows)")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "gates_speed.json"))
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_size(args.child, args.repeats, args.child in args.whole_gate)))
        return
    meta = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
            "command": "uv run python benchmarks/gates_speed.py " + " ".join(sys.argv[1:]),
            "repeats": args.repeats, "features": FEATURES, "classes": CLASSES, "trusted_rows": TRUSTED,
            "poison_rate": POISON_RATE,
            "git_head": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                       text=True).stdout.strip()}
    results = []
    for n in args.rows:  # a fresh process per size: ru_maxrss is the peak of that size alone
        cmd = [sys.executable, __file__, "--child", str(n), "--repeats", str(args.repeats)]
        cmd += ["--whole-gate", *map(str, args.whole_gate)]
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        results.append(json.loads(out))
        r = results[-1]
        print(f"{n} rows: feature detectors {r['seconds_feature_detectors']:.3f} s (duplicates "
              f"{r['seconds']['duplicates']:.3f}), IsolationForest {r['seconds_isolation_forest']:.3f} s: "
              f"{r['ratio_isolation_forest_over_ours']:.2f}x (target 10x; all cores "
              f"{r['ratio_isolation_forest_all_cores_over_ours']:.2f}x); AUROC ours/forest "
              + ", ".join(f"{a} {v['ours']:.3f}/{v['isolation_forest']:.3f}" for a, v in r["auroc"].items())
              + (f"; whole gate {r['whole_gate']['seconds']:.1f} s" if "whole_gate" in r else "")
              + f"; peak RSS {r['peak_rss_mb']:.0f} MB", flush=True)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"meta": meta, "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
