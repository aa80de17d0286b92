"""Stage `filter`: the JAX poisoning gate. Detectors are fit on the trusted reference, their thresholds
calibrated to a false-positive rate on trusted rows they did not see, and applied to the incoming batch
(with no trusted rows: a robust fit and threshold from the batch itself)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from tasks import detectors
from tasks.config import Workspace
from tasks.data import read_table, row_ids, schema_from_reference, to_arrays, write_table


@dataclass
class FilterResult:
    scores: dict[str, np.ndarray]
    thresholds: dict[str, float]

    @property
    def flags(self) -> dict[str, np.ndarray]:
        return {name: s > self.thresholds[name] for name, s in self.scores.items()}

    @property
    def quarantined(self) -> np.ndarray:
        return np.any(np.stack(list(self.flags.values())), axis=0)

    def reasons(self) -> list[str]:
        out = []
        for i in range(len(self.quarantined)):
            out.append("; ".join(
                f"{name} {self.scores[name][i]:.3g} > {self.thresholds[name]:.3g}"
                for name, flag in self.flags.items() if flag[i]
            ))
        return out


def calibrate(name: str, options: dict[str, Any], X: np.ndarray, y: np.ndarray, fpr: float, folds: int, seed: int):
    """Fit on all trusted rows; threshold = the (1 - fpr) quantile of out-of-sample trusted scores (k-fold,
    or the detector's own scheme), never below the detector's floor."""
    detector = detectors.make(name, options)
    held_out = detector.held_out_scores(X, y, folds, seed)
    threshold = max(tail_quantile(held_out, 1.0 - fpr), detector.min_threshold)
    return detector.fit(X, y), threshold


def tail_quantile(scores: np.ndarray, q: float, tail: float = 0.1, min_beyond: int = 5) -> float:
    """The q quantile of the trusted scores; when fewer than `min_beyond` of them lie beyond it (a strict
    rate, few trusted rows), extrapolated with an exponential fit to the top `tail` share (peaks over a
    threshold, shape 0) instead of resting on the last one or two rows."""
    scores = np.asarray(scores, np.float64)
    if len(scores) * (1.0 - q) >= min_beyond:
        return float(np.quantile(scores, q))
    start = float(np.quantile(scores, 1.0 - tail))
    excess = scores[scores > start] - start
    if len(excess) < min_beyond:
        return float(scores.max())
    return start + float(excess.mean()) * float(np.log(tail / (1.0 - q)))


def batch_threshold(scores: np.ndarray, fpr: float, floor: float) -> float:
    """No trusted rows: median + z(1 - fpr) x 1.4826 MAD of the batch's own scores (a normal tail; the median
    and MAD hold while less than half the batch is poisoned)."""
    from scipy.stats import norm

    median = float(np.median(scores))
    spread = 1.4826 * float(np.median(np.abs(scores - median)))
    return max(median + float(norm.ppf(1.0 - fpr)) * spread, floor)


def score_chunk(fitted: dict[str, detectors.Detector], X: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Every row-wise detector's scores of one chunk of rows (on a Dask cluster: a Prefect task)."""
    return {name: np.asarray(detector.score(X, y), np.float64) for name, detector in fitted.items()}


def score_rows(fitted: dict[str, detectors.Detector], X, y, cfg: dict[str, Any]) -> dict[str, np.ndarray]:
    """Row-wise detectors score the batch in chunks of filter.chunk_rows: in this process, or as Prefect tasks
    on the Dask cluster that filter.dask_address names (tasks/dask_scoring.py). Same chunks, same results."""
    chunks = list(detectors.row_chunks(X, y, int(cfg.get("chunk_rows") or detectors.CHUNK_ROWS)))
    if not fitted or not chunks:
        return {name: np.zeros(len(X)) for name in fitted}
    if cfg.get("dask_address"):
        from tasks.dask_scoring import score_on_dask

        parts = score_on_dask(fitted, [(xs, ys) for xs, ys, _ in chunks], cfg["dask_address"])
    else:
        parts = (score_chunk(fitted, xs, ys) for xs, ys, _ in chunks)
    kept = [{name: s[:rows] for name, s in part.items()} for part, (_, _, rows) in zip(parts, chunks)]
    return {name: np.concatenate([part[name] for part in kept]) for name in fitted}


def run_filter(X_ref, y_ref, X, y, cfg: dict[str, Any]) -> FilterResult:
    fitted, fprs, thresholds = {}, {}, {}
    for name, options in cfg["detectors"].items():
        options = options or {}
        fprs[name] = float(options.get("false_positive_rate", cfg["false_positive_rate"]))  # a detector may be stricter
        if len(X_ref):  # calibrated on trusted rows in this process, whichever way the batch is scored
            fitted[name], thresholds[name] = calibrate(
                name, options, X_ref, y_ref, fprs[name], int(cfg["calibration_folds"]), int(cfg["seed"])
            )
        else:  # no trusted rows yet: a robust fit on the batch itself, thresholds from its own scores below
            fitted[name] = detectors.make(name, options).fit_untrusted(X, y)
    row_scores = score_rows({name: d for name, d in fitted.items() if d.row_wise}, X, y, cfg)
    # The others need the whole batch (its mean and variance, copies of earlier rows, models trained on it):
    # they score it in this process, never in chunks.
    scores = {name: row_scores[name] if name in row_scores else np.asarray(d.score(X, y), np.float64)
              for name, d in fitted.items()}
    if not len(X_ref):
        thresholds = {name: batch_threshold(scores[name], fprs[name], d.min_threshold) for name, d in fitted.items()}
    return FilterResult(scores, thresholds)


def quarantine_frame(batch: pd.DataFrame, mask: np.ndarray, reasons: list[str], scores: dict[str, np.ndarray]) -> pd.DataFrame:
    """The quarantined rows as received, plus why: nothing is dropped, everything is explained."""
    out = batch.loc[mask].copy()
    out["quarantine_reason"] = [r for r, m in zip(reasons, mask) if m]
    for name, s in scores.items():
        out[f"score_{name}"] = s[mask]
    return out


def filter_batch(ws: Workspace, params: dict[str, Any]) -> dict[str, Any]:
    """Write data/clean.parquet (reference + accepted rows) and data/quarantine.parquet.

    A batch whose quarantined share passes filter.max_quarantine_share is refused whole: all of it goes to
    quarantine and no clean dataset is written."""
    cfg = params["filter"]
    reference, batch = read_table(ws.reference), read_table(ws.incoming)
    schema = schema_from_reference(reference, params["data"], ws.reference)
    X_ref, y_ref = to_arrays(reference, schema)
    X, y = to_arrays(batch, schema)
    result = run_filter(X_ref, y_ref, X, y, cfg)
    mask, reasons = result.quarantined, result.reasons()
    share = float(mask.mean()) if len(mask) else 0.0
    refused = share > float(cfg["max_quarantine_share"])
    if refused:
        refusal = f"batch refused: {share:.0%} of rows flagged > filter.max_quarantine_share {cfg['max_quarantine_share']}"
        reasons = [f"{refusal}; {r}" if r else refusal for r in reasons]
        mask = np.ones(len(batch), dtype=bool)
    write_table(quarantine_frame(batch, mask, reasons, result.scores), ws.quarantine)
    if not refused:
        write_table(pd.concat([reference, batch.loc[~mask, reference.columns]], ignore_index=True), ws.clean)
    ids = row_ids(batch, schema)
    return {
        "passed": not refused,
        "rows": len(batch),
        "quarantined": int(mask.sum()),
        "quarantined_share": share,
        "max_quarantine_share": float(cfg["max_quarantine_share"]),
        "thresholds": result.thresholds,
        "flagged_by": {name: int(f.sum()) for name, f in result.flags.items()},
        "score_histograms": {name: histogram(s, result.thresholds[name]) for name, s in result.scores.items()},
        "quarantined_rows": [
            {"id": _plain(ids[i]), "reason": reasons[i],
             "scores": {name: float(s[i]) for name, s in result.scores.items()}}
            for i in np.flatnonzero(mask)
        ],
    }


def histogram(scores: np.ndarray, threshold: float, bins: int = 40) -> dict[str, list[float]]:
    """A detector's batch scores in bins (the report keeps counts, not every row's score), spanning the threshold."""
    finite = scores[np.isfinite(scores)]
    span = np.concatenate([finite, [threshold] if np.isfinite(threshold) else []])
    if not len(span):
        return {"edges": [], "counts": []}
    counts, edges = np.histogram(np.clip(finite, span.min(), span.max()), bins=bins, range=(span.min(), span.max()))
    return {"edges": edges.tolist(), "counts": counts.tolist()}


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value
