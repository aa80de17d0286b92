"""Reading users' CSV, Parquet and .npz files (optionally gzipped) under a size limit, and writing Parquet."""
from __future__ import annotations

import gzip
import io
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from poisongate.errors import PoisongateError
from poisongate.workspace import atomic_path


def read_bytes(path: str | Path, max_bytes: int | None = None) -> bytes:
    """A file's bytes, refusing one larger than `max_bytes` before reading it."""
    path = Path(path)
    if not path.is_file():
        raise PoisongateError(f"{path}: no such file; check data paths in params.yaml")
    if max_bytes is not None and path.stat().st_size > max_bytes:
        raise PoisongateError(f"{path}: {path.stat().st_size} bytes > data.max_bytes {max_bytes}; "
                              "split the file or raise data.max_bytes")
    return path.read_bytes()


def _gunzip(raw: bytes, path: Path, max_bytes: int | None) -> bytes:
    """Decompress at most max_bytes + 1 bytes: a small gzip that expands without bound is refused, not read."""
    limit = -1 if max_bytes is None else max_bytes + 1
    with gzip.GzipFile(fileobj=io.BytesIO(raw)) as f:
        out = f.read(limit)
    if max_bytes is not None and len(out) > max_bytes:
        raise PoisongateError(f"{path}: expands to more than data.max_bytes {max_bytes} bytes; "
                              "send it uncompressed or raise data.max_bytes")
    return out


def _parquet(raw: bytes, path: Path, max_bytes: int | None) -> pd.DataFrame:
    meta = pq.ParquetFile(pa.BufferReader(raw)).metadata
    size = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    if max_bytes is not None and size > max_bytes:
        raise PoisongateError(f"{path}: expands to {size} bytes > data.max_bytes {max_bytes}; "
                              "split the file or raise data.max_bytes")
    return pq.read_table(pa.BufferReader(raw)).to_pandas()


def _npz(raw: bytes, path: Path, max_bytes: int | None) -> pd.DataFrame:
    """One 1-D array per column. Never unpickles: object arrays are refused (allow_pickle=False)."""
    with zipfile.ZipFile(io.BytesIO(raw)) as z:
        size = sum(i.file_size for i in z.infolist())
    if max_bytes is not None and size > max_bytes:
        raise PoisongateError(f"{path}: expands to {size} bytes > data.max_bytes {max_bytes}; "
                              "split the file or raise data.max_bytes")
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
    """Parse a user's CSV, Parquet or .npz bytes (optionally gzipped); every failure is one line naming the file
    and the fix."""
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




def row_count(path: Path) -> int:
    """Rows of a Parquet file we wrote, from its footer (nothing decoded)."""
    import pyarrow.parquet as pq

    return pq.read_metadata(path).num_rows
