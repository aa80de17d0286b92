"""The bad-input corpus: each kind writes one malformed incoming batch, derived from a good one.

`kind -> (expected, make)`; `make(good, directory) -> path`. What the pipeline must do with each:
  unreadable  ingest raises PoisongateError naming the file (nothing could be read, so nothing to quarantine)
  refused     ingest reads it, writes it as received (kept whole in quarantine by the record stage) and refuses it
  data_gate   ingest passes it on; the Great Expectations gate refuses it (columns the reference lacks)
  accepted    valid after all (another byte order, ids saved as the Parquet index, integer-valued floats written
              as integers): ingest and the data gate pass it
Used by tests/test_bad_inputs.py and benchmarks/reliability.py."""
from __future__ import annotations

import gzip
import io
import os
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

MAX_BYTES = 4 << 20  # data.max_bytes for the corpus: small, so the bombs stay cheap to build
MAX_ROWS = 100_000  # data.max_rows for the corpus
FEATURE = "pixel_0_3"


def _csv(frame: pd.DataFrame, path: Path, **kwargs) -> Path:
    frame.to_csv(path, index=False, **kwargs)
    return path


def _edit(frame: pd.DataFrame, column: str, value, row: int = 3) -> pd.DataFrame:
    out = frame.astype({column: object})
    out.loc[out.index[row], column] = value
    return out


def _bytes(name: str, content: bytes) -> Callable[[pd.DataFrame, Path], Path]:
    def make(good: pd.DataFrame, d: Path) -> Path:
        (d / name).write_bytes(content)
        return d / name
    return make


def _frame(name: str, change: Callable[[pd.DataFrame], pd.DataFrame]) -> Callable[[pd.DataFrame, Path], Path]:
    def make(good: pd.DataFrame, d: Path) -> Path:
        path = d / name
        changed = change(good)
        if path.suffix == ".parquet":
            changed.to_parquet(path, index=False)
            return path
        return _csv(changed, path)
    return make


def _text(name: str, change: Callable[[str], str], encoding: str = "utf-8") -> Callable[[pd.DataFrame, Path], Path]:
    def make(good: pd.DataFrame, d: Path) -> Path:
        (d / name).write_bytes(change(good.to_csv(index=False)).encode(encoding))
        return d / name
    return make


def _truncated_parquet(good: pd.DataFrame, d: Path) -> Path:
    buf = io.BytesIO()
    good.to_parquet(buf, index=False)
    (d / "truncated.parquet").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    return d / "truncated.parquet"


def _npz(name: str, arrays: Callable[[pd.DataFrame], dict]) -> Callable[[pd.DataFrame, Path], Path]:
    def make(good: pd.DataFrame, d: Path) -> Path:
        np.savez_compressed(d / name, **arrays(good))
        return d / name
    return make


def _object_npz(good: pd.DataFrame) -> dict:
    arrays = {c: good[c].to_numpy() for c in good.columns}
    arrays["label"] = np.array([str(v) for v in good["label"]], dtype=object)  # needs pickle to load
    return arrays


def _gzip_bomb(good: pd.DataFrame, d: Path) -> Path:
    header = ",".join(good.columns).encode() + b"\n"
    (d / "bomb.csv.gz").write_bytes(gzip.compress(header + b"0," * (8 * MAX_BYTES), compresslevel=9))
    return d / "bomb.csv.gz"


def _truncated_gzip(good: pd.DataFrame, d: Path) -> Path:
    packed = gzip.compress(good.to_csv(index=False).encode())
    (d / "truncated.csv.gz").write_bytes(packed[: len(packed) // 2])
    return d / "truncated.csv.gz"


def _oversized(good: pd.DataFrame, d: Path) -> Path:
    text = good.to_csv(index=False)
    body = "\n".join(text.splitlines()[1:]) + "\n"
    with open(d / "oversized.csv", "w") as f:
        f.write(text)
        while f.tell() <= MAX_BYTES:
            f.write(body)
    return d / "oversized.csv"


def _ragged(text: str) -> str:
    lines = text.splitlines()
    lines[5] = ",".join(lines[5].split(",")[:-3])
    return "\n".join(lines) + "\n"


def _huge_line(text: str) -> str:
    lines = text.splitlines()
    lines[4] = lines[4] + "," * 200_000
    return "\n".join(lines) + "\n"


def _symlink(good: pd.DataFrame, d: Path) -> Path:
    """A link in the feed to a file it must never read (a copy of the batch stands in for /proc/self/environ)."""
    secret = d / "secret.csv"
    _csv(good, secret)
    (d / "link.csv").symlink_to(secret)
    return d / "link.csv"


def _directory(good: pd.DataFrame, d: Path) -> Path:
    (d / "batch_dir.csv").mkdir()
    return d / "batch_dir.csv"


def _fifo(good: pd.DataFrame, d: Path) -> Path:
    os.mkfifo(d / "pipe.csv")  # nobody writes to it: reading it would block forever
    return d / "pipe.csv"


def _zip(name: str, members: Callable[[pd.DataFrame], list[tuple[str, bytes]]]):
    def make(good: pd.DataFrame, d: Path) -> Path:
        with zipfile.ZipFile(d / name, "w") as z, warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zipfile warns on a duplicated name: that is the point
            for member, content in members(good):
                z.writestr(member, content)
        return d / name
    return make


def _npy(values: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, values, allow_pickle=False)
    return buf.getvalue()


def _columns(good: pd.DataFrame) -> list[tuple[str, bytes]]:
    return [(f"{c}.npy", _npy(good[c].to_numpy())) for c in good.columns]


def _huge_header(good: pd.DataFrame) -> list[tuple[str, bytes]]:
    """A member whose header claims 2**40 float64 values (8 TiB) but holds 8 bytes."""
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f8", "fortran_order": False, "shape": (2**40,)})
    return _columns(good)[:-1] + [("label.npy", b"\x93NUMPY\x01\x00" + header.getvalue()[8:] + b"\0" * 8)]


def _rows_bomb(good: pd.DataFrame, d: Path) -> Path:
    """A small Parquet file that decodes to 30x data.max_rows rows (one repeated value compresses to nothing)."""
    pd.DataFrame({c: np.zeros(30 * MAX_ROWS, np.int8) for c in good.columns[:3]}).to_parquet(d / "rows.parquet")
    return d / "rows.parquet"


def _id_index(good: pd.DataFrame, d: Path) -> Path:
    good.set_index("id").to_parquet(d / "id_index.parquet")  # pandas keeps the index as a column in the file
    return d / "id_index.parquet"


def _uint64_ids(good: pd.DataFrame, huge: bool):
    def change(frame: pd.DataFrame) -> pd.DataFrame:
        ids = frame["id"].to_numpy().astype(np.uint64)
        if huge:
            ids[3] = np.uint64(2**64 - 1)
        return frame.assign(id=ids)
    return change(good)


CORPUS: dict[str, tuple[str, Callable[[pd.DataFrame, Path], Path]]] = {
    "empty file": ("unreadable", _bytes("empty.csv", b"")),
    "blank lines only": ("unreadable", _bytes("blank.csv", b"\n\n\n")),
    "random binary": ("unreadable", _bytes("binary.csv",
                                           bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8)))),
    "non-UTF-8 bytes": ("unreadable", _text("latin1.csv", lambda t: t.replace("pixel_0_5", "pixel_0_5_é", 1),
                                            "latin-1")),
    "unknown format": ("unreadable", _bytes("batch.xlsx", b"PK\x03\x04 not a table")),
    "missing file": ("unreadable", lambda good, d: d / "never-written.csv"),
    "truncated Parquet": ("unreadable", _truncated_parquet),
    "not Parquet at all": ("unreadable", _bytes("fake.parquet", b"PAR1 this is text PAR1")),
    ".npz with object arrays (pickle)": ("unreadable", _npz("pickled.npz", _object_npz)),
    ".npz with a 2-D array": ("unreadable", _npz("matrix.npz", lambda g: {"X": g.to_numpy(np.float32)})),
    ".npz zip bomb": ("unreadable", _npz("bomb.npz", lambda g: {"label": np.zeros(2 * MAX_BYTES, np.uint8)})),
    "gzip bomb": ("unreadable", _gzip_bomb),
    "truncated gzip": ("unreadable", _truncated_gzip),
    "file over data.max_bytes": ("unreadable", _oversized),
    "huge line (200k fields)": ("unreadable", _text("huge_line.csv", _huge_line)),
    "header only": ("refused", _text("header_only.csv", lambda t: t.splitlines()[0] + "\n")),
    "wrong delimiter": ("refused", lambda good, d: _csv(good, d / "semicolons.csv", sep=";")),
    "missing label column": ("refused", _frame("no_label.csv", lambda g: g.drop(columns="label"))),
    "missing feature column": ("refused", _frame("no_feature.csv", lambda g: g.drop(columns=FEATURE))),
    "missing id column": ("refused", _frame("no_id.csv", lambda g: g.drop(columns="id"))),
    "text in a numeric column": ("refused", _frame("text.csv", lambda g: _edit(g, FEATURE, "twelve"))),
    "huge field (1 MB of text)": ("refused", _frame("huge_field.csv",
                                                    lambda g: _edit(g, FEATURE, "9" * 10 + "x" * (1 << 20)))),
    "NaN in a feature": ("refused", _frame("nan.csv", lambda g: _edit(g, FEATURE, np.nan))),
    "inf in a feature": ("refused", _frame("inf.csv", lambda g: _edit(g, FEATURE, np.inf))),
    "-inf in a feature": ("refused", _frame("neg_inf.parquet",
                                            lambda g: _edit(g, FEATURE, -np.inf).astype({FEATURE: float}))),
    "1e308 in a feature": ("refused", _frame("huge_value.csv", lambda g: _edit(g, FEATURE, 1e308))),
    "1e39 (beyond float32)": ("refused", _frame("beyond_f32.csv", lambda g: _edit(g, FEATURE, -1e39))),
    "a whole feature column empty": ("refused", _frame("empty_col.csv", lambda g: g.assign(**{FEATURE: np.nan}))),
    "ragged row (fields missing)": ("refused", _text("ragged.csv", _ragged)),
    "label outside the known classes": ("refused", _frame("label42.csv", lambda g: _edit(g, "label", 42))),
    "fractional label": ("refused", _frame("label_frac.csv", lambda g: _edit(g, "label", 2.5))),
    "text label": ("refused", _frame("label_text.csv", lambda g: _edit(g, "label", "seven"))),
    "empty label": ("refused", _frame("label_empty.csv", lambda g: _edit(g, "label", None))),
    "duplicate ids": ("refused", _frame("dup_ids.csv", lambda g: _edit(g, "id", g["id"].iloc[0]))),
    "empty id": ("refused", _frame("empty_id.csv", lambda g: _edit(g, "id", None))),
    "single row": ("refused", _frame("single_row.csv", lambda g: g.head(1))),
    "features stored as text (Parquet)": ("refused", _frame(
        "text_types.parquet", lambda g: g.astype({FEATURE: str}).pipe(lambda f: _edit(f, FEATURE, "n/a")))),
    "extra feature column": ("data_gate", _frame("extra.csv", lambda g: g.assign(injected=1.0))),
    "duplicate column header": ("refused", _text("dup_header.csv", lambda t: t.replace("pixel_0_5", "pixel_0_4", 1))),
    # sources: only regular files, never followed through a link
    "symbolic link": ("unreadable", _symlink),
    "a directory": ("unreadable", _directory),
    "a FIFO": ("unreadable", _fifo),
    "newline in the file name": ("unreadable", _bytes("two\nlines.csv", b"")),
    # .npz members: unique 1-D real arrays of one length, limits from their headers
    ".npz with a non-array member": ("unreadable", _zip("text_member.npz",
                                                        lambda g: _columns(g) + [("notes.txt", b"hello")])),
    ".npz with a complex array": ("unreadable", _npz("complex.npz", lambda g: {
        **{c: g[c].to_numpy() for c in g.columns}, FEATURE: g[FEATURE].to_numpy() * 1j})),
    ".npz whose header claims 8 TiB": ("unreadable", _zip("huge_header.npz", _huge_header)),
    ".npz with a member named twice": ("unreadable", _zip("twice.npz", lambda g: _columns(g) + _columns(g)[-1:])),
    ".npz with columns of different lengths": ("unreadable", _npz("ragged.npz", lambda g: {
        **{c: g[c].to_numpy() for c in g.columns}, FEATURE: g[FEATURE].to_numpy()[:-1]})),
    ".npz big-endian arrays": ("accepted", _npz("big_endian.npz", lambda g: {
        c: g[c].to_numpy().astype(g[c].dtype.newbyteorder(">")) for c in g.columns})),
    "Parquet decoding past data.max_rows": ("unreadable", _rows_bomb),
    # ids: exactly as the reference keeps them, never through float
    "id beyond int64 (uint64)": ("refused", _frame("huge_id.parquet", lambda g: _uint64_ids(g, huge=True))),
    "uint64 ids within int64": ("accepted", _frame("uint64_ids.parquet", lambda g: _uint64_ids(g, huge=False))),
    "text ids where the reference has integers": ("refused", _frame(
        "text_ids.csv", lambda g: g.assign(id="row-" + g["id"].astype(str)))),
    "id saved as the Parquet index": ("accepted", _id_index),
    "integer-valued floats written as integers": ("accepted", _frame("ints.csv", lambda g: g.astype(
        {c: np.int64 for c in g.columns if c.startswith("pixel")}))),
    # labels and columns named so a person can fix them
    "labels as text in Parquet": ("refused", _frame("text_labels.parquet",
                                                    lambda g: g.assign(label=g["label"].astype(str)))),
    "a saved row index column": ("data_gate", lambda good, d: good.to_csv(d / "index.csv") or d / "index.csv"),
    "column named with HTML": ("data_gate", _frame("html.csv",
                                                   lambda g: g.assign(**{"<img src=x onerror=alert(1)>": 1.0}))),
}
