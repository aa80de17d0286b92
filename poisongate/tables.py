"""Reading users' CSV, Parquet and .npz files (optionally gzipped) under a size limit, and writing Parquet."""
from __future__ import annotations

import gc
import gzip
import io
import os
import stat
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from poisongate.errors import PoisongateError
from poisongate.workspace import atomic_path


@dataclass(frozen=True)
class Limits:
    """What a file may decode to (params.yaml data.max_bytes, data.max_rows; None: no limit), and the columns a
    CSV keeps as text (ids: "007" stays "007")."""

    max_bytes: int | None = None
    max_rows: int | None = None
    text_columns: tuple[str, ...] = ()


def read_bytes(path: str | Path, max_bytes: int | None = None, follow_symlinks: bool = True) -> bytes:
    """A regular file's bytes, refusing one larger than `max_bytes` before reading it. A user's file is read
    without following a symbolic link (`follow_symlinks` False): a link planted in the feed would otherwise copy
    any file the process can read into data/, the quarantine and the DVC remote. Directories, FIFOs and devices
    are refused by name; a FIFO is opened without blocking."""
    path = Path(path)
    if not follow_symlinks and path.is_symlink():
        raise PoisongateError(f"{path}: is a symbolic link (to {os.readlink(path)}), refused so that no other file "
                              "is copied in; point params.yaml at the file itself or set data.follow_symlinks: true")
    flags = os.O_RDONLY | os.O_NONBLOCK | (0 if follow_symlinks else os.O_NOFOLLOW)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise PoisongateError(f"{path}: no such file; check data paths in params.yaml") from None
    except OSError as e:
        raise PoisongateError(f"{path}: cannot be opened ({e.strerror}); check the path and its permissions") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        mode = info.st_mode
        kind = "a directory" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "a special file"
        raise PoisongateError(f"{path}: is {kind}, not a regular file; point params.yaml at a data file")
    if max_bytes is not None and info.st_size > max_bytes:
        os.close(fd)
        raise PoisongateError(f"{path}: {info.st_size} bytes > data.max_bytes {max_bytes}; "
                              "split the file or raise data.max_bytes")
    with os.fdopen(fd, "rb") as f:
        raw = f.read(-1 if max_bytes is None else max_bytes + 1)
    if max_bytes is not None and len(raw) > max_bytes:
        raise PoisongateError(f"{path}: more than data.max_bytes {max_bytes} bytes; "
                              "split the file or raise data.max_bytes")
    return raw


def _gunzip(raw: bytes, path: Path, limits: Limits) -> bytes:
    """Decompress at most max_bytes + 1 bytes: a small gzip that expands without bound is refused, not read."""
    limit = -1 if limits.max_bytes is None else limits.max_bytes + 1
    with gzip.GzipFile(fileobj=io.BytesIO(raw)) as f:
        out = f.read(limit)
    if limits.max_bytes is not None and len(out) > limits.max_bytes:
        raise PoisongateError(f"{path}: expands to more than data.max_bytes {limits.max_bytes} bytes; "
                              "send it uncompressed or raise data.max_bytes")
    return out


def _too_big(path: Path, limits: Limits, rows: int, size: int) -> None:
    if limits.max_rows is not None and rows > limits.max_rows:
        raise PoisongateError(f"{path}: {rows} rows > data.max_rows {limits.max_rows}; "
                              "split the file or raise data.max_rows")
    if limits.max_bytes is not None and size > limits.max_bytes:
        raise PoisongateError(f"{path}: expands to {size} bytes > data.max_bytes {limits.max_bytes}; "
                              "split the file or raise data.max_bytes")


def _parquet(raw: bytes, path: Path, limits: Limits) -> pd.DataFrame:
    """Limits from the footer before decoding, then while decoding (a footer can understate what its pages
    decode to). A column pandas saved as the index (`to_parquet(index=True)`) comes back as a column."""
    parquet = pq.ParquetFile(pa.BufferReader(raw))
    meta = parquet.metadata
    _too_big(path, limits, meta.num_rows, sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups)))
    batches, rows, size = [], 0, 0
    for batch in parquet.iter_batches(batch_size=65_536):
        rows, size = rows + batch.num_rows, size + batch.nbytes
        _too_big(path, limits, rows, size)
        batches.append(batch)
    table = pa.Table.from_batches(batches, schema=parquet.schema_arrow)
    del batches  # the table holds the only reference: each column is freed as it is converted
    frame = table.to_pandas(self_destruct=True, split_blocks=True)
    del table
    release_arrow_memory()
    named_index = [n for n in frame.index.names if n is not None]
    return frame.reset_index() if named_index else frame.reset_index(drop=True)


def _npy_header(z: zipfile.ZipFile, info: zipfile.ZipInfo, path: Path) -> tuple[tuple[int, ...], np.dtype]:
    from numpy.lib import format as npy

    with z.open(info) as member:
        try:
            version = npy.read_magic(member)
            if version not in ((1, 0), (2, 0)):
                raise ValueError(f"format version {version}")
            shape, _, dtype = (npy.read_array_header_1_0 if version == (1, 0) else npy.read_array_header_2_0)(member)
        except ValueError as e:
            raise PoisongateError(f"{path}: member {info.filename!r} is not a .npy array ({str(e)[:80]}); "
                                  "store one 1-D numeric array per column (numpy.savez)") from None
    return shape, dtype


def _npz(raw: bytes, path: Path, limits: Limits) -> pd.DataFrame:
    """One 1-D numeric array per column, all of one length, each member named once. Headers are read (and the
    limits applied) before any array is decoded; never unpickles (allow_pickle=False); any byte order."""
    with zipfile.ZipFile(io.BytesIO(raw)) as z:
        infos = z.infolist()
        names = [i.filename for i in infos]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise PoisongateError(f"{path}: member {repeated[0]!r} appears more than once; write each column once")
        lengths = {}
        for info in infos:
            if not info.filename.endswith(".npy"):
                raise PoisongateError(f"{path}: member {info.filename!r} is not a .npy array; "
                                      "store one 1-D numeric array per column (numpy.savez)")
            shape, dtype = _npy_header(z, info, path)
            name = info.filename[: -len(".npy")]
            if len(shape) != 1:
                raise PoisongateError(f"{path}: array {name!r} has shape {shape}; store one 1-D array per column")
            if dtype.kind not in "biuf":
                raise PoisongateError(f"{path}: array {name!r} holds {dtype} values, not real numbers; "
                                      "store one numeric (bool, int, uint, float) array per column")
            lengths[name] = shape[0]
            _too_big(path, limits, shape[0], sum(lengths.values()) * dtype.itemsize)
    if len(set(lengths.values())) > 1:
        first, *_ = lengths
        other = next(n for n, k in lengths.items() if k != lengths[first])
        raise PoisongateError(f"{path}: array {other!r} has {lengths[other]} rows but {first!r} has "
                              f"{lengths[first]}; every column needs one value per row")
    with np.load(io.BytesIO(raw), allow_pickle=False) as npz:
        columns = {name: npz[name] for name in npz.files}
    return pd.DataFrame({name: v.astype(v.dtype.newbyteorder("=")) for name, v in columns.items()})


def _csv(raw: bytes, path: Path, limits: Limits) -> pd.DataFrame:
    nrows = None if limits.max_rows is None else limits.max_rows + 1
    frame = pd.read_csv(io.BytesIO(raw), encoding="utf-8", encoding_errors="strict", nrows=nrows,
                        dtype={c: str for c in limits.text_columns})
    _too_big(path, limits, len(frame), 0)
    return frame


READERS = {".parquet": _parquet, ".pq": _parquet, ".csv": _csv, ".npz": _npz}
UNREADABLE = (pa.ArrowException, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError,
              OSError, EOFError, zlib.error, zipfile.BadZipFile, OverflowError)


def parse_table(raw: bytes, path: str | Path, limits: Limits = Limits()) -> pd.DataFrame:
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
            raw = _gunzip(raw, path, limits)
        return READERS[suffix](raw, path, limits)
    except UNREADABLE as e:
        raise unreadable(path, suffix[1:], e) from None


def unreadable(path: Path, kind: str, e: Exception) -> PoisongateError:
    detail = str(e).splitlines()[0] if str(e) else type(e).__name__
    return PoisongateError(f"{path}: cannot be read as {kind} ({detail[:200]}); re-export the file")


def read_table(path: str | Path, limits: Limits = Limits(), columns: list[str] | None = None) -> pd.DataFrame:
    """Read a CSV, Parquet or .npz file (one of the workspace's own: links followed, as DVC may link its cache);
    every failure becomes one line naming the file and the fix. Parquet without limits is converted column by
    column, each Arrow column freed once converted: a 1M-row training set peaked at 1.44 GB read as bytes, then
    batches, then a frame, and at 1.0 GB so (issue 19). Not pre-buffered: Arrow's read-ahead of every column chunk
    (for object stores) held another 0.4 GB of a 1M-row file, and local reads gain nothing from it. `columns`:
    only those (a Parquet file's others are not decoded)."""
    if limits == Limits() and Path(path).suffix.lower() in (".parquet", ".pq"):
        try:
            table = pq.read_table(path, columns=columns, pre_buffer=False)
        except FileNotFoundError:
            raise PoisongateError(f"{path}: no such file; check data paths in params.yaml") from None
        except UNREADABLE as e:
            raise unreadable(Path(path), "parquet", e) from None
        frame = table.to_pandas(self_destruct=True, split_blocks=True)
        del table
        release_arrow_memory()
        return frame
    frame = parse_table(read_bytes(path, limits.max_bytes), path, limits)
    return frame if columns is None else frame[columns]


WRITE_ROWS = 131_072  # rows converted to Arrow at a time when writing Parquet


def write_table(frame: pd.DataFrame, path: Path) -> None:
    """The frame as Parquet (pandas' metadata kept, no index), converted to Arrow one slice of rows at a time:
    converted whole, a 1M-row frame had a second copy of itself in memory while it was written (issue 19)."""
    schema = pa.Schema.from_pandas(frame, preserve_index=False)
    with atomic_path(path) as tmp, pq.ParquetWriter(tmp, schema) as writer:
        for start in range(0, max(len(frame), 1), WRITE_ROWS):
            writer.write_table(pa.Table.from_pandas(frame.iloc[start : start + WRITE_ROWS], schema=schema,
                                                    preserve_index=False))
    release_arrow_memory()


def read_rows(path: Path, rows: np.ndarray, columns: list[str] | None = None) -> pd.DataFrame:
    """The rows at sorted positions `rows` of one of the workspace's Parquet files (optionally only `columns`),
    read one row group at a time so that only they are held: the audit took 10k of 1M rows from a whole frame.
    (`iter_batches` kept 0.5 GB of a 1M-row file in Arrow's pool; a row group read and freed does not.)"""
    parquet = pq.ParquetFile(path)
    schema = parquet.schema_arrow
    if columns is not None:
        schema = pa.schema([schema.field(c) for c in columns], metadata=schema.metadata)
    parts, start = [schema.empty_table()], 0
    for group in range(parquet.num_row_groups if len(rows) else 0):
        part = parquet.read_row_group(group, columns=columns)
        lo, hi = np.searchsorted(rows, [start, start + part.num_rows])
        parts.append(part.take(pa.array(rows[lo:hi] - start)))
        start += part.num_rows
        del part
        release_arrow_memory()
    return pa.concat_tables(parts).to_pandas()


def read_matrix(path: Path, columns: list[str], empty=np.empty) -> np.ndarray:
    """[rows, columns] float32 of one of the workspace's Parquet files in an array from `empty(shape, dtype)`,
    one column decoded at a time: through a frame and its float32 copy, 1M training rows of 64 features peaked at
    0.8 GB more than the 0.26 GB they fill (issue 19)."""
    parquet = pq.ParquetFile(path, pre_buffer=False)
    out = empty((parquet.metadata.num_rows, len(columns)), np.float32)
    for j, name in enumerate(columns):
        out[:, j] = parquet.read(columns=[name]).column(0).to_numpy()
        release_arrow_memory()
    return out


def rewrite(source: Path, path: Path, change) -> None:
    """Parquet `source` written to `path` one row group at a time, each as `change(rows, start)` makes it (an
    Arrow table of the same schema; `start`: its first row's position): no frame of the whole file is made."""
    parquet = pq.ParquetFile(source)
    with atomic_path(path) as tmp, pq.ParquetWriter(tmp, parquet.schema_arrow) as writer:
        start = 0
        for group in range(parquet.num_row_groups):
            part = parquet.read_row_group(group)
            writer.write_table(change(part, start))
            start += part.num_rows
            del part
            release_arrow_memory()


def write_rows(source: Path, path: Path, keep: np.ndarray) -> None:
    """The rows of Parquet `source` where `keep` is true, written to `path` (schema and pandas metadata kept)."""
    rewrite(source, path, lambda part, start: part.filter(pa.array(keep[start:start + part.num_rows])))


def release_arrow_memory() -> None:
    """Hand the memory of Arrow's freed buffers back to the system: its allocator keeps it otherwise, and a
    1M-row night's reads and writes then held about 0.5 GB more each (issue 19)."""
    pa.default_memory_pool().release_unused()


_freezing = False  # within frozen_survivors(): a full collection's survivors are frozen


@contextmanager
def frozen_survivors() -> Iterator[None]:
    """For one night: what is alive on entry and what survives each full collection is frozen (`gc.freeze`), so
    a collection walks only what was made since. That is mostly the process's modules, compiled functions and
    caches: 0.5-0.75 million objects once Prefect, GX and JAX are loaded, which every stage's collection walked
    again (0.33-0.64 s each: 5.4 s of a digits night, 0.5 s frozen). On exit all is unfrozen: what died in a cycle
    meanwhile is collected then."""
    global _freezing
    _freezing = True
    gc.freeze()
    try:
        yield
    finally:
        _freezing = False
        gc.unfreeze()


def release_memory(full: bool = True) -> None:
    """After a stage: collect its garbage and hand freed memory back to the system (Arrow's pool and glibc's
    heap, where freed arrays of under 32 MB stay). In one night's process at 1M rows each stage otherwise began
    0.8-1.0 GB above what it needed (issue 19). Within a stage, `full=False` collects only the young generations:
    a full collection walks every object not frozen (`frozen_survivors`) and, before the filter's model-based
    detectors, lowered its 1M-row peak by nothing measurable (1.54-1.60 GB either way)."""
    gc.collect(2 if full else 1)
    if full and _freezing:
        gc.freeze()
    release_arrow_memory()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@cache
def _malloc_trim():
    """glibc's malloc_trim among the process's own symbols (None elsewhere); looked up once, not per stage."""
    import ctypes

    return getattr(ctypes.CDLL(None), "malloc_trim", None)


def row_count(path: Path) -> int:
    """Rows of a Parquet file we wrote, from its footer (nothing decoded)."""
    import pyarrow.parquet as pq

    return pq.read_metadata(path).num_rows
