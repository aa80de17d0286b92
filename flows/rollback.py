"""The `rollback` flow: restore a recorded dataset version (default: the last clean one) and its champion.

It only wires poisongate/store/rollback.py; `poisongate rollback` runs the same function without Prefect."""
from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from poisongate import config as configuration
from poisongate.store import rollback as rollbacks
from poisongate.store.lock import workspace_lock
from poisongate.workspace import Workspace

rollback_task = task(rollbacks.rollback, name="restore", cache_policy=NO_CACHE)


@flow(name="rollback", log_prints=True)
def rollback(workspace: str = ".", to: str | None = None) -> dict[str, Any]:
    ws = Workspace(workspace)
    with workspace_lock(ws, configuration.lock_timeout(ws.params)):  # params.yaml may be the broken thing
        entry = rollback_task(ws, to)
    create_markdown_artifact(markdown=rollbacks.markdown(entry), key="poisongate-rollback",
                             description=entry["message"])
    print(entry["message"])
    return entry
