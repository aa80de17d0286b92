"""poisongate: a retraining pipeline that refuses to learn from poisoned data.

The library: config (typed params.yaml), workspace and data I/O, detectors (plug-ins), the gates, learning
(models, training, cross-validation), store (registry, versioning, history, rollback), reports, attacks and the
red team. The stages that use it are in tasks/, the Prefect flows that wire them in flows/."""

import json
import os
from typing import Any

# XLA programs compiled once are kept on disk for the next process: every night, and every CLI night of the tests,
# compiles the same detectors and training steps (a warm cache took tests/test_flow.py and test_train.py from 9.2
# to 6.1 minutes). Read by JAX when it is imported, so before any poisongate module imports it. The size bound
# evicts the least recently used entries and makes JAX lock the folder (two runs at once). `export
# JAX_COMPILATION_CACHE_DIR=` turns it off.
_cache_home = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
if os.path.isabs(_cache_home):  # no home directory: no cache, rather than one in the working directory
    os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(_cache_home, "poisongate", "jax"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")  # most of ours compile in under a second
os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(1 << 30))

# The pipeline's stages in order: each is tasks/<name>.py and the dvc.yaml stage of that name.
STAGES = ("reference", "ingest", "expectations", "validate", "filter", "campaign", "train", "audit", "crossval",
          "promote")

# Per-row parts of a stage summary: kept out of the JSON files git holds (reports/<stage>.json, runs/<id>.json), or
# a year of nights puts millions of lines into history. The rows are in quarantine/ and scores/ (DVC), the
# histograms reproducible from scores/.
PER_ROW = ("quarantined_rows", "score_histograms", "flagged_rows", "influence_histograms")


def for_git(summary: dict) -> dict:
    """A stage summary as a JSON file in git holds it: without its per-row parts."""
    return {k: v for k, v in summary.items() if k not in PER_ROW}


def leaves_on_one_line(value: Any, level: int = 0) -> str:
    """JSON indented down to the containers that hold only scalars, each of those on one line (a confusion
    matrix is ten lines, a check one): a stage's metrics file stays short in git and readable in a diff."""
    nested = isinstance(value, dict | list) and any(
        isinstance(v, dict | list) for v in (value.values() if isinstance(value, dict) else value))
    if not nested:
        return json.dumps(value, default=str)
    pad = " " * (level + 1)
    if isinstance(value, dict):
        items = [f"{pad}{json.dumps(k)}: {leaves_on_one_line(v, level + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + " " * level + "}"
    return "[\n" + ",\n".join(pad + leaves_on_one_line(v, level + 1) for v in value) + "\n" + " " * level + "]"
