"""Stage `crossval`: k-fold cross-validation of the candidate's recipe on the audited training set, all folds at
once."""
from __future__ import annotations

from typing import Any

from poisongate.config import Config
from poisongate.learning.crossval import cross_validation_summary
from poisongate.schema import to_arrays
from poisongate.sources import workspace_reference
from poisongate.tables import read_table
from poisongate.workspace import Workspace


def run(ws: Workspace, config: Config) -> dict[str, Any]:
    _, schema = workspace_reference(ws, config.data)
    X, y = to_arrays(read_table(ws.audited, columns=schema.model_columns), schema)
    return cross_validation_summary(X, y, schema.classes, config.train, config.crossval.folds)
