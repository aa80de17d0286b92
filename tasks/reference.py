"""Stage `reference`: the trusted reference (the gates are fit on it) and the golden holdout (the promotion
gate judges on it): a seeded split of the embedded digits, or the user's checked files. A workspace without a
training set yet starts it here, as the reference (poisongate/training_set.py)."""
from __future__ import annotations

import hashlib
from typing import Any

from poisongate import training_set
from poisongate.config import Config
from poisongate.sources import DIGITS, load_trusted
from poisongate.tables import write_table
from poisongate.workspace import Workspace


def run(ws: Workspace, config: Config) -> dict[str, Any]:
    reference, holdout, schema = load_trusted(ws, config.data)
    write_table(reference, ws.reference)
    write_table(holdout, ws.holdout)
    started = not ws.training.exists()
    if started:
        with open(ws.reference, "rb") as f:
            sha256 = hashlib.file_digest(f, "sha256").hexdigest()
        source = "digits reference" if config.data.source == DIGITS else str(config.data.reference)
        write_table(training_set.start(reference, schema, source, sha256), ws.training)
    return {"reference_rows": len(reference), "holdout_rows": len(holdout), "training_set_started": started}
