"""The poisoning gate: detectors are fit on the trusted reference and score the incoming batch. Each row-level
score becomes a conformal p-value against the scores of trusted rows the detector did not see; a row's p-values
are combined into one (valid whatever their dependence), and Benjamini-Hochberg selects the rows to quarantine
at filter.fdr, with the reason of every detector that put it there. A batch-level detector's p-value is a test
of the whole batch at its false_positive_rate. With no trusted rows, p-values come from a robust fit to the
batch itself."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from poisongate.config import FilterConfig
from poisongate.detectors.base import Detector, fused_scores, row_chunks
from poisongate.detectors.registry import DETECTORS, make
from poisongate.reports import progress
from poisongate.schema import plain
from poisongate.stats import median_and_scale
from poisongate.tables import release_memory

Chunks = list[tuple[np.ndarray, np.ndarray]]
ChunkScorer = Callable[[dict[str, Detector], Chunks], list[dict[str, np.ndarray]]]
LISTED_ROWS = 50  # quarantined rows a summary lists (id, reason, scores): data/scores.parquet has every row


@dataclass
class Screening:
    """What the detectors said of a batch. Row-level detectors: a score and a conformal p-value per row, one
    combined p-value per row, and the rows Benjamini-Hochberg selects at filter.fdr (quarantined). Batch-level
    detectors: one statistic and p-value for the batch (batch_tests). `flags` mark the scores past each detector's
    own false-positive-rate threshold: the fixed level the cross-night checks count."""

    scores: dict[str, np.ndarray]
    thresholds: dict[str, float]
    p_values: dict[str, np.ndarray] = field(default_factory=dict)  # row-level detectors, per row
    combined: np.ndarray | None = None  # per row; None: no row-level detector
    quarantined: np.ndarray | None = None  # None: every row past some threshold (a screening built by hand)
    batch_tests: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> statistic, p_value, alpha
    trusted_exceeding: dict[str, tuple[int, int]] = field(default_factory=dict)  # (flagged, rows) out of sample
    fdr: float | None = None
    flags: dict[str, np.ndarray] = field(init=False)
    selected_by: dict[str, np.ndarray] = field(init=False)  # per row-level detector: its p-value put the row in

    def __post_init__(self) -> None:
        self.flags = {name: s > self.thresholds[name] for name, s in self.scores.items()}
        n = len(next(iter(self.scores.values()))) if self.scores else 0
        if self.quarantined is None:
            self.quarantined = np.any(np.stack([np.zeros(n, bool), *self.flags.values()]), axis=0)
            self.selected_by = dict(self.flags)
        else:  # a row is selected because its smallest p-value is at most the largest selected one
            picked = self.quarantined
            smallest = np.min(np.stack(list(self.p_values.values())), axis=0)[picked] if self.p_values else []
            cut = float(np.max(smallest)) if len(smallest) else -1.0
            self.selected_by = {name: picked & (p <= cut) for name, p in self.p_values.items()}

    @property
    def share(self) -> float:
        return float(self.quarantined.mean()) if len(self.quarantined) else 0.0

    def firing(self) -> dict[str, dict[str, Any]]:
        return {name: t for name, t in self.batch_tests.items() if not t["passed"]}

    def reasons(self, prefix: str = "") -> np.ndarray:
        """Per row (an object array of str): `prefix`, then every detector that selected it, with its score, the
        smallest score it selected in this batch and its reason ("" for an accepted row without a prefix). No loop
        over rows: each row gets one integer key for the combination of texts it shows (each detector's distinct
        rounded scores numbered), and only the distinct combinations are formatted."""
        n = len(self.quarantined)
        key, radix, texts, codes = np.zeros(n, np.int64), 1, [], []
        for name, flag in self.selected_by.items():
            rows = np.flatnonzero(flag)
            flagged = self.scores[name][rows]
            _, first, inverse = np.unique(significant(flagged), return_index=True, return_inverse=True)
            why = DETECTORS[name].reason if name in DETECTORS else name
            bound = float(np.min(flagged)) if len(flagged) else np.inf
            if self.p_values:
                texts.append([""] + [f"{name} {v:.3g} >= {bound:.3g} ({why})" for v in flagged[first]])
            else:
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


def conformal_p(calibration: np.ndarray, scores: np.ndarray, floor: float = -np.inf, tail: float = 0.1,
                min_beyond: int = 5, leave_one_out: bool = False, light_tail: bool = False) -> np.ndarray:
    """Split-conformal p-values (Bates et al. 2023): (1 + #{calibration >= s}) / (n + 1), with `calibration` the
    out-of-sample scores of trusted rows. Past the calibration's top `min_beyond` scores, where a rank says only
    "about 1/n", the smaller p-value of a fitted tail (`predictive_tail`, on log excesses unless `light_tail`)
    is used, so an extreme row is told from a merely rare one. `leave_one_out`: the scores are the calibration
    itself, each judged against the others, as a batch row with that score would be (judged against a set
    holding itself, the top trusted row's p would double at 50 rows, and anything calibrated on the trusted
    rows' p-values would be too lenient). A score at or below `floor` (what a detector never flags) gets 1; a
    NaN score, 0."""
    cal = np.sort(np.asarray(calibration, np.float64))
    s = np.asarray(scores, np.float64)
    n = len(cal) - int(leave_one_out)  # the rows each score is judged against
    if n < 1:
        return np.ones(len(s))
    beyond = len(cal) - np.searchsorted(cal, s, side="left") - int(leave_one_out)
    p = (1.0 + beyond) / (n + 1.0)
    start = float(np.quantile(cal, 1.0 - tail))
    top = cal[cal > start]
    if len(top) - int(leave_one_out) >= min_beyond:
        own = (s > start) if leave_one_out else np.zeros(len(s), bool)  # a row in the tail leaves its fit
        fitted = predictive_tail(top, start, s, own, n, log=not light_tail and start > 0)
        p = np.where(beyond < min_beyond, np.minimum(p, fitted), p)
    p = np.where(s <= floor, 1.0, p)
    return np.where(np.isnan(s), 0.0, p)


def predictive_tail(top: np.ndarray, start: float, s: np.ndarray, own: np.ndarray, n: int, log: bool) -> np.ndarray:
    """P(score >= s) past `start` from the k trusted scores beyond it, with the fit's own uncertainty: for k
    exponential excesses of unknown scale, (1 + x / sum of excesses)^-k is an exact p-value (x / (x + sum) is
    Beta(1, k)), where plugging in the fitted scale calls rare rows impossible when k is 5; it errs safe for
    lighter tails (bounded scores). On log excesses (`log`, start > 0) the same holds exactly for a Pareto tail
    (Hill) and errs safe for any lighter one: a Mahalanobis distance with an estimated covariance has a
    polynomial tail. Rows in `own` are left out of the sums they are judged by. Times the conformal share beyond
    `start`, (k + 1) / (n + 1)."""
    excess = np.log(top / start) if log else top - start
    x = np.log(np.maximum(s, start) / start) if log else np.maximum(s - start, 0.0)
    k = len(top) - own.astype(np.float64)
    total = np.maximum(excess.sum() - np.where(own, x, 0.0), 1e-300)
    return (k + 1.0) / (n + 1.0) * (1.0 + x / total) ** -k


def calibrate(detector: Detector, X: np.ndarray, y: np.ndarray, fpr: float, folds: int, seed: int) -> float:
    """Fit on all trusted rows and keep their out-of-sample scores (k-fold, or the detector's own scheme) for its
    p-values; returns its threshold at `fpr`: the (1 - fpr) quantile of those scores, never below its floor."""
    held_out = detector.held_out_scores(X, y, folds, seed)
    detector.fit(X, y)
    return calibrate_on(detector, held_out, fpr)


def calibrate_on(detector: Detector, held_out: np.ndarray, fpr: float) -> float:
    detector.calibration = held_out
    threshold = max(tail_quantile(held_out, 1.0 - fpr), detector.min_threshold)
    # How many trusted rows it flags out of sample: what a batch's flagged share is compared with across nights.
    detector.trusted_exceeding = (int(np.sum(held_out > threshold)), len(held_out))
    return threshold


def family_statistic(P: np.ndarray, accumulate: bool) -> np.ndarray:
    """Per row, higher is more suspicious: Fisher's sum of -log p where a family's detectors ask one question two
    ways (evidence adds up), else Tippett's largest -log p (they look for different things)."""
    L = -np.log(np.maximum(P, 1e-300))
    return L.sum(axis=0) if accumulate else L.max(axis=0)


def combine(trusted: dict[str, np.ndarray], batch: dict[str, np.ndarray], families: dict[str, str],
            min_beyond: int = 5) -> np.ndarray:
    """One p-value per row, valid however the detectors depend on each other. Per family of detectors (labels,
    features), each trusted row's family statistic of its own p-values is the calibration set of a conformal
    p-value for the batch rows' statistic, so nothing is assumed about the detectors' joint law. Past the top
    `min_beyond` trusted statistics, where a rank says only "about 1/n", the statistic's own dependence-free
    bound is used where smaller: Bonferroni for the smallest of m p-values, e times their geometric mean for
    Fisher's sum (Vovk & Wang 2020). The families' p-values are then combined by Bonferroni."""
    groups: dict[str, list[str]] = {}
    for name in batch:
        groups.setdefault(families[name], []).append(name)
    if not groups:
        return np.ones(0)
    family_p = []
    for family, names in groups.items():
        accumulate = family == "labels"
        stat = family_statistic(np.stack([batch[k] for k in names]), accumulate)
        cal = np.sort(family_statistic(np.stack([trusted[k] for k in names]), accumulate))
        ranked = conformal_p(cal, stat, tail=0.0)
        bound = np.e * np.exp(-stat / len(names)) if accumulate else len(names) * np.exp(-stat)
        beyond = len(cal) - np.searchsorted(cal, stat, side="left")
        family_p.append(np.where(beyond < min_beyond, np.minimum(ranked, np.minimum(bound, 1.0)), ranked))
    return np.minimum(len(family_p) * np.min(np.stack(family_p), axis=0), 1.0)


def benjamini_hochberg(p: np.ndarray, fdr: float) -> np.ndarray:
    """The rows Benjamini-Hochberg selects at false discovery rate `fdr` (scipy)."""
    from scipy.stats import false_discovery_control

    if not len(p):
        return np.zeros(0, bool)
    return false_discovery_control(np.clip(p, 0.0, 1.0), method="bh") <= fdr


def batch_p(scores: np.ndarray, floor: float) -> np.ndarray:
    """No trusted rows: p-values from a normal tail around the batch's own median and MAD scale (they hold while
    less than half the batch is poisoned)."""
    from scipy.stats import norm

    s = np.asarray(scores, np.float64)
    median, spread = median_and_scale(s)
    p = norm.sf((s - float(median)) / max(float(spread), 1e-12))
    return np.where(s <= floor, 1.0, np.where(np.isnan(s), 0.0, p))


def batch_threshold(scores: np.ndarray, fpr: float, floor: float) -> float:
    """No trusted rows: median + z(1 - fpr) x the MAD scale of the batch's own scores."""
    from scipy.stats import norm

    median, spread = median_and_scale(np.asarray(scores, np.float64))
    return max(float(median) + float(norm.ppf(1.0 - fpr)) * float(spread), floor)


def score_chunk(fitted: dict[str, Detector], X: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Every row-wise detector's scores of one chunk of rows: those with a kernel in one compiled call."""
    fused = {name: d for name, d in fitted.items() if d.kernel is not None}
    scores = dict(zip(fused, fused_scores(list(fused.values()), X, y))) if fused else {}
    return {name: np.asarray(scores[name] if name in scores else d.score(X, y), np.float64)
            for name, d in fitted.items()}


def score_in_process(fitted: dict[str, Detector], chunks: Chunks) -> list[dict[str, np.ndarray]]:
    out = []
    with progress.bar("poisoning gate: scoring chunks", len(chunks)) as advance:
        for xs, ys in chunks:
            out.append(score_chunk(fitted, xs, ys))
            advance()
    return out


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
    """Every detector of filter.detectors on the batch: scores, p-values, the rows selected at filter.fdr, and
    each batch-level detector's test."""
    fitted, fprs, thresholds = {}, {}, {}
    for name, options in cfg.detectors.items():
        own = options.false_positive_rate  # a detector may be stricter
        fprs[name] = cfg.false_positive_rate if own is None else own
        detector = make(name, options)
        if len(X_ref) and detector.transductive:  # calibrated on its trusted rows once it has scored the batch
            detector.fit(X_ref, y_ref)
        elif len(X_ref):  # calibrated on trusted rows in this process, whichever way the batch is scored
            thresholds[name] = calibrate(detector, X_ref, y_ref, fprs[name], cfg.calibration_folds, cfg.seed)
        else:  # no trusted rows yet: a robust fit on the batch itself, p-values from its own scores below
            detector.fit_untrusted(X, y)
        fitted[name] = detector
    row_scores = score_rows({name: d for name, d in fitted.items() if d.row_wise}, X, y, cfg.chunk_rows, scorer)
    # The others need the whole batch (its mean and variance, copies of earlier rows, models trained on it):
    # they score it in this process, never in chunks. Before a detector trains its model, the memory freed so far
    # goes back to the system (1M rows: the filter's peak 0.2 GB lower).
    scores = {}
    for name, d in fitted.items():
        if d.transductive:
            release_memory(full=False)
        scores[name] = row_scores[name] if name in row_scores else np.asarray(d.score(X, y), np.float64)
    rows = [name for name, d in fitted.items() if not d.batch_level]
    if len(X_ref):
        for name, d in fitted.items():
            if d.transductive:
                thresholds[name] = calibrate_on(d, d.trusted_scores, fprs[name])
        p = {name: fitted[name].p_values(fitted[name].calibration, scores[name]) for name in fitted}
        own = {name: fitted[name].trusted_p_values(fitted[name].calibration) for name in rows}
        combined = combine(own, {name: p[name] for name in rows}, {name: fitted[name].family for name in rows})
    else:
        thresholds = {name: batch_threshold(scores[name], fprs[name], d.min_threshold) for name, d in fitted.items()}
        p = {name: batch_p(scores[name], d.min_threshold) for name, d in fitted.items()}
        combined = np.minimum(len(rows) * np.min(np.stack([p[k] for k in rows]), axis=0), 1.0) if rows else None
    combined = np.ones(len(X)) if combined is None or not len(combined) else combined
    tests = {name: {"statistic": float(scores[name][0]) if len(X) else 0.0,
                    "p_value": float(p[name][0]) if len(X) else 1.0, "alpha": fprs[name]}
             for name, d in fitted.items() if d.batch_level}
    for t in tests.values():
        t["passed"] = t["p_value"] > t["alpha"]
    exceeding = {name: d.trusted_exceeding for name, d in fitted.items() if hasattr(d, "trusted_exceeding")}
    return Screening(scores, thresholds, {k: p[k] for k in rows}, combined, benjamini_hochberg(combined, cfg.fdr),
                     tests, exceeding, cfg.fdr)


def refusal(screening: Screening, cfg: FilterConfig, share: float | None = None) -> str | None:
    """Why the whole batch is refused (a batch-level test fired, or more than filter.max_quarantine_share of its
    rows are flagged: `share`, or the screening's own), or None."""
    share = screening.share if share is None else share
    why = [f"{name} statistic {t['statistic']:.3g}, p {t['p_value']:.2g} <= {t['alpha']:g} "
           f"({DETECTORS[name].reason})" for name, t in screening.firing().items()]
    if share > cfg.max_quarantine_share:
        why.append(f"{share:.0%} of rows flagged > filter.max_quarantine_share {cfg.max_quarantine_share}")
    return "; ".join(why) or None


def quarantine_frame(batch: pd.DataFrame, mask: np.ndarray, reasons: np.ndarray, screening: Screening
                     ) -> pd.DataFrame:
    """The quarantined rows as received, plus why: nothing is dropped, everything is explained."""
    out = batch.loc[mask].copy()
    out["quarantine_reason"] = np.asarray(reasons, dtype=object)[mask]
    for name, s in screening.scores.items():
        out[f"score_{name}"] = s[mask]
    if screening.combined is not None:
        out["p_combined"] = screening.combined[mask]
    return out


def scores_frame(ids: np.ndarray, screening: Screening, quarantined: np.ndarray) -> pd.DataFrame:
    """Every incoming row's score and flag from every detector, and whether it was quarantined (the run archives
    it in scores/: a ROC curve or a new threshold can be worked out from any run)."""
    columns: dict[str, Any] = {"id": ids}
    for name, s in screening.scores.items():
        columns[f"score_{name}"] = s
        if name in screening.p_values:
            columns[f"p_{name}"] = screening.p_values[name]
        columns[f"flag_{name}"] = screening.flags[name]
    if screening.combined is not None:
        columns["p_combined"] = screening.combined
        columns["selected"] = screening.quarantined  # by Benjamini-Hochberg at filter.fdr
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
        "fdr": screening.fdr,
        "selected": int(screening.quarantined.sum()),  # by Benjamini-Hochberg on the combined p-values
        "selected_by": {name: int(f.sum()) for name, f in screening.selected_by.items()},
        "batch_tests": screening.batch_tests,
        "flagged_by": {name: int(f.sum()) for name, f in screening.flags.items()},  # past each one's own fpr
        "trusted_exceeding": screening.trusted_exceeding,
        "score_histograms": {name: histogram(s, screening.thresholds[name]) for name, s in screening.scores.items()},
        "quarantined_rows": [
            {"id": plain(ids[i]), "reason": str(reasons[i]),
             "scores": {name: float(s[i]) for name, s in screening.scores.items()},
             "p_values": {name: float(p[i]) for name, p in screening.p_values.items()},
             **({"p_combined": float(screening.combined[i])} if screening.combined is not None else {})}
            for i in np.flatnonzero(mask)[:LISTED_ROWS]
        ],
    }
