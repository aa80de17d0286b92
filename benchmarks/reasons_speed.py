"""Speed of the poisoning gate's per-row quarantine reasons (`Screening.reasons()`) for a 1,000,000-row batch,
against the previous implementation (a Python loop over rows) measured in the same run.

Synthetic, seeded float64 scores for the ten detectors of params.yaml's filter.detectors; a `Screening` is built
from them directly (no detector runs). Two scenarios:
- per_row_2pct: every per-row detector (all but the batch-level ones, batch_shift and batch_pattern) flags ~2%
  of the rows, independently; the batch-level detectors give every row one identical score, below threshold;
- batch_shift_flags_all: the same, and batch_shift's one identical score is above its threshold, so every row
  is flagged (the batch would be refused, but each row still gets its reasons).

`reasons()` is timed on all rows (median of --repeats). The baseline loop is timed on the first --baseline-rows
rows (median of --repeats) and, with --full-baseline, on all rows too; the comparison is per row. Before timing,
both are checked to give every row of a --sample-row sample the same set of detector names.

    uv run python benchmarks/reasons_speed.py [--repeats 5] [--full-baseline] [--out PATH]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from poisongate import config as configuration
from poisongate.detectors import registry
from poisongate.detectors.batch_shift import BatchShift
from poisongate.poisoning_gate import Screening

ROOT = Path(__file__).resolve().parents[1]
FLAGGED_SHARE = 0.02  # of rows, per per-row detector
TARGET_SECONDS = 1.0  # for 1,000,000 rows
TARGET_ROWS = 1_000_000


def previous_reasons(scores: dict[str, np.ndarray], thresholds: dict[str, float], flags: dict[str, np.ndarray],
                     quarantined: np.ndarray) -> list[str]:
    """The previous implementation of the reasons, verbatim: a Python loop over rows."""
    out = []
    for i in range(len(quarantined)):
        out.append("; ".join(f"{name} {scores[name][i]:.3g} > {thresholds[name]:.3g}"
                             for name, flag in flags.items() if flag[i]))
    return out


def batch_level(name: str) -> bool:
    """A detector that scores the batch as a whole: every row gets the batch's one score."""
    return issubclass(registry.DETECTORS[name], BatchShift)


def synthetic(names: list[str], rows: int, seed: int, batch_shift_flags_all: bool
              ) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Scores and thresholds: per-row detectors skewed positive scores (gamma) with the threshold at their 98%
    quantile; batch-level ones one score for every row, below the threshold (batch_shift above it, if asked)."""
    rng = np.random.default_rng(seed)
    scores, thresholds = {}, {}
    for name in names:
        if batch_level(name):
            thresholds[name] = float(rng.uniform(3.0, 6.0))
            above = batch_shift_flags_all and name == "batch_shift"
            value = thresholds[name] * (float(rng.uniform(1.5, 3.0)) if above else float(rng.uniform(0.2, 0.8)))
            scores[name] = np.full(rows, value, np.float64)
        else:
            scores[name] = rng.gamma(2.0, float(rng.uniform(0.5, 2.0)), rows)
            thresholds[name] = float(np.quantile(scores[name], 1.0 - FLAGGED_SHARE))
    return scores, thresholds


def subset(screening: Screening, rows: np.ndarray | slice) -> tuple[dict, dict, dict, np.ndarray]:
    """(scores, thresholds, flags, quarantined) of some rows, as the previous loop takes them."""
    return ({k: v[rows] for k, v in screening.scores.items()}, screening.thresholds,
            {k: v[rows] for k, v in screening.flags.items()}, screening.quarantined[rows])


def names_per_row(texts, names: set[str]) -> list[frozenset[str]]:
    """The detector names each row's reasons cite ("name score > threshold[ (why)]", joined by "; ")."""
    out = []
    for text in texts:
        parts = [p.split(" ", 1)[0] for p in str(text).split("; ")] if str(text) else []
        cited = [p for p in parts if p in names]
        assert len(cited) == len(parts), f"unparsable reasons: {text!r}"
        out.append(frozenset(cited))
    return out


def without_why(text: str) -> str:
    """A new-style reason without the detector's explanation, i.e. what the previous loop wrote."""
    parts = []
    for part in str(text).split("; ") if str(text) else []:
        name = part.split(" ", 1)[0]
        parts.append(part.removesuffix(f" ({registry.DETECTORS[name].reason})"))
    return "; ".join(parts)


def check_same_names(screening: Screening, new: np.ndarray, sample: int, seed: int) -> dict:
    """Both implementations cite the same detectors for every row of a random sample (asserted); how many of
    those rows also read the same, score and threshold texts included (reported, not asserted)."""
    rows = np.sort(np.random.default_rng(seed + 1).choice(len(new), min(sample, len(new)), replace=False))
    old = previous_reasons(*subset(screening, rows))
    names = set(screening.scores)
    new_names, old_names = names_per_row(new[rows], names), names_per_row(old, names)
    mismatched = [int(r) for r, a, b in zip(rows, new_names, old_names) if a != b]
    assert not mismatched, f"rows {mismatched[:5]} cite different detectors in the new and previous reasons"
    truth = [frozenset(n for n, f in screening.flags.items() if f[r]) for r in rows]
    assert new_names == truth, "the new reasons do not cite exactly the flagging detectors"
    differing = [(int(r), without_why(a), b) for r, a, b in zip(rows, new[rows], old) if without_why(a) != b]
    return {"rows": len(rows), "quarantined": int(screening.quarantined[rows].sum()), "same_detector_names": True,
            "rows_whose_text_differs_besides_why": len(differing), "text_differences": differing[:5]}


def median_seconds(fn, repeats: int) -> tuple[float, list[float], object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times), times, result


def scenario(name: str, names: list[str], args: argparse.Namespace) -> dict:
    scores, thresholds = synthetic(names, args.rows, args.seed, batch_shift_flags_all=name == "batch_shift_flags_all")
    screening = Screening(scores, thresholds)
    new_s, new_runs, new = median_seconds(screening.reasons, args.repeats)
    check = check_same_names(screening, new, args.sample, args.seed)
    m = min(args.baseline_rows, args.rows)
    head = subset(screening, slice(0, m))
    old_s, old_runs, _ = median_seconds(lambda: previous_reasons(*head), args.repeats)
    head_screening = Screening(head[0], thresholds)
    new_head_s, _, _ = median_seconds(head_screening.reasons, args.repeats)
    result = {
        "rows": args.rows,
        "quarantined_share": screening.share,
        "flagged_share_by_detector": {k: float(f.mean()) for k, f in screening.flags.items()},
        "reasons_seconds_median": new_s,
        "reasons_seconds": new_runs,
        "reasons_us_per_row": new_s / args.rows * 1e6,
        "baseline_rows": m,
        "baseline_seconds_median": old_s,
        "baseline_seconds": old_runs,
        "baseline_us_per_row": old_s / m * 1e6,
        "reasons_seconds_median_on_baseline_rows": new_head_s,
        "ratio_baseline_over_reasons_per_row": (old_s / m) / (new_s / args.rows),
        "equivalence_check": check,
    }
    if args.full_baseline:
        full = subset(screening, slice(None))
        full_s, full_runs, _ = median_seconds(lambda: previous_reasons(*full), args.repeats)
        result.update(baseline_full_seconds_median=full_s, baseline_full_seconds=full_runs,
                      ratio_baseline_full_over_reasons=full_s / new_s)
    result["target_met"] = new_s < TARGET_SECONDS if args.rows == TARGET_ROWS else None  # only at 1M rows
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=TARGET_ROWS)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--baseline-rows", type=int, default=100_000, help="rows the previous loop is timed on")
    parser.add_argument("--full-baseline", action="store_true", help="also time the previous loop on all rows")
    parser.add_argument("--sample", type=int, default=10_000, help="rows checked for the same detector names")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "reasons_speed.json")
    args = parser.parse_args()

    names = list(configuration.load(ROOT / "params.yaml").filter.detectors)
    results = {}
    for name in ("per_row_2pct", "batch_shift_flags_all"):
        results[name] = scenario(name, names, args)

    if args.rows == TARGET_ROWS:
        verdict = "met" if all(r["target_met"] for r in results.values()) else "missed"
    else:
        verdict = f"not measured (--rows {args.rows:,}, not {TARGET_ROWS:,})"
    out = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"node": platform.node(), "machine": platform.machine(), "cpu_count": os.cpu_count(),
                    "platform": platform.platform(), "python": platform.python_version(), "numpy": np.__version__,
                    "note": "cores shared with other jobs"},
        "command": shlex.join([sys.executable, *sys.argv]),
        "cwd": os.getcwd(),
        "detectors": {n: "batch-level" if batch_level(n) else "per-row" for n in names},
        "repeats": args.repeats,
        "seed": args.seed,
        "scenarios": results,
        "target": f"1M rows in under 1 s: {verdict}",
    }

    print(f"Screening.reasons() vs the previous per-row loop; {len(names)} detectors, median of {args.repeats}")
    print(f"{'scenario':<23}{'rows':>11}{'quarantined':>13}{'reasons()':>12}{'per row':>11}"
          f"{'loop rows':>11}{'loop':>10}{'per row':>11}{'ratio':>9}")
    for name, r in results.items():
        print(f"{name:<23}{r['rows']:>11,}{r['quarantined_share']:>12.1%} {r['reasons_seconds_median']:>10.3f} s"
              f"{r['reasons_us_per_row']:>8.3f} us{r['baseline_rows']:>11,}{r['baseline_seconds_median']:>8.3f} s"
              f"{r['baseline_us_per_row']:>8.3f} us{r['ratio_baseline_over_reasons_per_row']:>8.1f}x")
        if args.full_baseline:
            print(f"{'':<23}previous loop on all {r['rows']:,} rows: {r['baseline_full_seconds_median']:.2f} s "
                  f"({r['ratio_baseline_full_over_reasons']:.1f}x)")
        c = r["equivalence_check"]
        print(f"{'':<23}same detector names on {c['rows']:,} sampled rows ({c['quarantined']:,} quarantined); "
              f"rows whose score/threshold text differs: {c['rows_whose_text_differs_besides_why']}")
    print(out["target"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
