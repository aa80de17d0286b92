"""The bad-input corpus: each kind writes one malformed incoming batch, derived from a good one.

`kind -> (expected, make)`; `make(good, directory) -> path`. What the pipeline must do with each:
  unreadable  ingest raises PoisongateError naming the file (nothing could be read, so nothing to quarantine)
  refused     ingest reads it, writes it as received (kept whole in quarantine by the record stage) and refuses it
  data_gate   ingest passes it on; the Great Expectations gate refuses it (columns the reference lacks)
Used by tests/test_bad_inputs.py and benchmarks/reliability.py."""
from __future__ import annotations

import gzip
import io
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

MAX_BYTES = 4 << 20  # data.max_bytes for the corpus: small, so the bombs stay cheap to build
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
}
