"""Campaigns across nights: poison spread thin enough to pass every night's gates still builds up in the
training set. After each night, the accepted-but-untrusted rows (every night since the last trusted one,
tonight's included) are tested against the trusted rows:

- class_mix: the class counts, by a chi-square test of the 2 x classes table (scipy);
- detector_share: per row-level detector, the share of the nights' screened rows it flagged vs the share of
  trusted rows it flags out of sample (one-sided Fisher exact test: both shares are estimates);
- duplicates: near copies of rows of earlier nights, as a rate per pair of rows vs the trusted rows' own rate
  (the exact conditional test of two Poisson rates, a binomial test);
- drift: per feature, a two-sample Kolmogorov-Smirnov test, Bonferroni over the features.

Each check is one test; campaign.alpha is split over them (Bonferroni), so a clean night is refused with at most
that chance. A check that fires names the nights involved: the run of nights, ending tonight, on which it is most
significant; when that is tonight alone, the nightly gates have judged it and nothing is refused."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from poisongate.config import CampaignConfig, FilterConfig
from poisongate.detectors.registry import DETECTORS, make


@dataclass(frozen=True)
class Nights:
    """The untrusted rows, night by night, and what the gates saw of each night."""

    runs: list[str]  # in the order they were accepted; "" is tonight
    X: np.ndarray  # their accepted rows, in that order
    y: np.ndarray
    night: np.ndarray  # per row: its index in `runs`
    flagged: dict[str, np.ndarray]  # detector -> rows it flagged, per night (-1: that night's scores are missing)
    screened: np.ndarray  # rows the gates screened, per night

    def of(self, nights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(X, y) of those nights' rows; of every night, the arrays themselves (a copy is 0.26 GB at 1M rows)."""
        if len(np.unique(nights)) == len(self.runs):
            return self.X, self.y
        rows = np.isin(self.night, nights)
        return self.X[rows], self.y[rows]


@dataclass(frozen=True)
class Trusted:
    X: np.ndarray
    y: np.ndarray
    n_classes: int
    exceeding: dict[str, tuple[int, int]]  # detector -> (trusted rows it flags out of sample, trusted rows)


def row_level(detectors: dict[str, Any]) -> list[str]:
    """The configured detectors that judge rows one by one (a batch-level one flags a whole batch or none)."""
    return [name for name in detectors if not DETECTORS[name].batch_level]


Check = Callable[[Trusted, Nights, np.ndarray, FilterConfig], list[tuple[str, float, float, str]]]


def class_mix(trusted: Trusted, nights: Nights, which: np.ndarray, cfg: FilterConfig):
    from scipy.stats import chi2_contingency

    y = nights.of(which)[1]
    table = np.stack([np.bincount(y, minlength=trusted.n_classes), np.bincount(trusted.y, minlength=trusted.n_classes)])
    table = table[:, table.sum(axis=0) > 0]
    if len(y) == 0 or table.shape[1] < 2:
        return [("class_mix", 0.0, 1.0, "no rows")]
    result = chi2_contingency(table)
    worst = int(np.argmax((table[0] - result.expected_freq[0]) / np.sqrt(result.expected_freq[0])))
    return [("class_mix", float(result.statistic), float(result.pvalue),
             f"chi2 {result.statistic:.1f} on {len(y)} rows; most over-represented class index {worst}")]


def detector_share(trusted: Trusted, nights: Nights, which: np.ndarray, cfg: FilterConfig):
    from scipy.stats import fisher_exact

    out = []
    for name, per_night in nights.flagged.items():
        known = which[per_night[which] >= 0]
        if name not in trusted.exceeding or not len(known):
            continue
        flagged, rows = int(per_night[known].sum()), int(nights.screened[known].sum())
        k_ref, n_ref = trusted.exceeding[name]
        _, p = fisher_exact([[flagged, rows - flagged], [k_ref, n_ref - k_ref]], alternative="greater")
        out.append((f"detector_share:{name}", flagged / max(rows, 1), float(p),
                    f"{name} flagged {flagged} of {rows} screened rows ({flagged / max(rows, 1):.2%}) vs "
                    f"{k_ref} of {n_ref} trusted rows ({k_ref / max(n_ref, 1):.2%})"))
    return out


def duplicates(trusted: Trusted, nights: Nights, which: np.ndarray, cfg: FilterConfig):
    """Rows with a near copy among earlier untrusted rows, per pair of rows, vs the trusted rows' own rate (copies
    of trusted rows and within one night were refused by that night's gate)."""
    from scipy.stats import binomtest

    X, y = nights.of(which)
    detector = make("duplicates", cfg.detectors.get("duplicates") or DETECTORS["duplicates"].Options())
    detector.fit_untrusted(trusted.X, trusted.y)  # the radius from the trusted rows; no rows counted first
    copied = int(np.sum(detector.score(X, y) >= 1))
    trusted_copied = int(np.sum(detector.score(trusted.X, trusted.y) >= 1))
    n, n_ref = len(X), len(trusted.X)
    pairs, trusted_pairs = n * (n - 1) / 2, n_ref * (n_ref - 1) / 2
    total = copied + trusted_copied
    p = 1.0 if total == 0 or pairs == 0 else float(
        binomtest(copied, total, pairs / (pairs + trusted_pairs), alternative="greater").pvalue)
    return [("duplicates", float(copied), p, f"{copied} of {n} rows are near copies of earlier untrusted rows vs "
             f"{trusted_copied} of {n_ref} among the trusted rows (per pair of rows)")]


def drift(trusted: Trusted, nights: Nights, which: np.ndarray, cfg: FilterConfig):
    from scipy.stats import ks_2samp

    X = nights.of(which)[0]
    if not len(X):
        return [("drift", 0.0, 1.0, "no rows")]
    varying = np.flatnonzero(np.maximum(X.max(axis=0), trusted.X.max(axis=0))
                             > np.minimum(X.min(axis=0), trusted.X.min(axis=0)))
    if not len(varying):
        return [("drift", 0.0, 1.0, "no rows")]
    # One feature at a time: all at once, scipy's float64 sorts and ranks of 1M x 64 rows took 2 GB (issue 19).
    results = [ks_2samp(X[:, j], trusted.X[:, j]) for j in varying]
    worst = int(np.argmin([r.pvalue for r in results]))
    statistic, p = float(results[worst].statistic), min(1.0, float(results[worst].pvalue) * len(varying))
    return [("drift", statistic, p, f"Kolmogorov-Smirnov {statistic:.3f} on feature index {int(varying[worst])}, "
             f"{len(X)} rows (Bonferroni over {len(varying)} features)")]


CHECKS: dict[str, Check] = {"class_mix": class_mix, "detector_share": detector_share, "duplicates": duplicates,
                            "drift": drift}


def tests(trusted: Trusted, nights: Nights, which: np.ndarray, cfg: CampaignConfig,
          filter_cfg: FilterConfig) -> list[tuple[str, float, float, str]]:
    return [t for name in cfg.checks for t in CHECKS[name](trusted, nights, which, filter_cfg)]


def judge(trusted: Trusted, nights: Nights, cfg: CampaignConfig, filter_cfg: FilterConfig) -> dict[str, Any]:
    """Every check on all untrusted nights; for a check that fires, the nights involved."""
    every = np.arange(len(nights.runs))
    results = tests(trusted, nights, every, cfg, filter_cfg)
    bound = cfg.alpha / max(len(results), 1)
    table = [{"check": name, "statistic": stat, "p_value": p, "bound": bound, "detail": detail, "fired": p < bound}
             for name, stat, p, detail in results]
    fired = [row for row in table if row["fired"]]
    for row in fired:  # the most significant run of nights ending tonight
        by_start = [next(p for name, _, p, _ in tests(trusted, nights, every[start:], cfg, filter_cfg)
                         if name == row["check"]) for start in every]
        row["nights"] = nights.runs[int(np.argmin(by_start)):]
    # Evidence in tonight's batch alone is the nightly gates' to judge (they quarantined what they flagged): a
    # campaign is what spans nights.
    fired = [row for row in fired if len(row["nights"]) > 1]
    involved = max((row["nights"] for row in fired), key=len, default=[])  # the earliest start
    return {"nights": len(nights.runs), "untrusted_rows": len(nights.y), "checks": table,
            "fired": [row["check"] for row in fired], "involved": involved}
