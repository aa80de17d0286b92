"""git + DVC: every dataset and model of a run is committed to dvc.lock and pushed to the remote.

Writes go through the CLIs as subprocesses with `cwd=workspace` (dvc.repo.Repo resolves paths against
the process's working directory, which is process-wide): see STACK_NOTES.md."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from poisongate import data_gate, scaffold, training_set
from poisongate.errors import PoisongateError
from poisongate.integrity import file_md5
from poisongate.store import registry
from poisongate.workspace import Workspace, atomic_write_text

STORES = ("quarantine", "scores", "registry")  # append-only, tracked with `dvc add`
GENERATED = ("reports/data_docs", "reports/plots")  # bulky pages and pictures of the runs: `dvc add`, not git
# Stage outputs DVC caches (dvc.yaml): the derived suite (thousands of lines), the per-step training curves.
CACHED_OUTS = ("expectations/suite.json", "reports/train_curve.csv", "reports/train_accuracy.csv")
TRAINING_SET = "data/training.parquet"  # versioned with `dvc add` too, but restored by a rollback
TRACKED = ("dvc.yaml", "dvc.lock", "params.yaml", "expectations", "reports", "runs", "rollbacks", "trusted.json",
           "releases", ".gitignore", ".dvcignore", "data/.gitignore", "models/.gitignore", f"{TRAINING_SET}.dvc",
           *(f"{s}.dvc" for s in STORES))


def _executable(name: str) -> str:
    beside = Path(sys.executable).parent / name  # the dvc of this environment, even when it is not on PATH
    return str(beside) if beside.exists() else name


FULL_DISK_BYTES = 1 << 20  # a git or DVC command that fails with less free space than this failed for want of it


def run(ws: Workspace, *args: str) -> str:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "GIT_TERMINAL_PROMPT": "0"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"  # dvc repro finds poisongate
    args = (_executable(args[0]), *args[1:])
    proc = subprocess.run(args, cwd=ws.root, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode != 0:
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        detail = lines[-1] if lines else proc.returncode
        fix = "fix the workspace and rerun"
        disk = os.statvfs(ws.root)
        if disk.f_bavail * disk.f_frsize < FULL_DISK_BYTES:  # git itself only says "write error"
            detail, fix = f"No space left on device: {detail}", "free disk space, then run again"
        raise PoisongateError(f"{ws.root}: `{' '.join(args)}` failed ({detail}); {fix}")
    return proc.stdout


def init(ws: Workspace, remote: str | None = None, data: dict[str, str] | None = None) -> list[str]:
    """Make `ws` a complete workspace: params.yaml (with `data` settings), dvc.yaml and prefect.yaml where missing,
    a git repo and DVC project with a default remote; idempotent. Returns the files written."""
    ws.root.mkdir(parents=True, exist_ok=True)
    written = scaffold.write_missing(ws, data or {})
    if not (ws.root / ".git").exists():
        run(ws, "git", "init", "-q")
    for key, value in (("user.name", "poisongate"), ("user.email", "poisongate@localhost")):
        if subprocess.run(["git", "config", key], cwd=ws.root, capture_output=True).returncode != 0:
            run(ws, "git", "config", key, value)  # CI machines may have no git identity
    if not (ws.root / ".dvc").exists():
        run(ws, "dvc", "init", "-q")
    if not run(ws, "dvc", "remote", "list").strip():
        url = remote_url(ws, remote)
        run(ws, "dvc", "remote", "add", "-d", "local", url)
        if url == DEFAULT_REMOTE:
            _ignore(ws, f"/{DEFAULT_REMOTE}/")
    # Workspaces of an earlier version committed these to git; DVC tracks them now and refuses an output git has.
    run(ws, "git", "rm", "-r", "-q", "--cached", "--ignore-unmatch", *CACHED_OUTS, *GENERATED)
    for store in STORES:
        (ws.root / store).mkdir(exist_ok=True)
    registry.ensure_pointer(ws)  # stage deps that must exist from the first run on
    if not ws.user_expectations.exists():
        atomic_write_text(ws.user_expectations, json.dumps(data_gate.EMPTY_USER_SUITE, indent=1) + "\n")
    if not ws.path(training_set.TRUSTED_FILE).exists():
        atomic_write_text(ws.path(training_set.TRUSTED_FILE), json.dumps(training_set.EMPTY_TRUST) + "\n")
    # dvc_plots/: `dvc plots show` output; models/baseline*: the promotion gate's cache, rebuilt from the reference
    # reports/html/: `poisongate report RUN --html` pages, rebuilt from the run at will
    _ignore(ws, "/.venv/", "__pycache__/", "/dvc_plots/", "/.poisongate.lock", "/models/baseline*", "/reports/html/",
            *(f"/{p}" for p in CACHED_OUTS))
    initial = (".dvc", ".gitignore", ".dvcignore", "dvc.yaml", "params.yaml", "prefect.yaml",
               "expectations/user.json", training_set.TRUSTED_FILE)
    run(ws, "git", "add", *[p for p in initial if (ws.root / p).exists()])
    # only what was just added: a killed run may leave other changes
    if run(ws, "git", "diff", "--cached", "--name-only").strip():
        run(ws, "git", "commit", "-q", "-m", "poisongate: initialise workspace")
    return written


DEFAULT_REMOTE = ".dvc-remote"  # in the workspace, git-ignored


def remote_url(ws: Workspace, remote: str | None) -> str:
    """The remote as dvc.yaml's DVC config will hold it: a URL (s3://, ssh://, ...) as given; a local directory
    relative to the workspace (created), so a clone elsewhere resolves it where the same layout exists, never an
    absolute path of the machine that ran init unless the user gave one."""
    if remote and "://" in remote:
        return remote
    path = Path(remote).expanduser() if remote else ws.root / DEFAULT_REMOTE
    path.mkdir(parents=True, exist_ok=True)
    if remote and Path(remote).is_absolute():
        return str(path)
    return os.path.relpath(path.resolve(), ws.root)


def _ignore(ws: Workspace, *patterns: str) -> None:
    path = ws.root / ".gitignore"
    lines = path.read_text().splitlines() if path.exists() else []
    path.write_text("\n".join(lines + [p for p in patterns if p not in lines]) + "\n")


def record(ws: Workspace, stages: list[str], stores: tuple[str, ...] = STORES) -> None:
    """Record the stores' .dvc files (first: the quarantine is kept whatever fails next), then the outputs the run
    produced in dvc.lock (no git commit yet)."""
    run(ws, "dvc", "add", "-q", *stores)
    if stages:
        # DVC reads and rewrites dvc.lock once per target (0.35 s each at 10 stages' code deps): when every stage
        # of dvc.yaml is to be committed, dvc.yaml is the one target (the same dvc.lock, 5.2-6.0 -> 1.8-2.3 s).
        everything = set(stages) == set((yaml.safe_load((ws.root / "dvc.yaml").read_text()) or {}).get("stages", {}))
        run(ws, "dvc", "commit", "-f", "-q", *(["dvc.yaml"] if everything else stages))


def track_training_set(ws: Workspace) -> None:
    """`dvc add` the training set and the generated pages and pictures: one DVC process (2-3 s each here)."""
    run(ws, "dvc", "add", "-q", TRAINING_SET, *[p for p in GENERATED if (ws.root / p).is_dir()])


def commit_and_push(ws: Workspace, message: str) -> str:
    run(ws, "git", "add", *[p for p in TRACKED if (ws.root / p).exists()])
    run(ws, "git", "commit", "-q", "--allow-empty", "-m", message)
    run(ws, "dvc", "push", "-q")
    return run(ws, "git", "rev-parse", "HEAD").strip()


def hashes(ws: Workspace) -> dict[str, str]:
    """DVC's content hash of every tracked dataset and model, from dvc.lock and the stores' .dvc files."""
    out: dict[str, str] = {}
    lock = ws.root / "dvc.lock"
    if lock.exists():
        for stage in (yaml.safe_load(lock.read_text()) or {}).get("stages", {}).values():
            for o in stage.get("outs", []):
                out[o["path"]] = o["md5"]
    for store in (*STORES, TRAINING_SET):
        dvc_file = ws.root / f"{store}.dvc"
        if dvc_file.exists():  # its outs' paths are relative to the .dvc file's folder
            for o in yaml.safe_load(dvc_file.read_text())["outs"]:
                out[(Path(store).parent / o["path"]).as_posix()] = o["md5"]
    return out


def content_md5(path: Path) -> str:
    """DVC 3's hash of a file (md5 of its bytes) or of a directory (md5 of its sorted JSON manifest + `.dir`),
    recomputed from the bytes on disk: DVC's own status trusts its mtime cache, a restore must not."""
    if path.is_file():
        return file_md5(path)
    manifest = [{"md5": file_md5(f), "relpath": f.relative_to(path).as_posix()}
                for f in sorted(path.rglob("*"), key=lambda f: f.relative_to(path).as_posix()) if f.is_file()]
    return hashlib.md5(json.dumps(manifest).encode()).hexdigest() + ".dir"


def verify_outputs(ws: Workspace) -> dict[str, str]:
    """Recompute every dvc.lock output's hash; raise naming the first one that differs or is missing."""
    recorded = {p: h for p, h in hashes(ws).items() if p not in STORES}  # the stores stay at HEAD
    for path, md5 in recorded.items():
        target = ws.root / path
        actual = content_md5(target) if target.exists() else "missing"
        if actual != md5:
            raise PoisongateError(f"{target}: restored content hash {actual} != {md5} recorded in dvc.lock; "
                                  "run `dvc pull --force` from an intact remote and roll back again")
    return recorded
