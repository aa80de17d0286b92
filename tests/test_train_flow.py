"""The real flow with a training run that diverges: it ends Failed with the one-line NaN/inf message and
registers no model."""
import json

import pytest
import yaml

from flows.retrain import retrain

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_diverging_training_fails_the_run_and_registers_nothing(make_workspace, prefect_harness):
    ws = make_workspace()
    params = yaml.safe_load(ws.path("params.yaml").read_text())
    params["train"]["learning_rate"] = 1e30
    ws.path("params.yaml").write_text(yaml.safe_dump(params))
    state = retrain(workspace=str(ws.root), return_state=True)
    assert state.is_failed()
    assert "NaN/inf at epoch 0" in str(state.result(raise_on_failure=False))
    assert json.loads(ws.report("train").read_text())["nonfinite"] is True
    assert not ws.registry.exists() or not any(p.is_dir() for p in ws.registry.iterdir())
    assert not (ws.registry / "champion.json").exists()
