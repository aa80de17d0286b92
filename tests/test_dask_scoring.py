"""filter.dask_address: chunks scored as Prefect tasks on a real local Dask cluster, the same as in process."""
import socket

import numpy as np
import pytest
from conftest import ROOT, blobs

from poisongate import config as configuration
from poisongate.errors import PoisongateError
from poisongate.poisoning_gate import screen
from tasks.filter import chunk_scorer

# Row-wise detectors (scored in chunks) and whole-batch ones (scored in this process either way); the two
# that train models are left out: they are whole-batch too, and slow.
DETECTORS = {"robust_zscore": {}, "iqr_fence": {}, "mahalanobis": {}, "knn_label": {"k": 10}, "periodic_noise": {},
             "batch_shift": {}, "duplicates": {"max_copies": 1}}
SHIPPED = configuration.load(ROOT / "params.yaml")
CFG = SHIPPED.replace("filter", false_positive_rate=0.01, chunk_rows=128, detectors=DETECTORS).filter


def with_filter(**values):
    return SHIPPED.replace("filter", **{**CFG.model_dump(), **values}).filter


def run_filter(X_ref, y_ref, X, y, cfg):
    """The poisoning gate as the filter stage runs it: chunks scored where filter.dask_address says."""
    return screen(X_ref, y_ref, X, y, cfg, chunk_scorer(cfg))


@pytest.fixture(scope="module")
def cluster():
    from distributed import Client, LocalCluster

    cluster = LocalCluster(host="127.0.0.1", n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    try:
        with Client(cluster) as client:
            yield cluster.scheduler_address, client
    finally:
        cluster.close()


def poisoned_batch():
    X_ref, y_ref = blobs()
    X, y = blobs(n_per_class=150, seed=1)  # 450 rows: 4 chunks of 128, the last one padded
    X[:10, 2] = 1e3  # extreme values
    y[10:40] = (y[10:40] + 1) % 3  # flipped labels
    X[40:45] = X[50]  # copies
    return X_ref, y_ref, X, y


def scored_chunks(client) -> int:
    """score_chunk tasks the cluster's scheduler saw computed (processing -> memory)."""
    return client.run_on_scheduler(lambda dask_scheduler: sum(
        1 for key, _, finish, *_ in dask_scheduler.transition_log
        if str(key).startswith("score_chunk-") and finish == "memory"))


@pytest.mark.slow  # a Dask cluster of two processes, each importing JAX and the detectors: about half a minute
def test_dask_cluster_scores_exactly_like_one_process(cluster, prefect_harness):
    address, client = cluster
    X_ref, y_ref, X, y = poisoned_batch()
    for trusted in (True, False):  # calibrated on trusted rows, or a robust fit on the batch itself
        ref = (X_ref, y_ref) if trusted else (X_ref[:0], y_ref[:0])
        local = run_filter(*ref, X, y, CFG)
        before = scored_chunks(client)
        remote = run_filter(*ref, X, y, with_filter(dask_address=address))
        assert scored_chunks(client) - before == 4  # one task per chunk ran on the cluster
        # the same chunks through the same compiled code: bitwise identical, not merely close
        assert list(remote.scores) == list(local.scores) == list(DETECTORS)
        for name in DETECTORS:
            assert np.array_equal(remote.scores[name], local.scores[name]), name
        assert remote.thresholds == local.thresholds
        assert np.array_equal(remote.quarantined, local.quarantined)
    assert local.quarantined[:10].all() and remote.flags["knn_label"][10:40].mean() > 0.9


def test_unreachable_dask_address_is_one_line_naming_the_param():
    import dask

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    X_ref, y_ref, X, y = poisoned_batch()
    cfg = with_filter(detectors={"robust_zscore": {}}, dask_address=f"tcp://127.0.0.1:{port}")
    with dask.config.set({"distributed.comm.timeouts.connect": "1s"}):
        with pytest.raises(PoisongateError, match=r"filter\.dask_address: no Dask scheduler answers") as e:
            run_filter(X_ref, y_ref, X, y, cfg)
    assert "\n" not in str(e.value) and "null" in str(e.value)
