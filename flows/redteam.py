"""The `redteam` flow: every attack x rate x seed, gates on and off, in memory (poisongate/redteam.py holds the
logic).

Baselines (one per seed) and cells run as concurrent Prefect tasks on a thread pool: JAX and GX release the GIL
for their heavy work, so threads use every core without copying the data into other processes."""
from __future__ import annotations

import time
from typing import Any

from prefect import flow, task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from poisongate import config as configuration
from poisongate import redteam as rt
from poisongate.workspace import Workspace
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
        cells = [f.result() for f in futures]
    meta = rt.describe(config, data, names, list(cfg.seeds), seconds=time.perf_counter() - start)
    summary = rt.summarize(cells, cfg.targets)
    result = {"meta": meta, "summary": summary, "baselines": list(bases.values()), "cells": cells}
    paths = rt.write_outputs(ws.path(cfg.out), result)
    missed = sum(r["target"] == "missed" for r in summary)
    create_table_artifact(table=rt.table_rows(summary), key="poisongate-redteam",
                          description=f"{len(cells)} cells; targets missed in {missed} of {len(summary)} "
                                      "attack x rate rows")
    print(f"red team: {len(cells)} cells in {meta['seconds']} s; targets missed in {missed} of {len(summary)} rows; "
          f"{paths['md']}")
    return {**result, "paths": paths}
