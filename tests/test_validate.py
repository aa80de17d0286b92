import json

import numpy as np
import pandas as pd
import pytest

from poisongate.data_gate import build_suite, validate_frame
from poisongate.errors import PoisongateError
from poisongate.tables import write_table
from poisongate.workspace import Workspace
from tasks import run_stage


@pytest.fixture(scope="module")
def suite(digits, config):
    reference = digits["frames"][0]
    return build_suite(reference, digits["schema"], config.validation, config.data.min_rows)


def test_suite_is_derived_from_the_reference(suite, digits):
    kinds = [e["type"] for e in suite["expectations"]]
    assert kinds.count("expect_column_values_to_be_between") == 2 * len(digits["schema"].features)
    label_set = next(e for e in suite["expectations"] if e["type"] == "expect_column_values_to_be_in_set")
    assert label_set["kwargs"]["value_set"] == list(range(10))


def test_clean_batches_pass(suite, digits):
    for batch in digits["frames"][2]:
        result = validate_frame(batch, suite)
        assert result["passed"], result["failed"]


def test_bad_batch_fails_naming_every_broken_expectation(suite, digits):
    bad = digits["frames"][2][0].copy()
    bad.loc[bad.index[3], "pixel_0_3"] = np.inf
    bad.loc[bad.index[4], "pixel_0_4"] = np.nan
    bad.loc[bad.index[5], "label"] = 12
    bad["injected"] = 1.0
    result = validate_frame(bad, suite)
    assert not result["passed"]
    failed = {(f["expectation"], f["column"]) for f in result["failed"]}
    assert ("expect_table_columns_to_match_set", None) in failed
    assert ("expect_column_values_to_be_between", "pixel_0_3") in failed
    assert ("expect_column_values_to_not_be_null", "pixel_0_4") in failed
    assert ("expect_column_values_to_be_in_set", "label") in failed
    assert {"unexpected": ["injected"]} in [f["observed"] for f in result["failed"]]


def test_mass_out_of_range_values_refuse_the_batch(suite, digits):
    bad = digits["frames"][2][0].copy()
    bad.loc[bad.index[: len(bad) // 5], "pixel_3_3"] = 500.0  # 20% > the 10% the suite tolerates
    result = validate_frame(bad, suite)
    assert not result["passed"]
    assert {f["column"] for f in result["failed"]} == {"pixel_3_3"}


def test_suite_covers_types_distribution_bands_class_proportions_and_duplicates(suite, digits):
    kinds = {e["type"] for e in suite["expectations"]}
    assert {"expect_column_values_to_be_in_type_list", "expect_column_mean_to_be_between",
            "expect_column_stdev_to_be_between", "expect_column_quantile_values_to_be_between",
            "expect_column_kl_divergence_to_be_less_than", "expect_compound_columns_to_be_unique",
            "expect_table_row_count_to_be_between"} <= kinds


def failed_kinds(frame, suite):
    result = validate_frame(frame, suite)
    return result["passed"], {f["expectation"] for f in result["failed"]}


def test_batch_gate_names_distribution_class_and_duplicate_failures(suite, digits):
    batch = digits["frames"][2][0]
    shifted = batch.copy()
    shifted["pixel_4_4"] = shifted["pixel_4_4"] + 0.8 * batch["pixel_4_4"].std()
    passed, kinds = failed_kinds(shifted, suite)
    assert not passed and "expect_column_mean_to_be_between" in kinds
    one_class = batch[batch["label"] == 3]
    one_class = pd.concat([one_class] * 3, ignore_index=True).assign(id=lambda f: np.arange(len(f)))
    passed, kinds = failed_kinds(one_class, suite)
    assert not passed and {"expect_column_kl_divergence_to_be_less_than",
                           "expect_compound_columns_to_be_unique"} <= kinds
    assert "expect_table_row_count_to_be_between" in failed_kinds(batch.head(3), suite)[1]
    wrong_type = batch.astype({"pixel_2_2": str})
    assert "expect_column_values_to_be_in_type_list" in failed_kinds(wrong_type, suite)[1]


def stage_workspace(tmp_path, digits, batch):
    ws = Workspace(tmp_path)
    reference, _, _ = digits["frames"]
    write_table(reference, ws.reference)
    write_table(batch, ws.incoming)
    ws.user_expectations.parent.mkdir(parents=True, exist_ok=True)
    return ws


def test_validate_writes_data_docs_and_names_them_in_the_summary(tmp_path, digits, config):
    ws = stage_workspace(tmp_path, digits, digits["frames"][2][0])
    run_stage(ws, "expectations", config)
    summary = run_stage(ws, "validate", config)
    docs = ws.root / summary["data_docs"]
    assert summary["passed"] and docs.is_file() and docs.parent == ws.path("reports", "data_docs")
    html = docs.read_text()
    assert "Great Expectations" in html and "pixel_4_4" in html and f"{summary['evaluated']}" in html


def test_user_expectations_are_merged_into_the_derived_suite_and_applied(tmp_path, digits, config):
    batch = digits["frames"][2][0]
    ws = stage_workspace(tmp_path, digits, batch)
    derived = run_stage(ws, "expectations", config)["expectations"]
    assert run_stage(ws, "validate", config)["passed"]
    # The user's own rule, in GX's JSON format: this batch's pixel_3_3 reaches 16, so it must now fail.
    mine = {"type": "expect_column_max_to_be_between", "kwargs": {"column": "pixel_3_3", "max_value": 8}}
    ws.user_expectations.write_text(json.dumps({"name": "mine", "expectations": [mine]}))
    assert run_stage(ws, "expectations", config)["rebuilt"]  # the user's file changed
    assert not run_stage(ws, "expectations", config)["rebuilt"]
    suite = json.loads(ws.suite.read_text())
    assert len(suite["expectations"]) == derived + 1
    assert suite["expectations"][-1]["meta"]["owner"] == "user" and suite["expectations"][-1]["type"] == mine["type"]
    summary = run_stage(ws, "validate", config)
    assert not summary["passed"]
    assert [(f["expectation"], f["column"]) for f in summary["failed"]] == [(mine["type"], "pixel_3_3")]


def test_a_user_expectation_gx_refuses_is_one_line_naming_the_file_and_its_position(tmp_path, digits, config):
    ws = stage_workspace(tmp_path, digits, digits["frames"][2][0])
    good = {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "label"}}
    ws.user_expectations.write_text(json.dumps({"name": "mine", "expectations": [good, {"type": "expect_nothing"}]}))
    with pytest.raises(PoisongateError, match=r"user\.json: expectation 1 is not valid for Great Expectations") as e:
        run_stage(ws, "expectations", config)
    assert "\n" not in str(e.value) and not ws.suite.exists()
