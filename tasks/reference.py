"""Stage `reference`: the trusted reference (the gates are fit on it) and the golden holdout (the promotion
gate judges on it): a seeded split of the embedded digits, or the user's checked files."""
from __future__ import annotations

from typing import Any

from poisongate.config import Config
from poisongate.sources import load_trusted
from poisongate.tables import write_table
from poisongate.workspace import Workspace


def run(ws: Workspace, config: Config) -> dict[str, Any]:
    reference, holdout, _ = load_trusted(ws, config.data)
    write_table(reference, ws.reference)
    write_table(holdout, ws.holdout)
    return {"reference_rows": len(reference), "holdout_rows": len(holdout)}
