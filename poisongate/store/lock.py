"""One run at a time per workspace: a second run waits for the first (up to data.lock_timeout_s), then fails
with one line. The lock is an OS file lock, so a run killed with SIGKILL releases it as it dies; whoever takes
the lock next clears what that run left half-written before starting."""
from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

from poisongate.errors import PoisongateError
from poisongate.workspace import Workspace

LOCK_NAME = ".poisongate.lock"  # git-ignored by versioning.init
STALE_DIRS = ("", "data", "reports", "expectations", "runs", "registry", "quarantine", "models")


def clear_stale(ws: Workspace) -> list[Path]:
    """Remove the temp files and staging dirs of a killed run (atomic_path's `.*.tmp`, Orbax's `*-tmp-*`) and
    git's index.lock. Only safe while holding the workspace lock: no other run can be writing them."""
    stale = [p for d in STALE_DIRS for p in ws.path(d).glob(".*.tmp")]
    stale += list(ws.path("models").rglob("*.orbax-checkpoint-tmp*"))
    stale += [p for p in [ws.path(".git", "index.lock")] if p.exists()]
    for path in stale:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
    return stale


def hold(ws: Workspace, timeout_s: float) -> FileLock:
    """Take the workspace lock, waiting at most timeout_s; the caller releases it."""
    ws.root.mkdir(parents=True, exist_ok=True)
    lock = FileLock(ws.path(LOCK_NAME), timeout=timeout_s)
    try:
        lock.acquire()
    except Timeout:
        raise PoisongateError(
            f"{ws.path(LOCK_NAME)}: another poisongate run has held this workspace for {timeout_s:g} s; "
            "wait for it to finish, or raise data.lock_timeout_s") from None
    return lock


@contextlib.contextmanager
def workspace_lock(ws: Workspace, timeout_s: float) -> Iterator[None]:
    """Hold the workspace lock (waiting up to data.lock_timeout_s) after clearing what a killed run left."""
    lock = hold(ws, timeout_s)
    try:
        clear_stale(ws)
        yield
    finally:
        lock.release()
