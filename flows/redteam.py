"""The `redteam` flow: every attack x rate x seed, gates on and off, in memory (poisongate/redteam.py holds the
logic).

Baselines (one per seed) and cells run as concurrent Prefect tasks on a thread pool: JAX and GX release the GIL
for their heavy work, so threads use every core without copying the data into other processes."""
from __future__ import annotations

import json
import time
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from poisongate import config as configuration
from poisongate import redteam as rt
from poisongate import redteam_nights
from poisongate.reports import progress
from poisongate.workspace import Workspace, atomic_write_text
from tasks.filter import chunk_scorer

# Array inputs and no side effects worth caching: Prefect's input hashing would only cost time.
baseline_task = task(rt.baseline, name="baseline", cache_policy=NO_CACHE)
cell_task = task(rt.run_cell, name="cell", cache_policy=NO_CACHE)


@flow(name="redteam", log_prints=True)
def redteam(workspace: str = ".", attacks: list[str] | None = None, rates: list[float] | None = None,
            seeds: list[int] | None = None, out: str | None = None, workers: int | None = None) -> dict[str, Any]:
    ws = Workspace(workspace)
    overrides = {"attacks": attacks, "rates": rates, "seeds": seeds, "out": out, "workers": workers}
    config = configuration.load(ws.params).replace("redteam", **{k: v for k, v in overrides.items() if v is not None})
    cfg = config.redteam
    data = rt.load_data(ws, config)
    names = rt.attack_names(cfg, len(data.schema.features))
    # Each cell's poisoning gate scores its chunks where filter.dask_address says, as the filter stage does.
    scorer = chunk_scorer(config.filter)
    start = time.perf_counter()
    with ThreadPoolTaskRunner(max_workers=cfg.workers) as runner:
        bases = {s: runner.submit(baseline_task, {"data": data, "config": config, "seed": s}) for s in cfg.seeds}
        bases = {s: f.result() for s, f in bases.items()}
        futures = [runner.submit(cell_task, {"data": data, "config": config, "attack": a, "rate": r, "seed": s,
                                             "base": bases[s], "scorer": scorer})
                   for a in names for r in cfg.rates for s in cfg.seeds]
        with progress.bar("red team: cells", len(futures)) as advance:
            cells = []
            for f in futures:  # in submission order: the matrix's order
                cells.append(f.result())
                advance()
    meta = rt.describe(config, data, names, list(cfg.seeds), seconds=time.perf_counter() - start)
    summary = rt.summarize(cells, cfg.targets)
    result = {"meta": meta, "summary": summary, "baselines": [rt.recorded(b) for b in bases.values()], "cells": cells}
    paths = rt.write_outputs(ws.path(cfg.out), result)
    missed = sum(r["target"] == "missed" for r in summary)
    create_table_artifact(table=rt.table_rows(summary), key="poisongate-redteam",
                          description=f"{len(cells)} cells; targets missed in {missed} of {len(summary)} "
                                      "attack x rate rows")
    print(f"red team: {len(cells)} cells in {meta['seconds']} s; targets missed in {missed} of {len(summary)} rows; "
          f"{paths['md']}")
    return {**result, "paths": paths}


campaign_task = task(redteam_nights.run_campaign, name="campaign", cache_policy=NO_CACHE)


@flow(name="redteam-nights", log_prints=True)
def redteam_over_nights(workspace: str = ".", nights: int = 10, attacks: list[str] | None = None,
                        rates: list[float] | None = None, out: str | None = None) -> dict[str, Any]:
    """Each attack as a campaign over `nights` nights at each rate per night, and the clean loop beside them:
    the night each was first caught, what reached the training set, the final champion vs the clean loop's."""
    ws = Workspace(workspace)
    overrides = {"attacks": attacks, "rates": rates, "out": out}
    config = configuration.load(ws.params).replace("redteam", **{k: v for k, v in overrides.items() if v is not None})
    cfg = config.redteam
    data = rt.load_data(ws, config)
    names = rt.attack_names(cfg, len(data.schema.features))
    start = time.perf_counter()
    with ThreadPoolTaskRunner(max_workers=cfg.workers) as runner:
        futures = {(a, r): runner.submit(campaign_task, {"data": data, "config": config, "attack": a, "rate": r,
                                                         "nights": nights, "seed": 0})
                   for a, r in [("none", 0.0), *((a, r) for a in names for r in cfg.rates)]}
        done = {key: f.result() for key, f in futures.items()}
    clean = done.pop(("none", 0.0))
    for cell in done.values():
        cell["clean_loop_accuracy"] = clean["final_champion_accuracy"]
    meta = {**rt.describe(config, data, names, [0], seconds=time.perf_counter() - start), "nights": nights}
    result = {"meta": meta, "clean": clean, "campaigns": list(done.values())}
    out_dir = ws.path(cfg.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / "redteam_nights.json", json.dumps(result, indent=1, default=str) + "\n")
    atomic_write_text(out_dir / "redteam_nights.md", redteam_nights.markdown(result))
    caught = sum(c["caught_night"] is not None for c in result["campaigns"])
    print(f"red team over {nights} nights: {caught} of {len(result['campaigns'])} campaigns caught; clean loop "
          f"{'false alarm' if clean['caught_night'] else 'no false alarm'}; {out_dir / 'redteam_nights.md'}")
    return result
