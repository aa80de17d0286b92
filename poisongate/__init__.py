"""poisongate: a retraining pipeline that refuses to learn from poisoned data.

The library: config (typed params.yaml), workspace and data I/O, detectors (plug-ins), the gates, learning
(models, training, cross-validation), store (registry, versioning, history, rollback), reports, attacks and the
red team. The stages that use it are in tasks/, the Prefect flows that wire them in flows/."""

import json
from typing import Any

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
