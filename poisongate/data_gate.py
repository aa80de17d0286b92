"""The Great Expectations data gate. The suite is derived from the trusted reference, merged with the
expectations the user owns (expectations/user.json, GX's own JSON format), and applied to the incoming batch."""
from __future__ import annotations

import html
import json
import logging
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from poisongate.config import ValidateConfig
from poisongate.errors import PoisongateError
from poisongate.schema import FLOAT32_MAX, Schema

SUITE_NAME = "incoming_batch"
QUANTILES = [0.05, 0.25, 0.5, 0.75, 0.95]
EMPTY_USER_SUITE = {"name": "user_expectations", "expectations": [],
                    "meta": {"about": "expectations you own, merged into the derived suite: expectations/README.md"}}


# A numeric column may arrive as integers or floats (a CSV writes 16.0 as "16"): the range expectations
# judge its values, not its dtype.
NUMERIC_TYPES = ["float16", "float32", "float64", "Float32", "Float64", "int8", "int16", "int32", "int64", "Int8",
                 "Int16", "Int32", "Int64", "uint8", "uint16", "uint32", "uint64"]


def _expect(kind: str, meta: dict[str, Any] | None = None, **kwargs: Any) -> dict[str, Any]:
    return {"type": kind, "kwargs": kwargs, "meta": meta or {}}


def batch_tests(schema: Schema, cfg: ValidateConfig) -> int:
    """How many batch-level statistical expectations share validate.false_refusal_rate."""
    per_column = int(cfg.mean) + int(cfg.stdev) + len(QUANTILES) * int(cfg.quantiles) + int(cfg.range_mostly is None)
    return per_column * len(schema.features) + int(cfg.class_mix)


def build_suite(reference: pd.DataFrame, schema: Schema, cfg: ValidateConfig, min_rows: int,
                rows: int) -> dict[str, Any]:
    """From trusted data, for a batch of `rows` rows: schema and dtypes, nulls and non-finite values, per-column
    ranges, and mean / stdev / quantile / class-mix bounds from the sampling distribution of each statistic at
    `rows` rows, widened for the reference's own sampling error (its n rows), each at its Bonferroni share of
    validate.false_refusal_rate. The bounds are written into the GX expectations (and Data Docs) with the test
    behind them in `meta`."""
    from scipy.stats import chi2

    n_ref, rows = len(reference), max(int(rows), 1)
    alpha = cfg.false_refusal_rate / max(batch_tests(schema, cfg), 1)
    test = {"false_refusal_rate": cfg.false_refusal_rate, "alpha": alpha, "batch_rows": rows, "reference_rows": n_ref}
    expectations = [
        _expect("expect_table_columns_to_match_set", column_set=schema.columns, exact_match=True),
        _expect("expect_table_row_count_to_be_between", min_value=min_rows, max_value=None),
        _expect("expect_column_values_to_not_be_null", column=schema.label),
        _expect("expect_column_values_to_be_in_set", column=schema.label, value_set=list(schema.classes)),
    ]
    if schema.id:
        expectations.append(_expect("expect_column_values_to_be_unique", column=schema.id))
    if cfg.class_mix:
        share = reference[schema.label].value_counts(normalize=True)
        # G-test: 2 n KL(batch || reference) ~ chi2(classes - 1), inflated by (1 + n / n_ref) for the reference's
        # own proportions being estimates.
        dof = len(schema.classes) - 1
        threshold = float(chi2.isf(alpha, dof)) * (1.0 + rows / n_ref) / (2.0 * rows)
        expectations.append(_expect(
            "expect_column_kl_divergence_to_be_less_than", column=schema.label, threshold=threshold,
            partition_object={"values": list(schema.classes),
                              "weights": [float(share.get(c, 0.0)) for c in schema.classes]},
            meta={"test": "G-test of class counts", **test, "dof": dof}))
    if cfg.max_duplicate_share is not None:
        expectations.append(_expect("expect_compound_columns_to_be_unique",
                                    column_list=[schema.label, *schema.features],
                                    mostly=1.0 - cfg.max_duplicate_share))
    mostly = cfg.range_mostly if cfg.range_mostly is not None else 1.0 - rows_beyond_range(n_ref, rows, alpha) / rows
    stds = reference[list(schema.features)].std().to_numpy(dtype=np.float64)
    typical = float(np.median(stds[stds > 0])) if (stds > 0).any() else 1.0
    for col in schema.features:
        values = reference[col].to_numpy(dtype=np.float64)
        lo, hi = float(values.min()), float(values.max())
        pad = cfg.range_margin * max(hi - lo, 1e-9)
        expectations += [
            _expect("expect_column_values_to_be_in_type_list", column=col, type_list=NUMERIC_TYPES),
            _expect("expect_column_values_to_not_be_null", column=col),
            # Every value finite (inf/1e308 would poison the arithmetic downstream), then most in range.
            _expect("expect_column_values_to_be_between", column=col, min_value=-FLOAT32_MAX, max_value=FLOAT32_MAX),
            _expect("expect_column_values_to_be_between", column=col, min_value=lo - pad, max_value=hi + pad,
                    mostly=mostly, meta={"test": "exact count of rows beyond the reference's range", **test}),
        ]
        expectations += _column_bounds(col, values, cfg, alpha, rows, test, floor=0.25 * typical)
    return {"name": SUITE_NAME, "expectations": expectations, "meta": {}}


def _column_bounds(col: str, values: np.ndarray, cfg: ValidateConfig, alpha: float, rows: int,
                   test: dict[str, Any], floor: float) -> list[dict[str, Any]]:
    """Mean, stdev and quantile bounds of one column for a batch of `rows` rows, each at two-sided level `alpha`,
    widened for the reference's own n. The reference's skewness and kurtosis shape them: a sparse column's mean
    and stdev have long right tails at small n. A column (nearly) constant in the reference (a border pixel) is
    given the data's typical spread, so one nonzero value in the batch is not a refusal."""
    from scipy.stats import norm

    n_ref = len(values)
    mean, std = float(values.mean()), float(values.std())
    spread = max(std, floor)
    centred = values - mean
    skew = float(np.mean(centred**3) / std**3) if std > 0 else 0.0
    both = 1.0 / rows + 1.0 / n_ref
    z = float(norm.isf(alpha / 2))
    out = []
    if cfg.mean:
        # Cornish-Fisher: the standardised mean of n rows has skewness skew / sqrt(n)
        shift = (z * z - 1.0) * skew / (6.0 * np.sqrt(rows))
        band = spread * np.sqrt(both)
        out.append(_expect("expect_column_mean_to_be_between", column=col,
                           min_value=mean - max(z - shift, z / 2) * band, max_value=mean + max(z + shift, z / 2) * band,
                           meta={"test": "two-sample z on the mean, Cornish-Fisher for skewness", **test}))
    if cfg.stdev:
        # Bernstein's inequality for the mean of (x - mean)^2, valid for any bounded column at any n (a sparse
        # column's variance has a long right tail that normal approximations miss at small n); the reference's
        # own deviation is added
        squares = centred**2
        width = float(squares.max()) * (1.0 + cfg.range_margin) ** 2
        log_term = float(np.log(4.0 / alpha))

        def deviation(n: int) -> float:
            linear = width * log_term / (3.0 * n)
            return linear + float(np.sqrt(linear**2 + 2.0 * squares.var() * log_term / n))

        var_band = deviation(rows) + deviation(n_ref)
        low = np.sqrt(max(std**2 - var_band, 0.0)) if std >= floor else 0.0
        out.append(_expect("expect_column_stdev_to_be_between", column=col, min_value=float(low),
                           max_value=float(np.sqrt(max(spread, std) ** 2 + var_band)),
                           meta={"test": "Bernstein bound on the variance", **test}))
    if cfg.quantiles:
        lows, highs = quantile_ranks(n_ref, rows, alpha)
        ordered = np.sort(values)
        ranges = [[float(ordered[lo - 1]) if lo >= 1 else None, float(ordered[hi - 1]) if hi <= n_ref else None]
                  for lo, hi in zip(lows, highs)]
        out.append(_expect("expect_column_quantile_values_to_be_between", column=col,
                           quantile_ranges={"quantiles": QUANTILES, "value_ranges": ranges},
                           allow_relative_error="lower",
                           meta={"test": "exact two-sample order-statistic band (beta-binomial)", **test}))
    return out


def rows_beyond_range(n_ref: int, rows: int, alpha: float) -> int:
    """How many of a clean batch's `rows` may lie outside the reference's [min, max] at level `alpha`, exactly for
    any continuous distribution: the range covers a share Beta(n_ref - 1, 2) of the population, so the count
    outside is BetaBinomial(rows, 2, n_ref - 1). A 53-row reference leaves about 4% of every batch outside its
    range; a fixed share would refuse small references' clean batches night after night."""
    from scipy.stats import betabinom

    return int(betabinom.isf(alpha, rows, 2, max(n_ref - 1, 1)))


@lru_cache(maxsize=64)
def quantile_ranks(n_ref: int, rows: int, alpha: float) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Reference ranks (1-based) that bound each batch quantile at two-sided level `alpha`, exactly and for any
    continuous distribution: the batch's q quantile (pandas "lower": its k-th smallest row, k = floor(q (n-1)) + 1)
    has J reference rows below it, J ~ BetaBinomial(n_ref, k, n + 1 - k), whatever the population. A bound past
    the reference's own rows is None (unbounded): a 13-row batch's maximum exceeds a 45-row reference's maximum
    one time in four. Ties only make a strict violation rarer."""
    lows, highs = [], []
    for q in QUANTILES:
        k = int(np.floor(q * (rows - 1))) + 1
        cdf = _betabinom_cdf(n_ref, k, rows + 1 - k, alpha / 2)
        lows.append(int(np.count_nonzero(cdf <= alpha / 2)))  # X_(k) < Y_(lo) needs J <= lo - 1
        highs.append(int(np.count_nonzero(np.clip(1.0 - cdf, 0, 1) > alpha / 2)) + 1)  # X_(k) > Y_(hi) needs J >= hi
    return tuple(lows), tuple(highs)


def _betabinom_cdf(n: int, a: int, b: int, level: float) -> np.ndarray:
    """BetaBinomial(n, a, b)'s cdf at 0..n, equal to scipy's `betabinom.cdf` wherever it is compared with `level` or
    `1 - level`. scipy sums the pmf from 0 for every point (quadratic in n: minutes at a 20,000-row reference); here
    one cumulative sum, and scipy's own sum (the same pmf terms, the same `np.sum`) only at the points whose
    cumulative sum lies within rounding of `level` or `1 - level` (the sums differ by at most n machine epsilons)."""
    from scipy.stats import betabinom

    law = betabinom(n, a, b)
    pmf = law.dist._pmf(np.arange(n), np.int64(n), np.int64(a), np.int64(b))  # the terms of scipy's _cdf_single
    cdf = np.cumsum(pmf)
    tol = (n + 1) * 1e-14
    near = np.flatnonzero((np.abs(cdf - level) <= tol) | (np.abs(1.0 - cdf - level) <= tol))
    cdf[near] = [np.sum(pmf[: j + 1]) for j in near]
    return np.append(np.clip(cdf, 0, 1), 1.0)  # at j >= n: 1, as scipy


def user_expectations(path: Path) -> list[dict[str, Any]]:
    """The expectations the user owns, checked by GX itself; a missing file means none."""
    if not path.exists():
        return []
    try:
        suite = json.loads(path.read_text())
        expectations = suite["expectations"]
        if not isinstance(expectations, list):
            raise TypeError("`expectations` is not a list")
    except (ValueError, KeyError, TypeError) as e:
        raise PoisongateError(f"{path}: not a GX suite ({type(e).__name__}: {e}); write "
                              '{"name": ..., "expectations": [{"type": ..., "kwargs": {...}}]}') from None
    for i, expectation in enumerate(expectations):
        try:
            _gx_suite({"name": "user", "expectations": [expectation]})
        except Exception as e:  # GX raises many types for a bad expectation; each is the user's to fix
            detail = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
            raise PoisongateError(f"{path}: expectation {i} is not valid for Great Expectations ({detail}); "
                                  "fix it or remove it") from None
    return [{**e, "meta": {**(e.get("meta") or {}), "owner": "user"}} for e in expectations]


def merge(derived: dict[str, Any], user: list[dict[str, Any]]) -> dict[str, Any]:
    """The derived suite plus the user's expectations, which are kept after the derived ones."""
    return {**derived, "expectations": derived["expectations"] + user}


def suite_for(reference: pd.DataFrame, schema: Schema, cfg: ValidateConfig, min_rows: int, rows: int,
              user_file: Path) -> dict[str, Any]:
    """The suite the data gate applies to a batch of `rows` rows: derived from the reference, merged with the
    user's file."""
    return merge(build_suite(reference, schema, cfg, min_rows, rows), user_expectations(user_file))


def _decimal_scan_from_dtype() -> None:
    """GX 1.24's column mean and stdev metrics first look for decimal.Decimal objects with a Python loop over every
    value (`util.does_ndarray_contain_decimal_dtype`): 128M isinstance calls for 64 columns x 1M rows, most of a
    35 s validation (issue 19). A numeric numpy array cannot hold a Decimal, so its dtype answers; an object
    array is still scanned. Installed once, by `_context` (cached)."""
    from great_expectations import util

    scan = util.does_ndarray_contain_decimal_dtype

    def contains_decimal(data):
        return False if np.asarray(data).dtype.kind in "biufc" else scan(data=data)

    util.does_ndarray_contain_decimal_dtype = contains_decimal


@lru_cache(maxsize=1)
def _context():
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    _decimal_scan_from_dtype()
    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    return ctx


@contextmanager
def _batch_definition() -> Iterator[Any]:
    """A pandas data source for one validation, deleted after it: its execution engine keeps every batch it
    validated (a 1M-row batch and its float64 copy: 0.7 GB for the rest of the night, issue 19)."""
    ctx = _context()
    name = f"poisongate-{uuid.uuid4().hex}"  # validations in two threads at once each have their own
    source = ctx.data_sources.add_pandas(name)
    try:
        yield source.add_dataframe_asset("batch").add_batch_definition_whole_dataframe("whole")
    finally:
        ctx.data_sources.delete(name)


def _gx_suite(suite_json: dict[str, Any]):
    import great_expectations as gx

    return gx.ExpectationSuite(**{k: v for k, v in suite_json.items() if k in ("name", "expectations")})


def run_suite(frame: pd.DataFrame, suite_json: dict[str, Any]):
    """Run the suite through a GX context: the full GX validation result. GX's Data Docs renderer writes column
    names and values into its page unescaped (a column named <script> would run in the browser of whoever opens
    it), so GX sees HTML-escaped column names and text values: unchanged for ordinary ones. `summarize` turns
    them back."""
    safe = frame.rename(columns=_html)
    for col in safe.columns:
        if not pd.api.types.is_numeric_dtype(safe[col]):
            safe[col] = safe[col].map(_html, na_action="ignore")
    expectations = [{**e, "kwargs": _html_names(e["kwargs"])} for e in suite_json["expectations"]]
    # GX checks a range value by value in Python (a million rows: a minute) unless the column is int64 or float64:
    # the range expectations see float16/32 columns as float64 (the same values), the others the batch as it is.
    narrow = [c for c in safe.columns if safe[c].dtype in (np.float16, np.float32)]
    ranges = [i for i, e in enumerate(expectations) if e["type"] == RANGE_CHECK] if narrow else []
    with _batch_definition() as batch_definition:
        if not ranges:
            return batch_definition.get_batch(batch_parameters={"dataframe": safe}).validate(
                _gx_suite({**suite_json, "expectations": expectations}))
        wide = safe.astype(dict.fromkeys(narrow, np.float64))
        rest = [i for i in range(len(expectations)) if i not in set(ranges)]
        parts = [batch_definition.get_batch(batch_parameters={"dataframe": frame}).validate(
            _gx_suite({**suite_json, "expectations": [expectations[i] for i in order]}))
            for frame, order in ((safe, rest), (wide, ranges))]
    return _merged(parts, [*rest, *ranges])


RANGE_CHECK = "expect_column_values_to_be_between"


def _merged(parts: list, order: list[int]):
    """One validation result of the suite from the results of its parts (`order`: each part's expectations'
    places in the suite, part after part), in the suite's order, with the counts of the whole."""
    result = parts[0]
    places = dict(zip(order, [r for part in parts for r in part.results], strict=True))
    result.results = [places[i] for i in sorted(places)]
    good = sum(bool(r.success) for r in result.results)
    result.success = good == len(result.results)
    result.statistics = {**result.statistics, "evaluated_expectations": len(result.results),
                         "successful_expectations": good, "unsuccessful_expectations": len(result.results) - good,
                         "success_percent": 100.0 * good / len(result.results) if result.results else None}
    return result


def _html(value: Any) -> Any:
    return html.escape(value) if isinstance(value, str) else value


def _html_names(kwargs: dict[str, Any]) -> dict[str, Any]:
    out = dict(kwargs)
    for key in ("column", "column_list", "column_set"):
        if key in out:
            out[key] = [_html(c) for c in out[key]] if isinstance(out[key], list) else _html(out[key])
    return out


def _unescaped(value: Any) -> Any:
    if isinstance(value, str):
        return html.unescape(value)
    if isinstance(value, list):
        return [_unescaped(v) for v in value]
    if isinstance(value, dict):
        return {k: _unescaped(v) for k, v in value.items()}
    return value


def data_docs_html(result) -> str:
    """GX's own Data Docs page for one validation result (the renderer its data-docs sites use)."""
    from great_expectations.render.renderer import ValidationResultsPageRenderer
    from great_expectations.render.view import DefaultJinjaPageView

    for r in result.results:  # GX 1.24's renderer chokes on numpy 2 scalars (their repr is "np.float64(...)")
        if isinstance(r.result.get("observed_value"), np.generic):
            r.result["observed_value"] = r.result["observed_value"].item()
    return DefaultJinjaPageView().render(ValidationResultsPageRenderer().render(result))


def validate_frame(frame: pd.DataFrame, suite_json: dict[str, Any]) -> dict[str, Any]:
    """The batch verdict and every failed expectation."""
    return summarize(run_suite(frame, suite_json))


def summarize(result) -> dict[str, Any]:
    failed = []
    for r in result.results:
        if r.success:
            continue
        cfg = r.expectation_config
        error = r.exception_info or {}
        # A metric that errored shows as success=False with the message here, not as an exception.
        if isinstance(error, dict) and "raised_exception" not in error:
            error = next(iter(error.values()), {}) if error else {}
        detail = error.get("exception_message") if error.get("raised_exception") else None
        if cfg.type == "expect_table_columns_to_match_set":
            observed = r.result.get("details", {}).get("mismatched")
        else:
            observed = r.result.get("unexpected_percent", r.result.get("observed_value"))
        failed.append({
            "expectation": cfg.type,
            "column": _unescaped(cfg.kwargs.get("column")),
            "observed": _unescaped(_jsonable(observed)),
            "error": detail,
        })
    return {"passed": bool(result.success), "evaluated": len(result.results), "failed": failed}


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except TypeError:
        return str(value)


def _columns(mismatched: Any) -> str:
    """The table-level failure in words: the columns the batch has that the reference lacks, and the reverse."""
    if not isinstance(mismatched, dict):
        return "table"
    parts = [f"{key} " + ", ".join(map(repr, mismatched[key]))
             for key in ("unexpected", "missing") if mismatched.get(key)]
    saved_index = any(str(c).startswith("Unnamed: ") for c in mismatched.get("unexpected", []))
    return "table: " + "; ".join(parts) + (" (a saved row index: write the file without it)" if saved_index else "")


def refusal(summary: dict[str, Any], shown: int | None = 5) -> str | None:
    """Why the data gate refuses the batch (the failed expectations, by type and column: the first `shown`, or
    all), or None."""
    if summary["passed"]:
        return None
    failed = summary["failed"]
    names = ", ".join(f"{x['expectation']}({x['column'] or _columns(x['observed'])})" for x in failed[:shown])
    more = f" and {len(failed) - shown} more" if shown is not None and len(failed) > shown else ""
    return f"batch refused by the data gate: {len(failed)} expectations failed: {names}{more}"
