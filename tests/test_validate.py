import numpy as np
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
    assert [f["column"] for f in result["failed"]] == ["pixel_3_3"]
