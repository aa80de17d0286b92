"""The Prefect artifacts of a run: the report, the promotion decision, the quarantined rows, the GX Data Docs."""
from __future__ import annotations

import json
from pathlib import Path

from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact

from poisongate.reports import md
from poisongate.store import record
from poisongate.workspace import Workspace


def publish(ws: Workspace, report_path: str | Path, id_column: str | None) -> None:
    """Read back from runs/<run_id>.json and the run's quarantine file, as plain JSON scalars (table artifacts
    reject numpy types)."""
    report_path = Path(report_path)
    report = json.loads(report_path.read_text())
    create_markdown_artifact(markdown=report_path.with_suffix(".md").read_text(), key="poisongate-run-report",
                             description=md(report["verdict"]))
    s = report["stages"]
    if s.get("promote"):
        create_table_artifact(table=s["promote"]["checks"],
                              key="poisongate-promotion-decision", description=md(s["promote"]["reason"]))
    kept = record.kept_rows(ws, report["run_id"], id_column)
    if s.get("filter", {}).get("quarantined") and kept is not None:
        ids, frame = kept
        scores = [c for c in frame.columns if c.startswith("score_")]
        rows = json.loads(frame[["quarantine_reason", *scores]].to_json(orient="records"))
        create_table_artifact(table=[{"id": md(i), "reason": md(r.pop("quarantine_reason")),
                                      **{k.removeprefix("score_"): v for k, v in r.items()}}
                                     for i, r in zip(ids, rows)],
                              key="poisongate-quarantined-rows", description=f"run {report['run_id']}")
    docs = s.get("validate", {}).get("data_docs")
    if docs:
        target = docs if "://" in str(docs) else (ws.root / docs).resolve().as_uri()
        create_link_artifact(link=target, link_text="Great Expectations Data Docs", key="poisongate-data-docs")
