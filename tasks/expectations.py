"""Stage `expectations`: the GX suite for tonight's batch, derived from the gates' reference at the batch's row
count (data_gate.build_suite), merged with the user's own expectations, into expectations/suite.json; rebuilt
only when the reference, the batch's size, the user's file or the settings change."""
from __future__ import annotations

import json
from typing import Any

from poisongate import data_gate
from poisongate.config import Config
from poisongate.integrity import file_md5
from poisongate.sources import gate_reference
from poisongate.tables import row_count
from poisongate.workspace import Workspace, atomic_write_text


def run(ws: Workspace, config: Config) -> dict[str, Any]:
    user = ws.user_expectations
    reference, schema = gate_reference(ws, config.data)
    rows = row_count(ws.incoming)
    built_from = {
        "reference_md5": file_md5(ws.reference),
        "reference_rows": len(reference),  # trusted runs (`poisongate trust`) join the reference
        "batch_rows": rows,
        "user_md5": file_md5(user) if user.exists() else None,
        "validate": config.validation.model_dump(),
        "min_rows": config.data.min_rows,
        "columns": config.data.model_dump(include={"label_column", "id_column", "feature_columns"}),
    }
    if ws.suite.exists():
        suite = json.loads(ws.suite.read_text())
        if suite["meta"].get("built_from") == built_from:
            return {"expectations": len(suite["expectations"]), "rebuilt": False}
    suite = data_gate.suite_for(reference, schema, config.validation, config.data.min_rows, rows, user)
    suite["meta"] = {"built_from": built_from}
    atomic_write_text(ws.suite, json.dumps(suite, indent=1) + "\n")
    return {"expectations": len(suite["expectations"]), "rebuilt": True}
