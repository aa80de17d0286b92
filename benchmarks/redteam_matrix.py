"""The full red-team matrix on the default data (attack x rate x seed, gates on and off), recorded in
benchmarks/results/redteam/, then the speed-up of running cells as concurrent Prefect tasks.

Baselines measured in the same run: accuracy is compared with the clean model (same seed, no attack, no gates);
the concurrent matrix's wall time with the same sub-matrix run by one worker.

    uv run python benchmarks/redteam_matrix.py --seeds 3 --out benchmarks/results/redteam

(--attacks and --rates restrict the matrix, for a quick check; the recorded results use params.yaml's.)
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="poisongate-bench-prefect-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")  # a fresh home on a busy machine


def workspace(tmp: Path, epochs: int | None) -> Path:
    """A scratch workspace with the project's params.yaml (the matrix reads nothing else)."""
    from poisongate import config as configuration

    config = configuration.load(ROOT / "params.yaml").replace("redteam", epochs=epochs)
    (tmp / "params.yaml").write_text(yaml.safe_dump(config.model_dump(by_alias=True), sort_keys=False))
    return tmp


def speedup(ws: Path, workers: int, repeats: int) -> dict:
    """Median wall time of a small matrix with one worker (the baseline) and with `workers`, alternating."""
    from flows.redteam import redteam

    small = {"attacks": ["label_flip", "gaussian_noise"], "rates": [0.2, 0.4], "seeds": [0, 1],
             "out": str(ws / "speed")}
    redteam(workspace=str(ws), workers=workers, **small)  # warm-up: every shape compiled once
    times = {1: [], workers: []}
    for _ in range(repeats):
        for w in times:
            times[w].append(redteam(workspace=str(ws), workers=w, **small)["meta"]["seconds"])
    one, many = statistics.median(times[1]), statistics.median(times[workers])
    return {"cells": 8, "repeats": repeats, "baseline_one_worker_seconds_median": one,
            f"workers_{workers}_seconds_median": many, "ratio_one_worker_over_concurrent": round(one / many, 3),
            "seconds": times}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, help="default: train.epochs")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--attacks", nargs="+", help="default: redteam.attacks")
    parser.add_argument("--rates", nargs="+", type=float, help="default: redteam.rates")
    parser.add_argument("--speedup-repeats", type=int, default=3, help="0 skips the speed-up measurement")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "redteam")
    args = parser.parse_args()
    from flows.redteam import redteam
    from poisongate.redteam import write_outputs

    with tempfile.TemporaryDirectory() as d:
        ws = workspace(Path(d), args.epochs)
        result = redteam(workspace=str(ws), attacks=args.attacks, rates=args.rates, seeds=list(range(args.seeds)),
                         workers=args.workers, out=str(args.out.resolve()))
        if args.speedup_repeats:
            result["meta"]["speedup"] = speedup(ws, args.workers, args.speedup_repeats)
    result["meta"]["command"] = " ".join(["uv run python", os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]])
    write_outputs(args.out, {k: v for k, v in result.items() if k != "paths"})

    print(f"{len(result['cells'])} cells in {result['meta']['seconds']} s ({result['meta']['machine']})")
    print(f"{'attack':<20}{'rate':>6}{'clean':>8}{'no gates':>10}{'gates':>8}{'gates/clean':>13}{'promoted':>10}"
          "  target")
    for r in result["summary"]:
        print(f"{r['attack']:<20}{r['rate']:>6.0%}{r['clean_accuracy']:>8.3f}{r['accuracy_without_gates']:>10.3f}"
              f"{r['accuracy_with_gates']:>8.3f}{r['accuracy_with_gates'] / r['clean_accuracy']:>13.3f}"
              f"{r['promoted']:>7}/{r['seeds']}  {r['target']} {r['why']}")
    if "speedup" in result["meta"]:
        s = result["meta"]["speedup"]
        print(f"speed-up of {args.workers} concurrent workers over 1 (baseline), 8 cells, median of {s['repeats']}: "
              f"{s['ratio_one_worker_over_concurrent']:.2f}x (shared 2-core machine)")


if __name__ == "__main__":
    main()
