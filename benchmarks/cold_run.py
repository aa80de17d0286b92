"""Cold `poisongate run` on the default data, end to end and per stage, against `dvc repro` of the same
stages without Prefect (the baseline), in the same invocation. Prints medians of --repeats runs.

Every process runs with PYTHONDONTWRITEBYTECODE=1, as CI images and containers often do: Python then never
writes a module's .pyc, and only the bytecode compiled at install (pyproject's `[tool.uv] compile-bytecode`)
spares each process compiling its imports from source. The second baseline, `without_installed_bytecode`, is
the same run with that bytecode out of sight (PYTHONPYCACHEPREFIX at an empty folder), interleaved round by round.

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
               "DVC_NO_ANALYTICS": "1", "PYTHONDONTWRITEBYTECODE": "1",
               "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
        ws = fresh_workspace(tmp)
        flow = timed([BIN / "poisongate", "--workspace", ws, "run"], env)
        report = json.loads(max((ws / "runs").glob("*.json")).read_text())
        stages = {name: s["seconds"] for name, s in report["stages"].items()}
        (tmp / "baseline").mkdir()
        repro = timed([BIN / "dvc", "repro", "-q"], env, cwd=fresh_workspace(tmp / "baseline"))
        (tmp / "source").mkdir()
        from_source = timed([BIN / "poisongate", "--workspace", fresh_workspace(tmp / "source"), "run"],
                            {**env, "PYTHONPYCACHEPREFIX": str(tmp / "no-bytecode")})
    return {"flow_seconds": flow, "dvc_repro_seconds": repro, "without_installed_bytecode_seconds": from_source,
            "stage_seconds": stages}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    rounds = [one_round() for _ in range(args.repeats)]
    flow = statistics.median(r["flow_seconds"] for r in rounds)
    repro = statistics.median(r["dvc_repro_seconds"] for r in rounds)
    from_source = statistics.median(r["without_installed_bytecode_seconds"] for r in rounds)
    stages = {k: statistics.median(r["stage_seconds"][k] for r in rounds) for k in rounds[0]["stage_seconds"]}
    result = {
        "date": date.today().isoformat(),
        "command": "uv run python benchmarks/cold_run.py " + " ".join(sys.argv[1:]),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "repeats": args.repeats,
        "cold_run_seconds_median": round(flow, 2),
        "baseline_dvc_repro_seconds_median": round(repro, 2),
        "ratio_flow_over_dvc_repro": round(flow / repro, 3),
        "without_installed_bytecode_seconds_median": round(from_source, 2),
        "ratio_without_installed_bytecode_over_flow": round(from_source / flow, 3),
        "target_seconds": 60,
        "stage_seconds_median": stages,
        "rounds": rounds,
    }
    print(f"cold `poisongate run` (Prefect, git, DVC push): median {flow:.1f} s over {args.repeats} runs "
          "(target < 60 s)")
    print(f"baseline `dvc repro` of the same stages, no Prefect: median {repro:.1f} s; ratio {flow / repro:.2f}")
    print(f"baseline without the bytecode compiled at install: median {from_source:.1f} s; "
          f"{from_source / flow:.2f}x the run's")
    for name, s in stages.items():
        print(f"  {name:<13} {s:6.2f} s")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
