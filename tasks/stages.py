"""The pipeline's stages in order, shared by the Prefect flow and by `dvc repro` (`poisongate stage NAME`).

Each stage reads its inputs from the workspace, writes its outputs atomically, and returns a summary that
is also written to reports/<stage>.json (a DVC metrics file). A gate's summary has `passed`."""
from __future__ import annotations

import json
import time
from typing import Any, Callable

from tasks import crossval, filter, ingest, promote, train, validate
from tasks.config import Workspace, atomic_write_text

Stage = Callable[[Workspace, dict[str, Any]], dict[str, Any]]
STAGES: dict[str, Stage] = {
    "reference": ingest.prepare_reference,
    "expectations": validate.build,
    "ingest": ingest.ingest,
    "validate": validate.validate,
    "filter": filter.filter_batch,
    "train": train.train,
    "crossval": crossval.crossval,
    "promote": promote.promote,
}


def run_stage(ws: Workspace, name: str, params: dict[str, Any]) -> dict[str, Any]:
    start = time.perf_counter()
    summary = STAGES[name](ws, params)
    summary["seconds"] = round(time.perf_counter() - start, 3)
    atomic_write_text(ws.report(name), json.dumps(summary, indent=1, default=str) + "\n")
    return summary
