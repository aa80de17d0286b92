"""Stage `promote`: the promotion gate, the candidate against the champion and against the same recipe trained
on the trusted reference alone (the baseline, cached in models/baseline per reference and recipe), on the golden
holdout."""
from __future__ import annotations

import hashlib
import json
from typing import Any

from poisongate.config import Config
from poisongate.integrity import file_md5
from poisongate.learning import models
from poisongate.learning.training import fit
from poisongate.promotion import decide, evaluate, predictions
from poisongate.schema import to_arrays
from poisongate.sources import workspace_reference
from poisongate.store.registry import champion_checkpoint
from poisongate.tables import read_table
from poisongate.workspace import Workspace, atomic_write_text


def baseline(ws: Workspace, config: Config, reference, schema) -> tuple:
    """The recipe trained on the trusted reference alone: what the data supports without any incoming row."""
    path, key_file = ws.path("models", "baseline"), ws.path("models", "baseline.key")
    key = hashlib.sha256(f"{file_md5(ws.reference)} {config.train.model_dump_json()}".encode()).hexdigest()
    if path.exists() and key_file.exists() and key_file.read_text() == key:
        return models.load(path)
    X, y = to_arrays(reference, schema)
    spec = models.model_spec(config.train, X, schema.classes)
    graphdef, params, opt_state, *_ = fit(models.scale(X, spec), y, spec, config.train)
    models.save(path, config.train.epochs, params, opt_state, spec)
    atomic_write_text(key_file, key)
    return graphdef, params, spec


def run(ws: Workspace, config: Config) -> dict[str, Any]:
    reference, schema = workspace_reference(ws, config.data)
    X, y = to_arrays(read_table(ws.holdout), schema)
    candidate = models.load(ws.candidate)
    champion_path = champion_checkpoint(ws)
    champion = models.load(champion_path) if champion_path else None
    cv = json.loads(ws.report("crossval").read_text())
    training = json.loads(ws.report("train").read_text()) if ws.report("train").exists() else {}
    decision = decide(y, schema.classes, predictions(*candidate, X), champion and predictions(*champion, X),
                      predictions(*baseline(ws, config, reference, schema), X), cv, config.promote, training)
    return {**decision, "candidate": evaluate(*candidate, X, y), "champion": champion and evaluate(*champion, X, y)}
