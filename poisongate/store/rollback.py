"""`poisongate rollback`: bring back a recorded dataset version byte for byte, and the champion of that time.

The run's git commit pins dvc.lock, params.yaml, the expectations and the reports; DVC restores the data from
its cache or the remote; every restored output's hash is recomputed and compared with dvc.lock. The
append-only stores (registry/, quarantine/) stay as they are: only the champion pointer moves. The rollback
is itself recorded (rollbacks/<time>.json, a git commit) and the runs after the target are marked revoked."""
from __future__ import annotations

import filecmp
import json
import os
import shutil
import sys
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from poisongate.errors import PoisongateError
from poisongate.store import history, registry, versioning
from poisongate.workspace import Workspace, atomic_write_text, new_run_id

RESTORED_FROM_GIT = ("dvc.lock", "params.yaml", "expectations", "reports", f"{versioning.TRAINING_SET}.dvc")


def progress(message: str) -> None:
    """A rollback waits on git and DVC (a pull can be long): say which step it is at, on stderr."""
    print(f"rollback: {message}", file=sys.stderr, flush=True)


def choose_target(rows: list[dict[str, Any]], champion: str | None, to: str | None) -> dict[str, Any]:
    """`to` if given; else the last clean dataset: the latest promoted, unrevoked run before the champion's."""
    if to:
        return history.find(rows, to)
    ids = [r["run_id"] for r in rows]
    before = ids.index(champion) if champion in ids else len(rows)
    clean = [r for r in rows[:before] if r["promoted"] and not r["revoked"]]
    if not clean:
        raise PoisongateError(f"runs/: no promoted run before the champion {champion}; name one with `--to VERSION` "
                              "(see `poisongate history`)")
    return clean[-1]


def restore_dataset(ws: Workspace, commit: str) -> dict[str, str]:
    """Check out the commit's dvc.lock (and what it was run with), let DVC restore the outputs, verify them."""
    present = [p for p in RESTORED_FROM_GIT if versioning.run(ws, "git", "ls-tree", "--name-only", commit, p).strip()]
    progress(f"checking out {', '.join(present)} of commit {commit[:10]}")
    versioning.run(ws, "git", "checkout", commit, "--", *present)
    progress("restoring the datasets and model with DVC")
    checkout(ws)
    verified = versioning.verify_outputs(ws)
    progress(f"{len(verified)} outputs match the md5 recorded in dvc.lock")
    return verified


ASIDE = "set-aside"  # files a checkout would delete, kept: nothing unversioned is lost


@contextmanager
def kept_aside(ws: Workspace, stores: tuple[str, ...]):
    """Around a forced checkout of the stores: every file it deletes or changes is kept under
    set-aside/<time>/<store>/... and listed (the yielded list, filled on exit)."""
    staging = ws.path(ASIDE, new_run_id())
    before = [f for store in stores for f in ws.path(store).rglob("*") if f.is_file()]
    for f in before:  # hard links: instant, and they keep the old bytes when checkout replaces the file
        (staging / f.relative_to(ws.root)).parent.mkdir(parents=True, exist_ok=True)
        os.link(f, staging / f.relative_to(ws.root))
    kept: list[Path] = []
    try:
        yield kept
    finally:
        for f in before:
            copy = staging / f.relative_to(ws.root)
            if f.is_file() and filecmp.cmp(f, copy, shallow=False):
                copy.unlink()
            else:
                kept.append(copy)
        if not kept:
            shutil.rmtree(staging, ignore_errors=True)


def checkout(ws: Workspace, *targets: str) -> None:
    """Make the workspace match the .dvc/dvc.lock files: from the local cache, else from the remote."""
    try:
        versioning.run(ws, "dvc", "checkout", "--force", "-q", *targets)
    except PoisongateError:  # not in the local cache (a fresh clone): fetch from the remote
        versioning.run(ws, "dvc", "pull", "--force", "-q", *targets)


def rollback(ws: Workspace, to: str | None = None) -> dict[str, Any]:
    versioning.init(ws)  # a fresh clone may lack a git identity
    progress("checking out the registry")
    with kept_aside(ws, versioning.STORES) as aside:
        checkout(ws, *versioning.STORES)  # the registry holds the champion pointer and every model
    if aside:  # a run killed before it was recorded left them; they are not deleted
        progress(f"{len(aside)} files no DVC version holds are kept under {ASIDE}/, e.g. {aside[0]}")
    rows = history.history(ws)
    current = registry.champion_id(ws)
    target = choose_target(rows, current, to)
    if not target["commit"]:
        raise PoisongateError(f"runs/{target['run_id']}.json: no git commit records this run; "
                              "pick another from `poisongate history`")
    champion = champion_of(ws, target)
    restored = restore_dataset(ws, target["commit"])
    registry.set_champion(ws, champion, restored_by_rollback_to=target["run_id"])
    now = datetime.now(UTC)
    entry = {"at": now.isoformat(timespec="seconds"), "to": target["run_id"], "commit": target["commit"],
             "champion_before": current, "champion": champion,
             "revoked": [r["run_id"] for r in rows if r["run_id"] > target["run_id"]], "verified_hashes": restored}
    atomic_write_text(ws.path("rollbacks", f"{new_run_id(now)}.json"), json.dumps(entry, indent=1) + "\n")
    progress("committing the rollback and pushing to the DVC remote")
    versioning.record(ws, [])
    entry["message"] = (f"poisongate rollback to run {target['run_id']}: training set "
                        f"{restored.get(versioning.TRAINING_SET)}, champion {champion}")
    entry["git_commit"] = versioning.commit_and_push(ws, entry["message"])
    return entry


def champion_of(ws: Workspace, target: dict[str, Any]) -> str:
    """The model that was champion right after the target run; checked before anything is restored."""
    champion = target["champion_after"] or (target["run_id"] if target["promoted"] else None)
    if champion is None:  # keeping today's (maybe poisoned) champion beside that dataset would mislead
        raise PoisongateError(f"runs/{target['run_id']}.json: there was no champion after this run; "
                              "roll back to a version with one (see `poisongate history`)")
    if not (ws.registry / champion / "checkpoint").is_dir():
        raise PoisongateError(f"{ws.registry / champion}: the champion of that time is missing; "
                              "run `dvc pull registry` and roll back again")
    return champion


def markdown(entry: dict[str, Any]) -> str:
    lines = [f"# poisongate rollback to run {entry['to']}", "", f"Restored from git commit `{entry['commit']}`; "
             f"champion {entry['champion_before']} -> {entry['champion']}; revoked runs: "
             f"{', '.join(entry['revoked']) or 'none'}.", "", "| path | md5 (recomputed = dvc.lock) |", "|---|---|"]
    lines += [f"| {p} | `{h}` |" for p, h in sorted(entry["verified_hashes"].items())]
    return "\n".join(lines) + "\n"
