import os
import tempfile
from pathlib import Path

# Before anything imports Prefect: an isolated home and no network.
os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="poisongate-prefect-"))
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DVC_NO_ANALYTICS"] = "1"

import numpy as np
import pytest
import yaml

from poisongate import config as configuration
from poisongate.schema import schema_from_reference, to_arrays
from poisongate.sources import load_digits_frame, split_default

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def config() -> configuration.Config:
    """The shipped params.yaml, parsed."""
    return configuration.load(ROOT / "params.yaml")


def set_params(ws, updates: dict) -> configuration.Config:
    """Change keys of a workspace's params.yaml, section by section, as a user edits the file (a nested section
    such as data.sha256 key by key, a mapping such as filter.detectors whole); validated as the product does, so
    a test cannot write a value the product would refuse by mistake."""
    config = configuration.load(ws.root / "params.yaml")
    for section, values in updates.items():
        config = config.replace(section, **values)
    (ws.root / "params.yaml").write_text(yaml.safe_dump(config.model_dump(by_alias=True), sort_keys=False))
    return config


def recipe(base: configuration.Recipe | None = None, **overrides) -> configuration.Recipe:
    """A training recipe: `base` (default: params.yaml's `train`) with some keys changed, nested sections merged,
    validated as params.yaml is."""
    values = (base or configuration.load(ROOT / "params.yaml").train).model_dump()
    for key, value in overrides.items():
        values[key] = {**values[key], **value} if isinstance(value, dict) else value
    return configuration.Recipe.model_validate({k: values[k] for k in configuration.Recipe.model_fields})


@pytest.fixture(scope="session")
def digits(config):
    """The default split as arrays: reference, holdout and the first incoming batch."""
    reference, holdout, batches = split_default(load_digits_frame(), config.data.split)
    schema = schema_from_reference(reference, config.data, "reference")
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
    """A fresh workspace as `poisongate init` writes it (the project's params and stages, git + DVC) with a local
    directory remote beside it."""
    from poisongate.store import versioning
    from poisongate.workspace import Workspace

    def make(name: str = "ws") -> Workspace:
        ws = Workspace(tmp_path / name)
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
