"""Stage `promote`: the promotion gate, the candidate against the champion on the golden holdout."""
from __future__ import annotations

import json
from typing import Any

from poisongate.config import Config
from poisongate.learning import models
from poisongate.promotion import decide, evaluate
from poisongate.schema import to_arrays
from poisongate.sources import workspace_reference
from poisongate.store.registry import champion_checkpoint
from poisongate.tables import read_table
from poisongate.workspace import Workspace


def run(ws: Workspace, config: Config) -> dict[str, Any]:
    _, schema = workspace_reference(ws, config.data)
    X, y = to_arrays(read_table(ws.holdout), schema)
    candidate = evaluate(*models.load(ws.candidate), X, y)
    champion_path = champion_checkpoint(ws)
    champion = evaluate(*models.load(champion_path), X, y) if champion_path else None
    cv = json.loads(ws.report("crossval").read_text())
    training = json.loads(ws.report("train").read_text()) if ws.report("train").exists() else {}
    decision = decide(candidate, champion, cv, config.promote, training)
    return {**decision, "candidate": candidate, "champion": champion}
