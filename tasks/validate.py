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


def build_suite(reference: pd.DataFrame, schema: Schema, cfg: dict[str, Any]) -> dict[str, Any]:
    """Schema, nulls, non-finite values, per-column ranges and the label set, from trusted data."""
    margin, mostly = float(cfg["range_margin"]), float(cfg["range_mostly"])
    expectations = [
        _expect("expect_table_columns_to_match_set", column_set=schema.columns, exact_match=True),
        _expect("expect_table_row_count_to_be_between", min_value=1, max_value=None),
        _expect("expect_column_values_to_not_be_null", column=schema.label),
        _expect("expect_column_values_to_be_in_set", column=schema.label, value_set=list(schema.classes)),
    ]
    if schema.id:
        expectations.append(_expect("expect_column_values_to_be_unique", column=schema.id))
    for col in schema.features:
        values = reference[col].to_numpy(dtype=np.float64)
        lo, hi = float(values.min()), float(values.max())
        pad = margin * max(hi - lo, 1e-9)
        expectations += [
            _expect("expect_column_values_to_not_be_null", column=col),
            # Finite bounds also reject +-inf, which would otherwise sail through a range check.
            # Every value finite (inf/1e308 would poison the arithmetic downstream), then most in range.
            _expect("expect_column_values_to_be_between", column=col, min_value=-FLOAT32_MAX, max_value=FLOAT32_MAX),
            _expect("expect_column_values_to_be_between", column=col, min_value=lo - pad, max_value=hi + pad, mostly=mostly),
        ]
    return {"name": SUITE_NAME, "expectations": expectations, "meta": {}}


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


def validate_frame(frame: pd.DataFrame, suite_json: dict[str, Any]) -> dict[str, Any]:
    """Run the suite through a GX context; returns the batch verdict and every failed expectation."""
    import great_expectations as gx

    ctx, batch_definition = _context()
    suite_json = {k: v for k, v in suite_json.items() if k in ("name", "expectations")}
    suite = gx.ExpectationSuite(**suite_json)
    result = batch_definition.get_batch(batch_parameters={"dataframe": frame}).validate(suite)
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
    return validate_frame(read_table(ws.incoming), json.loads(ws.suite.read_text()))
