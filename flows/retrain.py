"""The `retrain` flow: ingest -> validate (GX) -> filter (JAX) -> train -> cross-validate -> promote -> record.

It only wires: every stage is a function in tasks/, run here as a Prefect task. A gate that says no stops
the stages; the run is still recorded (quarantine kept, candidate registered with its decision), and the
flow then raises so it ends Failed with the gate's one-line reason."""
from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from tasks import record, report, versioning
from tasks.config import GateRefused, Workspace, load_params, set_params
from tasks.lock import one_run_per_workspace
from tasks.stages import STAGES, run_stage

# Stages have side effects and DVC is the cache: Prefect's input-hash cache would only cost time.
stage_task = task(run_stage, cache_policy=NO_CACHE)
finish_task = task(record.finish, name="record", cache_policy=NO_CACHE)
RETRAIN_ONLY = ("train", "crossval", "promote")  # on the dataset in the workspace, e.g. after a rollback


@flow(name="retrain", log_prints=True)
@one_run_per_workspace  # a second run on the same workspace waits for the lock (data.lock_timeout_s)
def retrain(workspace: str = ".", attack: str | None = None, rate: float | None = None, batch: int | None = None,
            retrain_only: bool = False) -> dict[str, Any]:
    ws = Workspace(workspace)
    versioning.init(ws)
    params = load_params(ws)
    if attack is not None or rate is not None or batch is not None:
        params = set_params(ws, {"simulate": {"attack": attack, "rate": rate}, "data": {"batch": batch}})
    run_id = record.new_run_id()
    summaries: dict[str, Any] = {}
    for name in (RETRAIN_ONLY if retrain_only else STAGES):
        summaries[name] = stage_task.with_options(name=name)(ws, name, params)
        if summaries[name].get("passed") is False:
            break
    outcome = finish_task(ws, run_id, summaries)
    report.publish(ws, outcome["report"])
    print(f"run {run_id}: {outcome['verdict']} (report {outcome['report']})")
    if not outcome["passed"]:
        raise GateRefused(outcome["verdict"])
    return {k: v for k, v in outcome.items() if k != "markdown"}
