"""Stages `reference` and `ingest`: the trusted data, then the untrusted incoming batch."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tasks import attacks, integrity
from tasks.config import PoisongateError, Workspace
from tasks.data import (DIGITS, Schema, load_digits_frame, parse_table, read_bytes, read_table, schema_from_reference,
                        split_default, to_arrays, write_table)

FLOAT32_MAX = float(np.finfo(np.float32).max)


def _user_path(ws: Workspace, data: dict[str, Any], key: str) -> Path:
    value = data.get(key)
    if not value:
        raise PoisongateError(f"params.yaml: data.{key} is empty; a user-supplied source needs its trusted {key} file")
    path = Path(value)
    return path if path.is_absolute() else ws.root / path


def read_user_file(ws: Workspace, data: dict[str, Any], key: str) -> tuple[pd.DataFrame, Path]:
    """Read data.<key> under data.max_bytes, refusing it before parsing if it does not match its SHA-256 pin."""
    path, max_bytes = _user_path(ws, data, key), int(data["max_bytes"])
    raw = read_bytes(path, max_bytes)
    integrity.verify(path, raw, (data.get("sha256") or {}).get(key))
    return parse_table(raw, path, max_bytes), path


def prepare_reference(ws: Workspace, params: dict[str, Any]) -> dict[str, Any]:
    """Write the trusted reference and the golden holdout."""
    data = params["data"]
    if data["source"] == DIGITS:
        reference, holdout, _ = split_default(load_digits_frame(), data["split"])
    else:
        (reference, ref_path), (holdout, hold_path) = read_user_file(ws, data, "reference"), read_user_file(ws, data, "holdout")
        schema = schema_from_reference(reference, data, ref_path)
        for frame, path in ((reference, ref_path), (holdout, hold_path)):  # trusted, but it may still be broken
            problem = batch_problem(frame, schema, str(path), int(data["min_rows"]))
            if problem:
                raise PoisongateError(problem)
        reference, holdout = reference[schema.columns], holdout[schema.columns]
    write_table(reference, ws.reference)
    write_table(holdout, ws.holdout)
    return {"reference_rows": len(reference), "holdout_rows": len(holdout)}


def load_source_batch(ws: Workspace, data: dict[str, Any]) -> tuple[pd.DataFrame, str]:
    """The incoming batch and the name its problems are reported under."""
    if data["source"] != DIGITS:
        frame, path = read_user_file(ws, data, "source")
        return frame, str(path)
    _, _, batches = split_default(load_digits_frame(), data["split"])
    index = int(data["batch"])
    if not 0 <= index < len(batches):
        raise PoisongateError(f"params.yaml: data.batch={index} but the default data has {len(batches)} batches; use 0..{len(batches) - 1}")
    return batches[index], f"digits batch {index}"


def _first(mask: np.ndarray) -> int | None:
    hits = np.flatnonzero(mask)
    return int(hits[0]) if len(hits) else None


def _show(value: Any) -> str:
    """A cell as the user would recognise it, cut short (a 1 MB cell must not make a 1 MB message)."""
    text = repr(value.item() if isinstance(value, np.generic) else value)
    return text if len(text) <= 40 else text[:37] + "..."


def _not_numbers(column: pd.Series) -> np.ndarray:
    """Where a column holds something that is neither empty nor a number (text in a numeric column)."""
    if pd.api.types.is_numeric_dtype(column) and not pd.api.types.is_bool_dtype(column):
        return np.zeros(len(column), dtype=bool)
    return (pd.to_numeric(column, errors="coerce").isna() & column.notna()).to_numpy()


def _shape_problem(frame: pd.DataFrame, schema: Schema, min_rows: int) -> str | None:
    if len(frame) == 0:
        return "no data rows (empty or header only); send a batch with rows"
    missing = [c for c in schema.columns if c not in frame.columns]
    if missing:
        found = ", ".join(map(_show, list(frame.columns)[:5])) + ("..." if len(frame.columns) > 5 else "")
        return f"column {missing[0]!r} is missing (found {found}); check the delimiter and header, or data.label_column/feature_columns"
    if len(frame) < min_rows:
        return f"{len(frame)} rows < data.min_rows {min_rows}; send a larger batch or lower data.min_rows"
    return None


def _text_problem(frame: pd.DataFrame, schema: Schema) -> str | None:
    numeric_labels = all(isinstance(c, (int, float, np.number)) for c in schema.classes)
    for col in ([schema.label] if numeric_labels else []) + list(schema.features):
        row = _first(_not_numbers(frame[col]))
        if row is not None:
            return f"row {row + 1}, column {col!r} holds {_show(frame[col].iloc[row])}, not a number; fix the value at the source"
    return None


def _label_problem(frame: pd.DataFrame, schema: Schema) -> str | None:
    labels = frame[schema.label]
    row = _first(labels.isna().to_numpy())
    if row is not None:
        return f"row {row + 1}, column {schema.label!r} is empty; label the row or drop it"
    row = _first(~labels.isin(schema.classes).to_numpy())
    if row is not None:
        return (f"row {row + 1}, column {schema.label!r} holds {_show(labels.iloc[row])}, not one of the reference's "
                f"{len(schema.classes)} classes; fix the label, or add the class to the reference")
    return None


def _value_problem(frame: pd.DataFrame, schema: Schema) -> str | None:
    for col in schema.features:
        values = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        row = _first(~(np.abs(values) <= FLOAT32_MAX))  # NaN, inf and 1e308 (beyond float32) all fail this
        if row is not None:
            return f"row {row + 1}, column {col!r} is {_show(values[row])}, not a finite float32; fix or drop the row"
    return None


def _id_problem(frame: pd.DataFrame, schema: Schema) -> str | None:
    if not schema.id:
        return None
    ids = frame[schema.id]
    row = _first((ids.isna() | ids.duplicated()).to_numpy())
    if row is not None:
        return f"row {row + 1}, column {schema.id!r}: id {_show(ids.iloc[row])} is empty or repeats an earlier row; ids must be unique"
    return None


def batch_problem(frame: pd.DataFrame, schema: Schema, name: str, min_rows: int) -> str | None:
    """The first reason the batch cannot be used, as one line naming the file, the row/column and the fix.

    Rows are counted from 1 (the first data row). Columns the reference lacks are left to the data gate (GX
    refuses the column set); its suite repeats the value checks here, which also name the row."""
    problem = _shape_problem(frame, schema, min_rows)
    for check in (_text_problem, _label_problem, _value_problem, _id_problem):
        problem = problem or check(frame, schema)
    return f"{name}: {problem}" if problem else None


def as_received(frame: pd.DataFrame) -> pd.DataFrame:
    """Text columns as strings, so a refused batch can be kept in quarantine whatever mix of values it holds."""
    return frame.astype({c: "string" for c in frame.columns if frame[c].dtype == object})


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
    """Write the incoming batch as received (plus the simulated attack, if any).

    A batch that can be read but not used is still written, as received, and refused (`passed` false):
    the record stage keeps it whole in quarantine. One that cannot be read at all raises."""
    data = params["data"]
    batch, name = load_source_batch(ws, data)
    reference = read_table(ws.reference)
    summary = {"rows": len(batch), "source": str(data["source"])}
    problem = batch_problem(batch, schema_from_reference(reference, data, ws.reference), name, int(data["min_rows"]))
    if problem:
        write_table(as_received(batch), ws.incoming)
        return {"passed": False, **summary, "reason": problem}
    batch, poisoned = poison(batch, reference, params)
    write_table(batch, ws.incoming)
    schema_id = data.get("id_column")
    ids = batch[schema_id] if schema_id in batch.columns else pd.Series(np.arange(len(batch)))
    return {
        "passed": True,
        **summary,
        "attack": params["simulate"]["attack"],
        "rate": float(params["simulate"]["rate"]),
        "poisoned_ids": ids[poisoned].tolist(),
    }
