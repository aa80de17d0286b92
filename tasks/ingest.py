"""Stage `ingest`: the untrusted incoming batch, as received (plus the `--simulate` attack, if any). With the
embedded default and no data.batch, the batch is the next one the training set does not hold yet.

A batch that can be read but not used is still written, as received, and refused (`passed` false): the record
step keeps it whole in quarantine. One that cannot be read at all raises."""
from __future__ import annotations

from typing import Any

import pandas as pd

from poisongate import training_set
from poisongate.attacks import poison
from poisongate.config import Config
from poisongate.schema import Schema, as_received, batch_problem, row_ids, with_exact_ids
from poisongate.sources import load_source_batch, workspace_reference
from poisongate.tables import write_table
from poisongate.workspace import Workspace


def receive(batch: pd.DataFrame, schema: Schema, name: str, config: Config) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The frame to keep as data/incoming.parquet, and the stage's summary."""
    summary = {"rows": len(batch), "source": name}
    problem = batch_problem(batch, schema, name, config.data.min_rows)
    if problem:
        return as_received(batch), {"passed": False, **summary, "reason": problem}
    batch, poisoned = poison(with_exact_ids(batch, schema), schema, config.simulate)
    return batch, {
        "passed": True,
        **summary,
        "attack": config.simulate.attack,
        "rate": config.simulate.rate,
        "poisoned_ids": row_ids(batch, schema)[poisoned].tolist(),
    }


def run(ws: Workspace, config: Config) -> dict[str, Any]:
    reference, schema = workspace_reference(ws, config.data)
    used = set(training_set.load(ws, reference, schema)[training_set.SOURCE].unique().tolist())
    batch, name, sha256 = load_source_batch(ws, config.data, used)
    frame, summary = receive(batch, schema, name, config)
    write_table(frame, ws.incoming)
    return {**summary, "source_sha256": sha256}
