"""What ops see after a real run: Prefect artifacts, PNG plots, and `poisongate history`."""
import json
import subprocess

import pandas as pd
import pytest
from PIL import Image

from flows.retrain import retrain

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_run_publishes_artifacts_plots_and_a_history_row(make_workspace, prefect_harness):
    from prefect.artifacts import Artifact

    ws = make_workspace()
    state = retrain(workspace=str(ws.root), attack="label_flip", rate=0.2, return_state=True)  # refused or not
    report = json.loads(max(ws.runs.glob("*.json")).read_text())
    assert "quarantined_rows" not in report["stages"]["filter"]  # per-row data: in the DVC stores, not git
    quarantined = pd.read_parquet(ws.quarantine_store / f"{report['run_id']}.parquet").to_dict("records")
    assert quarantined

    decision = Artifact.get("poisongate-promotion-decision")
    rows = json.loads(decision.data) if isinstance(decision.data, str) else decision.data
    assert [r["check"] for r in rows] == [c["check"] for c in report["stages"]["promote"]["checks"]]
    assert all({"value", "threshold", "passed"} <= set(r) for r in rows)
    table = Artifact.get("poisongate-quarantined-rows")
    table_rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    assert [r["id"] for r in table_rows] == [r["id"] for r in quarantined]
    assert [r["reason"] for r in table_rows] == [r["quarantine_reason"] for r in quarantined]
    assert report["run_id"] in Artifact.get("poisongate-run-report").data

    assert report["plots"] == ["reports/plots/loss_curve.png", "reports/plots/confusion.png",
                               "reports/plots/batch_pca.png", "reports/plots/detector_scores.png"]
    for path in report["plots"]:
        with Image.open(ws.root / path) as img:
            assert img.format == "PNG"
    in_git = subprocess.run(["git", "ls-files"], cwd=ws.root, capture_output=True, text=True).stdout.splitlines()
    assert "reports/plots.dvc" in in_git and "reports/data_docs.dvc" in in_git  # bulky files: DVC, not git
    assert not [p for p in in_git if p.startswith(("reports/plots/", "reports/data_docs/"))]
    assert "expectations/suite.json" not in in_git
    added = subprocess.run(["git", "show", "--numstat", "--format=", "HEAD"], cwd=ws.root, capture_output=True,
                           text=True).stdout.splitlines()
    lines = {path: int(n) for n, _, path in (line.split("\t") for line in added) if n != "-"}
    assert sum(v for k, v in lines.items() if k != "dvc.lock") < 600, lines  # dvc.lock: its first entries

    history = subprocess.run(["poisongate", "--workspace", str(ws.root), "history", "--json"], capture_output=True,
                             text=True, check=True)
    (row,) = [json.loads(line) for line in history.stdout.splitlines()]
    filt = report["stages"]["filter"]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ws.root, capture_output=True, text=True).stdout.strip()
    assert row["run_id"] == report["run_id"] and row["commit"] == head
    assert (row["accepted"], row["quarantined"]) == (filt["rows"] - filt["quarantined"], filt["quarantined"])
    assert row["dataset_md5"] == report["dvc_hashes"]["data/training.parquet"] and row["attack"] == "label_flip"
    assert row["promoted"] == state.is_completed() and row["verdict"] == report["verdict"]
    table_text = subprocess.run(["poisongate", "--workspace", str(ws.root), "history"], capture_output=True, text=True,
                                check=True).stdout
    assert report["run_id"] in table_text and report["verdict"] in table_text

