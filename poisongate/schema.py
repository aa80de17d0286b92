"""Which columns are what, the checks that make a frame usable, and the frame <-> array boundary."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from poisongate.config import DataConfig
from poisongate.errors import PoisongateError

FLOAT32_MAX = float(np.finfo(np.float32).max)


@dataclass(frozen=True)
class Schema:
    """Derived from params.yaml's `data` section and the trusted reference."""

    label: str
    id: str | None
    features: tuple[str, ...]
    classes: tuple[Any, ...]
    id_kind: str = "int"  # the reference's ids: "int" (int64, exactly) or "text"

    @property
    def columns(self) -> list[str]:
        return ([self.id] if self.id else []) + [self.label, *self.features]

    @property
    def model_columns(self) -> list[str]:
        """What `to_arrays` reads: a stage that only trains or predicts reads no other column."""
        return [*self.features, self.label]


def schema_from_reference(reference: pd.DataFrame, data: DataConfig, path: str | Path) -> Schema:
    label, id_col = data.label_column, data.id_column
    if label not in reference.columns:
        raise PoisongateError(f"{path}: no label column {label!r}; set data.label_column in params.yaml")
    if id_col and id_col not in reference.columns:
        id_col = None  # the id column is optional: rows are then named by position
    features = data.feature_columns
    if features:
        missing = [c for c in features if c not in reference.columns]
        if missing:
            raise PoisongateError(f"{path}: feature column {missing[0]!r} is missing; fix data.feature_columns")
    else:
        features = [
            c for c in reference.columns if c not in (label, id_col) and pd.api.types.is_numeric_dtype(reference[c])
        ]
    if not features:
        raise PoisongateError(f"{path}: no numeric feature columns; name them in data.feature_columns")
    classes = tuple(sorted(pd.unique(reference[label]).tolist()))
    if len(classes) < 2:
        raise PoisongateError(f"{path}: column {label!r} holds fewer than 2 classes; a classifier needs at least 2")
    kind = id_kind(reference[id_col]) if id_col else "int"
    return Schema(label=label, id=id_col, features=tuple(features), classes=classes, id_kind=kind)


# ---- ids, kept exactly: int64 or text as the reference has them, never through float ----

INT64_MAX = int(np.iinfo(np.int64).max)
CANONICAL_INT = r"-?(?:0|[1-9][0-9]{0,18})"
EXACT_FLOAT = 2**53  # below it a float holds an integer exactly


def id_kind(ids: pd.Series) -> str:
    """"int" where every id is an integer int64 holds exactly (text ids written as such count: "7", not "007"),
    else "text"."""
    return "int" if len(ids) and _as_int64(ids.dropna())[1] is None else "text"


def _as_int64(ids: pd.Series) -> tuple[pd.Series, int | None]:
    """The ids as int64, or the position of the first one that is not an int64 integer."""
    values = ids.to_numpy()
    if pd.api.types.is_bool_dtype(ids):
        bad = np.ones(len(ids), bool)
    elif pd.api.types.is_integer_dtype(ids):
        bad = values > INT64_MAX if ids.dtype.kind == "u" else np.zeros(len(ids), bool)
    elif pd.api.types.is_float_dtype(ids):
        bad = ~((values == np.round(values)) & (np.abs(values) < EXACT_FLOAT))
    else:
        text = ids.astype("string")
        canonical = text.str.fullmatch(CANONICAL_INT).fillna(False).to_numpy(bool)
        ints = [int(v) if ok else 0 for v, ok in zip(text, canonical)]
        bad = ~canonical | np.array([abs(v) > INT64_MAX for v in ints], bool)
        if not bad.any():
            return pd.Series(np.array(ints, np.int64), index=ids.index), None
    first = _first(bad)
    return (ids.astype(np.int64) if first is None else ids), first


def exact_ids(ids: pd.Series, kind: str) -> tuple[pd.Series, int | None]:
    """The ids as the reference keeps them (int64 or text), or the position of the first that cannot be."""
    if kind == "int":
        return _as_int64(ids)
    if pd.api.types.is_float_dtype(ids):  # 7.0 is the id "7"; 7.5 is no id
        bad = ~(ids == np.round(ids)).to_numpy(bool)
        return (ids, _first(bad)) if bad.any() else (ids.astype(np.int64).astype("string"), None)
    return ids.astype("string"), None


def with_exact_ids(frame: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """The frame with its id column as the reference keeps ids (checked by batch_problem first)."""
    if not schema.id:
        return frame
    ids = exact_ids(frame[schema.id], schema.id_kind)[0]
    if ids.dtype == frame[schema.id].dtype:  # already so (a user's file is, once read): the same values, no copy
        return frame
    return frame.assign(**{schema.id: ids})


def image_side(n_features: int) -> int | None:
    """The side of the square image a row of `n_features` is (digits: 8), or None if it is not one."""
    side = math.isqrt(n_features)
    return side if side * side == n_features else None


def to_arrays(frame: pd.DataFrame, schema: Schema) -> tuple[np.ndarray, np.ndarray]:
    """Features as float32 and labels as class indices (-1 where the label is not a known class)."""
    return frame.loc[:, list(schema.features)].to_numpy(dtype=np.float32), class_indices(frame[schema.label], schema)


def class_indices(labels: pd.Series, schema: Schema) -> np.ndarray:
    return pd.Index(schema.classes).get_indexer(labels).astype(np.int32)


def row_ids(frame: pd.DataFrame, schema: Schema) -> np.ndarray:
    """The id column, or row positions where there is none."""
    return frame[schema.id].to_numpy() if schema.id else np.arange(len(frame))


def plain(value: Any) -> Any:
    """A numpy scalar as the Python value (JSON, Prefect artifacts and messages want those)."""
    return value.item() if isinstance(value, np.generic) else value


# ---- the checks that make a frame usable: the first problem, as one line naming the row and column ----

def _first(mask: np.ndarray) -> int | None:
    hits = np.flatnonzero(mask)
    return int(hits[0]) if len(hits) else None


def show(value: Any) -> str:
    """A cell as the user would recognise it, cut short (a 1 MB cell must not make a 1 MB message)."""
    text = repr(plain(value))
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
        found = ", ".join(map(show, list(frame.columns)[:5])) + ("..." if len(frame.columns) > 5 else "")
        return (f"column {missing[0]!r} is missing (found {found}); check the delimiter and header, or "
                "data.label_column/feature_columns")
    if len(frame) < min_rows:
        return f"{len(frame)} rows < data.min_rows {min_rows}; send a larger batch or lower data.min_rows"
    return None


def _text_problem(frame: pd.DataFrame, schema: Schema) -> str | None:
    numeric_labels = all(isinstance(c, (int, float, np.number)) for c in schema.classes)
    for col in ([schema.label] if numeric_labels else []) + list(schema.features):
        row = _first(_not_numbers(frame[col]))
        if row is not None:
            return (f"row {row + 1}, column {col!r} holds {show(frame[col].iloc[row])}, not a number; "
                    "fix the value at the source")
    return None


def _label_problem(frame: pd.DataFrame, schema: Schema) -> str | None:
    labels = frame[schema.label]
    row = _first(labels.isna().to_numpy())
    if row is not None:
        return f"row {row + 1}, column {schema.label!r} is empty; label the row or drop it"
    row = _first(~labels.isin(schema.classes).to_numpy())
    if row is not None:
        value = plain(labels.iloc[row])
        if isinstance(value, str) != isinstance(schema.classes[0], str):
            kinds = ("text", "numbers") if isinstance(value, str) else ("a number", "text")
            return (f"row {row + 1}, column {schema.label!r} holds {kinds[0]} {show(value)} but the reference's labels "
                    f"are {kinds[1]}; write the labels as the reference does")
        return (f"row {row + 1}, column {schema.label!r} holds {show(labels.iloc[row])}, not one of the reference's "
                f"{len(schema.classes)} classes; fix the label, or add the class to the reference")
    return None


def _value_problem(frame: pd.DataFrame, schema: Schema) -> str | None:
    for col in schema.features:
        values = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
        row = _first(~(np.abs(values) <= FLOAT32_MAX))  # NaN, inf and 1e308 (beyond float32) all fail this
        if row is not None:
            return f"row {row + 1}, column {col!r} is {show(values[row])}, not a finite float32; fix or drop the row"
    return None


def _id_problem(frame: pd.DataFrame, schema: Schema) -> str | None:
    if not schema.id:
        return None
    ids = frame[schema.id]
    row = _first(ids.isna().to_numpy())
    if row is None:
        exact, row = exact_ids(ids, schema.id_kind)
        if row is not None:
            like = "an integer within int64" if schema.id_kind == "int" else "text"
            return (f"row {row + 1}, column {schema.id!r} holds {show(ids.iloc[row])}, not an id like the "
                    f"reference's ({like}); write the ids as the reference does")
        row = _first(exact.duplicated().to_numpy())
    if row is not None:
        return (f"row {row + 1}, column {schema.id!r}: id {show(ids.iloc[row])} is empty or repeats an earlier row; "
                "ids must be unique")
    return None


def batch_problem(frame: pd.DataFrame, schema: Schema, name: str, min_rows: int) -> str | None:
    """The first reason the frame cannot be used, as one line naming the file, the row/column and the fix.

    Rows are counted from 1 (the first data row). Columns the reference lacks are left to the data gate (GX
    refuses the column set); its suite repeats the value checks here, which also name the row."""
    problem = _shape_problem(frame, schema, min_rows)
    for check in (_text_problem, _label_problem, _value_problem, _id_problem):
        problem = problem or check(frame, schema)
    return f"{name}: {problem}" if problem else None


def as_received(frame: pd.DataFrame) -> pd.DataFrame:
    """Text columns as strings, so a refused batch can be kept in quarantine whatever mix of values it holds."""
    return frame.astype({c: "string" for c in frame.columns if frame[c].dtype == object})
