"""What a person decides about the data: `poisongate trust RUN` (a run's accepted rows become gate reference),
`poisongate quarantine list` and `poisongate quarantine release RUN` (quarantined rows a person vouches for join
the training set). Each decision is recorded, who/when/why, in git (trusted.json, releases/<time>.json) with the
training set it produced (DVC), and shows in `poisongate history`."""
from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from poisongate import training_set
from poisongate.config import DataConfig
from poisongate.detectors.registry import DETECTORS
from poisongate.errors import PoisongateError
from poisongate.schema import batch_problem, row_ids
from poisongate.sources import workspace_reference
from poisongate.store import history, versioning
from poisongate.tables import read_table, write_table
from poisongate.workspace import Workspace, atomic_write_text, new_run_id


def _entry(by: str, why: str, **fields: Any) -> dict[str, Any]:
    if not why.strip():
        raise PoisongateError("--why: say why (it is recorded with the decision)")
    return {**fields, "at": datetime.now(UTC).isoformat(timespec="seconds"), "by": by, "why": why}


def trust(ws: Workspace, run_id: str, by: str, why: str) -> dict[str, Any]:
    """The run's rows in the training set become part of the gates' reference from the next run on."""
    training = read_table(ws.training)
    rows = int((training[training_set.RUN] == run_id).sum())
    if not rows or run_id == training_set.REFERENCE:
        raise PoisongateError(f"{ws.training}: no accepted rows of run {run_id!r}; trust a promoted run from "
                              "`poisongate history`")
    if run_id in training_set.trusted_runs(ws):
        raise PoisongateError(f"{training_set.TRUSTED_FILE}: run {run_id} is already trusted")
    path = ws.path(training_set.TRUSTED_FILE)
    record = json.loads(path.read_text()) if path.exists() else dict(training_set.EMPTY_TRUST)
    entry = _entry(by, why, run_id=run_id, rows=rows)
    atomic_write_text(path, json.dumps({"trusted": [*record["trusted"], entry]}, indent=1) + "\n")
    entry["git_commit"] = versioning.commit_and_push(ws, f"poisongate trust {run_id}: {rows} rows, by {by}")
    return entry


def reason_kinds(reasons: pd.Series) -> dict[str, int]:
    """Quarantined rows per kind of reason: each flagging detector, a repeated id, or the whole-batch refusal."""
    kinds: dict[str, int] = {}
    patterns = {name: re.compile(rf"(?:^|; ){re.escape(name)} ") for name in DETECTORS}
    patterns["repeated id"] = re.compile("id already in the (training set|golden holdout)")
    patterns["batch refused"] = re.compile("^batch refused")
    for kind, pattern in patterns.items():
        count = int(reasons.str.contains(pattern).sum())
        if count:
            kinds[kind] = count
    return kinds


def quarantine_list(ws: Workspace) -> list[dict[str, Any]]:
    released = history.released_rows(ws)
    out = []
    for path in sorted(ws.quarantine_store.glob("*.parquet")):
        frame = read_table(path)
        out.append({"run_id": path.stem, "rows": len(frame), "released": released.get(path.stem, 0),
                    "reasons": reason_kinds(frame["quarantine_reason"].astype(str))})
    return out


def _unflagged(ws: Workspace, run_id: str, quarantined: pd.DataFrame, id_column: str) -> np.ndarray:
    """Rows the poisoning gate did not select (and whose id is new): quarantined only because their batch was
    refused whole."""
    scores_path = ws.scores_store / f"{run_id}.parquet"
    if not scores_path.exists():  # refused before the poisoning gate: no detector judged any row
        return np.ones(len(quarantined), bool)
    scores = read_table(scores_path)
    flags = ["selected"] if "selected" in scores.columns else [c for c in scores.columns if c.startswith("flag_")]
    flagged_ids = scores.loc[scores[flags].any(axis=1), "id"]
    return ~quarantined[id_column].isin(flagged_ids).to_numpy()


def _read_ids(path: Path, like: pd.Series) -> pd.Series:
    try:
        tokens = [t for t in re.split(r"[\s,]+", path.read_text()) if t]
    except (OSError, UnicodeDecodeError) as e:
        raise PoisongateError(f"{path}: cannot read ids ({type(e).__name__}); write one id per line") from None
    try:
        return pd.Series(tokens).astype(like.dtype)
    except (ValueError, TypeError):
        raise PoisongateError(f"{path}: ids must be of the id column's type ({like.dtype}); "
                              "write one id per line") from None


def release(ws: Workspace, data: DataConfig, run_id: str, ids_file: Path | None, all_unflagged: bool, by: str,
            why: str) -> dict[str, Any]:
    """Append the chosen quarantined rows of `run_id` to the training set; the next run trains on them."""
    path = ws.quarantine_file(run_id)
    if not path.exists():
        raise PoisongateError(f"{path}: no quarantine of run {run_id!r}; see `poisongate quarantine list`")
    _, schema = workspace_reference(ws, data)
    if not schema.id:
        raise PoisongateError(f"{path}: rows can be released only by id; set data.id_column")
    quarantined = read_table(path)
    if all_unflagged:
        chosen = quarantined.loc[_unflagged(ws, run_id, quarantined, schema.id)]
    else:
        wanted = _read_ids(ids_file, quarantined[schema.id])
        missing = wanted[~wanted.isin(quarantined[schema.id])]
        if len(missing):
            raise PoisongateError(f"{ids_file}: id {missing.iloc[0]!r} is not in the quarantine of run {run_id}; "
                                  "list only quarantined ids")
        chosen = quarantined[quarantined[schema.id].isin(wanted)]
    if not len(chosen):
        raise PoisongateError(f"{path}: no rows to release; name ids with --ids FILE")
    problem = batch_problem(chosen, schema, str(path), min_rows=1)
    if problem:
        raise PoisongateError(problem)
    training = read_table(ws.training)
    earlier = training_set.first_runs(training, row_ids(chosen, schema), schema, read_table(ws.holdout))
    if pd.notna(earlier).any():
        i = int(np.flatnonzero(pd.notna(earlier))[0])
        raise PoisongateError(f"{path}: id {row_ids(chosen, schema)[i]!r} is already "
                              f"{training_set.owner(earlier[i])}; release only rows that are not")
    ingest = json.loads((ws.runs / f"{run_id}.json").read_text())["stages"].get("ingest", {})
    entry = _entry(by, why, run_id=run_id, ids=[i.item() if hasattr(i, "item") else i
                                                for i in row_ids(chosen, schema)])
    released_id = new_run_id()
    rows = training_set.with_provenance(chosen, schema, run=run_id, source=ingest.get("source", "unknown"),
                                        sha256=ingest.get("source_sha256") or "", admitted=f"released {released_id}")
    write_table(pd.concat([training, rows], ignore_index=True), ws.training)
    atomic_write_text(ws.path("releases", f"{released_id}.json"), json.dumps(entry, indent=1) + "\n")
    versioning.track_training_set(ws)
    entry["git_commit"] = versioning.commit_and_push(
        ws, f"poisongate release {len(rows)} rows of run {run_id} into the training set, by {by}")
    return entry
