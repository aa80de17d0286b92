"""Gates calibrated to the data in front of them, across datasets of different shapes (issue 15).

Part 1, clean nights through the real CLI loop: per dataset a fresh workspace with the shipped params.yaml (only
data.* set to the user's files), the trusted reference and holdout written once, and each night's clean batch
dropped as incoming.csv before `poisongate run`. Counted: batches refused, clean models refused, clean rows
quarantined (targets: at most 1 in 50, 1 in 20, 0.5%). The quarantine is also split into the filter's (before
training) and the audit's (after training: it flags accepted rows at audit.false_alarm_rate each, by design).

Part 2, attacks: every attack of poisongate/attacks.py at each rate on one batch per dataset, screened by the
poisoning gate (the library function the filter stage calls). Side by side on the same rows: cleanlab's
find_label_issues on out-of-fold probabilities (scikit-learn logistic regression, 5 folds, over reference +
batch), and IsolationForest fit on the reference. Row-level F1 for label attacks (baseline: cleanlab), AUROC of
the combined p-value for feature attacks (baseline: IsolationForest).

    uv run python benchmarks/calibration.py --nights 5 --out benchmarks/results/calibration.json
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import cli_loop
import numpy as np
import pandas as pd

ROOT = cli_loop.ROOT
LABEL_ATTACKS = ("label_flip", "targeted_flip")


def datasets() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Bundled scikit-learn sets and seeded synthetic ones (no download): sizes 150 to 100,000, integer and float
    features, imbalanced classes, 2 to 10 classes, up to 120 columns."""
    from sklearn import datasets as sk

    rng = np.random.default_rng(0)
    out = {name: getattr(sk, f"load_{name}")(return_X_y=True) for name in ("iris", "wine", "breast_cancer", "digits")}
    rate = rng.gamma(2.0, 2.0, size=(4, 20))  # integer counts: Poisson rates per class
    y = rng.choice(4, size=3000, p=[0.55, 0.25, 0.15, 0.05])
    out["counts_imbalanced"] = (rng.poisson(rate[y]).astype(float), y)
    out["wide_120"] = sk.make_classification(2000, 120, n_informative=20, n_classes=5, n_clusters_per_class=1,
                                             random_state=0)
    out["large_hard"] = sk.make_classification(100_000, 10, n_informative=5, n_classes=3, weights=[0.6, 0.3, 0.1],
                                               flip_y=0.05, class_sep=0.8, random_state=0)
    return {k: (np.asarray(X, np.float64), np.asarray(y, np.int64)) for k, (X, y) in out.items()}


def frame(X: np.ndarray, y: np.ndarray, ids: np.ndarray) -> pd.DataFrame:
    integer = np.allclose(X, np.round(X))
    cols = {f"f{j}": (X[:, j].astype(np.int64) if integer else X[:, j]) for j in range(X.shape[1])}
    return pd.DataFrame({"id": ids, **cols, "label": y})


def split(X, y, nights: int, seed: int = 0, max_night_rows: int = 5000):
    """30% reference, 20% holdout, the rest in `nights` batches (each at most max_night_rows)."""
    order = np.random.default_rng(seed).permutation(len(y))
    n_ref, n_hold = int(0.3 * len(y)), int(0.2 * len(y))
    parts = np.array_split(order[n_ref + n_hold :], nights)
    parts = [p[:max_night_rows] for p in parts]
    return order[:n_ref], order[n_ref : n_ref + n_hold], parts


def clean_nights(name: str, X, y, nights: int) -> dict:
    ref, hold, parts = split(X, y, nights)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        files = tmp / "files"
        files.mkdir()
        frame(X[ref], y[ref], ref).to_csv(files / "reference.csv", index=False)
        frame(X[hold], y[hold], hold).to_csv(files / "holdout.csv", index=False)
        env = cli_loop.environment(tmp)
        ws = cli_loop.workspace(tmp, env, {"source": str(files / "incoming.csv"),
                                           "reference": str(files / "reference.csv"),
                                           "holdout": str(files / "holdout.csv")})
        for night, part in enumerate(parts, 1):
            frame(X[part], y[part], part).to_csv(files / "incoming.csv", index=False)
            proc, seconds, last = cli_loop.night(ws, env)
            line = [x for x in (proc.stdout + proc.stderr).strip().splitlines() if x.startswith("poisongate:")]
            stages = stages_of(ws, last)
            rows.append({"night": night, "batch_rows": len(part), "exit_status": proc.returncode,
                         "seconds": round(seconds, 1), "decision": last.get("decision"),
                         "quarantined": last.get("quarantined"),
                         "quarantined_by_filter": stages.get("filter", {}).get("quarantined"),
                         "flagged_by_audit": stages.get("audit", {}).get("flagged"),
                         "train_rows": last.get("train_rows"),
                         "holdout_accuracy": last.get("holdout_accuracy"), "message": line[-1] if line else ""})
            print(f"  {name} night {night}: {rows[-1]['decision']} quarantined {rows[-1]['quarantined']}/{len(part)}"
                  f" (filter {rows[-1]['quarantined_by_filter']}, audit {rows[-1]['flagged_by_audit']})"
                  f" {seconds:.0f} s  {rows[-1]['message'][:160]}", flush=True)
    return {"dataset": name, "rows": len(y), "features": X.shape[1], "classes": int(len(np.unique(y))),
            "nights": rows,
            "batches_refused": sum(r["decision"] == "refused-batch" for r in rows),
            "models_refused": sum(r["decision"] == "refused-model" for r in rows),
            **clean_row_shares(rows)}


def clean_row_shares(nights: list[dict]) -> dict[str, float]:
    """Shares of the nights' clean rows quarantined (filter and audit together, as the history row counts them),
    quarantined by the filter, and flagged by the audit."""
    rows = max(sum(n["batch_rows"] for n in nights), 1)
    return {f"clean_rows_{key}_share": sum(n.get(key) or 0 for n in nights) / rows
            for key in ("quarantined", "quarantined_by_filter", "flagged_by_audit")}


def stages_of(ws: Path, history_row: dict) -> dict:
    """The night's stage reports (runs/<run_id>.json): the filter's quarantine and the audit's flags apart, where
    the history row counts them together."""
    report = ws / "runs" / f"{history_row.get('run_id')}.json"
    return json.loads(report.read_text()).get("stages", {}) if report.is_file() else {}


def cleanlab_issues(X_ref, y_ref, X, y) -> np.ndarray:
    from cleanlab.filter import find_label_issues
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    X_all, y_all = np.concatenate([X_ref, X]), np.concatenate([y_ref, y])
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
    proba = cross_val_predict(model, X_all, y_all, cv=5, method="predict_proba")
    return find_label_issues(y_all, proba)[len(y_ref) :]


def attacks_on(name: str, X, y, rates, attack_names, config) -> list[dict]:
    from sklearn.ensemble import IsolationForest
    from sklearn.metrics import f1_score, roc_auc_score

    from poisongate import attacks
    from poisongate import poisoning_gate as gate

    ref, _, parts = split(X, y, 3, max_night_rows=3000)
    X_ref, y_ref = X[ref].astype(np.float32), y[ref].astype(np.int32)
    X0, y0 = X[parts[0]].astype(np.float32), y[parts[0]].astype(np.int32)
    forest = IsolationForest(random_state=0).fit(X_ref)
    out = []
    for attack in attack_names:
        if attack == "backdoor" and int(np.sqrt(X.shape[1])) ** 2 != X.shape[1]:
            continue  # a patch trigger needs square-image rows
        for rate in rates:
            Xp, yp, truth = attacks.simulate(X0, y0, attack, rate, seed=0, n_classes=int(y.max()) + 1,
                                             options=config.simulate.options.get(attack))
            Xp = np.asarray(Xp, np.float32)
            if Xp.shape[1] != X_ref.shape[1]:
                continue  # irrelevant_features widens the table: the data gate refuses it by its columns
            start = time.perf_counter()
            s = gate.screen(X_ref, y_ref, Xp, yp, config.filter)
            row = {"dataset": name, "attack": attack, "rate": rate, "rows": len(yp), "poisoned": int(truth.sum()),
                   "seconds": round(time.perf_counter() - start, 1), "refused": gate.refusal(s, config.filter),
                   "f1": float(f1_score(truth, s.quarantined, zero_division=0)),
                   "auroc": float(roc_auc_score(truth, -np.log(np.maximum(s.combined, 1e-300))))
                   if 0 < truth.sum() < len(truth) else None}
            if attack in LABEL_ATTACKS:
                row["baseline"] = "cleanlab find_label_issues"
                row["baseline_f1"] = float(f1_score(truth, cleanlab_issues(X_ref, y_ref, Xp, yp), zero_division=0))
                row["beats_baseline"] = row["f1"] > row["baseline_f1"] or row["refused"] is not None
            elif row["auroc"] is not None:
                row["baseline"] = "IsolationForest"
                row["baseline_auroc"] = float(roc_auc_score(truth, -forest.score_samples(Xp)))
                row["beats_baseline"] = row["auroc"] > row["baseline_auroc"] or row["refused"] is not None
            out.append(row)
            print(f"  {name} {attack} {rate}: f1 {row['f1']:.2f} auroc {row['auroc']} "
                  f"baseline {row.get('baseline_f1', row.get('baseline_auroc'))} refused {bool(row['refused'])}",
                  flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nights", type=int, default=5, help="clean nights per dataset (part 1)")
    parser.add_argument("--datasets", nargs="+", help="default: all")
    parser.add_argument("--loop-datasets", nargs="+", help="datasets for part 1 (default: --datasets)")
    parser.add_argument("--rates", nargs="+", type=float, default=[0.05, 0.1, 0.2])
    parser.add_argument("--attacks", nargs="+", help="default: every attack")
    parser.add_argument("--skip-loop", action="store_true")
    parser.add_argument("--skip-attacks", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "calibration.json")
    args = parser.parse_args()

    from poisongate.attacks import ATTACKS
    from poisongate.config import load

    data = datasets()
    names = args.datasets or list(data)
    result = {"date": date.today().isoformat(), "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
              f"{platform.python_implementation()} {platform.python_version()}",
              "command": "python benchmarks/calibration.py " + " ".join(sys.argv[1:]), "loop": [], "attacks": []}
    if not args.skip_loop:
        for name in args.loop_datasets or names:
            result["loop"].append(clean_nights(name, *data[name], args.nights))
            write(result, args.out)  # dataset by dataset: a long run cut short keeps what it measured
    if not args.skip_attacks:
        config = load(ROOT / "params.yaml")
        for name in names:
            result["attacks"] += attacks_on(name, *data[name], args.rates, args.attacks or sorted(ATTACKS), config)
            write(result, args.out)
    nights = [n for d in result["loop"] for n in d["nights"]]
    result["summary"] = {
        "clean_nights": len(nights),
        "batches_refused": sum(n["decision"] == "refused-batch" for n in nights),
        "models_refused": sum(n["decision"] == "refused-model" for n in nights),
        **clean_row_shares(nights),
        "attack_cells": len(result["attacks"]),
        "attack_cells_beating_baseline": sum(bool(c.get("beats_baseline")) for c in result["attacks"]),
    }
    print(json.dumps(result["summary"], indent=2))
    write(result, args.out)


def write(result: dict, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
