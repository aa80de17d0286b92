"""The versioned training set, data/training.parquet (`dvc add`ed; rollback restores it): the trusted reference,
then every accepted row of every promoted run, in order. Each row carries its provenance: the run that accepted
it, its source file and that file's SHA-256, how it was admitted; its id is the id it had in that source.

The gates never learn from it by themselves: the trusted part (the reference, and runs a person trusted with
`poisongate trust`) is their reference; the rest is what the cross-night campaign checks judge."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from poisongate.schema import Schema
from poisongate.tables import read_table, rewrite
from poisongate.workspace import Workspace

RUN, SOURCE, SHA256, ADMITTED = "poisongate_run", "poisongate_source", "poisongate_sha256", "poisongate_admitted"
PROVENANCE = (RUN, SOURCE, SHA256, ADMITTED)
REFERENCE = "reference"  # the run id of the trusted reference's rows
HOLDOUT = "holdout"  # an id of the golden holdout: never a training row
TONIGHT = ""  # rows the current run accepted: the record step writes its run id over this
TRUSTED_FILE = "trusted.json"  # the runs a person trusted, who, when and why (git)
EMPTY_TRUST = {"trusted": []}


def with_provenance(rows: pd.DataFrame, schema: Schema, *, run: str, source: str, sha256: str,
                    admitted: str) -> pd.DataFrame:
    """`rows`' schema columns, then the provenance columns."""
    out = rows.loc[:, schema.columns].reset_index(drop=True)
    for column, value in zip(PROVENANCE, (run, source, sha256, admitted)):
        out[column] = pd.Series([value] * len(out), dtype="string")
    return out


def start(reference: pd.DataFrame, schema: Schema, source: str, sha256: str) -> pd.DataFrame:
    """The training set before any night: the trusted reference."""
    return with_provenance(reference, schema, run=REFERENCE, source=source, sha256=sha256, admitted="trusted")


def load(ws: Workspace, reference: pd.DataFrame, schema: Schema) -> pd.DataFrame:
    """The workspace's training set; the reference alone where none was started yet (a stage run by hand)."""
    if ws.training.exists():
        return read_table(ws.training)
    return start(reference, schema, "reference", "")


def stamp(source: Path, path: Path, run_id: str) -> None:
    """The training set `source` written to `path` with tonight's rows given the run's id, one row group at a time
    (a frame of a 1M-row training set and its copy were the night's peak, 0.9 GB)."""
    def stamped(part, _):
        i = part.schema.get_field_index(RUN)
        run = part.column(i)
        return part.set_column(i, part.schema.field(i), pc.if_else(pc.equal(run, TONIGHT),
                                                                   pa.scalar(run_id, run.type), run))

    rewrite(source, path, stamped)


def first_runs(training: pd.DataFrame, ids: np.ndarray, schema: Schema, holdout: pd.DataFrame) -> np.ndarray:
    """Per id, the run whose row already has it in the training set, HOLDOUT where the golden holdout has it, None
    where the id is new."""
    if not schema.id:
        return np.full(len(ids), None, dtype=object)
    owner = training.drop_duplicates(schema.id).set_index(schema.id)[RUN]
    found = pd.Series(ids).map(owner).astype(object)
    found = np.array(found.where(found.notna(), None).to_numpy(), dtype=object)  # writable
    found[np.isin(ids, holdout[schema.id].to_numpy())] = HOLDOUT
    return found


def owner(run: str) -> str:
    """Where an id was used before, in words: "id already <this>"."""
    return "in the golden holdout" if run == HOLDOUT else f"in the training set, accepted by run {run}"


def trusted_runs(ws: Workspace) -> set[str]:
    """The reference and every run a person trusted (trusted.json, written by `poisongate trust`)."""
    path = ws.path(TRUSTED_FILE)
    entries = json.loads(path.read_text())["trusted"] if path.exists() else []
    return {REFERENCE} | {e["run_id"] for e in entries}


def untrusted(training: pd.DataFrame, trusted: set[str]) -> np.ndarray:
    """Rows accepted by the gates (or released from quarantine) but never trusted: the campaign checks' subject."""
    return ~training[RUN].isin(sorted(trusted)).to_numpy()


def nights(training: pd.DataFrame, mask: np.ndarray) -> list[str]:
    """The runs of the masked rows, in the order they were accepted."""
    return list(dict.fromkeys(training.loc[mask, RUN].tolist()))
