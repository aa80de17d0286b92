"""The pipeline's stages, one module per dvc.yaml stage, in order. Each module has `run(ws, config)`, a thin
I/O wrapper that reads the stage's inputs from the workspace, calls the library, writes its outputs
atomically and returns a summary (a gate's summary has `passed`). No stage imports another."""
from __future__ import annotations

import importlib
import resource
import sys
import time
from typing import Any

from poisongate import STAGES, for_git, leaves_on_one_line
from poisongate.config import Config
from poisongate.tables import release_memory
from poisongate.workspace import Workspace, atomic_write_text

__all__ = ["STAGES", "run_stage"]


def run_stage(ws: Workspace, name: str, config: Config) -> dict[str, Any]:
    """Run one stage by its module name; its summary (without per-row parts) also goes to reports/<stage>.json (a
    DVC metrics file)."""
    start = time.perf_counter()
    summary = importlib.import_module(f"tasks.{name}").run(ws, config)
    release_memory()
    summary["seconds"] = round(time.perf_counter() - start, 3)
    # The process's peak so far (the stages run in one process): where it rises, this stage set it.
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB; bytes on macOS
    summary["process_peak_rss_mb"] = round(peak / (1 << (20 if sys.platform == "darwin" else 10)), 1)
    atomic_write_text(ws.report(name), leaves_on_one_line(for_git(summary)) + "\n")
    return summary
