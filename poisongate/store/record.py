"""The end of every run, refused or not: keep everything it produced and say what happened.

quarantine/<run_id>.parquet    every quarantined row, with its reasons and scores (append-only)
scores/<run_id>.parquet        every incoming row's scores and flags (append-only)
registry/<run_id>/             the candidate and its decision (store/registry.py)
data/training.parquet          the training set: a promoted run's accepted rows are appended (training_set.py)
runs/<run_id>.json|.md         the run report (git; its per-row parts are in the stores above)
reports/data_docs/, plots/     GX Data Docs pages and the run's pictures (DVC)
Then the run's outputs are committed to dvc.lock, git, and the DVC remote."""
from __future__ import annotations

import shutil
import time
from typing import Any

import pandas as pd

from poisongate import data_gate, training_set
from poisongate.config import Config
from poisongate.reports import plots, run_report
from poisongate.store import history, registry, versioning
from poisongate.tables import read_table, write_table
from poisongate.workspace import Workspace, atomic_write_text

INGEST_REFUSAL = "batch refused at ingest: "
ERROR = "error"  # the summary of a stage that failed (a broken champion, a full disk): {stage, reason}


def archive_quarantine(ws: Workspace, run_id: str, summaries: dict[str, Any]) -> int:
    """Keep this run's quarantined rows; a batch refused by the data gate is kept whole."""
    if "filter" in summaries:
        frame = read_table(ws.quarantine)
        if summaries.get("campaign", {}).get("passed") is False:  # the night is refused: keep all of it
            rest = read_table(ws.incoming).loc[~read_table(ws.scores)["quarantined"].to_numpy()]
            rest["quarantine_reason"] = "batch refused: " + summaries["campaign"]["reason"]
            frame = pd.concat([frame, rest], ignore_index=True)
    elif summaries.get("ingest", {}).get("passed") is False:
        frame = read_table(ws.incoming)
        frame["quarantine_reason"] = INGEST_REFUSAL + summaries["ingest"]["reason"]
    elif summaries.get("validate", {}).get("passed") is False:
        frame = read_table(ws.incoming)
        frame["quarantine_reason"] = data_gate.refusal(summaries["validate"], shown=None)  # every expectation
    else:
        return 0
    if "audit" in summaries and ws.audit_quarantine.exists():  # rows the audit took out after training
        frame = pd.concat([frame, read_table(ws.audit_quarantine)], ignore_index=True)
    write_table(frame, ws.quarantine_file(run_id))
    return len(frame)


def kept_rows(ws: Workspace, run_id: str, id_column: str | None) -> tuple[pd.Series, pd.DataFrame] | None:
    """A run's quarantined rows and their ids (the id column, else the row numbers); None if it kept none."""
    path = ws.quarantine_file(run_id)
    if not path.is_file():
        return None
    frame = read_table(path)
    return (frame[id_column] if id_column in frame.columns else frame.index.to_series()), frame


def simulated_catch(ws: Workspace, summaries: dict[str, Any]) -> list[Any]:
    """Every id tonight's filter quarantined, where a simulated attack's ground truth can score it (the summary
    lists only the first few)."""
    if "filter" not in summaries or not summaries.get("ingest", {}).get("poisoned_ids"):
        return []
    scores = pd.read_parquet(ws.scores, columns=["id", "quarantined"])
    return scores["id"][scores["quarantined"]].tolist()


def verdict(summaries: dict[str, Any]) -> tuple[bool, str]:
    i, v, f, p = summaries.get("ingest"), summaries.get("validate"), summaries.get("filter"), summaries.get("promote")
    if ERROR in summaries:
        return False, f"stage {summaries[ERROR]['stage']} failed: {summaries[ERROR]['reason']}"
    if i and i.get("passed") is False:
        return False, INGEST_REFUSAL + i["reason"]
    if v and not v["passed"]:
        return False, (f"{i['source'] if i else 'incoming batch'}: {data_gate.refusal(v)}; "
                       "fix the batch at its source (it is kept whole in quarantine/)")
    if f and not f["passed"]:
        return False, f"batch refused by the poisoning gate: {f['reason']}"
    c = summaries.get("campaign")
    if c and not c["passed"]:
        return False, f"batch refused: {c['reason']}"
    if p:
        return p["passed"], "candidate promoted to champion" if p["passed"] else p["reason"]
    return False, "run stopped before the promotion gate"


def mark_started(ws: Workspace, run_id: str, started: bool = True) -> None:
    """The marker `poisongate history` lists a run by until it is recorded (a killed run keeps it: `crashed`)."""
    marker = ws.runs / f"{run_id}{history.STARTED}"
    if started:
        atomic_write_text(marker, run_id + "\n")
    else:
        marker.unlink(missing_ok=True)


def finish(ws: Workspace, run_id: str, summaries: dict[str, Any], config: Config,
           options: dict[str, Any]) -> dict[str, Any]:
    """Archive, register, version, report: done for every run, refused or not. `options` are the run's own
    settings over params.yaml (`--simulate`, `--batch`): recorded in the report, never written to params.yaml."""
    start = time.perf_counter()
    git_parent = versioning.run(ws, "git", "rev-parse", "HEAD").strip()
    archive_quarantine(ws, run_id, summaries)
    if "filter" in summaries:
        shutil.copyfile(ws.scores, ws.scores_store / f"{run_id}.parquet")
    if "promote" in summaries:
        registry.register_candidate(ws, run_id, summaries["promote"])
    passed, text = verdict(summaries)
    # Archive first: the quarantine and the registry entry are versioned before anything that may still fail.
    # dvc.lock records what the stages read: the training set before tonight's rows are appended. A damaged
    # registry is not versioned as it is: `dvc checkout registry` then brings back the last good one.
    damaged = summaries.get(ERROR, {}).get("registry_damaged")
    stores = tuple(s for s in versioning.STORES if not (damaged and s == "registry"))
    versioning.record(ws, [name for name, s in summaries.items() if s.get("passed") is not False], stores)
    pictures = plots.write(ws, summaries, config)
    if passed and "promote" in summaries:
        training_set.stamp(ws.audited, ws.training, run_id)
    versioning.track_training_set(ws)
    full = run_report.build(run_id, summaries, text, versioning.hashes(ws), git_parent, simulated_catch(ws, summaries))
    full["run_options"] = options
    full["champion"] = registry.champion_id(ws, strict=False)  # after this run: what a rollback to it restores
    full["plots"] = [p.relative_to(ws.root).as_posix() for p in pictures]
    markdown = run_report.write(ws, full)
    mark_started(ws, run_id, started=False)
    commit = versioning.commit_and_push(ws, f"poisongate run {run_id}: {text}")
    return {"passed": passed, "verdict": text, "markdown": markdown, "commit": commit,
            "report": str(ws.runs / f"{run_id}.json"), "seconds": round(time.perf_counter() - start, 3)}
