"""`dvc repro` runs the same stages as the Prefect flow: same datasets, byte for byte."""
import pytest
import yaml

from flows.retrain import retrain
from tasks import versioning

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_dvc_repro_reproduces_the_flow_datasets(make_workspace, prefect_harness):
    by_flow = make_workspace("flow")
    assert retrain(workspace=str(by_flow.root))["passed"]
    by_dvc = make_workspace("dvc")
    versioning.run(by_dvc, "dvc", "repro", "-q")

    def outs(ws):
        lock = yaml.safe_load((ws.root / "dvc.lock").read_text())["stages"]
        return {o["path"]: o["md5"] for s in lock.values() for o in s.get("outs", [])}

    flow_outs, dvc_outs = outs(by_flow), outs(by_dvc)
    for path in ["data/reference.parquet", "data/holdout.parquet", "data/incoming.parquet", "data/clean.parquet",
                 "data/quarantine.parquet", "expectations/suite.json"]:
        assert flow_outs[path] == dvc_outs[path], path
    assert set(flow_outs) == set(dvc_outs)
    assert "models/candidate" in dvc_outs
