"""The poisoning gate: detectors are fit on the trusted reference, their thresholds calibrated to a
false-positive rate on trusted rows they did not see, and applied to the incoming batch (with no trusted rows:
a robust fit and threshold from the batch itself). A row past any threshold is quarantined, with the reason of
every detector that flagged it."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from poisongate.config import FilterConfig
from poisongate.detectors.base import Detector, row_chunks
from poisongate.detectors.registry import DETECTORS, make
from poisongate.schema import plain
from poisongate.stats import median_and_scale

Chunks = list[tuple[np.ndarray, np.ndarray]]
ChunkScorer = Callable[[dict[str, Detector], Chunks], list[dict[str, np.ndarray]]]


@dataclass
class Screening:
    scores: dict[str, np.ndarray]
    thresholds: dict[str, float]
    trusted_exceeding: dict[str, tuple[int, int]] = field(default_factory=dict)  # (flagged, rows) out of sample
    flags: dict[str, np.ndarray] = field(init=False)
    quarantined: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.flags = {name: s > self.thresholds[name] for name, s in self.scores.items()}
        n = len(next(iter(self.scores.values()))) if self.scores else 0
        self.quarantined = np.any(np.stack([np.zeros(n, bool), *self.flags.values()]), axis=0)

    @property
    def share(self) -> float:
        return float(self.quarantined.mean()) if len(self.quarantined) else 0.0

    def reasons(self, prefix: str = "") -> np.ndarray:
        """Per row (an object array of str): `prefix`, then every flagging detector's score, threshold and reason
        ("" for an accepted row without a prefix). No loop over rows: each row gets one integer key for the
        combination of texts it shows (each detector's distinct rounded scores numbered), and only the distinct
        combinations are formatted."""
        n = len(self.quarantined)
        key, radix, texts, codes = np.zeros(n, np.int64), 1, [], []
        for name, flag in self.flags.items():
            rows = np.flatnonzero(flag)
            flagged = self.scores[name][rows]
            _, first, inverse = np.unique(significant(flagged), return_index=True, return_inverse=True)
            why = DETECTORS[name].reason if name in DETECTORS else name
            texts.append([""] + [f"{name} {v:.3g} > {self.thresholds[name]:.3g} ({why})" for v in flagged[first]])
            code = np.zeros(n, np.int64)
            code[rows] = inverse.ravel() + 1  # 0: this detector did not flag the row
            codes.append(code)
            if radix * len(texts[-1]) >= 2**62:  # renumber the combinations so far before the key overflows
                key = np.unique(key, return_inverse=True)[1].ravel().astype(np.int64)
                radix = int(key.max()) + 1
            key, radix = key + code * radix, radix * len(texts[-1])
        _, first, inverse = np.unique(key, return_index=True, return_inverse=True)
        shown = []
        for row in first:  # one per distinct combination
            parts = [options[code[row]] for options, code in zip(texts, codes) if code[row]]
            shown.append("; ".join([prefix, *parts] if prefix else parts))
        return np.asarray(shown, dtype=object)[inverse.ravel()] if n else np.zeros(0, dtype=object)


def significant(x: np.ndarray, digits: int = 3) -> np.ndarray:
    """Round to `digits` significant digits (what the reasons show), so equal-looking scores format once (each
    group is shown by formatting one of its own scores)."""
    x = np.asarray(x, np.float64)
    finite = np.isfinite(x) & (x != 0)
    magnitude = np.where(finite, 10.0 ** (np.floor(np.log10(np.abs(np.where(finite, x, 1.0)))) - digits + 1), 1.0)
    return np.where(finite, np.round(x / magnitude) * magnitude, x)


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


def calibrate(detector: Detector, X: np.ndarray, y: np.ndarray, fpr: float, folds: int, seed: int) -> float:
    """Fit on all trusted rows; threshold = the (1 - fpr) quantile of out-of-sample trusted scores (k-fold,
    or the detector's own scheme), never below the detector's floor."""
    held_out = detector.held_out_scores(X, y, folds, seed)
    detector.fit(X, y)
    threshold = max(tail_quantile(held_out, 1.0 - fpr), detector.min_threshold)
    # How many trusted rows it flags out of sample: what a batch's flagged share is compared with across nights.
    detector.trusted_exceeding = (int(np.sum(held_out > threshold)), len(held_out))
    return threshold


def batch_threshold(scores: np.ndarray, fpr: float, floor: float) -> float:
    """No trusted rows: median + z(1 - fpr) x the MAD scale of the batch's own scores (a normal tail; the median
    and MAD hold while less than half the batch is poisoned)."""
    from scipy.stats import norm

    median, spread = median_and_scale(np.asarray(scores, np.float64))
    return max(float(median) + float(norm.ppf(1.0 - fpr)) * float(spread), floor)


def score_chunk(fitted: dict[str, Detector], X: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Every row-wise detector's scores of one chunk of rows."""
    return {name: np.asarray(detector.score(X, y), np.float64) for name, detector in fitted.items()}


def score_in_process(fitted: dict[str, Detector], chunks: Chunks) -> list[dict[str, np.ndarray]]:
    return [score_chunk(fitted, xs, ys) for xs, ys in chunks]


def score_rows(fitted: dict[str, Detector], X, y, chunk_rows: int, scorer: ChunkScorer) -> dict[str, np.ndarray]:
    """Row-wise detectors score the batch in chunks of filter.chunk_rows, by `scorer` (in this process, or as
    Prefect tasks on a Dask cluster: flows/score_batch.py). Same chunks, same results."""
    chunks = list(row_chunks(X, y, chunk_rows))
    if not fitted or not chunks:
        return {name: np.zeros(len(X)) for name in fitted}
    parts = scorer(fitted, [(xs, ys) for xs, ys, _ in chunks])
    kept = [{name: s[:rows] for name, s in part.items()} for part, (_, _, rows) in zip(parts, chunks)]
    return {name: np.concatenate([part[name] for part in kept]) for name in fitted}


def screen(X_ref, y_ref, X, y, cfg: FilterConfig, scorer: ChunkScorer = score_in_process) -> Screening:
    """Every detector of filter.detectors on the batch: its scores and calibrated thresholds."""
    fitted, fprs, thresholds = {}, {}, {}
    for name, options in cfg.detectors.items():
        own = options.false_positive_rate  # a detector may be stricter
        fprs[name] = cfg.false_positive_rate if own is None else own
        detector = make(name, options)
        if len(X_ref):  # calibrated on trusted rows in this process, whichever way the batch is scored
            thresholds[name] = calibrate(detector, X_ref, y_ref, fprs[name], cfg.calibration_folds, cfg.seed)
        else:  # no trusted rows yet: a robust fit on the batch itself, thresholds from its own scores below
            detector.fit_untrusted(X, y)
        fitted[name] = detector
    row_scores = score_rows({name: d for name, d in fitted.items() if d.row_wise}, X, y, cfg.chunk_rows, scorer)
    # The others need the whole batch (its mean and variance, copies of earlier rows, models trained on it):
    # they score it in this process, never in chunks.
    scores = {name: row_scores[name] if name in row_scores else np.asarray(d.score(X, y), np.float64)
              for name, d in fitted.items()}
    if not len(X_ref):
        thresholds = {name: batch_threshold(scores[name], fprs[name], d.min_threshold) for name, d in fitted.items()}
    exceeding = {name: d.trusted_exceeding for name, d in fitted.items() if hasattr(d, "trusted_exceeding")}
    return Screening(scores, thresholds, exceeding)


def refusal(share: float, cfg: FilterConfig) -> str | None:
    """Why the whole batch is refused (this share of its rows flagged), or None."""
    if share <= cfg.max_quarantine_share:
        return None
    return f"{share:.0%} of rows flagged > filter.max_quarantine_share {cfg.max_quarantine_share}"


def quarantine_frame(batch: pd.DataFrame, mask: np.ndarray, reasons: np.ndarray,
                     scores: dict[str, np.ndarray]) -> pd.DataFrame:
    """The quarantined rows as received, plus why: nothing is dropped, everything is explained."""
    out = batch.loc[mask].copy()
    out["quarantine_reason"] = np.asarray(reasons, dtype=object)[mask]
    for name, s in scores.items():
        out[f"score_{name}"] = s[mask]
    return out


def scores_frame(ids: np.ndarray, screening: Screening, quarantined: np.ndarray) -> pd.DataFrame:
    """Every incoming row's score and flag from every detector, and whether it was quarantined (the run archives
    it in scores/: a ROC curve or a new threshold can be worked out from any run)."""
    columns: dict[str, Any] = {"id": ids}
    for name, s in screening.scores.items():
        columns[f"score_{name}"] = s
        columns[f"flag_{name}"] = screening.flags[name]
    columns["quarantined"] = quarantined
    return pd.DataFrame(columns)


def histogram(scores: np.ndarray, threshold: float, bins: int = 40) -> dict[str, list[float]]:
    """A detector's batch scores in bins (the report keeps counts, not every row's score), spanning the threshold."""
    finite = scores[np.isfinite(scores)]
    span = np.concatenate([finite, [threshold] if np.isfinite(threshold) else []])
    if not len(span):
        return {"edges": [], "counts": []}
    counts, edges = np.histogram(np.clip(finite, span.min(), span.max()), bins=bins, range=(span.min(), span.max()))
    return {"edges": edges.tolist(), "counts": counts.tolist()}


def summary(screening: Screening, cfg: FilterConfig, ids: np.ndarray, mask: np.ndarray, reasons: np.ndarray,
            refused: str | None, flagged_share: float) -> dict[str, Any]:
    return {
        "passed": refused is None,
        "reason": refused,
        "rows": len(mask),
        "quarantined": int(mask.sum()),
        "quarantined_share": flagged_share,
        "max_quarantine_share": cfg.max_quarantine_share,
        "thresholds": screening.thresholds,
        "flagged_by": {name: int(f.sum()) for name, f in screening.flags.items()},
        "trusted_exceeding": screening.trusted_exceeding,
        "score_histograms": {name: histogram(s, screening.thresholds[name]) for name, s in screening.scores.items()},
        "quarantined_rows": [
            {"id": plain(ids[i]), "reason": str(reasons[i]),
             "scores": {name: float(s[i]) for name, s in screening.scores.items()}}
            for i in np.flatnonzero(mask)
        ],
    }
