"""Stage `filter`: the JAX poisoning gate, fit on the gates' reference (trusted rows only). Writes
data/clean.parquet (the training set + tonight's accepted rows, with their provenance: what the candidate trains
on), data/quarantine.parquet (every flagged row as received, with its reasons and scores) and data/scores.parquet
(every incoming row's scores and flags).

A row whose id is already in the training set or the golden holdout is quarantined, naming the run that accepted
it first (or the holdout). A batch whose quarantined share passes filter.max_quarantine_share is refused whole: all
of it goes to quarantine and no clean dataset is written."""
from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from poisongate import poisoning_gate as gate
from poisongate import training_set
from poisongate.config import Config, FilterConfig
from poisongate.schema import Schema, row_ids, to_arrays
from poisongate.sources import gate_reference
from poisongate.tables import read_table, write_table
from poisongate.workspace import Workspace


def filter_batch(screening: gate.Screening, batch: pd.DataFrame, schema: Schema, cfg: FilterConfig,
                 earlier: np.ndarray | None = None):
    """The batch's screening applied to its rows: (accepted rows or None if the batch is refused, quarantined
    rows, every row's scores, summary). `earlier`: per row, the run that already accepted its id (None where it
    is new)."""
    repeated = np.zeros(len(batch), bool) if earlier is None else np.asarray(pd.notna(earlier), bool)
    flagged = screening.quarantined | repeated
    share = float(flagged.mean()) if len(flagged) else 0.0
    refused = gate.refusal(screening, cfg, share)
    if refused and repeated.any():
        refused += (f"; {int(repeated.sum())} rows have ids already used "
                    f"(first {training_set.owner(earlier[repeated][0])})")
    reasons = screening.reasons(prefix=f"batch refused: {refused}" if refused else "")
    if repeated.any():
        again = [f"id already {training_set.owner(run)}" for run in earlier[repeated]]
        reasons[repeated] = [a if not r else f"{r}; {a}" for a, r in zip(again, reasons[repeated])]
    mask = np.ones(len(batch), dtype=bool) if refused else flagged
    ids = row_ids(batch, schema)
    quarantine = gate.quarantine_frame(batch, mask, reasons, screening)
    accepted = None if refused else batch.loc[~mask].reset_index(drop=True)
    summary = gate.summary(screening, cfg, ids, mask, reasons, refused, share)
    summary["repeated_ids"] = int(repeated.sum())
    return accepted, quarantine, gate.scores_frame(ids, screening, mask), summary


def chunk_scorer(cfg: FilterConfig) -> gate.ChunkScorer:
    """In this process, or as Prefect tasks on the Dask cluster filter.dask_address names."""
    if not cfg.dask_address:
        return gate.score_in_process
    from flows.score_batch import dask_scorer  # Prefect lives in flows/

    return dask_scorer(cfg.dask_address)


def run(ws: Workspace, config: Config) -> dict[str, Any]:
    reference, schema = gate_reference(ws, config.data)
    training, batch = training_set.load(ws, reference, schema), read_table(ws.incoming)
    earlier = training_set.first_runs(training, row_ids(batch, schema), schema, read_table(ws.holdout))
    X, y = to_arrays(batch, schema)
    # Neither frame is held while the batch is screened as arrays: each is read again where it is needed (1M rows:
    # 0.3 GB less at the stage's peak, and the training set's size no longer adds to it).
    del training, batch
    screening = gate.screen(*to_arrays(reference, schema), X, y, config.filter, chunk_scorer(config.filter))
    del X, y
    accepted, quarantine, scores, summary = filter_batch(screening, read_table(ws.incoming), schema, config.filter,
                                                         earlier)
    write_table(quarantine, ws.quarantine)
    write_table(scores, ws.scores)
    if accepted is not None:
        ingest = json.loads(ws.report("ingest").read_text())
        tonight = training_set.with_provenance(accepted, schema, run=training_set.TONIGHT, source=ingest["source"],
                                               sha256=ingest["source_sha256"], admitted="gate")
        del accepted
        training = training_set.load(ws, reference, schema)
        write_table(pd.concat([training, tonight], ignore_index=True), ws.clean)
        summary["training_rows_before"] = len(training)
    return summary
