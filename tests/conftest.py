import os
import shutil
import tempfile
from pathlib import Path

# Before anything imports Prefect: an isolated home and no network.
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="poisongate-prefect-"))
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DVC_NO_ANALYTICS"] = "1"

import numpy as np
import pytest
import yaml

from tasks.data import load_digits_frame, schema_from_reference, split_default, to_arrays

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def params():
    return yaml.safe_load((ROOT / "params.yaml").read_text())


@pytest.fixture(scope="session")
def digits(params):
    """The default split as arrays: reference, holdout and the first incoming batch."""
    reference, holdout, batches = split_default(load_digits_frame(), params["data"]["split"])
    schema = schema_from_reference(reference, params["data"], "reference")
    return {
        "schema": schema,
        "frames": (reference, holdout, batches),
        "reference": to_arrays(reference, schema),
        "holdout": to_arrays(holdout, schema),
        "batch": to_arrays(batches[0], schema),
    }


@pytest.fixture(scope="session")
def prefect_harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=60):
        yield


@pytest.fixture
def make_workspace(tmp_path):
    """A fresh git + DVC workspace with a local directory remote, using the project's params and stages."""
    from tasks import versioning
    from tasks.config import Workspace

    def make(name: str = "ws") -> Workspace:
        root = tmp_path / name
        root.mkdir()
        for f in ("params.yaml", "dvc.yaml"):
            shutil.copy(ROOT / f, root / f)
        ws = Workspace(root)
        versioning.init(ws, remote=str(tmp_path / f"{name}-remote"))
        return ws

    return make


def blobs(n_per_class: int = 200, n_classes: int = 3, n_features: int = 8, seed: int = 0):
    """Well-separated Gaussian classes: a small synthetic case where every detector should be sure."""
    centers = np.random.default_rng(12345).normal(0, 6, size=(n_classes, n_features))  # same classes for every seed
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(n_classes), n_per_class).astype(np.int32)
    X = (centers[y] + rng.normal(0, 1, size=(len(y), n_features))).astype(np.float32)
    return X, y
