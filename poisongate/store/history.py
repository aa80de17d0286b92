"""`poisongate history`: every dataset and model version, from the run reports (git) and the registry.

A version is a run: its git commit pins dvc.lock (the dataset hashes) and its candidate is kept in
registry/<run_id>/. Rollback records (rollbacks/*.json) mark the runs they revoked."""
from __future__ import annotations

import json
from typing import Any

from poisongate.errors import PoisongateError
from poisongate.reports import cell
from poisongate.store import versioning
from poisongate.store.versioning import TRAINING_SET
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


def decision(report: dict[str, Any], revoked: bool) -> str:
    """promoted / refused-batch (ingest, data gate, poisoning gate, campaign checks) / refused-model / revoked."""
    if revoked:
        return "revoked"
    stages = report["stages"]
    if stages.get("promote", {}).get("passed"):
        return "promoted"
    batch_gates = ("ingest", "validate", "filter", "campaign")
    if any(stages.get(k, {}).get("passed") is False for k in batch_gates) or "train" not in stages:
        return "refused-batch"
    return "refused-model"


def summarize(report: dict[str, Any], revoked: bool = False, released: int = 0) -> dict[str, Any]:
    """One version's row: date, decision, batch and training-set sizes, hashes, metrics."""
    s = report["stages"]
    ingest, filt, promote, cv, train, audit = (s.get(k) or {} for k in ("ingest", "filter", "promote", "crossval",
                                                                        "train", "audit"))
    after_training = audit.get("flagged", 0) if audit.get("retrained") else 0  # the audit's quarantine
    if filt:
        quarantined = filt["quarantined"] + after_training
        accepted = filt["rows"] - quarantined
        if s.get("campaign", {}).get("passed") is False:
            accepted, quarantined = 0, filt["rows"]
    elif s.get("validate", {}).get("passed") is False or ingest.get("passed") is False:  # refused whole
        accepted, quarantined = 0, ingest.get("rows")
    else:
        accepted = quarantined = None  # retrain-only run: no batch
    hashes = report["dvc_hashes"]
    return {
        "run_id": report["run_id"],
        "date": run_time(report["run_id"]).strftime("%Y-%m-%d %H:%M:%S"),
        "decision": decision(report, revoked),
        "batch_rows": ingest.get("rows"),
        "accepted": accepted,
        "quarantined": quarantined,
        "released": released,
        "train_rows": (audit.get("retrained") or {}).get("rows", train.get("rows")),  # what the model learned from
        "holdout_accuracy": (promote.get("candidate") or {}).get("accuracy"),
        "cv_mean_accuracy": cv.get("mean_accuracy"),
        "dataset_md5": hashes.get(TRAINING_SET),
        "model_md5": hashes.get("models/audited", hashes.get("models/candidate")),
        "source": ingest.get("source", "(retrain only)"),
        "source_sha256": ingest.get("source_sha256"),
        "attack": ingest.get("attack") if ingest.get("poisoned_ids") else None,
        "promoted": bool(promote.get("passed")),
        "verdict": report["verdict"],
        "champion_after": report.get("champion"),
    }


def released_rows(ws: Workspace) -> dict[str, int]:
    """run_id -> rows released from its quarantine (releases/*.json)."""
    out: dict[str, int] = {}
    for f in sorted(ws.path("releases").glob("*.json")):
        entry = json.loads(f.read_text())
        out[entry["run_id"]] = out.get(entry["run_id"], 0) + len(entry["ids"])
    return out


def history(ws: Workspace) -> list[dict[str, Any]]:
    """Every run, oldest first, with its commit and whether a rollback revoked it. A run that started but was never
    recorded (killed, or the machine failed) is listed as `crashed`, with what it left."""
    commits, revoked, released = run_commits(ws), revoked_runs(ws), released_rows(ws)
    rows = []
    for path in sorted(ws.runs.glob("*.json")):
        report = json.loads(path.read_text())
        run_id = report["run_id"]
        row = summarize(report, run_id in revoked, released.get(run_id, 0))
        rows.append({**row, "commit": commits.get(run_id), "revoked": run_id in revoked})
    recorded = {r["run_id"] for r in rows}
    return sorted(rows + [crashed(ws, run_id) for run_id in started_runs(ws) - recorded], key=lambda r: r["run_id"])


STARTED = ".started"  # runs/<run_id>.started: written when a run begins, removed once it is recorded


def started_runs(ws: Workspace) -> set[str]:
    """Runs that began (their marker) or left a registry entry or a quarantine file."""
    marked = {p.name[: -len(STARTED)] for p in ws.runs.glob(f"*{STARTED}")}
    registered = {p.name for p in ws.registry.glob("2*") if p.is_dir()}
    quarantined = {p.stem for p in ws.quarantine_store.glob("2*.parquet")}
    return marked | registered | quarantined


def crashed(ws: Workspace, run_id: str) -> dict[str, Any]:
    left = [what for what, path in (("registry entry", ws.registry / run_id),
                                    ("quarantine", ws.quarantine_file(run_id))) if path.exists()]
    row = dict.fromkeys(("batch_rows", "accepted", "quarantined", "train_rows", "holdout_accuracy", "cv_mean_accuracy",
                         "dataset_md5", "model_md5", "source_sha256", "attack", "champion_after", "commit"))
    return {**row, "run_id": run_id, "date": run_time(run_id).strftime("%Y-%m-%d %H:%M:%S"), "decision": "crashed",
            "released": 0, "source": "-", "promoted": False, "revoked": False,
            "verdict": "ended before it was recorded (killed, or the machine failed); it left "
                       + (", ".join(left) or "nothing")}


def find(rows: list[dict[str, Any]], version: str) -> dict[str, Any]:
    """A version by run id (or a unique prefix of it) or git commit (prefix)."""
    hits = [r for r in rows if r["run_id"].startswith(version) or (r["commit"] or "").startswith(version)]
    if len(hits) != 1:
        raise PoisongateError(f"{version}: {'no' if not hits else len(hits)} recorded runs match; "
                              "pick a run id or commit from `poisongate history`")
    return hits[0]


COLUMNS = ("run_id", "date", "decision", "commit", "dataset_md5", "source", "batch_rows", "accepted", "quarantined",
           "released", "train_rows", "holdout_accuracy", "verdict")


def table(rows: list[dict[str, Any]], champion: str | None) -> str:
    """A plain-text table for the terminal, one night per line; the champion is starred."""
    cells = [list(COLUMNS)] + [
        [("*" if r["run_id"] == champion else "") + r["run_id"], r["date"], r["decision"], (r["commit"] or "-")[:10],
         (r["dataset_md5"] or "-")[:12], str(r["source"]).split("/")[-1],
         *(cell(r[k], missing="-") for k in COLUMNS[6:])]
        for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[-1] for row in cells)


def status(ws: Workspace, next_run: str = "") -> list[str]:
    """`poisongate status`: the champion, the last run and its decision, and `next_run` (the schedule's line)."""
    from poisongate.store.registry import champion_id

    rows = history(ws)
    champion = champion_id(ws, strict=False)
    lines = [f"workspace {ws.root}", f"champion: {champion or 'none yet'}"]
    if champion:
        row = next((r for r in rows if r["run_id"] == champion), None)
        if row and row.get("holdout_accuracy") is not None:
            lines[-1] += f" (holdout accuracy {row['holdout_accuracy']:.4f}, {row['train_rows']} training rows)"
    if rows:
        last = rows[-1]
        lines.append(f"last run: {last['run_id']} at {last['date']} UTC: {last['decision']}: {last['verdict']}")
    else:
        lines.append("last run: none yet (`poisongate run`)")
    return lines + ([next_run] if next_run else [])
