"""The real flow, end to end: ephemeral Prefect, real GX, real git + DVC with a local remote, real Orbax."""
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import set_params

from flows.retrain import retrain
from poisongate import STAGES
from poisongate import config as configuration
from poisongate.store import versioning

pytestmark = pytest.mark.integration

DATASETS = ["data/reference.parquet", "data/holdout.parquet", "data/incoming.parquet", "data/clean.parquet",
            "data/quarantine.parquet", "models/candidate", "quarantine", "registry"]


def latest_report(ws):
    return json.loads(max(ws.runs.glob("*.json")).read_text())


def champion(ws):
    pointer = json.loads((ws.registry / "champion.json").read_text())
    return pointer if pointer["run_id"] else None


def assert_everything_versioned_and_pushed(ws):
    assert versioning.run(ws, "git", "status", "--porcelain").strip() == ""  # every artefact committed
    assert json.loads(versioning.run(ws, "dvc", "status", "--cloud", "--json")) == {}  # and pushed


def test_clean_batch_promoted_then_flipped_batch_filtered_and_no_worse_model_promoted(make_workspace, prefect_harness):
    ws = make_workspace()
    params = (ws.root / "params.yaml").read_bytes()
    first = retrain(workspace=str(ws.root))
    assert first["passed"] and first["verdict"] == "candidate promoted to champion"
    report = latest_report(ws)
    assert set(DATASETS) <= set(report["dvc_hashes"])
    lock = yaml.safe_load((ws.root / "dvc.lock").read_text())["stages"]
    assert set(lock) == {"reference", "expectations", "ingest", "validate", "filter", "campaign", "train", "audit",
                         "crossval", "promote"}
    audit = report["stages"]["audit"]
    assert audit["rows_judged"] == report["stages"]["filter"]["rows"] - report["stages"]["filter"]["quarantined"]
    assert audit["checkpoints"][-1] == report["stages"]["train"]["epochs"] and audit["trusted_rows"] > 0
    assert {"reports/plots/batch_tsne.png", "reports/plots/influence.png"} <= set(report["plots"])
    assert "reports/plots/influence.png" in (ws.runs / f"{report['run_id']}.md").read_text()
    assert report["stages"]["promote"]["outputs"]["holdout"]["agreement"] > 0.9
    assert_everything_versioned_and_pushed(ws)
    first_champion = champion(ws)
    assert first_champion["run_id"] == report["run_id"]
    assert (ws.registry / report["run_id"] / "checkpoint").is_dir()
    assert len(report["stages"]["crossval"]["fold_accuracy"]) == 5
    peaks = [s["process_peak_rss_mb"] for s in report["stages"].values() if "process_peak_rss_mb" in s]
    assert len(peaks) == 10 and peaks == sorted(peaks) and peaks[0] > 100  # every stage; the process's peak so far

    from prefect.artifacts import Artifact

    artifact = Artifact.get("poisongate-run-report")
    assert artifact is not None and report["run_id"] in artifact.data

    state = retrain(workspace=str(ws.root), attack="label_flip", rate=0.3, return_state=True)
    report = latest_report(ws)
    assert (ws.root / "params.yaml").read_bytes() == params  # run options go to the report, not the user's file
    assert report["run_options"] == {"simulate": {"attack": "label_flip", "rate": 0.3}}
    detection = report["detection"]
    assert detection["poisoned"] == round(0.3 * report["stages"]["ingest"]["rows"])
    assert detection["recall"] >= 0.8, detection  # most flipped rows quarantined
    quarantined = pd.read_parquet(ws.quarantine_store / f"{report['run_id']}.parquet")
    audit = report["stages"]["audit"]
    after_training = audit["flagged"] if audit["retrained"] else 0
    assert len(quarantined) == report["stages"]["filter"]["quarantined"] + after_training
    assert quarantined["quarantine_reason"].str.len().gt(0).all()
    promotion = report["stages"]["promote"]
    if promotion["passed"]:
        assert state.is_completed()
        # not significantly worse (exact McNemar) and within the practical margin
        margin = configuration.load(ws.params).promote.max_accuracy_drop
        assert promotion["candidate"]["accuracy"] >= promotion["champion"]["accuracy"] - margin
    else:
        assert state.is_failed() and "model refused" in state.message
        assert champion(ws) == first_champion  # untouched
        assert json.loads((ws.registry / report["run_id"] / "decision.json").read_text())["passed"] is False
    assert_everything_versioned_and_pushed(ws)
    log = versioning.run(ws, "git", "log", "--format=%s").splitlines()
    assert len(log) == 3 and log[0].startswith(f"poisongate run {report['run_id']}")


def test_user_csv_batch_refused_by_the_data_gate_is_quarantined_whole(make_workspace, prefect_harness, digits,
                                                                      tmp_path):
    reference, holdout, batches = digits["frames"]
    files = tmp_path / "incoming"
    files.mkdir()
    reference.to_csv(files / "reference.csv", index=False)
    holdout.to_csv(files / "holdout.csv", index=False)
    batches[0].to_csv(files / "good.csv", index=False)
    bad = batches[1].assign(injected=1.0)  # an irrelevant feature column the reference does not have
    bad.to_csv(files / "bad.csv", index=False)

    ws = make_workspace()
    set_params(ws, {"data": {"source": str(files / "good.csv"), "reference": str(files / "reference.csv"),
                             "holdout": str(files / "holdout.csv")}})
    assert retrain(workspace=str(ws.root))["passed"]
    clean_md5 = latest_report(ws)["dvc_hashes"]["data/clean.parquet"]
    first_champion = champion(ws)

    set_params(ws, {"data": {"source": str(files / "bad.csv")}})
    state = retrain(workspace=str(ws.root), return_state=True)
    assert state.is_failed()
    assert "batch refused by the data gate" in state.message and "expect_table_columns_to_match_set" in state.message
    report = latest_report(ws)
    assert "filter" not in report["stages"] and "train" not in report["stages"]
    kept = pd.read_parquet(ws.quarantine_store / f"{report['run_id']}.parquet")
    assert kept["id"].tolist() == bad["id"].tolist() and "injected" in kept.columns  # kept whole, as received
    assert champion(ws) == first_champion
    assert report["dvc_hashes"]["data/clean.parquet"] == clean_md5  # no partial or new clean dataset
    assert_everything_versioned_and_pushed(ws)


@pytest.fixture
def webhook(tmp_path):
    """A webhook receiver on 127.0.0.1, its own process, stopped by its PID: (URL, file of received bodies)."""
    out = tmp_path / "webhook"
    out.mkdir()
    proc = subprocess.Popen([sys.executable, Path(__file__).parent / "webhook_receiver.py", out])
    try:
        for _ in range(200):
            if (out / "port").exists():
                break
            time.sleep(0.05)
        yield f"http://127.0.0.1:{(out / 'port').read_text()}/poisongate", out / "received"
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


def test_cli_gate_refusal_exits_non_zero_with_one_line(make_workspace, tmp_path, webhook):
    """`poisongate run` as a user runs it: a refused model is exit status 1 and one line on stderr, one line per
    stage on the console, and an alert to the webhook of params.yaml (Prefect's on_failure hook, its webhook
    block)."""
    ws = make_workspace()
    url, received = webhook
    set_params(ws, {"promote": {"min_accuracy": 1.0, "min_class_recall": 1.0},  # none scores a perfect holdout
                    "alerts": {"webhook": url}})
    env_home = tmp_path / "prefect-home"
    proc = subprocess.run(
        ["poisongate", "--workspace", str(ws.root), "run"], capture_output=True, text=True,
        env={**os.environ, "PREFECT_HOME": str(env_home)}, timeout=600,
    )
    assert proc.returncode == 1
    ours = [line for line in proc.stderr.splitlines() if line.startswith("poisongate:")]
    assert len(ours) == 1 and ours[0].startswith("poisongate: model refused: holdout accuracy >= floor failed")
    assert champion(ws) is None
    # The console: one line per stage (its verdict, key figure, seconds), not Prefect's per-task state lines.
    out = proc.stdout.splitlines()
    for stage in (*STAGES, "record"):
        (line,) = [x for x in out if x.split()[:1] == [stage]]
        assert re.search(r"\(\d+\.\d s\)$", line), line
    assert [x.split()[1] for x in out if x.startswith("promote ")] == ["REFUSED"]
    assert "Finished in state" not in proc.stdout + proc.stderr and "GateRefused" not in proc.stderr
    status = subprocess.run(["poisongate", "--workspace", str(ws.root), "status"], capture_output=True, text=True,
                            check=True, env={k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"})
    assert "champion: none yet" in status.stdout and ": refused-model: model refused: " in status.stdout
    (alert,) = [json.loads(line) for line in received.read_text().splitlines()]
    assert alert["subject"].startswith("poisongate: night refused or failed in ")
    assert "model refused: holdout accuracy >= floor failed" in alert["body"]


@pytest.mark.parametrize("key,written,shown,allowed", [
    ("train.epochs", "1e9", "1000000000.0", "valid integer"),  # a float where a count belongs
    ("train.epochs", "'1e9'", "'1e9'", "valid integer"),  # text where a number belongs
    ("crossval.folds", "1", "1", "greater than or equal to 2"),
    ("filter.false_positive_rate", "2", "2", "less than 1"),
    ("train.batch_size", "0", "0", "greater than or equal to 1"),
    ("validate.range_mostly", "5", "5", "less than or equal to 1"),
    ("alerts.webhook", "ftp://ops.example/hook", "'ftp://ops.example/hook'", "not an http(s) URL"),
])
def test_cli_refuses_a_bad_params_value_with_one_line_and_exit_2_before_any_run(make_workspace, key, written, shown,
                                                                                 allowed):
    ws = make_workspace()
    section, name = key.split(".")
    text = (ws.root / "params.yaml").read_text()
    start = text.index(f"\n{section}:")
    line = re.compile(rf"^(  {name}:) [^#\n]*", re.M).search(text, start)  # the key's line in its section
    (ws.root / "params.yaml").write_text(text[:line.start()] + f"{line.group(1)} {written} " + text[line.end():])
    proc = subprocess.run(["poisongate", "--workspace", str(ws.root), "run"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"poisongate: {ws.root / 'params.yaml'}: {key} = {shown}: ")
    assert allowed in lines[0]
    assert not ws.runs.exists() and not ws.path("data").exists()  # no stage ran, no run recorded


def test_unknown_params_key_is_refused_naming_it(make_workspace):
    ws = make_workspace()
    raw = yaml.safe_load((ws.root / "params.yaml").read_text())
    raw["train"]["epoch"] = 3  # a typo of epochs: silently ignored, it would train 40 epochs
    (ws.root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    proc = subprocess.run(["poisongate", "--workspace", str(ws.root), "run"], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and "train.epoch = 3: Extra inputs are not permitted" in proc.stderr

