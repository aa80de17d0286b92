"""Stages `reference` and `ingest`: the trusted data, then the untrusted incoming batch."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tasks import attacks
from tasks.config import PoisongateError, Workspace
from tasks.data import DIGITS, load_digits_frame, read_table, schema_from_reference, split_default, to_arrays, write_table


def _user_path(ws: Workspace, data: dict[str, Any], key: str) -> Path:
    value = data.get(key)
    if not value:
        raise PoisongateError(f"params.yaml: data.{key} is empty; a user-supplied source needs its trusted {key} file")
    path = Path(value)
    return path if path.is_absolute() else ws.root / path


def prepare_reference(ws: Workspace, params: dict[str, Any]) -> dict[str, Any]:
    """Write the trusted reference and the golden holdout."""
    data = params["data"]
    if data["source"] == DIGITS:
        reference, holdout, _ = split_default(load_digits_frame(), data["split"])
    else:
        ref_path, hold_path = _user_path(ws, data, "reference"), _user_path(ws, data, "holdout")
        reference, holdout = read_table(ref_path), read_table(hold_path)
        schema = schema_from_reference(reference, data, ref_path)
        missing = [c for c in schema.columns if c not in holdout.columns]
        if missing:
            raise PoisongateError(f"{hold_path}: column {missing[0]!r} is missing; the holdout needs the reference's columns")
        reference, holdout = reference[schema.columns], holdout[schema.columns]
    write_table(reference, ws.reference)
    write_table(holdout, ws.holdout)
    return {"reference_rows": len(reference), "holdout_rows": len(holdout)}


def load_source_batch(ws: Workspace, data: dict[str, Any]) -> pd.DataFrame:
    if data["source"] != DIGITS:
        return read_table(_user_path(ws, data, "source"))
    _, _, batches = split_default(load_digits_frame(), data["split"])
    index = int(data["batch"])
    if not 0 <= index < len(batches):
        raise PoisongateError(f"params.yaml: data.batch={index} but the default data has {len(batches)} batches; use 0..{len(batches) - 1}")
    return batches[index]


def poison(frame: pd.DataFrame, reference: pd.DataFrame, params: dict[str, Any]) -> tuple[pd.DataFrame, np.ndarray]:
    """Apply params.yaml's `simulate` attack to the batch (a demonstration of the gates, never on by default)."""
    sim = params["simulate"]
    if sim["attack"] in (None, "none") or float(sim["rate"]) <= 0:
        return frame, np.zeros(len(frame), dtype=bool)
    schema = schema_from_reference(reference, params["data"], "reference")
    X, y = to_arrays(frame, schema)
    options = (sim.get("options") or {}).get(sim["attack"])
    X, y, mask = attacks.simulate(X, y, sim["attack"], sim["rate"], int(sim["seed"]), len(schema.classes), options)
    poisoned = frame.copy()
    columns = list(schema.features) + [f"irrelevant_{i}" for i in range(X.shape[1] - len(schema.features))]
    poisoned[columns] = pd.DataFrame(X, columns=columns, index=frame.index)
    poisoned[schema.label] = pd.Series(np.asarray(schema.classes, dtype=object)[y], index=frame.index).astype(frame[schema.label].dtype)
    return poisoned, mask


def ingest(ws: Workspace, params: dict[str, Any]) -> dict[str, Any]:
    """Write the incoming batch as received (plus the simulated attack, if any)."""
    batch = load_source_batch(ws, params["data"])
    reference = read_table(ws.reference)
    batch, poisoned = poison(batch, reference, params)
    write_table(batch, ws.incoming)
    schema_id = params["data"].get("id_column")
    ids = batch[schema_id] if schema_id in batch.columns else pd.Series(np.arange(len(batch)))
    return {
        "rows": len(batch),
        "source": str(params["data"]["source"]),
        "attack": params["simulate"]["attack"],
        "rate": float(params["simulate"]["rate"]),
        "poisoned_ids": ids[poisoned].tolist(),
    }
