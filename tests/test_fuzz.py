"""Property tests: whatever bytes or frames arrive, ingestion and validation answer with a PoisongateError
(or a refusal) or a valid dataset, never another exception."""
import gzip
import io

import numpy as np
import pandas as pd
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.pandas import column, data_frames, range_indexes

from poisongate.config import ValidateConfig
from poisongate.data_gate import build_suite, validate_frame
from poisongate.errors import PoisongateError
from poisongate.schema import Schema, as_received, batch_problem, to_arrays
from poisongate.tables import Limits, parse_table, write_table

SCHEMA = Schema(label="label", id="id", features=("a", "b"), classes=(0, 1, 2))
REFERENCE = pd.DataFrame({"id": range(30), "label": [0, 1, 2] * 10, "a": np.linspace(0, 1, 30),
                          "b": np.linspace(-5, 5, 30)})
SUFFIXES = [".csv", ".parquet", ".npz", ".csv.gz", ".parquet.gz", ".npz.gz"]
RANGES_ONLY = ValidateConfig(false_refusal_rate=0.001, range_margin=0.1, range_mostly=0.9, mean=False, stdev=False,
                             quantiles=False, class_mix=False, max_duplicate_share=None)
FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Cells a hostile or broken source might send: numbers of every kind, text, nothing, other Python objects.
cells = st.one_of(st.none(), st.integers(-10, 10), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
                  st.text(max_size=5), st.booleans(), st.sampled_from([1e308, -1e39, 2.5, "1", "nan", "inf", ""]))
names = st.sampled_from(["id", "label", "a", "b", "c", ""])


def assert_valid_dataset(frame: pd.DataFrame) -> None:
    X, y = to_arrays(frame, SCHEMA)
    assert np.isfinite(X).all() and (y >= 0).all() and frame["id"].is_unique and len(frame) >= 1


def check(raw: bytes, suffix: str, tmp_path) -> None:
    """Parse, then admit: a clean error, a refusal, or a valid dataset. A refused batch can always be kept."""
    try:
        frame = parse_table(raw, tmp_path / f"batch{suffix}", Limits(max_bytes=1 << 20))
    except PoisongateError as e:
        assert "\n" not in str(e) and "batch" in str(e)
        return
    problem = batch_problem(frame, SCHEMA, "batch", min_rows=1)
    if problem:
        assert "\n" not in problem and problem.startswith("batch: ")
        write_table(as_received(frame), tmp_path / "kept.parquet")  # what goes to quarantine
    else:
        assert_valid_dataset(frame)


@FAST
@given(raw=st.binary(max_size=2048), suffix=st.sampled_from(SUFFIXES))
def test_arbitrary_bytes(raw, suffix, tmp_path_factory):
    check(raw, suffix, tmp_path_factory.mktemp("b"))


@FAST
@given(text=st.text(alphabet="0123456789.,-+eE\n\r\"' abcdfilnNaI;\t", max_size=400), gz=st.booleans())
def test_csv_like_text(text, gz, tmp_path_factory):
    header = "id,label,a,b\n"
    raw = (header + text).encode()
    check(gzip.compress(raw) if gz else raw, ".csv.gz" if gz else ".csv", tmp_path_factory.mktemp("t"))


frames = st.lists(st.tuples(names, st.lists(cells, min_size=0, max_size=8)), min_size=0, max_size=6).map(
    lambda cols: pd.DataFrame({n: pd.Series(v, dtype=object) for n, v in cols}))
typed_frames = data_frames([column("id", dtype=int), column("label", elements=st.integers(-1, 3)),
                            column("a", dtype=float), column("b", elements=cells)], index=range_indexes(max_size=8))


@FAST
@given(frame=st.one_of(frames, typed_frames), fmt=st.sampled_from([".csv", ".parquet"]))
def test_arbitrary_frames_through_a_file(frame, fmt, tmp_path_factory):
    d = tmp_path_factory.mktemp("f")
    buf = io.BytesIO()
    try:
        frame.to_csv(buf, index=False) if fmt == ".csv" else frame.to_parquet(buf, index=False)
    except (ValueError, TypeError, OverflowError, pa.ArrowException):
        return  # pandas/pyarrow cannot write such a frame, so no source could send it
    check(buf.getvalue(), fmt, d)


@FAST
@given(frame=st.one_of(frames, typed_frames))
def test_arbitrary_frames_in_memory(frame, tmp_path_factory):
    problem = batch_problem(frame, SCHEMA, "batch", min_rows=1)
    if problem is None:
        assert_valid_dataset(frame)
    else:
        write_table(as_received(frame), tmp_path_factory.mktemp("q") / "kept.parquet")


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(frame=st.one_of(frames, typed_frames))
def test_validation_answers_every_frame(frame):
    """The GX gate returns a verdict for any frame (it sees only admitted batches, but must not crash on others)."""
    result = validate_frame(frame, build_suite(REFERENCE, SCHEMA, RANGES_ONLY, min_rows=1, rows=len(frame)))
    assert isinstance(result["passed"], bool)
    if batch_problem(frame, SCHEMA, "batch", min_rows=1) is not None:
        assert result["passed"] is False or len(frame) == 0
