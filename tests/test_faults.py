"""The machine's faults and broken state, through the real CLI: a broken champion (checkpoint or pointer), a full
disk, a read-only workspace. Each ends in one line naming the file and the fix, exit status 1, no traceback
(unless --debug), the champion unchanged, the batch's quarantine kept, and a rerun after the fix completes."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from poisongate.errors import PoisongateError
from poisongate.store.registry import champion_id
from poisongate.workspace import Workspace


def cli(ws: Workspace, prefect_home: Path, *args: str) -> tuple[int, str]:
    proc = subprocess.run(["poisongate", "--workspace", str(ws.root), *args], capture_output=True, text=True,
                          env={**os.environ, "PREFECT_HOME": str(prefect_home)}, timeout=900)
    return proc.returncode, proc.stdout + proc.stderr


def one_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.startswith("poisongate:")]
    assert len(lines) == 1 and "Traceback" not in output, output[-3000:]
    return lines[0]


def test_a_champion_pointer_that_is_not_json_is_one_line_naming_the_repair(tmp_path):
    ws = Workspace(tmp_path)
    ws.registry.mkdir(parents=True)
    (ws.registry / "champion.json").write_text("{not json")
    with pytest.raises(PoisongateError, match=r"champion\.json: not a valid champion pointer .*dvc checkout registry"):
        champion_id(ws)
    (ws.registry / "champion.json").write_text(json.dumps({"run_id": "20260101T000000000000Z"}))
    with pytest.raises(PoisongateError, match=r"checkpoint is missing"):
        champion_id(ws)
    assert champion_id(ws, strict=False) is None  # the record step still finishes


@pytest.mark.slow
@pytest.mark.integration
def test_a_corrupt_champion_checkpoint_keeps_the_quarantine_and_dvc_checkout_repairs_it(make_workspace, tmp_path):
    ws, home = make_workspace(), tmp_path / "prefect"
    rc, out = cli(ws, home, "run")
    assert rc == 0, out[-3000:]
    champion = champion_id(ws)
    for f in (ws.registry / champion / "checkpoint").rglob("*"):
        if f.is_file():
            f.write_bytes(b"\0garbage")
    rc, out = cli(ws, home, "run", "--simulate", "label_flip", "--rate", "0.3")
    line = one_line(out)
    assert rc == 1 and "checkpoint cannot be restored" in line and "`dvc checkout registry`" in line, line
    assert champion_id(ws) == champion
    runs = sorted(ws.runs.glob("*.json"))
    report = json.loads(runs[-1].read_text())
    assert report["stages"]["error"]["stage"] == "promote"
    kept = ws.quarantine_store / f"{report['run_id']}.parquet"
    assert kept.exists() and report["stages"]["filter"]["quarantined"] > 0  # the flipped rows are archived

    repair = subprocess.run(["dvc", "checkout", "--force", "registry"], cwd=ws.root, capture_output=True, text=True)
    assert repair.returncode == 0, repair.stderr
    rc, out = cli(ws, home, "run")
    assert rc == 0 and champion_id(ws) != champion, out[-3000:]


def mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir()
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


@pytest.mark.slow
@pytest.mark.integration
def test_read_only_workspace_and_full_disk_are_one_line_and_a_rerun_completes(tmp_path):
    mount = tmp_path / "disk"
    if not mount_tmpfs(mount, "200m"):
        pytest.skip("mounting a tmpfs needs root: the read-only and full-disk faults cannot be made here")
    try:
        from poisongate.store import versioning

        ws = Workspace(mount / "ws")
        versioning.init(ws, remote=str(tmp_path / "remote"))
        home = tmp_path / "prefect"

        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        rc, out = cli(ws, home, "run")
        line = one_line(out)
        assert rc == 1 and "Read-only file system" in line and "read-write" in line, line
        subprocess.run(["mount", "-o", "remount,rw", str(mount)], check=True)

        filler = mount / "filler"
        subprocess.run(["dd", "if=/dev/zero", f"of={filler}", "bs=1M"], capture_output=True)  # until the disk is full
        rc, out = cli(ws, home, "run")
        line = one_line(out)
        assert rc == 1 and "No space left on device" in line and "free disk space" in line, line
        assert champion_id(ws) is None and not ws.clean.exists() and not ws.training.with_suffix(".tmp").exists()

        filler.unlink()
        rc, out = cli(ws, home, "run")
        assert rc == 0 and champion_id(ws) is not None, out[-3000:]
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_rollback_keeps_what_no_dvc_version_holds(make_workspace):
    """A run killed between archiving its quarantine and `dvc add` leaves files only the workspace has; the forced
    checkout of a rollback would delete them. They are kept aside, byte for byte."""
    from poisongate.store import versioning
    from poisongate.store.rollback import ASIDE, checkout, kept_aside

    ws = make_workspace()
    (ws.quarantine_store / "recorded.parquet").write_bytes(b"versioned")
    versioning.record(ws, [])
    orphan = ws.quarantine_store / "killed-run.parquet"
    orphan.write_bytes(b"rows of a run killed before it was recorded")
    with kept_aside(ws, versioning.STORES) as aside:
        checkout(ws, *versioning.STORES)
    assert not orphan.exists() and (ws.quarantine_store / "recorded.parquet").read_bytes() == b"versioned"
    assert len(aside) == 1 and aside[0].read_bytes() == b"rows of a run killed before it was recorded"
    assert aside[0].is_relative_to(ws.path(ASIDE)) and aside[0].name == orphan.name


def test_a_run_that_was_never_recorded_shows_in_history_as_crashed(make_workspace):
    from poisongate.store import history, record

    ws = make_workspace()
    record.mark_started(ws, "20261201T020000000000Z")  # killed before anything else
    (ws.quarantine_store / "20261202T020000000000Z.parquet").write_bytes(b"rows")  # killed inside `record`
    rows = history.history(ws)
    assert [(r["run_id"], r["decision"]) for r in rows] == [("20261201T020000000000Z", "crashed"),
                                                            ("20261202T020000000000Z", "crashed")]
    assert rows[1]["verdict"].endswith("it left quarantine") and not rows[0]["promoted"]
    assert "crashed" in history.table(rows, None)
    record.mark_started(ws, "20261201T020000000000Z", started=False)
    assert [r["run_id"] for r in history.history(ws)] == ["20261202T020000000000Z"]
