"""Cold `poisongate run` on the default data, end to end and per stage, against `dvc repro` of the same
stages without Prefect (the baseline), in the same invocation. Prints medians of --repeats runs.

    uv run python benchmarks/cold_run.py --repeats 3 --out benchmarks/results/cold_run.json
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
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def fresh_workspace(tmp: Path) -> Path:
    ws = tmp / "ws"
    subprocess.run([BIN / "poisongate", "init", ws, "--remote", tmp / "remote"], check=True)
    return ws


def timed(cmd: list, env: dict, cwd: Path | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def one_round() -> dict:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        env = {**os.environ, "PREFECT_HOME": str(tmp / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
               "DVC_NO_ANALYTICS": "1", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
        ws = fresh_workspace(tmp)
        flow = timed([BIN / "poisongate", "--workspace", ws, "run"], env)
        report = json.loads(max((ws / "runs").glob("*.json")).read_text())
        stages = {name: s["seconds"] for name, s in report["stages"].items()}
        (tmp / "baseline").mkdir()
        repro = timed([BIN / "dvc", "repro", "-q"], env, cwd=fresh_workspace(tmp / "baseline"))
    return {"flow_seconds": flow, "dvc_repro_seconds": repro, "stage_seconds": stages}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rounds = [one_round() for _ in range(args.repeats)]
    flow = statistics.median(r["flow_seconds"] for r in rounds)
    repro = statistics.median(r["dvc_repro_seconds"] for r in rounds)
    stages = {k: statistics.median(r["stage_seconds"][k] for r in rounds) for k in rounds[0]["stage_seconds"]}
    result = {
        "date": date.today().isoformat(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "repeats": args.repeats,
        "cold_run_seconds_median": round(flow, 2),
        "baseline_dvc_repro_seconds_median": round(repro, 2),
        "ratio_flow_over_dvc_repro": round(flow / repro, 3),
        "target_seconds": 60,
        "stage_seconds_median": stages,
        "rounds": rounds,
    }
    print(f"cold `poisongate run` (Prefect, git, DVC push): median {flow:.1f} s over {args.repeats} runs "
          "(target < 60 s)")
    print(f"baseline `dvc repro` of the same stages, no Prefect: median {repro:.1f} s; ratio {flow / repro:.2f}")
    for name, s in stages.items():
        print(f"  {name:<13} {s:6.2f} s")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
