"""What the loop benchmarks share: a fresh workspace outside the checkout, and one night through the real CLI
(`poisongate run`, then the night's row of `poisongate history --json`)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def environment(tmp: Path) -> dict[str, str]:
    return {**os.environ, "PREFECT_HOME": str(tmp / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DVC_NO_ANALYTICS": "1", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}


def workspace(tmp: Path, env: dict[str, str], data: dict[str, Any] | None = None) -> Path:
    """tmp/ws: the shipped params.yaml (with `data` settings over it), the project's dvc.yaml with its code deps
    pointing at this checkout, git + DVC initialised with a remote in tmp/remote."""
    ws = tmp / "ws"
    ws.mkdir()
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"].update(data or {})
    (ws / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (ws / "dvc.yaml").write_text((ROOT / "dvc.yaml").read_text().replace("\n  - code: .\n", f"\n  - code: {ROOT}\n"))
    subprocess.run([BIN / "poisongate", "--workspace", ws, "init", "--remote", tmp / "remote"], check=True, env=env,
                   capture_output=True)
    return ws


def night(ws: Path, env: dict[str, str]) -> tuple[subprocess.CompletedProcess, float, dict[str, Any]]:
    """(the run's process, its wall seconds, its row of `poisongate history --json`)."""
    start = time.perf_counter()
    proc = subprocess.run([BIN / "poisongate", "--workspace", ws, "run"], env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    history = subprocess.run([BIN / "poisongate", "--workspace", ws, "history", "--json"], env=env,
                             capture_output=True, text=True, check=True).stdout.strip().splitlines()
    return proc, seconds, json.loads(history[-1]) if history else {}
