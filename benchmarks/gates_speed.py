"""Speed of the feature detectors at scale vs scikit-learn's IsolationForest on the same rows, same run.

Synthetic float32 rows (correlated Gaussian features, 64 columns). The detectors are fit on 20,000 trusted
rows, then score the batch: robust_zscore, iqr_fence, mahalanobis, periodic_noise, batch_shift, batch_pattern
and duplicates (each timed; repeats give the median). IsolationForest (100 trees, n_jobs=-1) is fit on the same
trusted rows and scores the same batch. Peak memory: each size runs in a fresh process and reports its
maximum resident set size.

    uv run python benchmarks/gates_speed.py [--rows 1000000 5000000] [--repeats 3]
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
FEATURES = 64
TRUSTED = 20_000
DETECTORS = ["robust_zscore", "iqr_fence", "mahalanobis", "periodic_noise", "batch_shift", "batch_pattern",
             "duplicates"]


def rows(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mixing = np.random.default_rng(0).normal(size=(FEATURES, FEATURES)).astype(np.float32) / np.sqrt(FEATURES)
    out = np.empty((n, FEATURES), np.float32)
    for start in range(0, n, 500_000):  # generate in blocks: the float64 draw would double the peak
        block = rng.standard_normal((min(500_000, n - start), FEATURES), dtype=np.float32)
        out[start : start + len(block)] = block @ mixing
    return out


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one_size(n: int, repeats: int, isolation_forest: bool) -> dict:
    from poisongate.detectors import registry as detectors

    trusted, batch = rows(TRUSTED, 1), rows(n, 2)
    labels = np.zeros(n, np.int32)
    fitted = {name: detectors.make(name, {}).fit(trusted, np.zeros(TRUSTED, np.int32)) for name in DETECTORS}
    for det in fitted.values():  # compile once, outside the timing (shapes are fixed by CHUNK_ROWS)
        det.score(batch[:5000], labels[:5000])
    times = {name: [] for name in DETECTORS}
    for _ in range(repeats):
        for name, det in fitted.items():
            start = time.perf_counter()
            det.score(batch, labels)
            times[name].append(time.perf_counter() - start)
    result = {"rows": n, "seconds": {k: float(np.median(v)) for k, v in times.items()}}
    result["seconds_all_feature_detectors"] = float(sum(result["seconds"].values()))
    result["seconds_without_duplicates"] = result["seconds_all_feature_detectors"] - result["seconds"]["duplicates"]
    if isolation_forest:
        from sklearn.ensemble import IsolationForest

        forest = IsolationForest(random_state=0, n_jobs=-1).fit(trusted)
        runs = []
        for _ in range(repeats):
            start = time.perf_counter()
            forest.score_samples(batch)
            runs.append(time.perf_counter() - start)
        result["seconds_isolation_forest"] = float(np.median(runs))
        result["ratio_isolation_forest_over_ours"] = (result["seconds_isolation_forest"]
                                                      / result["seconds_all_feature_detectors"])
    result["peak_rss_mb"] = peak_mb()
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 5_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--forest", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "gates_speed.json"))
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_size(args.child, args.repeats, args.forest)))
        return
    results = []
    for i, n in enumerate(args.rows):
        # a fresh process per size: ru_maxrss is the peak of that size alone; IsolationForest on the first size
        cmd = [sys.executable, __file__, "--child", str(n), "--repeats", str(args.repeats)]
        cmd += ["--forest"] if i == 0 else []
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        results.append(json.loads(out))
        print(json.dumps(results[-1], indent=1), flush=True)
    meta = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores shared with other jobs, "
                       f"{platform.python_version()}",
            "command": "uv run python benchmarks/gates_speed.py " + " ".join(sys.argv[1:]),
            "repeats": args.repeats, "features": FEATURES, "trusted_rows": TRUSTED}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"meta": meta, "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
