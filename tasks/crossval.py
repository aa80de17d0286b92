"""Stage `crossval`: k-fold cross-validation of the candidate's recipe on the audited training set, all folds at
once."""
from __future__ import annotations

from typing import Any

from poisongate.config import Config
from poisongate.learning import models
from poisongate.learning.crossval import out_of_fold, summary
from poisongate.sources import workspace_reference
from poisongate.workspace import Workspace


def run(ws: Workspace, config: Config) -> dict[str, Any]:
    _, schema = workspace_reference(ws, config.data)
    Xs, y, spec = models.scaled_rows(ws.audited, schema, config.train)
    return summary(out_of_fold(Xs, y, spec, config.train, config.crossval.folds)[0], len(Xs))
