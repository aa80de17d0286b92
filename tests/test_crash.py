"""Crash safety: `poisongate run` is SIGKILLed at every stage in turn; after each kill nothing partial is
visible and the champion is unchanged until a complete promotion; the next run cleans up and completes."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

# A kill lands just after its marker is written, i.e. inside the stage (or step) that follows it.
KILL_AFTER = {
    "reference": "reports/reference.json", "ingest": "reports/ingest.json", "expectations": "reports/expectations.json",
    "validate": "reports/validate.json", "filter": "reports/filter.json", "campaign": "reports/campaign.json",
    "train": "reports/train.json",
    "crossval": "reports/crossval.json", "promote": "reports/promote.json", "record: archive": "quarantine/*.parquet",
    "record: report written, git/DVC commit": "runs/*.md",
}


def start_run(root: Path, env: dict, *args: str) -> subprocess.Popen:
    # Its own session, so that the kill reaches the Prefect API server it starts as well. Output to a file:
    # Prefect logs more than a pipe holds.
    log = open(root.parent / "runs.log", "a")
    return subprocess.Popen(["poisongate", "--workspace", str(root), "run", *args], env=env, start_new_session=True,
                            stdout=log, stderr=subprocess.STDOUT)


def kill_after(proc: subprocess.Popen, root: Path, marker: str, since: float, timeout: float = 300) -> bool:
    """SIGKILL the run (its whole process group) as soon as `marker` is (re)written; False if it ended first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if any(p.stat().st_mtime >= since for p in root.glob(marker)):
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.01)
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return False


def visible_state(root: Path) -> dict:
    """Check that every visible artefact is complete; return the champion pointer."""
    for path in (root / "data").glob("*.parquet"):
        pq.read_table(path)  # raises on a partial file
    for entry in (root / "registry").iterdir():
        if entry.is_dir() and not entry.name.startswith("."):  # `.<run>.tmp` is staging, never read
            json.loads((entry / "decision.json").read_text())  # an entry appears complete or not at all
            assert (entry / "checkpoint").is_dir()
    pointer = root / "registry" / "champion.json"
    champion = json.loads(pointer.read_text()) if pointer.exists() else None
    champion = champion if champion and champion["run_id"] else None  # a new workspace points at no champion
    if champion:
        decision = json.loads((root / "registry" / champion["run_id"] / "decision.json").read_text())
        assert decision["passed"], champion  # the champion is always a complete, promoted entry
    return champion


def rows_lost(root: Path) -> int:
    """Rows of the last incoming batch that are in neither the clean dataset (training set + tonight) nor the
    quarantine."""
    before = json.loads((root / "reports/filter.json").read_text())["training_rows_before"]
    incoming = pq.read_table(root / "data/incoming.parquet")
    clean, quarantined = pq.read_table(root / "data/clean.parquet"), pq.read_table(root / "data/quarantine.parquet")
    return incoming.num_rows - (clean.num_rows - before) - quarantined.num_rows


def crash_campaign(root: Path, env: dict) -> dict:
    """One killed run per entry of KILL_AFTER, each a rerun of the one killed before it, then a rerun that must
    complete. The first runs have no champion yet: it must stay absent until a complete promotion."""
    before = visible_state(root)
    faults = []
    for point, marker in KILL_AFTER.items():
        since = time.time()
        killed = kill_after(start_run(root, env), root, marker, since)
        champion = visible_state(root)
        faults.append({"point": point, "killed": killed, "champion_unchanged": champion == before})
        assert killed, point
        before = champion  # a kill after the pointer was replaced leaves the new, complete champion
    final = start_run(root, env)
    final.wait()
    status = subprocess.run(["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True).stdout
    return {"faults": faults, "rerun_exit": final.returncode,
            "rerun_log": (root.parent / "runs.log").read_text()[-2000:],
            "git_clean": status == "", "rows_lost": rows_lost(root),
            "leftovers": [str(p) for p in root.rglob("*.tmp") if ".git" not in p.parts and ".dvc" not in p.parts],
            "champion": visible_state(root)}


@pytest.mark.slow
@pytest.mark.integration
def test_kill_at_every_stage_then_rerun_completes(make_workspace, tmp_path):
    ws = make_workspace()
    result = crash_campaign(ws.root, {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect")})
    assert result["rerun_exit"] == 0, result["rerun_log"]
    assert result["champion"] is not None  # the rerun promoted a complete candidate
    assert result["git_clean"] and result["rows_lost"] == 0 and result["leftovers"] == []
    assert json.loads(subprocess.run(["dvc", "status", "--cloud", "--json"], cwd=ws.root, capture_output=True,
                                     text=True).stdout) == {}  # everything of the completed run is pushed
    before_promotion = [f for f in result["faults"]
                        if list(KILL_AFTER).index(f["point"]) < list(KILL_AFTER).index("promote")]
    assert len(before_promotion) == 8 and all(f["champion_unchanged"] for f in before_promotion)
