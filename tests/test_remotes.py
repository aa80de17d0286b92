"""DVC remotes beyond a local directory: S3, for real, against an S3 API server (moto's server mode) on 127.0.0.1,
started and stopped by its PID. `poisongate init --remote s3://...`, three nights through the CLI, then a fresh
clone elsewhere rolls back by pulling from the bucket, byte for byte."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from poisongate.store import versioning

BIN = Path(sys.executable).parent
pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture
def s3_server(tmp_path):
    """moto's S3 server on a free 127.0.0.1 port; the environment every process of the test gets (fake
    credentials, AWS_ENDPOINT_URL, which botocore and so DVC's s3fs honour) with a bucket made."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([BIN / "moto_server", "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    env = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
           "PREFECT_HOME": str(tmp_path / "prefect"), "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    try:
        for _ in range(100):
            try:
                bucket(env).create_bucket(Bucket="nightly")
                break
            except Exception:  # not listening yet
                time.sleep(0.1)
        yield env
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)


def bucket(env):
    import boto3

    return boto3.client("s3", endpoint_url=env["AWS_ENDPOINT_URL"], aws_access_key_id="testing",
                        aws_secret_access_key="testing", region_name="us-east-1")


def cli(env, *args, cwd=None):
    return subprocess.run([BIN / "poisongate", *map(str, args)], env=env, cwd=cwd, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=900)


def test_three_nights_on_an_s3_remote_then_a_fresh_clone_rolls_back_from_it(tmp_path, s3_server):
    env = s3_server
    ws = tmp_path / "ws"
    assert cli(env, "init", ws, "--remote", "s3://nightly/poisongate").returncode == 0
    assert "url = s3://nightly/poisongate" in (ws / ".dvc" / "config").read_text()
    lighter = ws / "params.yaml"  # three nights in CI time: fewer epochs, same gates
    lighter.write_text(lighter.read_text().replace("  epochs: 40\n", "  epochs: 10\n", 1))
    for night in range(3):
        proc = cli(env, "--workspace", ws, "run")
        assert proc.returncode == 0, (night, proc.stdout[-1500:], proc.stderr[-1500:])
    rows = [json.loads(line) for line in cli(env, "--workspace", ws, "history", "--json").stdout.splitlines()]
    assert [r["decision"] for r in rows] == ["promoted"] * 3

    keys = [o["Key"] for o in bucket(env).list_objects_v2(Bucket="nightly", Prefix="poisongate/")["Contents"]]
    assert len(keys) > 10  # datasets, models, stores of three nights

    clone = tmp_path / "elsewhere" / "clone"  # nothing but git and the bucket
    subprocess.run(["git", "clone", "-q", ws, clone], check=True)
    back = cli(env, "--workspace", clone, "rollback", "--to", rows[1]["run_id"])
    assert back.returncode == 0, back.stderr
    assert versioning.content_md5(clone / "data" / "training.parquet") == rows[1]["dataset_md5"]
    assert json.loads((clone / "registry" / "champion.json").read_text())["run_id"] == rows[1]["run_id"]
    original = subprocess.run(["git", "show", f"{rows[1]['commit']}:data/training.parquet.dvc"], cwd=ws,
                              capture_output=True, text=True, check=True).stdout
    assert rows[1]["dataset_md5"] in original  # the md5 git recorded that night: byte for byte the same file
