"""`dvc repro` runs the same stages as the Prefect flow: same datasets, byte for byte; and each stage's own code
is one of its deps, so editing a stage's module re-runs that stage under `dvc repro`, and not the ones before it."""
import json
import shutil

import pytest
import yaml
from conftest import ROOT

from flows.retrain import retrain
from poisongate.store import versioning

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_dvc_repro_reproduces_the_flow_datasets_and_follows_the_stage_code(make_workspace, prefect_harness, tmp_path):
    by_flow = make_workspace("flow")
    assert retrain(workspace=str(by_flow.root))["passed"]
    by_dvc = make_workspace("dvc")
    code = tmp_path / "code"  # the code the dvc.yaml deps point at: a copy, so that the test can edit it
    for package in ("poisongate", "tasks", "flows"):
        shutil.copytree(ROOT / package, code / package, ignore=shutil.ignore_patterns("__pycache__"))
    dvc_yaml = by_dvc.root / "dvc.yaml"
    dvc_yaml.write_text(dvc_yaml.read_text().replace(f"  - code: {json.dumps(str(ROOT))}\n", f"  - code: {code}\n"))
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

    stage = code / "tasks" / "filter.py"
    stage.write_text(stage.read_text() + "\n# edited: the filter stage's code changed\n")
    log = versioning.run(by_dvc, "dvc", "repro")
    ran = {line.split("'")[1] for line in log.splitlines() if line.startswith("Running stage")}
    assert "filter" in ran and not ran & {"reference", "expectations", "ingest", "validate"}, log
