"""`poisongate history`: every dataset and model version, from the run reports (git) and the registry.

A version is a run: its git commit pins dvc.lock (the dataset hashes) and its candidate is kept in
registry/<run_id>/. Rollback records (rollbacks/*.json) mark the runs they revoked."""
from __future__ import annotations

import json
from typing import Any

from poisongate.errors import PoisongateError
from poisongate.reports import cell
from poisongate.store import versioning
from poisongate.workspace import Workspace, run_time

RUN_COMMIT_PREFIX = "poisongate run "


def run_commits(ws: Workspace) -> dict[str, str]:
    """run_id -> the git commit that recorded it (its subject is `poisongate run <run_id>: ...`)."""
    out = {}
    for line in versioning.run(ws, "git", "log", "--format=%H %s").splitlines():
        sha, _, subject = line.partition(" ")
        if subject.startswith(RUN_COMMIT_PREFIX):
            out[subject[len(RUN_COMMIT_PREFIX):].split(":", 1)[0]] = sha
    return out


def revoked_runs(ws: Workspace) -> set[str]:
    return {r for f in ws.path("rollbacks").glob("*.json") for r in json.loads(f.read_text())["revoked"]}


def summarize(report: dict[str, Any]) -> dict[str, Any]:
    """One version's row: date, dataset hash, source, rows accepted/quarantined, decision, metrics."""
    s = report["stages"]
    ingest, filt, promote, cv = (s.get(k) or {} for k in ("ingest", "filter", "promote", "crossval"))
    if filt:
        accepted, quarantined = filt["rows"] - filt["quarantined"], filt["quarantined"]
    elif s.get("validate", {}).get("passed") is False:  # refused whole by the data gate
        accepted, quarantined = 0, ingest.get("rows")
    else:
        accepted = quarantined = None  # retrain-only run: no batch
    return {
        "run_id": report["run_id"],
        "date": run_time(report["run_id"]).strftime("%Y-%m-%d %H:%M:%S"),
        "dataset_md5": report["dvc_hashes"].get("data/clean.parquet"),
        "model_md5": report["dvc_hashes"].get("models/candidate"),
        "source": ingest.get("source", "(retrain only)"),
        "attack": ingest.get("attack") if ingest.get("poisoned_ids") else None,
        "accepted": accepted,
        "quarantined": quarantined,
        "promoted": bool(promote.get("passed")),
        "decision": report["verdict"],
        "holdout_accuracy": (promote.get("candidate") or {}).get("accuracy"),
        "cv_mean_accuracy": cv.get("mean_accuracy"),
        "champion_after": report.get("champion"),
    }


def history(ws: Workspace) -> list[dict[str, Any]]:
    """Every recorded run, oldest first, with its commit and whether a rollback revoked it."""
    commits, revoked = run_commits(ws), revoked_runs(ws)
    rows = []
    for path in sorted(ws.runs.glob("*.json")):
        row = summarize(json.loads(path.read_text()))
        rows.append({**row, "commit": commits.get(row["run_id"]), "revoked": row["run_id"] in revoked})
    return rows


def find(rows: list[dict[str, Any]], version: str) -> dict[str, Any]:
    """A version by run id (or a unique prefix of it) or git commit (prefix)."""
    hits = [r for r in rows if r["run_id"].startswith(version) or (r["commit"] or "").startswith(version)]
    if len(hits) != 1:
        raise PoisongateError(f"{version}: {'no' if not hits else len(hits)} recorded runs match; "
                              "pick a run id or commit from `poisongate history`")
    return hits[0]


COLUMNS = ("run_id", "date", "commit", "dataset_md5", "source", "accepted", "quarantined", "holdout_accuracy",
           "cv_mean_accuracy", "decision")


def table(rows: list[dict[str, Any]], champion: str | None) -> str:
    """A plain-text table for the terminal; the champion is starred, revoked runs are marked."""
    cells = [list(COLUMNS)] + [
        [("*" if r["run_id"] == champion else "") + r["run_id"] + (" (revoked)" if r["revoked"] else ""),
         r["date"], (r["commit"] or "-")[:10], (r["dataset_md5"] or "-")[:12], str(r["source"]).split("/")[-1],
         *(cell(r[k], missing="-") for k in COLUMNS[5:])]
        for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1] for row in cells)
