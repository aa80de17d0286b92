"""Efficacy of the poisoning gates on the default data (digits), side by side with what a user would reach for.

Label flips (uniform, and one class pair 3 -> 8) at 10/20/30/40%: precision/recall/F1 of confident_learning,
knn_label and their union (the gate's label detectors) vs cleanlab.filter.find_label_issues on the SAME
out-of-fold probabilities. Feature attacks (Gaussian noise 0.5 x std, extreme values, noisy and mass
duplicates): AUROC and recall at 1% false-positive rate of each feature detector and of the gate (max of
score / calibrated threshold) vs scikit-learn's IsolationForest, EllipticEnvelope and LocalOutlierFactor
(each fit on the trusted reference, scoring the batch), plus the share of clean rows the gate flags.

    uv run python benchmarks/gates_efficacy.py [--seeds 3] [--out benchmarks/results/gates_efficacy]

(--rates and --only restrict the matrix, for a quick check; the recorded results use the defaults.)
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score, roc_curve

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from poisongate import config as configuration  # noqa: E402
from poisongate.attacks import ATTACKS  # noqa: E402
from poisongate.config import Config, FilterConfig  # noqa: E402
from poisongate.detectors import registry  # noqa: E402
from poisongate.detectors.base import Detector  # noqa: E402
from poisongate.detectors.confident_learning import label_margin  # noqa: E402
from poisongate.poisoning_gate import calibrate  # noqa: E402
from poisongate.schema import schema_from_reference, to_arrays  # noqa: E402
from poisongate.sources import load_digits_frame, split_default  # noqa: E402

RATES = [0.1, 0.2, 0.3, 0.4]
LABEL_ATTACKS = {"label_flip": {}, "targeted_flip": {"source": 3, "target": 8}}
FEATURE_ATTACKS = {"gaussian_noise": {"scale": 0.5}, "outliers": {}, "noisy_duplicates": {}, "mass_duplicates": {}}
FEATURE_DETECTORS = ["robust_zscore", "iqr_fence", "mahalanobis", "periodic_noise", "duplicates"]


def load():
    config = configuration.load(ROOT / "params.yaml")
    reference, _, batches = split_default(load_digits_frame(), config.data.split)
    schema = schema_from_reference(reference, config.data, "reference")
    X_ref, y_ref = to_arrays(reference, schema)
    batch = [to_arrays(b, schema) for b in batches]
    X, y = np.concatenate([b[0] for b in batch]), np.concatenate([b[1] for b in batch])
    return config, X_ref, y_ref, X, y, len(schema.classes)


def fitted_detector(cfg: FilterConfig, name: str, fpr: float, X_ref, y_ref) -> tuple[Detector, float]:
    """The detector of filter.detectors.<name>, fit on the trusted reference, and its calibrated threshold
    (5 folds, seed 0)."""
    detector = registry.make(name, cfg.detectors[name])
    return detector, calibrate(detector, X_ref, y_ref, fpr, 5, 0)


def detector_fpr(cfg: FilterConfig, name: str) -> float:
    """A detector's own false_positive_rate, or filter.false_positive_rate where it sets none."""
    own = cfg.detectors[name].false_positive_rate
    return cfg.false_positive_rate if own is None else own


def recall_at_fpr(mask, score, fpr=0.01):
    curve_fpr, curve_tpr, _ = roc_curve(mask, score)
    return float(np.interp(fpr, curve_fpr, curve_tpr))


def prf(mask, flagged):
    return {"precision": precision_score(mask, flagged, zero_division=0), "recall": recall_score(mask, flagged),
            "f1": f1_score(mask, flagged)}


def label_benchmark(config: Config, X_ref, y_ref, X, y, n_classes, seeds, rates):
    from cleanlab.filter import find_label_issues

    cfg = config.filter
    fit = {name: fitted_detector(cfg, name, cfg.false_positive_rate, X_ref, y_ref)
           for name in ("confident_learning", "knn_label")}
    rows = []
    for attack, options in LABEL_ATTACKS.items():
        for rate in rates:
            for seed in range(seeds):
                _, y_bad, mask = ATTACKS[attack](X, y, rate, np.random.default_rng(seed), n_classes, **options)
                cl, cl_threshold = fit["confident_learning"]
                y_all = np.concatenate([y_ref, y_bad])
                oof = cl.out_of_fold(X, y_bad)  # the trusted rows', then the batch's: the same for both methods
                ours_cl = label_margin(oof, y_all)[len(X_ref):] > cl_threshold
                knn, knn_threshold = fit["knn_label"]
                ours_knn = knn.score(X, y_bad) > knn_threshold
                theirs = find_label_issues(y_all, oof)[len(X_ref):]
                for method, flagged in (("confident_learning", ours_cl), ("knn_label", ours_knn),
                                        ("gate (knn | CL)", ours_cl | ours_knn),
                                        ("cleanlab find_label_issues", theirs)):
                    rows.append({"attack": attack, "rate": rate, "seed": seed, "method": method, **prf(mask, flagged)})
                print(f"{attack} {rate:.0%} seed {seed}: " + ", ".join(
                    f"{r['method']} F1 {r['f1']:.3f}" for r in rows[-4:]), flush=True)
    return rows


def feature_benchmark(config: Config, X_ref, y_ref, X, y, n_classes, seeds, rates):
    from sklearn.covariance import EllipticEnvelope
    from sklearn.ensemble import IsolationForest
    from sklearn.neighbors import LocalOutlierFactor

    cfg = config.filter
    fitted = {name: fitted_detector(cfg, name, detector_fpr(cfg, name), X_ref, y_ref) for name in FEATURE_DETECTORS}
    baselines = {  # fit once on the trusted reference, like the detectors
        "IsolationForest": IsolationForest(random_state=0).fit(X_ref),
        "EllipticEnvelope": EllipticEnvelope(random_state=0, support_fraction=0.9).fit(X_ref),
        "LocalOutlierFactor": LocalOutlierFactor(novelty=True).fit(X_ref),
    }
    rows = []
    for attack, options in FEATURE_ATTACKS.items():
        for rate in rates:
            for seed in range(seeds):
                X_bad, y_bad, mask = ATTACKS[attack](X, y, rate, np.random.default_rng(seed), n_classes, **options)
                scores = {name: np.asarray(det.score(X_bad, y_bad), np.float64) for name, (det, _) in fitted.items()}
                gate_flags = np.any([scores[name] > t for name, (_, t) in fitted.items()], axis=0)
                # one number per row for the ROC: > 1 exactly where a detector flags (copies over a cap of 0: x 2)
                gate = np.max([scores[name] / t if t > 0 else 2.0 * scores[name] for name, (_, t) in fitted.items()],
                              axis=0)
                scores["gate (max score / threshold)"] = gate
                for name, model in baselines.items():
                    scores[name] = -model.score_samples(X_bad)
                for method, s in scores.items():
                    rows.append({"attack": attack, "rate": rate, "seed": seed, "method": method,
                                 "auroc": roc_auc_score(mask, s), "recall_at_1pct_fpr": recall_at_fpr(mask, s)})
                rows.append({"attack": attack, "rate": rate, "seed": seed, "method": "gate flags (calibrated)",
                             "recall": float(gate_flags[mask].mean()),
                             "clean_flagged": float(gate_flags[~mask].mean())})
                print(f"{attack} {rate:.0%} seed {seed}: gate AUROC {roc_auc_score(mask, gate):.3f}, "
                      f"flags recall {gate_flags[mask].mean():.3f}, clean flagged {gate_flags[~mask].mean():.3f}",
                      flush=True)
    return rows


def summarise(rows, metrics):
    """mean and std over seeds, per (attack, rate, method)."""
    groups = {}
    for r in rows:
        groups.setdefault((r["attack"], r["rate"], r["method"]), []).append(r)
    out = []
    for (attack, rate, method), group in groups.items():
        entry = {"attack": attack, "rate": rate, "method": method}
        for m in metrics:
            values = [g[m] for g in group if m in g]
            if values:
                entry[m] = {"mean": float(np.mean(values)), "std": float(np.std(values))}
        out.append(entry)
    return out


def markdown(meta, label, feature) -> str:
    lines = [f"# Gate efficacy ({meta['date']})", "", f"Machine: {meta['machine']}. Command: `{meta['command']}`. "
             f"{meta['seeds']} seeds, mean ± std. Data: digits, trusted reference {meta['reference_rows']} rows, "
             f"batch {meta['batch_rows']} rows.", "", "## Label flips: precision / recall / F1", "",
             "| attack | rate | method | precision | recall | F1 |", "|---|---|---|---|---|---|"]
    fmt = lambda e, m: f"{e[m]['mean']:.3f} ± {e[m]['std']:.3f}" if m in e else ""  # noqa: E731
    lines += [f"| {e['attack']} | {e['rate']:.0%} | {e['method']} | {fmt(e, 'precision')} | {fmt(e, 'recall')} | "
              f"{fmt(e, 'f1')} |" for e in label]
    lines += ["", "## Feature attacks: AUROC / recall at 1% FPR (gate flags: recall / clean rows flagged)", "",
              "| attack | rate | method | AUROC | recall@1%FPR | flags recall | clean flagged |",
              "|---|---|---|---|---|---|---|"]
    lines += [f"| {e['attack']} | {e['rate']:.0%} | {e['method']} | {fmt(e, 'auroc')} | "
              f"{fmt(e, 'recall_at_1pct_fpr')} | {fmt(e, 'recall')} | {fmt(e, 'clean_flagged')} |" for e in feature]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "gates_efficacy"))
    parser.add_argument("--only", choices=["label", "feature"])
    parser.add_argument("--rates", type=float, nargs="+", default=RATES, help="poisoned shares (default: %(default)s)")
    args = parser.parse_args()
    config, X_ref, y_ref, X, y, n_classes = load()
    start = time.perf_counter()
    data = (config, X_ref, y_ref, X, y, n_classes, args.seeds, args.rates)
    label = [] if args.only == "feature" else label_benchmark(*data)
    feature = [] if args.only == "label" else feature_benchmark(*data)
    meta = {"date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores (shared with other jobs), "
                       f"{platform.python_version()}",
            "command": "uv run python benchmarks/gates_efficacy.py " + " ".join(sys.argv[1:]),
            "seeds": args.seeds, "reference_rows": len(X_ref), "batch_rows": len(X),
            "seconds": round(time.perf_counter() - start, 1)}
    label_summary = summarise(label, ["precision", "recall", "f1"])
    feature_summary = summarise(feature, ["auroc", "recall_at_1pct_fpr", "recall", "clean_flagged"])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps({"meta": meta, "label": label_summary, "feature": feature_summary,
                                                    "runs": label + feature}, indent=1) + "\n")
    out.with_suffix(".md").write_text(markdown(meta, label_summary, feature_summary))
    print(markdown(meta, label_summary, feature_summary))


if __name__ == "__main__":
    main()
