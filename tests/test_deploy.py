"""The deployments as ops run them: a real `prefect server start` and process worker on 127.0.0.1, a
temporary PREFECT_HOME, `prefect deploy --all` from prefect.yaml, `prefect deployment run 'retrain/nightly'`."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PREFECT = str(Path(sys.executable).parent / "prefect")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(args, cwd, env, log: Path) -> subprocess.Popen:
    # Its own session: the worker's flow-run subprocesses can then be stopped with it, by its PID's group.
    return subprocess.Popen(args, cwd=cwd, env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT,
                            start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    """SIGINT, then SIGTERM, then SIGKILL to the process group we started (a worker may ignore SIGTERM)."""
    for sig, wait in ((signal.SIGINT, 30), (signal.SIGTERM, 10), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


def test_nightly_deployment_runs_on_a_real_server_and_process_worker(make_workspace, tmp_path):
    ws = make_workspace()  # as `poisongate init` writes it: prefect.yaml's flows at this checkout
    params = ws.root / "params.yaml"  # three nights in CI time: fewer epochs, same gates
    params.write_text(params.read_text().replace("  epochs: 40\n", "  epochs: 10\n", 1))
    port = free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect-home"), "PREFECT_API_URL": api,
           "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "DVC_NO_ANALYTICS": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}

    def prefect(*args, timeout=120):
        proc = subprocess.run([PREFECT, *args], cwd=ws.root, env=env, capture_output=True, text=True, timeout=timeout)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    started = []
    try:
        server = start([PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)], ws.root, env,
                       tmp_path / "server.log")
        started.append(server)
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{api}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and server.poll() is None, (tmp_path / "server.log").read_text()
            time.sleep(1)

        prefect("work-pool", "create", "local-pool", "--type", "process")
        out = prefect("--no-prompt", "deploy", "--all")
        assert "retrain/nightly" in out and "rollback/on-demand" in out
        nightly = httpx.get(f"{api}/deployments/name/retrain/nightly").json()
        assert [s["schedule"]["cron"] for s in nightly["schedules"]] == ["0 2 * * *"]
        assert nightly["pull_steps"] == [
            {"prefect.deployments.steps.set_working_directory": {"directory": str(ws.root)}}]

        started.append(start([PREFECT, "worker", "start", "--pool", "local-pool"], ws.root, env,
                             tmp_path / "worker.log"))
        for _ in range(3):  # each run of the deployment takes the next batch of the feed: three nights
            out = prefect("deployment", "run", "retrain/nightly", "--watch", timeout=540)
            assert "Completed" in out, out

        runs = httpx.post(f"{api}/flow_runs/filter", json={"deployments": {"id": {"any_": [nightly["id"]]}}}).json()
        assert [r["state_type"] for r in runs if r["state_type"] != "SCHEDULED"] == ["COMPLETED"] * 3
        nightly_starts = [r["expected_start_time"] for r in runs if r["state_type"] == "SCHEDULED"]
        assert nightly_starts and all("T02:00:00" in t for t in nightly_starts)  # the cron schedule makes runs
        report = json.loads(max(ws.runs.glob("*.json")).read_text())
        assert report["verdict"] == "candidate promoted to champion"
        assert json.loads((ws.registry / "champion.json").read_text())["run_id"] == report["run_id"]
        history = [json.loads(line) for line in subprocess.run(
            [Path(sys.executable).parent / "poisongate", "--workspace", ws.root, "history", "--json"], env=env,
            capture_output=True, text=True, check=True).stdout.splitlines()]
        assert [r["source"] for r in history] == ["digits batch 0", "digits batch 1", "digits batch 2"]
        status = subprocess.run([Path(sys.executable).parent / "poisongate", "--workspace", ws.root, "status"],
                                env=env, capture_output=True, text=True, check=True).stdout
        assert "next run of retrain/nightly: " in status and " 02:00 " in status, status
    finally:
        for proc in reversed(started):
            stop(proc)
    assert all(proc.poll() is not None for proc in started)
