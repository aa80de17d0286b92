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

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def environment(tmp: Path) -> dict[str, str]:
    return {**os.environ, "PREFECT_HOME": str(tmp / "prefect"), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DVC_NO_ANALYTICS": "1", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}


def workspace(tmp: Path, env: dict[str, str], data: dict[str, Any] | None = None) -> Path:
    """tmp/ws as `poisongate init` writes it (the shipped params.yaml with `data` settings over it, the project's
    dvc.yaml with its code deps at this checkout, git + DVC) with a remote in tmp/remote."""
    ws = tmp / "ws"
    flags = [f"--{key.replace('_', '-')}={value}" for key, value in (data or {}).items()]
    subprocess.run([BIN / "poisongate", "init", ws, *flags, "--remote", tmp / "remote"], check=True, env=env,
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
