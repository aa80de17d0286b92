"""Stage `campaign`: the cross-night checks (poisongate/campaign.py) on the untrusted rows of data/clean.parquet
(the training set + tonight's accepted rows) against the gates' reference. Each night's flags come from its
scores: tonight's data/scores.parquet, earlier nights' scores/<run>.parquet. A campaign found refuses the night,
naming the nights involved and the run to roll back to."""
from __future__ import annotations

import json
from typing import Any

import numpy as np

from poisongate import campaign, training_set
from poisongate.config import Config
from poisongate.schema import to_arrays
from poisongate.sources import gate_reference
from poisongate.tables import read_table
from poisongate.workspace import Workspace


def night_flags(ws: Workspace, runs: list[str], detectors: list[str]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per detector, the rows it flagged each night (-1 where a night's scores are missing), and rows screened."""
    flagged = {name: np.full(len(runs), -1, np.int64) for name in detectors}
    screened = np.zeros(len(runs), np.int64)
    for i, run in enumerate(runs):
        path = ws.scores if run == training_set.TONIGHT else ws.scores_store / f"{run}.parquet"
        if not path.exists():
            continue
        scores = read_table(path)
        screened[i] = len(scores)
        for name in detectors:
            if f"flag_{name}" in scores.columns:
                flagged[name][i] = int(scores[f"flag_{name}"].sum())
    return flagged, screened


def suggestion(runs: list[str], involved: list[str]) -> str:
    """Which run to roll back to: the last untrusted night before the ones involved."""
    start = runs.index(involved[0])
    if start == 0:
        return ("no accepted night before it to roll back to: trust the nights a person vouches for "
                "(`poisongate trust RUN`) or roll back to a run before the first of them")
    return f"roll back with `poisongate rollback --to {runs[start - 1]}`"


def run(ws: Workspace, config: Config) -> dict[str, Any]:
    reference, schema = gate_reference(ws, config.data)
    clean = read_table(ws.clean, columns=[*schema.model_columns, training_set.RUN])
    mask = training_set.untrusted(clean, training_set.trusted_runs(ws))
    runs = training_set.nights(clean, mask)
    X, y = to_arrays(clean.loc[mask], schema)
    night = clean.loc[mask, training_set.RUN].map({r: i for i, r in enumerate(runs)}).to_numpy(np.int64)
    del clean  # 0.4 GB at 1M rows, not read again
    detectors = campaign.row_level(config.filter.detectors)
    flagged, screened = night_flags(ws, runs, detectors)
    exceeding = json.loads(ws.report("filter").read_text()).get("trusted_exceeding", {})
    trusted = campaign.Trusted(*to_arrays(reference, schema), len(schema.classes),
                               {k: tuple(v) for k, v in exceeding.items()})
    verdict = campaign.judge(trusted, campaign.Nights(runs, X, y, night, flagged, screened), config.campaign,
                             config.filter)
    involved = verdict["involved"]
    verdict["involved"] = named = [r or "tonight" for r in involved]
    if not verdict["fired"]:
        return {"passed": True, "reason": None, **verdict}
    first = next(row for row in verdict["checks"] if row["fired"])
    reason = (f"campaign across nights: {first['check']} p={first['p_value']:.2g} < {first['bound']:.2g} "
              f"({first['detail']}) over nights {named[0]}..{named[-1]} ({len(named)} nights); "
              f"{suggestion(runs, involved)}")
    return {"passed": False, "reason": reason, **verdict}
