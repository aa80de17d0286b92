import numpy as np
import pandas as pd
import pytest

from tasks.validate import build_suite, validate_frame


@pytest.fixture(scope="module")
def suite(digits, params):
    reference = digits["frames"][0]
    return build_suite(reference, digits["schema"], params["validate"])


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
    assert not passed and {"expect_column_kl_divergence_to_be_less_than", "expect_compound_columns_to_be_unique"} <= kinds
    assert "expect_table_row_count_to_be_between" in failed_kinds(batch.head(3), suite)[1]
    wrong_type = batch.astype({"pixel_2_2": str})
    assert "expect_column_values_to_be_in_type_list" in failed_kinds(wrong_type, suite)[1]


def test_validate_writes_data_docs_and_names_them_in_the_summary(tmp_path, digits, params):
    from tasks.config import Workspace
    from tasks.data import write_table
    from tasks.validate import build, validate

    ws = Workspace(tmp_path)
    reference, _, batches = digits["frames"]
    write_table(reference, ws.reference)
    write_table(batches[0], ws.incoming)
    build(ws, params)
    summary = validate(ws, params)
    docs = ws.root / summary["data_docs"]
    assert summary["passed"] and docs.is_file() and docs.parent == ws.path("reports", "data_docs")
    html = docs.read_text()
    assert "Great Expectations" in html and "pixel_4_4" in html and f"{summary['evaluated']}" in html
