"""Every kind of bad incoming batch ends in one line naming the file, the place and the fix; nothing
reaches clean data or the champion; a batch that can be read at all is kept, whole, for quarantine."""
import hashlib
import json
import os
import re
import subprocess

import pandas as pd
import pytest
from bad_inputs import CORPUS, FEATURE, MAX_BYTES, MAX_ROWS
from conftest import set_params

from poisongate.data_gate import build_suite, validate_frame
from poisongate.errors import PoisongateError, one_line
from poisongate.schema import schema_from_reference
from poisongate.store.record import verdict
from poisongate.store.registry import champion_id
from poisongate.tables import write_table
from poisongate.workspace import Workspace
from tasks import ingest
from tasks import reference as reference_stage

WHERE = re.compile(r"row \d+|column '|column|rows|bytes|cannot be read|no such file|unknown format|array|member|"
                   r"symbolic link|directory|FIFO")


@pytest.fixture(scope="module")
def ingest_ws(tmp_path_factory, digits):
    """A workspace with only what ingest reads: the trusted reference."""
    ws = Workspace(tmp_path_factory.mktemp("ingest"))
    write_table(digits["frames"][0], ws.reference)
    return ws


def ingest_params(config, source, **data):
    """The batch at `source` as the incoming file; the trusted files' paths are the reference stage's (not read
    by ingest, which reads data/reference.parquet), but a source of one's own needs them set."""
    trusted = {"reference": "reference.csv", "holdout": "holdout.csv"}
    return config.replace("data", **{**trusted, "source": str(source), "max_bytes": MAX_BYTES, "max_rows": MAX_ROWS,
                                     **data})


def assert_one_line(message: str, path) -> None:
    assert "\n" not in message and one_line(str(path)) in message, message
    assert WHERE.search(message) and ";" in message, message  # a place, then the fix


@pytest.mark.parametrize("kind", list(CORPUS))
def test_every_bad_input_is_refused_with_one_line(kind, ingest_ws, config, digits, tmp_path):
    expected, make = CORPUS[kind]
    good = digits["frames"][2][1]
    path = make(good, tmp_path)
    ingest_ws.incoming.unlink(missing_ok=True)
    run = ingest_params(config, path)
    if expected == "unreadable":
        with pytest.raises(PoisongateError) as err:
            ingest.run(ingest_ws, run)
        assert_one_line(str(err.value), path)
        assert not ingest_ws.incoming.exists()
        return
    summary = ingest.run(ingest_ws, run)
    kept = pd.read_parquet(ingest_ws.incoming)  # what the record stage moves to quarantine
    if expected == "refused":
        assert summary["passed"] is False
        assert_one_line(summary["reason"], path)
        passed, line = verdict({"ingest": summary})
        assert not passed and "\n" not in line
    else:  # the data gate's to refuse, or valid after all
        assert summary["passed"] is True, summary.get("reason")
        reference = digits["frames"][0]
        suite = build_suite(reference, schema_from_reference(reference, config.data, "ref"), config.validation,
                            config.data.min_rows, len(kept))
        gate = validate_frame(kept, suite)
        assert gate["passed"] is (expected == "accepted"), gate["failed"]
        if expected == "accepted":
            assert kept["id"].dtype == "int64" and kept["id"].tolist() == good["id"].tolist()  # exactly, as int64
            assert kept[FEATURE].tolist() == good[FEATURE].tolist()
            return
        passed, line = verdict({"ingest": summary, "validate": gate})
        assert not passed and "\n" not in line and str(path) in line
        if kind == "a saved row index column":
            assert "unexpected 'Unnamed: 0' (a saved row index" in line, line
    assert len(kept) == summary["rows"] and not ingest_ws.clean.exists()


def test_corpus_covers_at_least_30_kinds():
    assert len(CORPUS) >= 30 and {e for e, _ in CORPUS.values()} == {"unreadable", "refused", "data_gate", "accepted"}


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_pinned_source_is_refused_before_parsing_when_it_changed(ingest_ws, config, digits, tmp_path):
    good = digits["frames"][2][1]
    path = tmp_path / "batch.csv"
    good.to_csv(path, index=False)
    pin = sha256(path)
    assert ingest.run(ingest_ws, ingest_params(config, path, sha256={"source": pin}))["passed"]

    tampered = good.copy()
    tampered.loc[tampered.index[0], "label"] = (tampered["label"].iloc[0] + 1) % 10  # one flipped label in transit
    tampered.to_csv(path, index=False)
    ingest_ws.incoming.unlink()
    with pytest.raises(PoisongateError, match=r"batch\.csv: SHA-256 .* does not match .* pinned in params\.yaml"):
        ingest.run(ingest_ws, ingest_params(config, path, sha256={"source": pin}))
    assert not ingest_ws.incoming.exists()  # refused before anything was parsed or written

    (tmp_path / "batch.csv.sha256").write_text(f"{pin}  batch.csv\n")  # sha256sum's format
    with pytest.raises(PoisongateError, match=r"pinned in .*batch\.csv\.sha256"):
        ingest.run(ingest_ws, ingest_params(config, path))
    (tmp_path / "batch.csv.sha256").write_text("not-a-hash\n")
    with pytest.raises(PoisongateError, match=r"not a SHA-256"):
        ingest.run(ingest_ws, ingest_params(config, path))
    (tmp_path / "batch.csv.sha256").write_text(sha256(path) + "\n")
    assert ingest.run(ingest_ws, ingest_params(config, path))["passed"]


def run_cli(ws, prefect_home):
    proc = subprocess.run(["poisongate", "--workspace", str(ws.root), "run"], capture_output=True, text=True,
                          env={**os.environ, "PREFECT_HOME": str(prefect_home)}, timeout=600)
    return proc.returncode, [line for line in proc.stderr.splitlines() if line.startswith("poisongate:")]


@pytest.mark.slow
@pytest.mark.integration
def test_cli_refuses_bad_batches_and_tampered_sources(make_workspace, digits, tmp_path):
    """`poisongate run` as a user runs it: exit 1, one line, no clean data, no champion, readable batches
    quarantined."""
    reference, holdout, batches = digits["frames"]
    files = tmp_path / "files"
    files.mkdir()
    reference.to_csv(files / "reference.csv", index=False)
    holdout.to_csv(files / "holdout.csv", index=False)
    ws = make_workspace()
    set_params(ws, {"data": {"reference": str(files / "reference.csv"), "holdout": str(files / "holdout.csv"),
                             "sha256": {"reference": sha256(files / "reference.csv")}}})
    for kind in ("text in a numeric column", "truncated Parquet", "extra feature column"):
        expected, make = CORPUS[kind]
        path = make(batches[1], files)
        set_params(ws, {"data": {"source": str(path), "max_bytes": MAX_BYTES}})
        rc, lines = run_cli(ws, tmp_path / "prefect")
        assert rc == 1 and len(lines) == 1 and str(path) in lines[0], (kind, lines)
        assert not ws.clean.exists() and champion_id(ws) is None
        kept = sorted(ws.quarantine_store.glob("*.parquet"))
        if expected != "unreadable":
            assert pd.read_parquet(kept[-1])["id"].tolist() == batches[1]["id"].tolist(), kind  # kept whole

    trusted = (files / "reference.csv").read_text()
    (files / "reference.csv").write_text(trusted + trusted.splitlines()[-1] + "\n")  # one row slipped in, in transit
    set_params(ws, {"data": {"source": str(files / "good.csv")}})
    batches[1].to_csv(files / "good.csv", index=False)
    rc, lines = run_cli(ws, tmp_path / "prefect")
    assert rc == 1 and len(lines) == 1 and "reference.csv: SHA-256" in lines[0], lines
    assert not ws.clean.exists() and champion_id(ws) is None
    runs = [json.loads(p.read_text()) for p in ws.runs.glob("*.json")]
    assert len(runs) == 2  # the two readable batches were recorded; unreadable or tampered files raise before record


@pytest.mark.parametrize("kind", ["NaN in a feature", "text in a numeric column", "missing feature column",
                                  "label outside the known classes"])
def test_broken_trusted_files_are_refused_with_one_line(kind, config, digits, tmp_path):
    reference, holdout, _ = digits["frames"]
    good_reference = tmp_path / "reference.csv"
    reference.to_csv(good_reference, index=False)
    broken = CORPUS[kind][1](holdout, tmp_path)
    ws = Workspace(tmp_path / "ws")
    run = ingest_params(config, "batch.csv", reference=str(good_reference), holdout=str(broken))
    with pytest.raises(PoisongateError) as err:
        reference_stage.run(ws, run)
    assert_one_line(str(err.value), broken)
    assert not ws.reference.exists() and not ws.holdout.exists()


def test_a_holdout_missing_a_class_is_named(config, digits, tmp_path):
    reference, holdout, _ = digits["frames"]
    reference.to_csv(tmp_path / "reference.csv", index=False)
    holdout[holdout["label"] != 7].to_csv(tmp_path / "holdout.csv", index=False)
    run = ingest_params(config, "batch.csv", reference=str(tmp_path / "reference.csv"),
                        holdout=str(tmp_path / "holdout.csv"))
    with pytest.raises(PoisongateError, match=r"holdout\.csv: class 7 of the reference has no row in the holdout"):
        reference_stage.run(Workspace(tmp_path / "ws"), run)


def test_ids_of_the_reference_or_the_holdout_are_not_new(digits):
    from poisongate import training_set

    reference, holdout, batches = digits["frames"]
    schema = digits["schema"]
    training = training_set.start(reference, schema, "reference.csv", "")
    ids = [reference["id"].iloc[0], holdout["id"].iloc[0], batches[0]["id"].iloc[0]]
    owners = training_set.first_runs(training, pd.Series(ids).to_numpy(), schema, holdout)
    assert owners.tolist() == [training_set.REFERENCE, training_set.HOLDOUT, None]
    assert training_set.owner(owners[1]) == "in the golden holdout"
