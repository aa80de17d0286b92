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
    return build_suite(reference, digits["schema"], config.validation, config.data.min_rows,
                       len(digits["frames"][2][0]))


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
    bad.loc[bad.index[: len(bad) // 5], "pixel_3_3"] = 500.0  # 20%: far more than a clean batch puts beyond the range
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


def bounds(suite, kind, column):
    return next(e for e in suite["expectations"] if e["type"] == kind and e["kwargs"].get("column") == column)


def test_bounds_follow_the_batch_size_and_state_their_test(digits, config):
    reference, schema = digits["frames"][0], digits["schema"]
    small, large = (build_suite(reference, schema, config.validation, 10, rows) for rows in (50, 5000))
    for kind in ("expect_column_mean_to_be_between", "expect_column_stdev_to_be_between"):
        s, l = bounds(small, kind, "pixel_4_4")["kwargs"], bounds(large, kind, "pixel_4_4")["kwargs"]
        assert s["max_value"] - s["min_value"] > l["max_value"] - l["min_value"] > 0, kind
    kl_small, kl_large = (bounds(s, "expect_column_kl_divergence_to_be_less_than", "label") for s in (small, large))
    assert kl_small["kwargs"]["threshold"] > kl_large["kwargs"]["threshold"] > 0
    meta = bounds(small, "expect_column_mean_to_be_between", "pixel_4_4")["meta"]
    assert meta["batch_rows"] == 50 and meta["reference_rows"] == len(reference)
    assert meta["alpha"] == pytest.approx(config.validation.false_refusal_rate / (64 * 8 + 1))  # 8 tests per column


def test_integer_valued_floats_are_not_a_type_failure(suite, digits):
    batch = digits["frames"][2][0].astype({c: "int64" for c in digits["schema"].features})
    assert validate_frame(batch, suite)["passed"]


@pytest.mark.slow
@pytest.mark.parametrize("rows", [40, 400])
def test_clean_batches_of_any_size_pass_at_the_false_refusal_rate(digits, config, rows):
    """Clean batches drawn from the rows that are not the reference (holdout + incoming), at two sizes: with a
    family-wise rate of 0.001 none of 12 draws should be refused (P(any) <= 1.2%)."""
    reference, holdout, batches = digits["frames"]
    pool = pd.concat([holdout, *batches], ignore_index=True)
    suite = build_suite(reference, digits["schema"], config.validation, config.data.min_rows, rows)
    rng = np.random.default_rng(rows)
    refused = [validate_frame(pool.iloc[rng.choice(len(pool), rows, replace=False)], suite) for _ in range(12)]
    assert not [r["failed"] for r in refused if not r["passed"]]


@pytest.mark.parametrize("n_ref,rows", [(45, 13), (400, 150), (60, 500)])
def test_quantile_bands_hold_their_false_refusal_rate_for_discrete_data_at_any_size(n_ref, rows):
    from poisongate.data_gate import QUANTILES, quantile_ranks

    alpha, trials = 0.05, 4000
    lows, highs = quantile_ranks(n_ref, rows, alpha)
    rng = np.random.default_rng(0)
    ref = np.sort(np.round(rng.gamma(2.0, 0.4, size=(trials, n_ref)), 1), axis=1)  # ties, like iris' petal width
    batch = pd.DataFrame(np.round(rng.gamma(2.0, 0.4, size=(rows, trials)), 1))
    observed = batch.quantile(QUANTILES, interpolation="lower").to_numpy()  # GX's metric, as the suite sets it
    for i, (lo, hi) in enumerate(zip(lows, highs)):
        below = observed[i] < ref[:, lo - 1] if lo >= 1 else np.zeros(trials, bool)
        above = observed[i] > ref[:, hi - 1] if hi <= n_ref else np.zeros(trials, bool)
        assert (below | above).mean() <= alpha + 3 * np.sqrt(alpha / trials)
    # a 13-row batch's maximum beats a 45-row reference's one time in four: that quantile has no upper bound
    assert quantile_ranks(45, 13, 0.001)[1][-1] == 46


def test_user_strings_are_escaped_in_data_docs_and_the_markdown_report(suite, digits):
    from poisongate.data_gate import data_docs_html, refusal, run_suite, summarize
    from poisongate.reports import run_report

    name = "<img src=x onerror=alert(1)>"
    batch = digits["frames"][2][0].assign(**{name: 1.0})
    result = run_suite(batch, suite)
    page = data_docs_html(result)
    assert "<img src=x" not in page and "&lt;img src=x" in page
    summary = summarize(result)
    assert {"unexpected": [name]} in [f["observed"] for f in summary["failed"]]  # the real name, for people
    assert repr(name) in refusal(summary)
    report = run_report.build("r1", {"ingest": {"rows": 3, "source": f"/feed/{name}|x`.csv"}, "validate": summary},
                              f"batch refused: {refusal(summary)}", {}, "0" * 40, [])
    text = run_report.markdown(report)
    assert "<img" not in text and "&lt;img src=x onerror=alert(1)&gt;" in text and "\\|x\\`" in text


def test_rows_beyond_the_reference_range_hold_their_false_refusal_rate():
    from poisongate.data_gate import rows_beyond_range

    alpha, trials, n_ref, rows = 0.05, 4000, 53, 18
    allowed = rows_beyond_range(n_ref, rows, alpha)
    rng = np.random.default_rng(1)
    ref, batch = rng.normal(size=(trials, n_ref)), rng.normal(size=(trials, rows))
    outside = ((batch < ref.min(axis=1, keepdims=True)) | (batch > ref.max(axis=1, keepdims=True))).sum(axis=1)
    assert (outside > allowed).mean() <= alpha + 3 * np.sqrt(alpha / trials)
    assert (outside > allowed - 1).mean() > alpha  # and no looser than it needs to be
    assert rows_beyond_range(30_000, 5_000, 1e-6) < rows_beyond_range(53, 5_000, 1e-6)  # a big reference is stricter


class _NotIterable(np.ndarray):
    def __iter__(self):
        raise AssertionError("the values were scanned one by one")


def test_gx_answers_whether_a_numeric_column_holds_decimals_from_its_dtype():
    from decimal import Decimal

    from great_expectations import util

    from poisongate import data_gate

    data_gate._context()  # the data gate's GX context: what every validation uses
    assert not util.does_ndarray_contain_decimal_dtype(data=np.zeros(1000, np.float32).view(_NotIterable))
    assert util.does_ndarray_contain_decimal_dtype(data=np.array([1.0, Decimal("2.5")], dtype=object))
    assert not util.does_ndarray_contain_decimal_dtype(data=np.array([1.0, "x"], dtype=object))
