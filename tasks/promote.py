"""Stage `promote`: the promotion gate, the audited candidate against the champion and against the same recipe
trained on the trusted reference alone (the baseline, cached in models/baseline per reference and recipe), on the
golden holdout; and its outputs against the serving model's (the champion, else the baseline) on the holdout and
on tonight's accepted rows (poisongate/output_monitor.py)."""
from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

from poisongate.config import Config
from poisongate.integrity import file_md5
from poisongate.learning import models
from poisongate.learning.training import fit, model_proba
from poisongate.output_monitor import compare, pull_checks
from poisongate.promotion import decide, evaluate
from poisongate.schema import to_arrays
from poisongate.sources import workspace_reference
from poisongate.store.registry import champion_checkpoint
from poisongate.tables import read_rows, read_table
from poisongate.training_set import RUN, TONIGHT
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


def proba(model: tuple, X) -> np.ndarray:
    graphdef, params, spec = model
    return np.asarray(model_proba(graphdef, params, spec, X), np.float64)


def run(ws: Workspace, config: Config) -> dict[str, Any]:
    reference, schema = workspace_reference(ws, config.data)
    X, y = to_arrays(read_table(ws.holdout), schema)
    tonight = np.flatnonzero(read_table(ws.audited, columns=[RUN])[RUN].to_numpy() == TONIGHT)
    X_acc, y_acc = to_arrays(read_rows(ws.audited, tonight, schema.model_columns), schema)
    candidate = models.load(ws.audited_model)
    champion_path = champion_checkpoint(ws)
    champion = models.load(champion_path) if champion_path else None
    reference_only = baseline(ws, config, reference, schema)
    serving = champion or reference_only
    cv = json.loads(ws.report("crossval").read_text())
    training = json.loads(ws.report("train").read_text()) if ws.report("train").exists() else {}
    on_holdout = {name: proba(m, X) for name, m in (("candidate", candidate), ("serving", serving))}
    on_accepted = {name: proba(m, X_acc) for name, m in (("candidate", candidate), ("serving", serving))}
    classes = list(candidate[2]["classes"])
    pulls = pull_checks(y_acc, on_accepted["candidate"].argmax(1), on_accepted["serving"].argmax(1), y,
                        on_holdout["candidate"].argmax(1), on_holdout["serving"].argmax(1), classes,
                        config.audit.pull_alpha) if config.audit.enabled else []
    reference_only_pred = on_holdout["serving"].argmax(1) if champion is None else proba(reference_only, X).argmax(1)
    decision = decide(y, schema.classes, on_holdout["candidate"].argmax(1),
                      champion and on_holdout["serving"].argmax(1), reference_only_pred, cv, config.promote,
                      training, pulls)
    return {**decision, "candidate": evaluate(*candidate, X, y), "champion": champion and evaluate(*champion, X, y),
            "outputs": {"serving_model": "champion" if champion else "trusted-reference model",
                        "holdout": compare(on_holdout["candidate"], on_holdout["serving"], classes, y),
                        "accepted": compare(on_accepted["candidate"], on_accepted["serving"], classes)}}
