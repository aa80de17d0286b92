"""Stage `validate`: the Great Expectations data gate. The suite is derived from the trusted reference,
kept as JSON in expectations/, and applied to the untrusted incoming batch."""
from __future__ import annotations

import hashlib
import json
import logging
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from tasks.config import Workspace, atomic_write_text
from tasks.data import Schema, read_table, schema_from_reference

SUITE_NAME = "incoming_batch"
FLOAT32_MAX = float(np.finfo(np.float32).max)


def file_md5(path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _expect(kind: str, **kwargs: Any) -> dict[str, Any]:
    return {"type": kind, "kwargs": kwargs, "meta": {}}


QUANTILES = [0.05, 0.25, 0.5, 0.75, 0.95]


def build_suite(reference: pd.DataFrame, schema: Schema, cfg: dict[str, Any]) -> dict[str, Any]:
    """From trusted data: schema and dtypes, nulls and non-finite values, per-column ranges, mean/stdev/quantile
    bands, the label set and class proportions, row count and duplicate share."""
    margin, mostly = float(cfg["range_margin"]), float(cfg["range_mostly"])
    expectations = [
        _expect("expect_table_columns_to_match_set", column_set=schema.columns, exact_match=True),
        _expect("expect_table_row_count_to_be_between", min_value=int(cfg.get("min_rows", 1)), max_value=cfg.get("max_rows")),
        _expect("expect_column_values_to_not_be_null", column=schema.label),
        _expect("expect_column_values_to_be_in_set", column=schema.label, value_set=list(schema.classes)),
    ]
    if schema.id:
        expectations.append(_expect("expect_column_values_to_be_unique", column=schema.id))
    if "max_class_kl" in cfg:
        share = reference[schema.label].value_counts(normalize=True)
        expectations.append(_expect(
            "expect_column_kl_divergence_to_be_less_than", column=schema.label, threshold=float(cfg["max_class_kl"]),
            partition_object={"values": list(schema.classes), "weights": [float(share.get(c, 0.0)) for c in schema.classes]},
        ))
    if "max_duplicate_share" in cfg:
        expectations.append(_expect("expect_compound_columns_to_be_unique", column_list=[schema.label, *schema.features],
                                    mostly=1.0 - float(cfg["max_duplicate_share"])))
    stds = reference[list(schema.features)].std().to_numpy(dtype=np.float64)
    typical = float(np.median(stds[stds > 0])) if (stds > 0).any() else 1.0
    for col in schema.features:
        values = reference[col].to_numpy(dtype=np.float64)
        lo, hi = float(values.min()), float(values.max())
        pad = margin * max(hi - lo, 1e-9)
        # A nearly constant column (a border pixel) gets bands from the data's typical spread instead.
        spread = max(float(values.std()), 0.25 * typical)
        expectations += [
            _expect("expect_column_values_to_be_in_type_list", column=col, type_list=_type_family(reference[col])),
            _expect("expect_column_values_to_not_be_null", column=col),
            # Finite bounds also reject +-inf, which would otherwise sail through a range check.
            # Every value finite (inf/1e308 would poison the arithmetic downstream), then most in range.
            _expect("expect_column_values_to_be_between", column=col, min_value=-FLOAT32_MAX, max_value=FLOAT32_MAX),
            _expect("expect_column_values_to_be_between", column=col, min_value=lo - pad, max_value=hi + pad, mostly=mostly),
        ]
        if "mean_band" in cfg:
            band = float(cfg["mean_band"]) * spread
            expectations.append(_expect("expect_column_mean_to_be_between", column=col,
                                        min_value=float(values.mean()) - band, max_value=float(values.mean()) + band))
        if "stdev_band" in cfg:
            low, high = (float(b) for b in cfg["stdev_band"])
            floor = low * float(values.std()) if values.std() >= 0.25 * typical else 0.0  # a sparse column may be constant
            expectations.append(_expect("expect_column_stdev_to_be_between", column=col, min_value=floor, max_value=high * spread))
        if "quantile_band" in cfg:
            band = float(cfg["quantile_band"]) * spread
            ranges = [[float(q) - band, float(q) + band] for q in np.quantile(values, QUANTILES)]
            expectations.append(_expect("expect_column_quantile_values_to_be_between", column=col,
                                        quantile_ranges={"quantiles": QUANTILES, "value_ranges": ranges}))
    return {"name": SUITE_NAME, "expectations": expectations, "meta": {}}


def _type_family(column: pd.Series) -> list[str]:
    """The reference's dtype and its kin: a CSV gives float64 where the Parquet reference has float32."""
    if pd.api.types.is_float_dtype(column):
        return ["float16", "float32", "float64", "Float32", "Float64"]
    if pd.api.types.is_integer_dtype(column):
        return ["int8", "int16", "int32", "int64", "Int8", "Int16", "Int32", "Int64", "uint8", "uint16", "uint32", "uint64"]
    return [str(column.dtype)]


def build(ws: Workspace, params: dict[str, Any]) -> dict[str, Any]:
    """Write expectations/suite.json from the reference; a no-op when the reference has not changed."""
    built_from = {"reference_md5": file_md5(ws.reference), "validate": params["validate"],
                  "columns": {k: params["data"].get(k) for k in ("label_column", "id_column", "feature_columns")}}
    if ws.suite.exists():
        suite = json.loads(ws.suite.read_text())
        if suite["meta"].get("built_from") == built_from:
            return {"expectations": len(suite["expectations"])}
    reference = read_table(ws.reference)
    suite = build_suite(reference, schema_from_reference(reference, params["data"], ws.reference), params["validate"])
    suite["meta"] = {"built_from": built_from}
    atomic_write_text(ws.suite, json.dumps(suite, indent=1) + "\n")
    return {"expectations": len(suite["expectations"])}


@lru_cache(maxsize=1)
def _context():
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    logging.getLogger("great_expectations").setLevel(logging.ERROR)
    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch_definition = ctx.data_sources.add_pandas("poisongate").add_dataframe_asset("batch").add_batch_definition_whole_dataframe("whole")
    return ctx, batch_definition


def run_suite(frame: pd.DataFrame, suite_json: dict[str, Any]):
    """Run the suite through a GX context: the full GX validation result."""
    import great_expectations as gx

    ctx, batch_definition = _context()
    suite_json = {k: v for k, v in suite_json.items() if k in ("name", "expectations")}
    suite = gx.ExpectationSuite(**suite_json)
    return batch_definition.get_batch(batch_parameters={"dataframe": frame}).validate(suite)


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


def validate(ws: Workspace, params: dict[str, Any]) -> dict[str, Any]:
    """Validate the incoming batch; its Data Docs page goes to reports/data_docs/, named by the batch's md5
    (git keeps every run's page with the run's commit), and its path into the summary for the run report."""
    result = run_suite(read_table(ws.incoming), json.loads(ws.suite.read_text()))
    docs = ws.path("reports", "data_docs", f"validate-{file_md5(ws.incoming)[:12]}.html")
    atomic_write_text(docs, data_docs_html(result))
    return {**summarize(result), "data_docs": str(docs.relative_to(ws.root))}
