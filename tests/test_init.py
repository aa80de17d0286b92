"""`poisongate init DIR`: a complete workspace for the user's own data in one command (params.yaml with the flags'
settings, dvc.yaml, prefect.yaml, git + DVC with a remote a clone elsewhere resolves); bad flags refused in one
line with nothing written. Real git and DVC, through the CLI."""
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import ROOT

BIN = Path(sys.executable).parent


def cli(*args, cwd=None, check=False):
    proc = subprocess.run([BIN / "poisongate", *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def git(ws, *args):
    return subprocess.run(["git", *args], cwd=ws, capture_output=True, text=True, check=True).stdout


@pytest.fixture
def user_files(tmp_path):
    """The user's own CSVs, with their own column names: 3 classes, 6 features."""
    rng = np.random.default_rng(0)
    files = tmp_path / "my data"  # a space in the path: quoted where it must be
    files.mkdir()
    centers = rng.normal(0, 4, (3, 6))

    def table(rows, start):
        kind = rng.integers(0, 3, rows)
        X = centers[kind] + rng.normal(0, 1, (rows, 6))
        return pd.DataFrame({"row_key": np.arange(start, start + rows), **{f"m{j}": X[:, j] for j in range(6)},
                             "species": kind})

    for name, rows, start in (("reference", 240, 0), ("holdout", 120, 1000), ("tonight", 90, 2000)):
        table(rows, start).to_csv(files / f"{name}.csv", index=False)
    return files


def flags(files):
    return ["--source", files / "tonight.csv", "--reference", files / "reference.csv", "--holdout",
            files / "holdout.csv", "--label-column", "species", "--id-column", "row_key"]


def test_init_writes_a_complete_workspace_for_the_users_data(tmp_path, user_files):
    ws = tmp_path / "ws"
    out = cli("init", "ws", *flags(user_files), "--remote", "remote", cwd=tmp_path, check=True)  # as typed
    assert f"poisongate --workspace {ws} run" in out.stdout

    params = yaml.safe_load((ws / "params.yaml").read_text())
    assert params["data"]["source"] == str(user_files / "tonight.csv")
    assert (params["data"]["label_column"], params["data"]["id_column"]) == ("species", "row_key")
    assert params["filter"] == yaml.safe_load((ROOT / "params.yaml").read_text())["filter"]  # shipped defaults
    assert "# the GX data gate" in (ws / "params.yaml").read_text()  # the comments that document every knob
    code = yaml.safe_load((ws / "dvc.yaml").read_text())["vars"][0]["code"]
    assert Path(code) == ROOT and (Path(code) / "tasks" / "filter.py").is_file()
    entrypoints = [d["entrypoint"] for d in yaml.safe_load((ws / "prefect.yaml").read_text())["deployments"]]
    assert all(Path(e.rsplit(":", 1)[0]).is_file() for e in entrypoints), entrypoints
    tracked = set(git(ws, "ls-files").split())
    assert {"params.yaml", "dvc.yaml", "prefect.yaml", ".gitignore", ".dvc/config", "expectations/user.json"} <= tracked
    url = (ws / ".dvc" / "config").read_text()
    assert str(tmp_path) not in url and "../../remote" in url  # relative: a clone with the same layout resolves it
    absolute = cli("init", tmp_path / "ws2", "--remote", tmp_path / "remote2", check=True)  # as given
    assert f"url = {tmp_path / 'remote2'}" in (tmp_path / "ws2" / ".dvc" / "config").read_text(), absolute.stdout

    again = cli("init", ws, check=True)  # idempotent: nothing new, nothing changed
    assert "nothing new written" in again.stdout and len(git(ws, "log", "--oneline").splitlines()) == 1


def test_init_without_flags_is_the_embedded_default_with_its_remote_inside(tmp_path):
    ws = tmp_path / "ws"
    cli("init", ws, check=True)
    assert yaml.safe_load((ws / "params.yaml").read_text())["data"]["source"] == "digits"
    assert "url = ../.dvc-remote" in (ws / ".dvc" / "config").read_text()
    assert "/.dvc-remote/" in (ws / ".gitignore").read_text().splitlines()


@pytest.mark.parametrize("change, status, words", [
    (lambda f: ["--source", f / "tonight.csv", "--reference", f / "missing.csv", "--holdout", f / "holdout.csv"], 1,
     ["missing.csv", "not found", "--reference"]),
    (lambda f: ["--source", f / "tonight.csv"], 2, ["data", "needs its trusted reference and holdout"]),
])
def test_bad_init_flags_are_refused_in_one_line_and_write_nothing(tmp_path, user_files, change, status, words):
    ws = tmp_path / "ws"
    proc = cli("init", ws, *change(user_files))
    assert proc.returncode == status and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert all(w in proc.stderr for w in words), proc.stderr
    assert not (ws / "params.yaml").exists() and not (ws / ".git").exists()


def test_flags_for_a_workspace_that_has_its_params_are_refused(tmp_path, user_files):
    ws = tmp_path / "ws"
    cli("init", ws, check=True)
    before = (ws / "params.yaml").read_text()
    proc = cli("init", ws, *flags(user_files))
    assert proc.returncode == 1 and "params.yaml: exists; set data.source there" in proc.stderr
    assert (ws / "params.yaml").read_text() == before


@pytest.mark.slow
@pytest.mark.integration
def test_init_then_run_then_a_clone_elsewhere_pulls_from_the_relative_remote(tmp_path, user_files):
    """The user's data, nothing copied by hand: init, one night, then the whole directory moved (another machine
    with the same layout) and the original remote gone: a fresh clone pulls the training set byte for byte."""
    site = tmp_path / "site"
    shutil.copytree(user_files, site / "data")
    cli("init", "ws", *flags(Path("data")), "--remote", "remote", cwd=site, check=True)
    run = cli("--workspace", site / "ws", "run")
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads(cli("--workspace", site / "ws", "history", "--json", check=True).stdout.splitlines()[-1]
                      )["decision"] == "promoted"

    moved = tmp_path / "elsewhere"
    shutil.move(site, moved)
    subprocess.run(["git", "clone", "-q", moved / "ws", moved / "clone"], check=True)
    subprocess.run([BIN / "dvc", "pull", "-q"], cwd=moved / "clone", check=True, capture_output=True)
    for path in ("data/training.parquet", "registry"):
        a, b = moved / "ws" / path, moved / "clone" / path
        files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file()) if a.is_dir() else [Path()]
        assert files and all((a / f).read_bytes() == (b / f).read_bytes() for f in files), path
