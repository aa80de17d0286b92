"""The `score-batch` flow: a batch's chunks scored as Prefect tasks on a Dask cluster (params.yaml
filter.dask_address), through prefect-dask's DaskTaskRunner. It only wires: the chunks and the scoring are the
poisoning gate's (poisongate/poisoning_gate.py)."""
from __future__ import annotations

from typing import Any

import numpy as np
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from poisongate.errors import PoisongateError
from poisongate.poisoning_gate import ChunkScorer, score_chunk

# Array inputs: hashing them for Prefect's cache would only cost time.
score_chunk_task = task(score_chunk, name="score_chunk", cache_policy=NO_CACHE)


@flow(name="score-batch", validate_parameters=False)
def score_batch(fitted: dict[str, Any], chunks: list[tuple[np.ndarray, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    futures = [score_chunk_task.submit(fitted, xs, ys) for xs, ys in chunks]
    return [future.result() for future in futures]  # in chunk order


def dask_scorer(address: str) -> ChunkScorer:
    """Check the scheduler answers (distributed.comm.timeouts.connect, 30 s by default); then a scorer that runs
    the flow on it."""
    from distributed import Client
    from prefect_dask import DaskTaskRunner

    try:
        Client(address, set_as_default=False).close()
    except (OSError, ValueError) as e:  # refused, timed out, or not an address
        raise PoisongateError(
            f"params.yaml filter.dask_address: no Dask scheduler answers at {address!r} ({type(e).__name__}); "
            "start one there (`dask scheduler` and `dask worker ADDRESS`) or set it to null to score in this process"
        ) from None
    return score_batch.with_options(task_runner=DaskTaskRunner(address=address))
