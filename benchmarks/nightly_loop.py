"""The nightly loop on the default data through the real CLI: `poisongate run` night after night on a fresh
workspace (each night takes the next of the six batches), --repeats times. Per night: train_rows, holdout
accuracy, decision, wall seconds; what accumulation costs: the slope of seconds per night vs training rows, and
each night's seconds as a ratio to night 1 of the same round (the baseline, measured in the same run). Medians
over the rounds.

With --baseline-rev REV, every round also runs the same nights on the code at git revision REV (a temporary
worktree put first on PYTHONPATH, same environment and packages), interleaved with this checkout's: per night,
the baseline's seconds and its ratio to ours, and whether both made the same decisions.

    uv run python benchmarks/nightly_loop.py --nights 6 --repeats 3 --out benchmarks/results/nightly_loop.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

import cli_loop
import numpy as np


def one_round(nights: int, code: Path | None = None) -> list[dict]:
    """Nights on a fresh workspace, with the code of this checkout, or of `code` (a checkout put on PYTHONPATH)."""
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        env = cli_loop.environment(tmp)
        if code is not None:
            env["PYTHONPATH"] = str(code)
        ws = cli_loop.workspace(tmp, env)
        rows = []
        for i in range(nights):
            proc, seconds, row = cli_loop.night(ws, env)
            rows.append({"night": i + 1, "exit_status": proc.returncode, "seconds": seconds,
                         **{k: row[k] for k in ("decision", "source", "batch_rows", "accepted", "quarantined",
                                                "train_rows", "holdout_accuracy", "dataset_md5")}})
            print(f"  night {i + 1}: {row['decision']:<13} train_rows {row['train_rows']}  holdout "
                  f"{row['holdout_accuracy']}  {seconds:.1f} s", flush=True)
        return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nights", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path)
    parser.add_argument("--baseline-rev", help="also run every round on the code at this git revision")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        baseline_code = None
        if args.baseline_rev:
            baseline_code = Path(d) / "baseline"
            subprocess.run(["git", "worktree", "add", "-q", "--detach", baseline_code, args.baseline_rev],
                           cwd=cli_loop.ROOT, check=True)
        try:
            rounds, baseline_rounds = [], []
            for r in range(args.repeats):
                print(f"round {r + 1} of {args.repeats}", flush=True)
                if baseline_code:
                    print(f" baseline {args.baseline_rev}", flush=True)
                    baseline_rounds.append(one_round(args.nights, baseline_code))
                rounds.append(one_round(args.nights))
        finally:
            if baseline_code:
                subprocess.run(["git", "worktree", "remove", "--force", baseline_code], cwd=cli_loop.ROOT, check=True)
    per_night = []
    for i in range(args.nights):
        nights = [rnd[i] for rnd in rounds]
        per_night.append({
            "night": i + 1,
            "train_rows": statistics.median(n["train_rows"] or 0 for n in nights),
            "holdout_accuracy": statistics.median(n["holdout_accuracy"] or 0.0 for n in nights),
            "decisions": [n["decision"] for n in nights],
            "seconds_median": statistics.median(n["seconds"] for n in nights),
            "seconds_ratio_to_night_1": statistics.median(n["seconds"] / rnd[0]["seconds"]
                                                          for n, rnd in zip(nights, rounds)),
        })
        if baseline_rounds:
            before = [rnd[i] for rnd in baseline_rounds]
            per_night[-1]["baseline_seconds_median"] = statistics.median(n["seconds"] for n in before)
            per_night[-1]["ratio_baseline_over_ours"] = statistics.median(b["seconds"] / n["seconds"]
                                                                          for b, n in zip(before, nights))
            per_night[-1]["same_decisions_as_baseline"] = [b["decision"] for b in before] == per_night[-1]["decisions"]
    x = np.array([n["train_rows"] for n in per_night], float)
    y = np.array([n["seconds_median"] for n in per_night], float)
    slope = float(np.polyfit(x, y, 1)[0]) if len(set(x)) > 1 else 0.0
    result = {
        "date": date.today().isoformat(),
        "machine": f"{platform.node()} {platform.machine()}, {os.cpu_count()} cores, "
                   f"Python {platform.python_version()}",
        "command": " ".join(["python", *sys.argv]),
        "baseline": "night 1 of the same round (seconds ratio)"
                    + (f"; the code at {args.baseline_rev}, same rounds, interleaved" if args.baseline_rev else ""),
        "per_night": per_night,
        "seconds_per_1000_training_rows": slope * 1000,
        "rounds": rounds,
    }
    if baseline_rounds:
        result["baseline_rev"] = args.baseline_rev
        result["baseline_rounds"] = baseline_rounds
    print(f"{'night':>5} {'train_rows':>10} {'holdout':>8} {'seconds':>8} {'vs night 1':>10}  decisions")
    for n in per_night:
        print(f"{n['night']:>5} {n['train_rows']:>10.0f} {n['holdout_accuracy']:>8.4f} {n['seconds_median']:>8.1f} "
              f"{n['seconds_ratio_to_night_1']:>10.2f}  {', '.join(n['decisions'])}")
    print(f"accumulation cost: {slope * 1000:.2f} s per 1,000 more training rows (median seconds vs train_rows)")
    for n in per_night:
        if "baseline_seconds_median" in n:
            print(f"night {n['night']}: {args.baseline_rev} {n['baseline_seconds_median']:.1f} s, "
                  f"{n['ratio_baseline_over_ours']:.2f}x ours; same decisions: {n['same_decisions_as_baseline']}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
