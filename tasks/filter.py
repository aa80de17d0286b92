"""Stage `filter`: the JAX poisoning gate. Writes data/clean.parquet (reference + accepted rows) and
data/quarantine.parquet (every flagged row as received, with its reasons and scores).

A batch whose quarantined share passes filter.max_quarantine_share is refused whole: all of it goes to
quarantine and no clean dataset is written."""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from poisongate import poisoning_gate as gate
from poisongate.config import Config, FilterConfig
from poisongate.schema import Schema, row_ids, to_arrays
from poisongate.sources import workspace_reference
from poisongate.tables import read_table, write_table
from poisongate.workspace import Workspace


def filter_batch(reference: pd.DataFrame, batch: pd.DataFrame, schema: Schema, cfg: FilterConfig,
                 scorer: gate.ChunkScorer = gate.score_in_process):
    """(clean dataset or None if the batch is refused, quarantined rows, summary)."""
    screening = gate.screen(*to_arrays(reference, schema), *to_arrays(batch, schema), cfg, scorer)
    refused = gate.refusal(screening, cfg)
    reasons = screening.reasons(prefix=f"batch refused: {refused}" if refused else "")
    mask = np.ones(len(batch), dtype=bool) if refused else screening.quarantined
    quarantine = gate.quarantine_frame(batch, mask, reasons, screening.scores)
    clean = None if refused else pd.concat([reference, batch.loc[~mask, reference.columns]], ignore_index=True)
    return clean, quarantine, gate.summary(screening, cfg, row_ids(batch, schema), mask, reasons, refused)


def chunk_scorer(cfg: FilterConfig) -> gate.ChunkScorer:
    """In this process, or as Prefect tasks on the Dask cluster filter.dask_address names."""
    if not cfg.dask_address:
        return gate.score_in_process
    from flows.score_batch import dask_scorer  # Prefect lives in flows/

    return dask_scorer(cfg.dask_address)


def run(ws: Workspace, config: Config) -> dict[str, Any]:
    reference, schema = workspace_reference(ws, config.data)
    clean, quarantine, summary = filter_batch(reference, read_table(ws.incoming), schema, config.filter,
                                              chunk_scorer(config.filter))
    write_table(quarantine, ws.quarantine)
    if clean is not None:
        write_table(clean, ws.clean)
    return summary
