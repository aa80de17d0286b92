"""Stage `audit`: TracIn influence of tonight's accepted rows on the golden holdout loss, over the candidate's
checkpoints (poisongate/audit.py), judged against the trusted rows' influence. Flagged rows go to
data/audit_quarantine.parquet (as received, with why) and the candidate is retrained once without them.
Writes models/audited (the candidate the later stages judge: the retrained one, else the candidate) and
data/audited.parquet (the training set it was trained on)."""
from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from poisongate import audit
from poisongate.config import Config
from poisongate.learning import models
from poisongate.learning.training import train_model
from poisongate.promotion import evaluate
from poisongate.schema import to_arrays
from poisongate.sources import workspace_reference
from poisongate.tables import read_rows, read_table, write_rows, write_table
from poisongate.training_set import RUN, TONIGHT, trusted_runs
from poisongate.workspace import Workspace, atomic_path


def received_rows(ws: Workspace, tonight: np.ndarray) -> tuple[Path, np.ndarray]:
    """Where tonight's training rows are as the batch brought them (every column): the incoming batch and the
    positions of the rows the filter accepted; or, where there is no such batch (a retrain on the workspace's
    data), the training set and tonight's positions in it."""
    if ws.incoming.exists() and ws.scores.exists():
        accepted = np.flatnonzero(~pd.read_parquet(ws.scores, columns=["quarantined"])["quarantined"].to_numpy())
        if len(accepted) == int(tonight.sum()):
            return ws.incoming, accepted
    return ws.clean, np.flatnonzero(tonight)


def keep_candidate(ws: Workspace, none_flagged: pd.DataFrame) -> None:
    """The candidate and its training set (data/clean.parquet) as they are; an empty audit quarantine."""
    with atomic_path(ws.audited) as tmp:
        shutil.copyfile(ws.clean, tmp)
    write_table(none_flagged, ws.audit_quarantine)
    shutil.rmtree(ws.audited_model, ignore_errors=True)
    shutil.copytree(ws.candidate, ws.audited_model)


def run(ws: Workspace, config: Config) -> dict[str, Any]:
    cfg, recipe = config.audit, config.train
    _, schema = workspace_reference(ws, config.data)
    clean = read_table(ws.clean, columns=[*schema.model_columns, RUN])
    tonight = (clean[RUN] == TONIGHT).to_numpy()
    source, received = received_rows(ws, tonight)
    none_flagged = read_rows(source, received[:0]).assign(quarantine_reason=pd.Series(dtype="string"))
    if not cfg.enabled:
        keep_candidate(ws, none_flagged)
        return {"passed": None, "enabled": False, "flagged": 0}
    # Tonight's ids only; its rows as received are read where they are flagged (1M rows: 0.3 GB each, issue 19).
    ids = read_rows(source, received, [schema.id])[schema.id].to_numpy() if schema.id else received
    trusted = clean[RUN].isin(sorted(trusted_runs(ws))).to_numpy()
    X, y = to_arrays(clean, schema)
    del clean
    X_hold, y_hold = to_arrays(read_table(ws.holdout), schema)
    graphdef, params, spec = models.load(ws.candidate)
    trajectory = models.load_trajectory(ws.candidate)
    trusted_harm, tonight_harm, judgement = audit.audit_rows(graphdef, trajectory, spec, X, y, trusted, tonight,
                                                             X_hold, y_hold, recipe.learning_rate, cfg)
    out = audit.summary(judgement, tonight_harm, trusted_harm, ids, cfg.false_alarm_rate,
                        [step for step, _ in trajectory])
    out["passed"] = None  # the audit removes rows; the promotion gate judges the model it leaves
    out["candidate"] = evaluate(graphdef, params, spec, X_hold, y_hold)
    if not judgement.flagged.any() or not cfg.retrain:
        keep_candidate(ws, none_flagged)
        out["retrained"] = None
        return out
    drop = np.zeros(len(X), bool)
    drop[np.flatnonzero(tonight)[judgement.flagged]] = True
    X_kept, y_kept = X[~drop], y[~drop]
    del X  # the retrain holds only the rows it keeps (1M rows: issue 19)
    spec_kept = models.model_spec(recipe, X_kept, schema.classes)
    X_kept = models.scale(X_kept, spec_kept)
    t = train_model(X_kept, y_kept, spec_kept, recipe, checkpoint_every=recipe.checkpoint_every)
    models.save(ws.audited_model, recipe.epochs, t.params, t.opt_state, spec_kept, t.trajectory)
    out["retrained"] = {"rows": len(X_kept), **evaluate(t.graphdef, t.params, spec_kept, X_hold, y_hold)}
    del X_kept, t
    write_rows(ws.clean, ws.audited, ~drop)
    flagged = read_rows(source, received[judgement.flagged])
    flagged["quarantine_reason"] = [
        f"audit: harmful influence {h:.3g} >= {judgement.threshold:.3g} on the golden holdout loss "
        f"(p {p:.2g} <= audit.false_alarm_rate {cfg.false_alarm_rate:g})"
        for h, p in zip(tonight_harm[judgement.flagged], judgement.p_values[judgement.flagged])]
    flagged["audit_harm"] = tonight_harm[judgement.flagged]
    write_table(flagged, ws.audit_quarantine)
    return out
