"""The red-team matrix: its cells on the real stage functions, its targets, and a small matrix through the flow."""
import json
import shutil

import pytest
import yaml
from conftest import ROOT

from poisongate import config as configuration
from poisongate import redteam as rt
from poisongate.errors import ConfigError
from poisongate.workspace import Workspace


@pytest.fixture
def workspace(tmp_path):
    """params.yaml only: the matrix reads the data in memory and writes nothing DVC tracks."""
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    return Workspace(tmp_path)


def fast(config):
    """10 epochs and the two cheapest detectors: these tests check the matrix, tests/test_detectors.py the gates."""
    cheap = {name: config.filter.detectors[name].model_dump() for name in ("robust_zscore", "knn_label")}
    return config.replace("redteam", epochs=10).replace("filter", detectors=cheap)


def test_small_matrix_through_the_flow_writes_json_markdown_heatmap_and_artifact(workspace, prefect_harness):
    from prefect.artifacts import Artifact

    from flows.redteam import redteam

    config = configuration.load(workspace.params)
    workspace.params.write_text(yaml.safe_dump(fast(config).model_dump(by_alias=True), sort_keys=False))
    result = redteam(workspace=str(workspace.root), attacks=["label_flip", "backdoor"], rates=[0.2], seeds=[0])

    cells = {c["attack"]: c for c in result["cells"]}
    assert set(cells) == {"label_flip", "backdoor"} and len(result["summary"]) == 2
    flip, backdoor = cells["label_flip"], cells["backdoor"]
    assert flip["poisoned_rows"] == round(0.2 * flip["batch_rows"])
    assert flip["recall"] >= 0.8 and flip["precision"] >= 0.6  # knn_label catches most flips
    assert flip["accuracy_with_gates"] >= flip["clean_accuracy"] - 0.02  # the target at 20%
    assert backdoor["asr_without_gates"] > 0.5 >= 0.1 >= backdoor["asr_with_gates"]  # the gates stop the backdoor
    for cell in result["cells"]:  # never a model worse than the champion beyond the practical margin
        worst = cell["champion_accuracy"] - cell["promotion_margin"]
        assert not cell["promoted"] or cell["accuracy_with_gates"] >= worst
        assert all(0.0 <= cell[k] <= 1.0 for k in ("clean_accuracy", "accuracy_with_gates", "f1"))

    out = workspace.path("reports", "redteam")
    saved = json.loads((out / "redteam.json").read_text())
    assert saved["meta"]["seeds"] == [0] and saved["meta"]["epochs"] == 10 and len(saved["cells"]) == 2
    text = (out / "redteam.md").read_text()
    assert "| label_flip | 20% |" in text and "| backdoor | 20% |" in text
    assert (out / "redteam.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    artifact = Artifact.get("poisongate-redteam")
    assert artifact is not None and "backdoor" in artifact.data


def test_irrelevant_features_batch_is_refused_whole_by_the_data_gate(workspace, config):
    config = fast(config)
    data = rt.load_data(workspace, config)
    base = rt.baseline(data, config, seed=0)
    cell = rt.run_cell(data, config, "irrelevant_features", 0.1, 0, base)
    assert "expect_table_columns_to_match_set" in cell["batch_refused"]
    assert cell["quarantined"] == cell["poisoned_rows"] == cell["batch_rows"]
    assert cell["precision"] == cell["recall"] == 1.0 and cell["promoted"] is False
    assert cell["accuracy_with_gates"] == cell["champion_accuracy"] == base["champion"]["accuracy"]
    assert 0.5 < cell["accuracy_without_gates"] <= 1.0  # the model saw the extra columns and still ran


def test_user_csv_files_feed_the_matrix(workspace, config, digits, tmp_path):
    reference, holdout, batches = digits["frames"]
    for name, frame in (("reference", reference), ("holdout", holdout), ("source", batches[1])):
        frame.to_csv(tmp_path / f"{name}.csv", index=False)
    files = {k: str(tmp_path / f"{k}.csv") for k in ("source", "reference", "holdout")}
    loaded = rt.load_data(workspace, config.replace("data", **files))
    assert loaded.batch["id"].tolist() == batches[1]["id"].tolist()
    assert len(loaded.reference) == len(reference) and loaded.schema.features == digits["schema"].features
    assert loaded.suite(len(loaded.batch))["expectations"][0]["type"] == "expect_table_columns_to_match_set"


def row(**kw):
    base = {"attack": "label_flip", "rate": 0.2, "clean_accuracy": 0.96, "accuracy_with_gates": 0.95,
            "champion_accuracy": 0.95, "worse_promoted": 0, "refused": 0, "recall": 0.9, "precision": 0.8}
    return {**base, **kw}


def test_targets_say_met_or_missed_and_why(config):
    targets = config.redteam.targets
    assert rt.check_targets(row(), targets) == ("met", "")
    verdict, why = rt.check_targets(row(accuracy_with_gates=0.90, recall=0.4), targets)
    assert verdict == "missed" and "6.0 points below clean (bound 2)" in why and "recall 0.40" in why
    assert rt.check_targets(row(rate=0.4, accuracy_with_gates=0.92), targets)[0] == "met"  # 4 points <= 5 at 40%
    assert "worse than the champion" in rt.check_targets(row(worse_promoted=1), targets)[1]
    verdict, why = rt.check_targets(row(attack="backdoor", rate=0.1, asr_with_gates=0.3), targets)
    assert verdict == "missed" and "ASR with gates 0.30" in why


def test_attack_names_leave_the_backdoor_out_only_for_non_image_rows(config):
    cfg = config.redteam.model_copy(update={"attacks": "all"})
    assert "backdoor" in rt.attack_names(cfg, 64) and "backdoor" not in rt.attack_names(cfg, 10)
    assert len(rt.attack_names(cfg, 64)) == 11
    with pytest.raises(ConfigError, match=r"redteam\.attacks = \['label_flip', 'nope'\]: unknown attack 'nope'"):
        config.replace("redteam", attacks=["label_flip", "nope"])
