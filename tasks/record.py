"""Stage `record`: keep everything a run produced and say what happened.

registry/<run_id>/checkpoint   every candidate's Orbax checkpoint, with registry/<run_id>/decision.json
registry/champion.json         the champion pointer: replaced atomically, and only on a pass
quarantine/<run_id>.parquet    every quarantined row, with its reasons and scores (append-only)
runs/<run_id>.json|.md         the run report
Then the run's outputs are committed to dvc.lock, git, and the DVC remote."""
from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from typing import Any

from tasks import plots, report, versioning
from tasks.config import Workspace, atomic_write_text, load_params
from tasks.data import read_table, write_table


def new_run_id() -> str:
    return datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S%fZ")


def archive_quarantine(ws: Workspace, run_id: str, summaries: dict[str, Any]) -> int:
    """Keep this run's quarantined rows; a batch refused by the data gate is kept whole."""
    if "filter" in summaries:
        frame = read_table(ws.quarantine)
    elif summaries.get("ingest", {}).get("passed") is False:
        frame = read_table(ws.incoming)
        frame["quarantine_reason"] = "batch refused at ingest: " + summaries["ingest"]["reason"]
    elif summaries.get("validate", {}).get("passed") is False:
        frame = read_table(ws.incoming)
        frame["quarantine_reason"] = "batch refused by the data gate: " + "; ".join(
            f"{f['expectation']}({f['column'] or 'table'})" for f in summaries["validate"]["failed"])
    else:
        return 0
    write_table(frame, ws.quarantine_store / f"{run_id}.parquet")
    return len(frame)


def register_candidate(ws: Workspace, run_id: str, decision: dict[str, Any]) -> None:
    """Keep the candidate with its decision; point the champion at it only if it passed."""
    staging = ws.registry / f".{run_id}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.copytree(ws.candidate, staging / "checkpoint")
    atomic_write_text(staging / "decision.json", json.dumps(decision, indent=1) + "\n")
    staging.rename(ws.registry / run_id)  # the entry appears complete or not at all
    if decision["passed"]:
        set_champion(ws, run_id, accuracy=decision["candidate"]["accuracy"])


def champion_id(ws: Workspace) -> str | None:
    pointer = ws.registry / "champion.json"
    return json.loads(pointer.read_text())["run_id"] if pointer.exists() else None


def set_champion(ws: Workspace, run_id: str, **why: Any) -> None:
    """Point the champion at a registered model: one atomic rename."""
    entry = {"run_id": run_id, "promoted_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), **why}
    atomic_write_text(ws.registry / "champion.json", json.dumps(entry, indent=1) + "\n")


def verdict(summaries: dict[str, Any]) -> tuple[bool, str]:
    i, v, f, p = summaries.get("ingest"), summaries.get("validate"), summaries.get("filter"), summaries.get("promote")
    if i and i.get("passed") is False:
        return False, f"batch refused at ingest: {i['reason']}"
    if v and not v["passed"]:
        names = ", ".join(f"{x['expectation']}({x['column'] or 'table'})" for x in v["failed"][:5])
        more = f" and {len(v['failed']) - 5} more" if len(v["failed"]) > 5 else ""
        return False, (f"{i['source'] if i else 'incoming batch'}: batch refused by the data gate: {len(v['failed'])} "
                       f"expectations failed: {names}{more}; fix the batch at its source (it is kept whole in quarantine/)")
    if f and not f["passed"]:
        return False, (f"batch refused by the poisoning gate: {f['quarantined_share']:.0%} of rows flagged "
                       f"> filter.max_quarantine_share {f['max_quarantine_share']}")
    if p:
        return p["passed"], "candidate promoted to champion" if p["passed"] else p["reason"]
    return False, "run stopped before the promotion gate"


def finish(ws: Workspace, run_id: str, summaries: dict[str, Any]) -> dict[str, Any]:
    """Archive, register, version, report: done for every run, refused or not."""
    git_parent = versioning.run(ws, "git", "rev-parse", "HEAD").strip()
    archive_quarantine(ws, run_id, summaries)
    if "promote" in summaries:
        register_candidate(ws, run_id, summaries["promote"])
    passed, text = verdict(summaries)
    pictures = plots.write(ws, summaries, load_params(ws))
    versioning.record(ws, [name for name, s in summaries.items() if s.get("passed") is not False])
    full = report.build(run_id, summaries, text, versioning.hashes(ws), git_parent)
    full["champion"] = champion_id(ws)  # the champion after this run: what a rollback to it restores
    full["plots"] = [p.relative_to(ws.root).as_posix() for p in pictures]
    markdown = report.write(ws, full)
    commit = versioning.commit_and_push(ws, f"poisongate run {run_id}: {text}")
    return {"passed": passed, "verdict": text, "markdown": markdown, "commit": commit,
            "report": str(ws.runs / f"{run_id}.json")}
