"""Rollback: hashes verified against DVC's own, target choice, and the whole story on a real workspace."""
import json
import subprocess

import pytest
import yaml

from poisongate.errors import PoisongateError
from poisongate.store import versioning
from poisongate.store.rollback import champion_of, choose_target
from poisongate.workspace import Workspace


def row(run_id, promoted, revoked=False):
    return {"run_id": run_id, "promoted": promoted, "revoked": revoked, "commit": f"c{run_id}"}


def test_default_target_is_the_last_promoted_unrevoked_run_before_the_champion():
    rows = [row("1", True), row("2", True, revoked=True), row("3", True), row("4", False), row("5", True)]
    assert choose_target(rows, "5", None)["run_id"] == "3"
    assert choose_target(rows, "3", None)["run_id"] == "1"
    assert choose_target(rows, "5", "2")["run_id"] == "2"  # --to wins, by run id
    assert choose_target(rows, "5", "c4")["run_id"] == "4"  # or by commit
    with pytest.raises(PoisongateError, match="no promoted run before the champion"):
        choose_target(rows, "1", None)
    with pytest.raises(PoisongateError, match="9: no recorded runs match"):
        choose_target(rows, "5", "9")


def test_champion_of_that_time_must_exist_before_anything_is_restored(tmp_path):
    ws = Workspace(tmp_path)
    (ws.registry / "1" / "checkpoint").mkdir(parents=True)
    assert champion_of(ws, {**row("2", False), "champion_after": "1"}) == "1"  # a refused run: the champion it kept
    assert champion_of(ws, {**row("1", True), "champion_after": None}) == "1"
    with pytest.raises(PoisongateError, match="runs/3.json: there was no champion after this run"):
        champion_of(ws, {**row("3", False), "champion_after": None})
    with pytest.raises(PoisongateError, match="the champion of that time is missing"):
        champion_of(ws, {**row("4", True), "champion_after": "4"})


def test_recomputed_hashes_match_dvc_and_catch_a_changed_byte(make_workspace):
    ws = make_workspace()
    (ws.root / "m" / "sub").mkdir(parents=True)
    (ws.root / "m" / "a.bin").write_bytes(b"\x00\x01weights")
    (ws.root / "m" / "sub" / "b.json").write_text('{"x": 1}\n')
    (ws.root / "f.parquet").write_bytes(b"PAR1 not really")
    versioning.run(ws, "dvc", "add", "-q", "m", "f.parquet")
    recorded = {p: yaml.safe_load((ws.root / f"{p}.dvc").read_text())["outs"][0]["md5"] for p in ("m", "f.parquet")}
    assert recorded["m"].endswith(".dir")
    assert {p: versioning.content_md5(ws.root / p) for p in recorded} == recorded  # same hashes as DVC's

    lock = {"schema": "2.0",
            "stages": {"s": {"cmd": "true", "outs": [{"path": p, "md5": h} for p, h in recorded.items()]}}}
    (ws.root / "dvc.lock").write_text(yaml.safe_dump(lock))
    assert versioning.verify_outputs(ws) == recorded
    (ws.root / "m" / "sub" / "b.json").write_text('{"x": 2}\n')
    with pytest.raises(PoisongateError) as e:
        versioning.verify_outputs(ws)
    assert "/m: restored content hash" in str(e.value) and "\n" not in str(e.value)


# a gate that lets label flips through: only the outlier detector, and a promotion gate that accepts anything
LOOSE_GATES = {
    "filter": {"detectors": {"robust_zscore": {}}},
    "promote": {"alpha": 1e-12, "max_accuracy_drop": 1.0, "min_accuracy": None, "min_class_recall": None},
}


def latest_report(ws):
    return json.loads(max(ws.runs.glob("*.json")).read_text())


def champion(ws):
    return json.loads((ws.registry / "champion.json").read_text())["run_id"]


@pytest.mark.integration
@pytest.mark.slow
def test_poison_accepted_by_a_loose_gate_is_rolled_back_and_retraining_reproduces_the_clean_model(make_workspace,
                                                                                                   prefect_harness,
                                                                                                   tmp_path):
    from conftest import set_params

    from flows.retrain import retrain
    from flows.rollback import rollback
    from poisongate.store.history import history

    ws = make_workspace()
    assert retrain(workspace=str(ws.root))["passed"]
    clean = latest_report(ws)
    clean_detectors = yaml.safe_load((ws.root / "params.yaml").read_text())["filter"]["detectors"]
    set_params(ws, LOOSE_GATES)
    assert retrain(workspace=str(ws.root), attack="label_flip", rate=0.3, batch=1)["passed"]
    poisoned = latest_report(ws)
    assert poisoned["detection"]["recall"] < 0.5  # the loose gate let most flips in
    assert champion(ws) == poisoned["run_id"]
    assert poisoned["dvc_hashes"]["data/clean.parquet"] != clean["dvc_hashes"]["data/clean.parquet"]

    # A fresh clone of the repo, with nothing but git and the DVC remote, rolls back from the command line.
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ws.root), str(clone)], check=True)
    proc = subprocess.run(["poisongate", "--workspace", str(clone), "rollback"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().startswith(f"poisongate rollback to run {clean['run_id']}")
    assert versioning.content_md5(clone / "data" / "clean.parquet") == clean["dvc_hashes"]["data/clean.parquet"]
    assert json.loads((clone / "registry" / "champion.json").read_text())["run_id"] == clean["run_id"]

    # The Prefect flow does the same in place.
    entry = rollback(workspace=str(ws.root))
    assert entry["to"] == clean["run_id"] and entry["revoked"] == [poisoned["run_id"]]
    for path in ("data/clean.parquet", "data/reference.parquet", "data/holdout.parquet", "models/candidate"):
        assert versioning.content_md5(ws.root / path) == clean["dvc_hashes"][path], path
    assert champion(ws) == clean["run_id"]
    assert yaml.safe_load((ws.root / "params.yaml").read_text())["filter"]["detectors"] == clean_detectors
    assert versioning.run(ws, "git", "status", "--porcelain").strip() == ""
    assert [r["revoked"] for r in history(ws)] == [False, True]

    rerun = retrain(workspace=str(ws.root), retrain_only=True)
    assert rerun["passed"]
    again = latest_report(ws)
    assert again["dvc_hashes"]["data/clean.parquet"] == clean["dvc_hashes"]["data/clean.parquet"]
    for key in ("accuracy", "class_recall", "confusion"):
        assert again["stages"]["promote"]["candidate"][key] == clean["stages"]["promote"]["candidate"][key], key
    assert again["stages"]["crossval"]["fold_accuracy"] == clean["stages"]["crossval"]["fold_accuracy"]
