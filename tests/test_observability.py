"""What ops see after a real run: Prefect artifacts, PNG plots, and `poisongate history`."""
import json
import os
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from flows.retrain import retrain
from poisongate.reports import md

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
    assert [r["id"] for r in table_rows] == [str(r["id"]) for r in quarantined]
    assert [r["reason"] for r in table_rows] == [md(r["quarantine_reason"]) for r in quarantined]  # escaped
    assert report["run_id"] in Artifact.get("poisongate-run-report").data

    assert report["plots"] == ["reports/plots/loss_curve.png", "reports/plots/confusion.png",
                               "reports/plots/batch_pca.png", "reports/plots/batch_tsne.png",
                               "reports/plots/detector_scores.png", "reports/plots/influence.png"]
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
    # A first run (every report new; dvc.lock's first entries aside): about 10,000 lines before the bulky files left
    assert sum(v for k, v in lines.items() if k != "dvc.lock") < 900, sorted(lines.items(), key=lambda kv: -kv[1])
    assert lines[f"runs/{report['run_id']}.json"] < 40

    history = subprocess.run(["poisongate", "--workspace", str(ws.root), "history", "--json"], capture_output=True,
                             text=True, check=True)
    (row,) = [json.loads(line) for line in history.stdout.splitlines()]
    filt = report["stages"]["filter"]
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ws.root, capture_output=True, text=True).stdout.strip()
    assert row["run_id"] == report["run_id"] and row["commit"] == head
    audit = report["stages"]["audit"]
    after_training = audit["flagged"] if audit["retrained"] else 0  # the audit's quarantine
    assert (row["accepted"], row["quarantined"]) == (filt["rows"] - filt["quarantined"] - after_training,
                                                     filt["quarantined"] + after_training)
    assert row["dataset_md5"] == report["dvc_hashes"]["data/training.parquet"] and row["attack"] == "label_flip"
    assert row["promoted"] == state.is_completed() and row["verdict"] == report["verdict"]
    table_text = subprocess.run(["poisongate", "--workspace", str(ws.root), "history"], capture_output=True, text=True,
                                check=True).stdout
    assert report["run_id"] in table_text and report["verdict"] in table_text



@pytest.fixture(scope="session")
def chromium():
    """Chromium from the system's packages, installed when missing (Debian's `chromium`); skipped with the reason
    where it cannot be installed."""
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if not found and shutil.which("apt-get") and os.geteuid() == 0:
        apt = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        for step in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "chromium"]):
            subprocess.run(step, capture_output=True, env=apt, timeout=900)  # a fresh machine has no package lists
        found = shutil.which("chromium")
    if not found:
        pytest.skip("no Chromium, and it cannot be installed here (needs root and apt-get): the HTML report is "
                    "not rendered in a browser")
    return found


def headless(chromium, page, *args):
    """Run headless Chromium on a file: (its stdout, the page's console messages)."""
    proc = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--enable-logging=stderr",
                           "--v=0", *args, page.as_uri()], capture_output=True, text=True, timeout=120)
    return proc.stdout, [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]


def test_the_html_report_renders_in_a_browser_with_its_verdict_and_no_console_errors(make_workspace, chromium,
                                                                                     prefect_harness):
    """A real run, its page from `poisongate report RUN --html`, loaded in headless Chromium: the script ran
    (data-ready), no console message, the verdict and the quarantine table are there, plots inline; a screenshot
    is kept in test-artifacts/."""
    ws = make_workspace()
    retrain(workspace=str(ws.root), attack="label_flip", rate=0.2, return_state=True)  # rows quarantined
    run_id = max(p.stem for p in ws.runs.glob("*.json"))
    out = subprocess.run(["poisongate", "--workspace", str(ws.root), "report", run_id[:12], "--html"],
                         capture_output=True, text=True, check=True).stdout
    page = ws.path("reports", "html", f"{run_id}.html")
    assert str(page) in out and "reports/html/" in (ws.root / ".gitignore").read_text()
    dom, console = headless(chromium, page, "--dump-dom")
    assert console == [] and 'data-ready="yes"' in dom
    report = json.loads((ws.runs / f"{run_id}.json").read_text())
    assert f"Verdict: {report['verdict'][:40]}" in dom and "Quarantined rows" in dom
    assert dom.count("data:image/png;base64,") == len(report["plots"]) > 0
    artifacts = Path(__file__).resolve().parents[1] / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    shot = artifacts / "html_report.png"
    headless(chromium, page, "--window-size=1200,1800", f"--screenshot={shot}")
    with Image.open(shot) as img:
        assert img.size == (1200, 1800)
