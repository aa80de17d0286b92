"""Datasets: the embedded default, users' CSV/Parquet files, and the frame <-> array boundary."""
from __future__ import annotations

import gzip
import io
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tasks.config import PoisongateError, atomic_path

DIGITS = "digits"


@dataclass(frozen=True)
class Schema:
    """Which columns are what; derived from params.yaml's `data` section and the trusted reference."""

    label: str
    id: str | None
    features: tuple[str, ...]
    classes: tuple[Any, ...]

    @property
    def columns(self) -> list[str]:
        return ([self.id] if self.id else []) + [self.label, *self.features]


def load_digits_frame() -> pd.DataFrame:
    from sklearn.datasets import load_digits

    digits = load_digits()
    frame = pd.DataFrame(digits.data.astype(np.float32), columns=digits.feature_names)
    frame.insert(0, "label", digits.target.astype(np.int64))
    frame.insert(0, "id", np.arange(len(frame), dtype=np.int64))
    return frame


def split_default(frame: pd.DataFrame, split: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame, list[pd.DataFrame]]:
    """Deterministic, stratified: trusted reference, golden holdout, then the incoming batches."""
    from sklearn.model_selection import train_test_split

    seed = int(split["seed"])
    rest, reference = train_test_split(
        frame, test_size=float(split["reference_fraction"]), stratify=frame["label"], random_state=seed
    )
    holdout_share = float(split["holdout_fraction"]) / (1.0 - float(split["reference_fraction"]))
    incoming, holdout = train_test_split(rest, test_size=holdout_share, stratify=rest["label"], random_state=seed)
    batches = np.array_split(incoming.sort_values("id").to_numpy(), int(split["batches"]))
    batches = [pd.DataFrame(b, columns=frame.columns).astype(frame.dtypes.to_dict()) for b in batches]
    return reference.sort_values("id"), holdout.sort_values("id"), batches


def read_bytes(path: str | Path, max_bytes: int | None = None) -> bytes:
    """A file's bytes, refusing one larger than `max_bytes` before reading it."""
    path = Path(path)
    if not path.is_file():
        raise PoisongateError(f"{path}: no such file; check data paths in params.yaml")
    if max_bytes is not None and path.stat().st_size > max_bytes:
        raise PoisongateError(f"{path}: {path.stat().st_size} bytes > data.max_bytes {max_bytes}; split the file or raise data.max_bytes")
    return path.read_bytes()


def _gunzip(raw: bytes, path: Path, max_bytes: int | None) -> bytes:
    """Decompress at most max_bytes + 1 bytes: a small gzip that expands without bound is refused, not read."""
    limit = -1 if max_bytes is None else max_bytes + 1
    with gzip.GzipFile(fileobj=io.BytesIO(raw)) as f:
        out = f.read(limit)
    if max_bytes is not None and len(out) > max_bytes:
        raise PoisongateError(f"{path}: expands to more than data.max_bytes {max_bytes} bytes; send it uncompressed or raise data.max_bytes")
    return out


def _parquet(raw: bytes, path: Path, max_bytes: int | None) -> pd.DataFrame:
    meta = pq.ParquetFile(pa.BufferReader(raw)).metadata
    size = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    if max_bytes is not None and size > max_bytes:
        raise PoisongateError(f"{path}: expands to {size} bytes > data.max_bytes {max_bytes}; split the file or raise data.max_bytes")
    return pq.read_table(pa.BufferReader(raw)).to_pandas()


def _npz(raw: bytes, path: Path, max_bytes: int | None) -> pd.DataFrame:
    """One 1-D array per column. Never unpickles: object arrays are refused (allow_pickle=False)."""
    with zipfile.ZipFile(io.BytesIO(raw)) as z:
        size = sum(i.file_size for i in z.infolist())
    if max_bytes is not None and size > max_bytes:
        raise PoisongateError(f"{path}: expands to {size} bytes > data.max_bytes {max_bytes}; split the file or raise data.max_bytes")
    with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
        columns = {name: npz[name] for name in npz.files}
    for name, values in columns.items():
        if values.ndim != 1:
            raise PoisongateError(f"{path}: array {name!r} has shape {values.shape}; store one 1-D array per column")
    return pd.DataFrame(columns)


def _csv(raw: bytes, path: Path, max_bytes: int | None) -> pd.DataFrame:
    return pd.read_csv(io.BytesIO(raw), encoding="utf-8", encoding_errors="strict")


READERS = {".parquet": _parquet, ".pq": _parquet, ".csv": _csv, ".npz": _npz}
UNREADABLE = (pa.ArrowException, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError,
              OSError, EOFError, zlib.error, zipfile.BadZipFile, OverflowError)


def parse_table(raw: bytes, path: str | Path, max_bytes: int | None = None) -> pd.DataFrame:
    """Parse a user's CSV, Parquet or .npz bytes (optionally gzipped); every failure is one line naming the file and the fix."""
    path = Path(path)
    suffixes = [s.lower() for s in path.suffixes] or [""]
    gzipped = suffixes[-1] == ".gz"
    suffix = suffixes[-2] if gzipped and len(suffixes) > 1 else suffixes[-1]
    if suffix not in READERS:
        raise PoisongateError(f"{path}: unknown format {path.suffix!r}; use .csv, .parquet or .npz (optionally .gz)")
    try:
        if gzipped:
            raw = _gunzip(raw, path, max_bytes)
        return READERS[suffix](raw, path, max_bytes)
    except UNREADABLE as e:
        detail = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise PoisongateError(f"{path}: cannot be read as {suffix[1:]} ({detail[:200]}); re-export the file") from None


def read_table(path: str | Path, max_bytes: int | None = None) -> pd.DataFrame:
    """Read a CSV, Parquet or .npz file; every failure becomes one line naming the file and the fix."""
    return parse_table(read_bytes(path, max_bytes), path, max_bytes)


def write_table(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


def schema_from_reference(reference: pd.DataFrame, data: dict[str, Any], path: str | Path) -> Schema:
    label, id_col = data["label_column"], data.get("id_column")
    if label not in reference.columns:
        raise PoisongateError(f"{path}: no label column {label!r}; set data.label_column in params.yaml")
    if id_col and id_col not in reference.columns:
        id_col = None  # the id column is optional: rows are then named by position
    features = data.get("feature_columns")
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
    return Schema(label=label, id=id_col, features=tuple(features), classes=classes)


def to_arrays(frame: pd.DataFrame, schema: Schema) -> tuple[np.ndarray, np.ndarray]:
    """Features as float32 and labels as class indices (-1 where the label is not a known class)."""
    X = frame.loc[:, list(schema.features)].to_numpy(dtype=np.float32)
    index = {c: i for i, c in enumerate(schema.classes)}
    y = np.array([index.get(v, -1) for v in frame[schema.label].tolist()], dtype=np.int32)
    return X, y


def row_ids(frame: pd.DataFrame, schema: Schema) -> np.ndarray:
    return frame[schema.id].to_numpy() if schema.id else np.arange(len(frame))
