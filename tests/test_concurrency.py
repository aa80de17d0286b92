"""Two runs on one workspace: the second waits for the workspace lock or fails with one line; nothing interleaves."""
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC

import pytest
from conftest import ROOT, set_params

from poisongate import config as configuration
from poisongate.errors import PoisongateError
from poisongate.store.lock import workspace_lock
from poisongate.workspace import Workspace, run_time

HOLDER = """
import sys, time
from poisongate.workspace import Workspace
from poisongate.store.lock import hold
lock = hold(Workspace(sys.argv[1]), 10)
print("held", flush=True)
time.sleep(float(sys.argv[2]))
lock.release()
"""


@pytest.fixture
def ws(tmp_path):
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    return Workspace(tmp_path)


def start_holder(ws, seconds: float) -> subprocess.Popen:
    """Another process holding the workspace lock for `seconds`."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(ws.root), str(seconds)], stdout=subprocess.PIPE,
                            text=True, cwd=ROOT)
    assert proc.stdout.readline().strip() == "held"
    return proc


def stamped_run(workspace: str) -> float:
    """A run as the flows take the workspace: the lock, waiting up to data.lock_timeout_s."""
    ws = Workspace(workspace)
    with workspace_lock(ws, configuration.load(ws.params).data.lock_timeout_s):
        return time.monotonic()


def test_second_run_waits_for_the_first(ws):
    holder = start_holder(ws, 1.5)
    asked = time.monotonic()
    started = stamped_run(str(ws.root))
    assert started - asked >= 1.0 and holder.wait(timeout=10) == 0  # it ran only once the holder let go


def test_second_run_gives_up_after_the_timeout_with_one_line(ws):
    set_params(ws, {"data": {"lock_timeout_s": 0.3}})
    holder = start_holder(ws, 5)
    try:
        with pytest.raises(PoisongateError) as err:
            stamped_run(str(ws.root))
        message = str(err.value)
        assert (".poisongate.lock: another poisongate run" in message and "data.lock_timeout_s" in message
                and "\n" not in message)
    finally:
        holder.kill()
        holder.wait()


def test_a_killed_run_releases_the_lock_and_its_leftovers_are_cleared(ws):
    holder = start_holder(ws, 60)
    (ws.root / "data").mkdir()
    half_written = [ws.path("data", ".clean.parquet.x1.tmp"), ws.path("reports", ".train.json.x2.tmp")]
    for path in half_written:
        path.parent.mkdir(exist_ok=True)
        path.write_text("partial")
    staging = ws.path("registry", ".20260101T000000Z.tmp")
    staging.mkdir(parents=True)
    ws.path("data", "clean.parquet").write_text("complete")
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    set_params(ws, {"data": {"lock_timeout_s": 2}})
    stamped_run(str(ws.root))  # does not wait for the dead holder
    assert not any(p.exists() for p in [*half_written, staging])
    assert ws.path("data", "clean.parquet").read_text() == "complete"


@pytest.mark.slow
@pytest.mark.integration
def test_two_cli_runs_at_once_do_not_interleave(make_workspace, tmp_path):
    ws = make_workspace()
    logs = [open(tmp_path / f"run{b}.log", "w+") for b in (0, 1)]
    # Each its own Prefect home: two fresh Prefect databases migrating in one home time out (not our lock).
    runs = [subprocess.Popen(["poisongate", "--workspace", str(ws.root), "run", "--batch", str(b)], stdout=logs[b],
                             stderr=subprocess.STDOUT,
                             env={**os.environ, "PREFECT_HOME": str(tmp_path / f"prefect{b}")})
            for b in (0, 1)]
    codes = [p.wait(timeout=600) for p in runs]
    outputs = [(f.seek(0), f.read())[1] for f in logs]
    started = sorted(run_time(p.stem).replace(tzinfo=UTC).timestamp()
                     for p in ws.runs.glob("*.json"))  # run ids are the times the runs started
    log = subprocess.run(["git", "log", "--reverse", "--format=%ct %s"], cwd=ws.root, capture_output=True, text=True)
    runs_committed = [line for line in log.stdout.splitlines() if " poisongate run " in line]
    committed = [int(line.split()[0]) for line in runs_committed]
    assert len(started) == len(committed) == 2, [out[-3000:] for out in outputs]
    # Whichever run took the lock first promotes. The second competes with that champion: with the other batch
    # its candidate may be the worse one, and the promotion gate refusing it (exit 1, its one-line verdict) is
    # the product working, not a crash.
    assert runs_committed[0].endswith("candidate promoted to champion")
    for code, out in zip(codes, outputs):
        assert code == 0 or (code == 1 and "\npoisongate: model refused: " in out), out[-3000:]
    assert codes.count(0) >= 1
    assert started[1] >= committed[0]  # the second run began only after the first had committed everything
    assert subprocess.run(["git", "status", "--porcelain"], cwd=ws.root, capture_output=True, text=True).stdout == ""
