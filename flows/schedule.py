"""When the Prefect server at PREFECT_API_URL runs the nightly deployment next (`poisongate status`)."""
from __future__ import annotations


def next_scheduled(deployment: str = "retrain/nightly") -> str:
    """When the Prefect server at PREFECT_API_URL runs `deployment` next, as a line; "" without a server."""
    import asyncio
    import os

    url = os.environ.get("PREFECT_API_URL")
    if not url:
        return ""

    async def ask() -> str:
        from prefect.client.orchestration import get_client
        from prefect.client.schemas.filters import (
            DeploymentFilter,
            DeploymentFilterId,
            FlowRunFilter,
            FlowRunFilterState,
            FlowRunFilterStateType,
        )
        from prefect.client.schemas.objects import StateType
        from prefect.client.schemas.sorting import FlowRunSort

        async with get_client() as client:
            found = await client.read_deployment_by_name(deployment)
            runs = await client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[found.id])),
                flow_run_filter=FlowRunFilter(state=FlowRunFilterState(
                    type=FlowRunFilterStateType(any_=[StateType.SCHEDULED]))),
                sort=FlowRunSort.EXPECTED_START_TIME_ASC, limit=1)
        if not runs:
            return f"next run of {deployment}: none scheduled on {url}"
        return f"next run of {deployment}: {runs[0].expected_start_time:%Y-%m-%d %H:%M %Z} ({runs[0].name})"

    try:
        return asyncio.run(ask())
    except Exception as e:  # the server is down or the deployment is not there: say so, do not fail the status
        return f"next run of {deployment}: unknown ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}" \
               f" at PREFECT_API_URL={url})"
