"""What the post-training audit adds, on the default data: boundary flips and a backdoor at 5% and 10% of the
incoming rows, per seed through the red-team cell (poisongate/redteam.py: the gates, training, the audit, its
retrain, the output monitor in the promotion decision). Baseline measured in the same run: the gated model before
the audit (accuracy, attack success). The backdoor's trigger shifts its pixels' mean, stdev and quantiles, so the
GX data gate and the poisoning gate's batch-level tests (batch_shift, batch_pattern) refuse those batches whole;
to measure what the audit adds to a backdoor that passes the gates, its cells run with those checks off and the
range margin wide (`LENIENT`, `BATCH_LEVEL`). Then the audit's
share of a real night: `poisongate run` on a fresh
workspace with boundary flips at 10%, the audit stage's seconds against the run's wall time.

    uv run python benchmarks/audit_bench.py --seeds 3 --out benchmarks/results/audit.json
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
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CELLS = [("boundary_flip", 0.05), ("boundary_flip", 0.1), ("backdoor", 0.05), ("backdoor", 0.1)]
LENIENT = {"mean": False, "stdev": False, "quantiles": False, "range_margin": 100.0}  # backdoor cells only
BATCH_LEVEL = ("batch_shift", "batch_pattern")  # left out of the backdoor cells' poisoning gate
KEEP = ("attack", "rate", "seed", "poisoned_rows", "poisoned_accepted", "audit_flagged", "audit_caught",
        "audit_precision", "audit_recall", "accuracy_before_audit", "accuracy_with_gates", "clean_accuracy",
        "asr_before_audit", "asr_with_gates", "target_class_pull", "promoted", "promotion", "batch_refused")


def matrix(seeds: int, attacks: list[str]) -> list[dict]:
    from poisongate import config as configuration
    from poisongate import redteam as rt
    from poisongate.workspace import Workspace

    config = configuration.load(ROOT / "params.yaml")
    lenient = config.replace("validate", **LENIENT)
    detectors = config.filter.detectors.items()
    row_level = {k: v.model_dump(exclude_unset=True) for k, v in detectors if k not in BATCH_LEVEL}
    lenient = lenient.replace("filter", detectors=row_level)
    data = rt.load_data(Workspace(ROOT), config)
    data_lenient = rt.load_data(Workspace(ROOT), lenient)
    cells = []
    for seed in range(seeds):
        base = rt.baseline(data, config, seed)
        for attack, rate in [c for c in CELLS if c[0] in attacks]:
            start = time.perf_counter()
            backdoor = attack == "backdoor"
            cell = rt.run_cell(data_lenient if backdoor else data, lenient if backdoor else config, attack, rate,
                               seed, base)
            cells.append({**{k: cell.get(k) for k in KEEP}, "seconds": round(time.perf_counter() - start, 1)})
            print(json.dumps(cells[-1]), flush=True)
    return cells


def night_share(tmp: Path) -> dict:
    """One CLI night with boundary flips at 10%: the audit's seconds over the run's."""
    env = {**os.environ, "PREFECT_HOME": str(tmp / "prefect")}
    cli = [sys.executable, "-m", "poisongate.cli"]
    subprocess.run([*cli, "init", str(tmp / "ws")], check=True, env=env, capture_output=True)
    start = time.perf_counter()
    subprocess.run([*cli, "--workspace", str(tmp / "ws"), "run", "--simulate", "boundary_flip", "--rate", "0.1"],
                   env=env, capture_output=True)
    wall = time.perf_counter() - start
    report = json.loads(max((tmp / "ws" / "runs").glob("*.json")).read_text())
    stages = {k: v.get("seconds") for k, v in report["stages"].items()}
    return {"wall_seconds": round(wall, 1), "stage_seconds": stages,
            "audit_share_of_wall": round(stages["audit"] / wall, 4), "verdict": report["verdict"]}


def summarize(cells: list[dict]) -> list[dict]:
    rows = []
    for attack, rate in CELLS:
        if not any(c["attack"] == attack for c in cells):
            continue
        group = [c for c in cells if c["attack"] == attack and c["rate"] == rate]
        def mean(key: str, group: list[dict] = group) -> float | None:
            values = [c[key] for c in group if c.get(key) is not None]
            return statistics.fmean(values) if values else None

        accepted, caught = sum(c["poisoned_accepted"] or 0 for c in group), sum(c["audit_caught"] or 0 for c in group)
        flagged = sum(c["audit_flagged"] or 0 for c in group)
        rows.append({"attack": attack, "rate": rate, "seeds": len(group), "poisoned_accepted_by_gates": accepted,
                     "caught_by_audit": caught, "audit_flagged": flagged,
                     "audit_recall": caught / accepted if accepted else None,
                     "audit_precision": caught / flagged if flagged else None,
                     "accuracy_before_audit": mean("accuracy_before_audit"), "accuracy_after_audit": mean(
                         "accuracy_with_gates"), "clean_accuracy": mean("clean_accuracy"),
                     "asr_before_audit": mean("asr_before_audit"), "asr_after_audit": mean("asr_with_gates"),
                     "refused_for_target_class_pull": sum(bool(c["target_class_pull"]) for c in group),
                     "promoted": sum(bool(c["promoted"]) for c in group)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--attacks", nargs="+", default=["boundary_flip", "backdoor"])
    parser.add_argument("--skip-night", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "audit.json")
    args = parser.parse_args()
    cells = matrix(args.seeds, args.attacks)
    night = None
    if not args.skip_night:
        with tempfile.TemporaryDirectory() as tmp:
            night = night_share(Path(tmp))
    result = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
              "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
              "command": " ".join(["python", *sys.argv]), "backdoor_validate_overrides": LENIENT,
              "summary": summarize(cells), "night": night, "cells": cells}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    print(json.dumps({"summary": result["summary"], "night": night}, indent=1, default=str))


if __name__ == "__main__":
    main()
