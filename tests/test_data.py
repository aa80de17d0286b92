import numpy as np
import pandas as pd
import pytest

from poisongate import tables
from poisongate.errors import PoisongateError
from poisongate.schema import schema_from_reference, to_arrays
from poisongate.sources import load_digits_frame, split_default
from poisongate.tables import Limits, read_table


def test_default_split_is_deterministic_disjoint_and_sized(config):
    frame = load_digits_frame()
    assert frame.shape == (1797, 66)
    ref, hold, batches = split_default(frame, config.data.split)
    ref2, hold2, batches2 = split_default(frame, config.data.split)
    assert ref.equals(ref2) and hold.equals(hold2) and all(a.equals(b) for a, b in zip(batches, batches2))
    ids = [set(ref.id), set(hold.id), *(set(b.id) for b in batches)]
    assert sum(map(len, ids)) == 1797 and len(set().union(*ids)) == 1797  # a partition of the rows
    assert abs(len(ref) / 1797 - config.data.split.reference_fraction) < 0.01
    assert abs(len(hold) / 1797 - config.data.split.holdout_fraction) < 0.01
    assert len(batches) == config.data.split.batches
    assert set(hold.label) == set(range(10))


def test_schema_uses_all_numeric_columns_and_maps_labels(config):
    frame = pd.DataFrame({"id": [1, 2, 3], "label": ["cat", "dog", "cat"], "a": [0.1, 0.2, 0.3], "b": [1, 2, 3],
                          "note": list("xyz")})
    schema = schema_from_reference(frame, config.data, "ref.csv")
    assert schema.features == ("a", "b") and schema.classes == ("cat", "dog") and schema.id == "id"
    X, y = to_arrays(pd.DataFrame({"label": ["dog", "bird"], "a": [1.0, 2.0], "b": [3, 4]}), schema)
    assert X.dtype == np.float32 and y.tolist() == [1, -1]  # unknown class -> -1


def test_missing_label_column_names_file_column_and_fix(config):
    with pytest.raises(PoisongateError, match=r"ref\.csv: no label column 'label'; set data.label_column"):
        schema_from_reference(pd.DataFrame({"x": [1.0, 2.0]}), config.data, "ref.csv")


@pytest.mark.parametrize("name,content", [("bad.parquet", b"not parquet at all"), ("empty.csv", b""),
                                          ("x.json", b"{}")])
def test_unreadable_files_raise_one_line(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(PoisongateError) as err:
        read_table(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_csv_round_trip(tmp_path):
    path = tmp_path / "batch.csv"
    pd.DataFrame({"label": [0, 1], "f": [0.5, 1.5]}).to_csv(path, index=False)
    assert read_table(path)["f"].tolist() == [0.5, 1.5]


@pytest.mark.parametrize("name", ["batch.csv", "batch.csv.gz", "batch.parquet", "batch.parquet.gz", "batch.npz",
                                  "batch.NPZ"])
def test_every_supported_format_round_trips(tmp_path, name):
    import gzip

    frame = pd.DataFrame({"id": [1, 2], "label": [0, 1], "f": [0.5, 1.5]})
    plain = tmp_path / name.removesuffix(".gz")
    if plain.suffix.lower() == ".npz":
        with open(plain, "wb") as f:  # a file object: np.savez would append ".npz" to "batch.NPZ"
            np.savez(f, **{c: frame[c].to_numpy() for c in frame.columns})
    elif plain.suffix == ".csv":
        frame.to_csv(plain, index=False)
    else:
        frame.to_parquet(plain, index=False)
    path = tmp_path / name
    if name.endswith(".gz"):
        path.write_bytes(gzip.compress(plain.read_bytes()))
    assert read_table(path, Limits(max_bytes=1 << 20)).equals(frame)


def test_files_over_max_bytes_are_refused_before_reading(tmp_path):
    path = tmp_path / "big.csv"
    path.write_text("label,f\n" + "0,1.0\n" * 1000)
    assert len(read_table(path, Limits(max_bytes=1 << 20))) == 1000
    with pytest.raises(PoisongateError, match=r"big\.csv: \d+ bytes > data\.max_bytes 100; split the file"):
        read_table(path, Limits(max_bytes=100))


def test_ids_stay_exactly_as_the_reference_keeps_them(tmp_path):
    from poisongate.schema import exact_ids, id_kind

    path = tmp_path / "ids.csv"
    path.write_text("id,x\n007,1\nA-1,2\n")
    text = read_table(path, Limits(text_columns=("id",)))["id"]
    assert id_kind(text) == "text" and exact_ids(text, "text")[0].tolist() == ["007", "A-1"]  # not 7
    big = pd.Series(np.array([1, 2**63 + 5], np.uint64))
    assert exact_ids(big, "int")[1] == 1  # beyond int64: refused by row, never through float
    assert exact_ids(pd.Series(["12", "9223372036854775807"]), "int")[0].tolist() == [12, 2**63 - 1]
    assert exact_ids(pd.Series([3.0, 4.5]), "int")[1] == 1


def test_parquet_is_written_in_slices_and_reads_back_whole(tmp_path, monkeypatch):
    from poisongate import tables

    monkeypatch.setattr(tables, "WRITE_ROWS", 4)  # 10 rows: three slices, the last one short
    frame = pd.DataFrame({"id": np.arange(10), "x": np.linspace(0, 1, 10, dtype=np.float32),
                          "run": pd.array([f"run {i % 3}" for i in range(10)], dtype="string"),
                          "note": [None, "a", None, "b", None, None, "c", None, None, "d"]})
    for rows in (frame, frame.iloc[:0]):
        tables.write_table(rows, tmp_path / "t.parquet")
        back = read_table(tmp_path / "t.parquet")
        pd.testing.assert_frame_equal(back, rows.reset_index(drop=True))
    import pyarrow.parquet as pq

    tables.write_table(frame, tmp_path / "t.parquet")
    assert pq.ParquetFile(tmp_path / "t.parquet").metadata.num_row_groups == 3


def test_rows_of_a_parquet_file_are_read_and_copied_slice_by_slice_as_a_whole_frame_would_give(tmp_path, monkeypatch):
    from poisongate import tables

    monkeypatch.setattr(tables, "WRITE_ROWS", 4)  # 10 rows in three slices: positions fall in each of them
    frame = pd.DataFrame({"id": np.arange(10) * 7, "x": np.linspace(0, 1, 10, dtype=np.float32),
                          "run": pd.array([f"run {i % 3}" for i in range(10)], dtype="string")})
    tables.write_table(frame, tmp_path / "t.parquet")
    rows = np.array([0, 3, 4, 9])
    pd.testing.assert_frame_equal(tables.read_rows(tmp_path / "t.parquet", rows),
                                  frame.iloc[rows].reset_index(drop=True))
    pd.testing.assert_frame_equal(tables.read_rows(tmp_path / "t.parquet", rows, ["id"]),
                                  frame.iloc[rows][["id"]].reset_index(drop=True))
    pd.testing.assert_frame_equal(tables.read_rows(tmp_path / "t.parquet", rows[:0]), frame.iloc[:0])
    keep = np.isin(np.arange(10), rows, invert=True)
    tables.write_rows(tmp_path / "t.parquet", tmp_path / "kept.parquet", keep)
    pd.testing.assert_frame_equal(read_table(tmp_path / "kept.parquet"), frame.loc[keep].reset_index(drop=True))


def test_feature_columns_are_read_column_by_column_into_the_float32_matrix_a_frame_gives(tmp_path, monkeypatch):
    from poisongate import tables
    from poisongate.learning.models import empty_for_device

    monkeypatch.setattr(tables, "WRITE_ROWS", 4)  # 10 rows in three row groups
    frame = pd.DataFrame({"a": np.arange(10), "b": np.linspace(-1, 1, 10), "c": np.float32(np.arange(10) / 3),
                          "label": list("xyxyxyxyxy")})
    tables.write_table(frame, tmp_path / "t.parquet")
    X = tables.read_matrix(tmp_path / "t.parquet", ["c", "a", "b"], empty_for_device)
    assert X.dtype == np.float32 and X.ctypes.data % 64 == 0
    np.testing.assert_array_equal(X, frame[["c", "a", "b"]].to_numpy(np.float32))


def test_tonight_rows_are_stamped_with_the_run_id_row_group_by_row_group(tmp_path, monkeypatch):
    from poisongate import tables, training_set

    monkeypatch.setattr(tables, "WRITE_ROWS", 3)  # 7 rows: tonight's rows span two row groups
    runs = ["reference", "reference", "r1", "", "", "", ""]
    frame = pd.DataFrame({"x": np.arange(7, dtype=np.float32),
                          training_set.RUN: pd.array(runs, dtype="string")})
    tables.write_table(frame, tmp_path / "clean.parquet")
    training_set.stamp(tmp_path / "clean.parquet", tmp_path / "training.parquet", "r2")
    expected = frame.assign(**{training_set.RUN: pd.array([r or "r2" for r in runs], dtype="string")})
    pd.testing.assert_frame_equal(read_table(tmp_path / "training.parquet"), expected)


def test_a_nights_collections_skip_what_survived_and_its_end_frees_what_died_since():
    import gc
    import weakref

    class Node:
        pass

    with tables.frozen_survivors():
        node = Node()
        node.self = node  # a cycle: only the collector frees it
        alive = weakref.ref(node)
        tables.release_memory()  # it survives this stage's collection, so it is frozen
        assert gc.get_freeze_count() > 0
        del node
        gc.collect()
        assert alive() is not None  # frozen: later collections in the night do not walk it
    gc.collect()
    assert alive() is None  # the night is over: unfrozen and collected
    assert gc.get_freeze_count() == 0
