"""The `rollback` flow: restore a recorded dataset version (default: the last clean one) and its champion.

It only wires tasks/rollback.py; `poisongate rollback` runs the same function without Prefect."""
from __future__ import annotations

from typing import Any

from prefect import flow, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from tasks import rollback as rollbacks
from tasks.config import Workspace
from tasks.lock import one_run_per_workspace

rollback_task = task(rollbacks.rollback, name="restore", cache_policy=NO_CACHE)


@flow(name="rollback", log_prints=True)
@one_run_per_workspace
def rollback(workspace: str = ".", to: str | None = None) -> dict[str, Any]:
    entry = rollback_task(Workspace(workspace), to)
    create_markdown_artifact(markdown=rollbacks.markdown(entry), key="poisongate-rollback", description=entry["message"])
    print(entry["message"])
    return entry
