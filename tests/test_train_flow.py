"""The real flow with a training run that diverges: it ends Failed with the one-line NaN/inf message and
registers no model."""
import json

import pytest
from conftest import set_params

from flows.retrain import retrain
from poisongate.store.registry import champion_id

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_diverging_training_fails_the_run_and_registers_nothing(make_workspace, prefect_harness):
    ws = make_workspace()
    set_params(ws, {"train": {"learning_rate": 1e30}})
    state = retrain(workspace=str(ws.root), return_state=True)
    assert state.is_failed()
    assert "NaN/inf at epoch 0" in str(state.result(raise_on_failure=False))
    assert json.loads(ws.report("train").read_text())["nonfinite"] is True
    assert not ws.registry.exists() or not any(p.is_dir() for p in ws.registry.iterdir())
    assert champion_id(ws) is None
