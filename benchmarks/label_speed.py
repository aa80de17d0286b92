"""Speed and accuracy of the label detectors as the gate runs them vs cleanlab + scikit-learn on the same rows.

Synthetic, seeded float32 rows: 10 classes, 64 features, each class a Gaussian around its own mean (means
N(0, --separation^2) per feature, unit noise, both mixed by one fixed random 64x64 matrix). A trusted reference
of 20,000 clean rows (as in gates_speed.py) and an incoming batch of --rows rows in which --flip-rate of the
labels are flipped to another class, uniformly (poisongate.attacks.simulate "label_flip").

Ours: the poisoning gate as shipped, restricted to the label family: `poisoning_gate.screen` with params.yaml's
filter section (seed, fdr, calibration_folds, chunk_rows) and its options for knn_label and confident_learning,
the other detectors removed. That is: knn_label calibrated on the trusted rows (k-fold held-out scores) and fit
on them, confident_learning's out-of-fold MLP over trusted + batch rows (folds vmapped), every batch row's
conformal p-values, the label family's combined p-value and Benjamini-Hochberg at filter.fdr. The rows it
selects are what is scored against the planted flips; `ours_at_fdr` scores the rows Benjamini-Hochberg selects on
the same combined p-values at stricter false discovery rates (filter.fdr bounds the share of clean rows among the
selected, so it bounds precision from below, not above: at 0.1 about 0.9 is what it allows). `ours_at_cleanlab_count`
compares the two rankings at one operating point: our rows of smallest combined p-value, as many as cleanlab
selected. --confident-learning overrides confident_learning's options (JSON), e.g. '{"hidden": []}': a linear
label model.

Baseline: what a user would run instead, on the same rows confident_learning sees (trusted + batch):
`sklearn.model_selection.cross_val_predict(LogisticRegression(), X, y, cv=5, method="predict_proba",
n_jobs=-1)` then `cleanlab.filter.find_label_issues(y, pred_probs, n_jobs=1)` (cleanlab forks worker
processes; fork is unsafe in a process running JAX's threads), timed together; the issues among the batch rows
are scored against the flips. scikit-learn's worker processes (loky) use both cores, as JAX does.

Per size, one fresh process: a cold round (imports are done; JAX compiles, loky starts its workers), then
--repeats rounds, each running ours then the baseline (interleaved); seconds are the median of those rounds.
Peak memory: the process's maximum resident set size after all rounds (both methods), and each method's peak RSS
of this process sampled every 20 ms while it runs. The baseline's scikit-learn worker processes (loky keeps them
alive between calls) are not counted: its peak is an underestimate.
A size whose cold round of a method takes more than --max-seconds is not repeated for that method.

    flock /tmp/poisongate-bench.lock uv run python benchmarks/label_speed.py [--rows 10000 100000] [--repeats 3]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import subprocess
import sys
import threading
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
FEATURES = 64
CLASSES = 10
TRUSTED = 20_000
LABEL_DETECTORS = ("knn_label", "confident_learning")


def rows(n: int, seed: int, separation: float) -> tuple[np.ndarray, np.ndarray]:
    """n rows and their (clean) labels; the class means and the mixing matrix are the same for every seed."""
    rng = np.random.default_rng(seed)
    fixed = np.random.default_rng(0)
    mixing = fixed.normal(size=(FEATURES, FEATURES)).astype(np.float32) / np.sqrt(FEATURES)
    means = fixed.normal(scale=separation, size=(CLASSES, FEATURES)).astype(np.float32)
    y = rng.integers(0, CLASSES, n).astype(np.int32)
    X = np.empty((n, FEATURES), np.float32)
    for start in range(0, n, 250_000):  # in blocks: the float64 temporaries would double the peak
        stop = min(n, start + 250_000)
        noise = rng.standard_normal((stop - start, FEATURES), dtype=np.float32)
        X[start:stop] = (noise + means[y[start:stop]]) @ mixing
    return X, y


class PeakRSS:
    """This process's peak resident set size while the block runs (sampled from /proc every 20 ms), in MB."""

    def __enter__(self) -> PeakRSS:
        self.peak, self._stop = 0.0, threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while True:
            self.peak = max(self.peak, rss_mb())
            if self._stop.wait(0.02):
                return

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def quality(selected: np.ndarray, flipped: np.ndarray) -> dict[str, float]:
    tp = int(np.sum(selected & flipped))
    precision = tp / max(int(selected.sum()), 1)
    recall = tp / max(int(flipped.sum()), 1)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"selected": int(selected.sum()), "true_positives": tp, "precision": precision, "recall": recall, "f1": f1}


FDR_LEVELS = (0.01, 0.02, 0.05)  # besides params.yaml's filter.fdr: BH on the same combined p-values


def ours(cfg, X_ref, y_ref, X, y) -> tuple[np.ndarray, dict, dict, np.ndarray]:
    """(selected rows, selected by each detector, selected at each of FDR_LEVELS, combined p-values)."""
    from poisongate import poisoning_gate as gate

    screening = gate.screen(X_ref, y_ref, X, y, cfg)
    at_fdr = {q: gate.benjamini_hochberg(screening.combined, q) for q in FDR_LEVELS}
    by = {name: np.asarray(s) for name, s in screening.selected_by.items()}
    return screening.quarantined, by, at_fdr, screening.combined


def smallest(p: np.ndarray, count: int) -> np.ndarray:
    """The `count` rows of smallest p-value (ties in row order)."""
    selected = np.zeros(len(p), bool)
    selected[np.argsort(p, kind="stable")[:count]] = True
    return selected


def baseline(X_ref, y_ref, X, y) -> np.ndarray:
    from cleanlab.filter import find_label_issues
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict

    X_all, y_all = np.concatenate([X_ref, X]), np.concatenate([y_ref, y])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # lbfgs's ConvergenceWarning at the default max_iter
        proba = cross_val_predict(LogisticRegression(), X_all, y_all, cv=5, method="predict_proba", n_jobs=-1)
    return find_label_issues(y_all, proba, n_jobs=1)[len(X_ref):]


def one_size(n: int, repeats: int, separation: float, flip_rate: float, max_seconds: float,
             confident_learning: dict) -> dict:
    from poisongate import config
    from poisongate.attacks import simulate

    filter_cfg = config.load(ROOT / "params.yaml").filter
    detectors = {k: v for k, v in filter_cfg.detectors.items() if k in LABEL_DETECTORS}
    detectors["confident_learning"] = type(detectors["confident_learning"]).model_validate(
        {**detectors["confident_learning"].model_dump(), **confident_learning})
    cfg = filter_cfg.model_copy(update={"detectors": detectors})
    X_ref, y_ref = rows(TRUSTED, 1, separation)
    X, y_clean = rows(n, 2, separation)
    _, y, flipped = simulate(X, y_clean, "label_flip", flip_rate, 3, CLASSES)
    runs = {"ours": [], "cleanlab": []}
    peaks = {"ours": 0.0, "cleanlab": 0.0}
    cold = {}
    out: dict = {}
    methods = {"ours": lambda: ours(cfg, X_ref, y_ref, X, y), "cleanlab": lambda: baseline(X_ref, y_ref, X, y)}
    for round_ in range(repeats + 1):  # round 0: cold
        for name, fn in methods.items():
            if round_ and cold[name] > max_seconds:
                continue
            with PeakRSS() as peak:
                start = time.perf_counter()
                got = fn()
                seconds = time.perf_counter() - start
            peaks[name] = max(peaks[name], peak.peak)
            if round_:
                runs[name].append(seconds)
            else:
                cold[name] = seconds
                if name == "ours":
                    selected, by, at_fdr, combined = got
                    out["ours"] = quality(selected, flipped)
                    out["ours"]["selected_by"] = {k: quality(v, flipped) for k, v in by.items()}
                    out["ours_at_fdr"] = {str(q): quality(v, flipped) for q, v in at_fdr.items()}
                else:
                    out["cleanlab"] = quality(got, flipped)
                    out["ours_at_cleanlab_count"] = quality(smallest(combined, int(got.sum())), flipped)
            print(f"rows {n} round {round_} {name}: {seconds:.2f} s", file=sys.stderr, flush=True)
    result = {"rows": n, "flipped": int(flipped.sum())}
    for name in methods:
        result[f"seconds_{name}"] = float(np.median(runs[name])) if runs[name] else None
        result[f"seconds_{name}_cold"] = cold[name]
        result[f"seconds_{name}_runs"] = runs[name]
    warm = result["seconds_ours"] and result["seconds_cleanlab"]
    result["ratio_cleanlab_over_ours"] = (result["seconds_cleanlab"] / result["seconds_ours"] if warm
                                          else cold["cleanlab"] / cold["ours"])
    result["ratio_cleanlab_over_ours_cold"] = cold["cleanlab"] / cold["ours"]
    result["quality"] = out
    result["target_met"] = bool(result["ratio_cleanlab_over_ours"] >= 1.0 and out["ours"]["f1"] > out["cleanlab"]["f1"])
    result["peak_rss_mb"] = {"ours": peaks["ours"], "cleanlab": peaks["cleanlab"],
                             "process": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--separation", type=float, default=0.55, help="std of the class means per feature")
    parser.add_argument("--flip-rate", type=float, default=0.1)
    parser.add_argument("--max-seconds", type=float, default=300.0,
                        help="a method whose cold round takes longer is not repeated at that size")
    parser.add_argument("--confident-learning", default="{}", help="JSON: confident_learning options to override")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "label_speed.json"))
    args = parser.parse_args()
    if args.child:
        print(json.dumps(one_size(args.child, args.repeats, args.separation, args.flip_rate, args.max_seconds,
                                  json.loads(args.confident_learning))))
        return
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "poisongate"], cwd=ROOT,
                           capture_output=True, text=True).stdout.split()[1::2]
    results = []
    for n in args.rows:  # a fresh process per size: its peak RSS is that size's alone
        cmd = [sys.executable, __file__, "--child", str(n), "--repeats", str(args.repeats), "--separation",
               str(args.separation), "--flip-rate", str(args.flip_rate), "--max-seconds", str(args.max_seconds),
               "--confident-learning", args.confident_learning]
        done = subprocess.run(cmd, stdout=subprocess.PIPE, text=True)
        if done.returncode:
            results.append({"rows": n, "error": f"exit status {done.returncode}"})
        else:
            results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1], indent=1), flush=True)
    meta = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores shared with other jobs, no GPU, "
                       f"{platform.python_version()}",
            "command": "flock /tmp/poisongate-bench.lock uv run python benchmarks/label_speed.py "
                       + shlex.join(sys.argv[1:]),
            "git_head": head.strip(), "uncommitted_at_start": dirty,
            "repeats": args.repeats, "features": FEATURES, "classes": CLASSES, "trusted_rows": TRUSTED,
            "separation": args.separation, "flip_rate": args.flip_rate,
            "confident_learning_overrides": json.loads(args.confident_learning)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"meta": meta, "results": results}, indent=1) + "\n")


if __name__ == "__main__":
    main()
