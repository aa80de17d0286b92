"""The `retrain` flow: reference -> expectations -> ingest -> validate (GX) -> filter (JAX) -> campaign -> train
-> audit -> crossval -> promote -> record.

It only wires: every stage is a module of tasks/, run here as a Prefect task. A gate that says no stops the
stages; the run is still recorded (quarantine kept, candidate registered with its decision), and the flow then
raises so it ends Failed with the gate's one-line reason."""
from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from flows import alerts
from flows.artifacts import publish
from poisongate import config as configuration
from poisongate.errors import GateRefused, PoisongateError, RegistryDamaged
from poisongate.reports import console
from poisongate.store import record, versioning
from poisongate.store.lock import workspace_lock
from poisongate.tables import frozen_survivors
from poisongate.workspace import Workspace, new_run_id
from tasks import STAGES, run_stage

# Stages have side effects and DVC is the cache: Prefect's input-hash cache would only cost time.
stage_task = task(run_stage, cache_policy=NO_CACHE)
finish_task = task(record.finish, name="record", cache_policy=NO_CACHE)
RETRAIN_ONLY = ("train", "audit", "crossval", "promote")  # on the dataset in the workspace, e.g. after a rollback
BEFORE_THE_BATCH = ("reference", "expectations", "ingest")  # a failure here raises: no batch was read


def say(line: str) -> None:
    """A line for the Prefect run log (UI, `--verbose`) and the CLI's console."""
    get_run_logger().info(line)
    console.show(line)


@flow(name="retrain", log_prints=True, on_failure=[alerts.on_failure])
def retrain(workspace: str = ".", attack: str | None = None, rate: float | None = None, batch: int | None = None,
            retrain_only: bool = False) -> dict[str, Any]:
    ws = Workspace(workspace)
    options = configuration.run_options(attack, rate, batch)
    config = configuration.with_options(configuration.load(ws.params), options)
    # a second run on the workspace waits for the first; each stage's collection skips what earlier ones kept
    with workspace_lock(ws, config.data.lock_timeout_s), frozen_survivors():
        versioning.init(ws)
        run_id = new_run_id()
        record.mark_started(ws, run_id)
        summaries: dict[str, Any] = {}
        for name in (RETRAIN_ONLY if retrain_only else STAGES):
            try:
                summaries[name] = stage_task.with_options(name=name)(ws, name, config)
            except PoisongateError as e:
                if name in BEFORE_THE_BATCH:  # nothing read yet, nothing to keep
                    record.mark_started(ws, run_id, started=False)
                    raise
                # a broken champion, a full disk: the run is still recorded and its quarantine kept
                summaries[record.ERROR] = {"stage": name, "passed": False, "reason": str(e),
                                           "registry_damaged": isinstance(e, RegistryDamaged)}
                break
            say(console.stage_line(name, summaries[name]))
            if summaries[name].get("passed") is False:
                break
        outcome = finish_task(ws, run_id, summaries, config, options)
        say(console.stage_line("record", {"passed": None, **outcome}))
    publish(ws, outcome["report"], config.data.id_column)
    say(f"run {run_id}: {outcome['verdict']} (report {outcome['report']})")
    if not outcome["passed"]:
        raise GateRefused(outcome["verdict"])
    return {k: v for k, v in outcome.items() if k != "markdown"}

