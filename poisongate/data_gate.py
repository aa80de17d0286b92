"""The Great Expectations data gate. The suite is derived from the trusted reference, merged with the
expectations the user owns (expectations/user.json, GX's own JSON format), and applied to the incoming batch."""
from __future__ import annotations

import json
import logging
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


def _expect(kind: str, **kwargs: Any) -> dict[str, Any]:
    return {"type": kind, "kwargs": kwargs, "meta": {}}


def build_suite(reference: pd.DataFrame, schema: Schema, cfg: ValidateConfig, min_rows: int) -> dict[str, Any]:
    """From trusted data: schema and dtypes, nulls and non-finite values, per-column ranges, mean/stdev/quantile
    bands, the label set and class proportions, row count and duplicate share."""
    expectations = [
        _expect("expect_table_columns_to_match_set", column_set=schema.columns, exact_match=True),
        _expect("expect_table_row_count_to_be_between", min_value=min_rows, max_value=None),
        _expect("expect_column_values_to_not_be_null", column=schema.label),
        _expect("expect_column_values_to_be_in_set", column=schema.label, value_set=list(schema.classes)),
    ]
    if schema.id:
        expectations.append(_expect("expect_column_values_to_be_unique", column=schema.id))
    if cfg.max_class_kl is not None:
        share = reference[schema.label].value_counts(normalize=True)
        expectations.append(_expect(
            "expect_column_kl_divergence_to_be_less_than", column=schema.label, threshold=cfg.max_class_kl,
            partition_object={"values": list(schema.classes),
                              "weights": [float(share.get(c, 0.0)) for c in schema.classes]},
        ))
    if cfg.max_duplicate_share is not None:
        expectations.append(_expect("expect_compound_columns_to_be_unique",
                                    column_list=[schema.label, *schema.features],
                                    mostly=1.0 - cfg.max_duplicate_share))
    stds = reference[list(schema.features)].std().to_numpy(dtype=np.float64)
    typical = float(np.median(stds[stds > 0])) if (stds > 0).any() else 1.0
    for col in schema.features:
        values = reference[col].to_numpy(dtype=np.float64)
        lo, hi = float(values.min()), float(values.max())
        pad = cfg.range_margin * max(hi - lo, 1e-9)
        # A nearly constant column (a border pixel) gets bands from the data's typical spread instead.
        spread = max(float(values.std()), 0.25 * typical)
        expectations += [
            _expect("expect_column_values_to_be_in_type_list", column=col, type_list=_type_family(reference[col])),
            _expect("expect_column_values_to_not_be_null", column=col),
            # Every value finite (inf/1e308 would poison the arithmetic downstream), then most in range.
            _expect("expect_column_values_to_be_between", column=col, min_value=-FLOAT32_MAX, max_value=FLOAT32_MAX),
            _expect("expect_column_values_to_be_between", column=col, min_value=lo - pad, max_value=hi + pad,
                    mostly=cfg.range_mostly),
        ]
        if cfg.mean_band is not None:
            band = cfg.mean_band * spread
            expectations.append(_expect("expect_column_mean_to_be_between", column=col,
                                        min_value=float(values.mean()) - band, max_value=float(values.mean()) + band))
        if cfg.stdev_band is not None:
            low, high = cfg.stdev_band
            # a sparse column may be constant
            floor = low * float(values.std()) if values.std() >= 0.25 * typical else 0.0
            expectations.append(_expect("expect_column_stdev_to_be_between", column=col, min_value=floor,
                                        max_value=high * spread))
        if cfg.quantile_band is not None:
            band = cfg.quantile_band * spread
            ranges = [[float(q) - band, float(q) + band] for q in np.quantile(values, QUANTILES)]
            expectations.append(_expect("expect_column_quantile_values_to_be_between", column=col,
                                        quantile_ranges={"quantiles": QUANTILES, "value_ranges": ranges}))
    return {"name": SUITE_NAME, "expectations": expectations, "meta": {}}


def _type_family(column: pd.Series) -> list[str]:
    """The reference's dtype and its kin: a CSV gives float64 where the Parquet reference has float32."""
    if pd.api.types.is_float_dtype(column):
        return ["float16", "float32", "float64", "Float32", "Float64"]
    if pd.api.types.is_integer_dtype(column):
        return ["int8", "int16", "int32", "int64", "Int8", "Int16", "Int32", "Int64",
                "uint8", "uint16", "uint32", "uint64"]
    return [str(column.dtype)]


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


def suite_for(reference: pd.DataFrame, schema: Schema, cfg: ValidateConfig, min_rows: int,
              user_file: Path) -> dict[str, Any]:
    """The suite the data gate applies: derived from the reference, merged with the user's file."""
    return merge(build_suite(reference, schema, cfg, min_rows), user_expectations(user_file))


@lru_cache(maxsize=1)
def _context():
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch_definition = (ctx.data_sources.add_pandas("poisongate").add_dataframe_asset("batch")
                        .add_batch_definition_whole_dataframe("whole"))
    return ctx, batch_definition


def _gx_suite(suite_json: dict[str, Any]):
    import great_expectations as gx

    return gx.ExpectationSuite(**{k: v for k, v in suite_json.items() if k in ("name", "expectations")})


def run_suite(frame: pd.DataFrame, suite_json: dict[str, Any]):
    """Run the suite through a GX context: the full GX validation result."""
    _, batch_definition = _context()
    return batch_definition.get_batch(batch_parameters={"dataframe": frame}).validate(_gx_suite(suite_json))


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
            "column": cfg.kwargs.get("column"),
            "observed": _jsonable(observed),
            "error": detail,
        })
    return {"passed": bool(result.success), "evaluated": len(result.results), "failed": failed}


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value)
        return value
    except TypeError:
        return str(value)


def refusal(summary: dict[str, Any], shown: int | None = 5) -> str | None:
    """Why the data gate refuses the batch (the failed expectations, by type and column: the first `shown`, or
    all), or None."""
    if summary["passed"]:
        return None
    failed = summary["failed"]
    names = ", ".join(f"{x['expectation']}({x['column'] or 'table'})" for x in failed[:shown])
    more = f" and {len(failed) - shown} more" if shown is not None and len(failed) > shown else ""
    return f"batch refused by the data gate: {len(failed)} expectations failed: {names}{more}"
