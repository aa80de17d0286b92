"""Output monitoring: the candidate's predictions against the model serving now (the champion; the
reference-only model before the first promotion), on the golden holdout and on tonight's accepted rows.

Reported: each model's predicted-class shares and confidence, per class a two-sample test of each (exact McNemar
on "predicted as this class", Kolmogorov-Smirnov on the confidence of the rows so predicted), the holdout
confusion shift and the agreement rate. Refused: a target-class pull, many rows newly predicted as one class.

- Tonight's accepted rows labelled c that the serving model does not call c but the candidate does: the serving
  model never saw them nor the holdout, so (clean labels) it misses rows of class c at its holdout rate there;
  one-sided Fisher of that count against its holdout misses of class c. A backdoor's or a targeted flip's rows
  (labelled c, looking like another class) are exactly such rows.
- On the holdout (trusted labels): rows the candidate wrongly calls c that the serving model does not, against
  the reverse (McNemar on false positives of c): a pull that generalises. Two clean trainings move class
  boundaries by more than McNemar's binomial null allows on a large holdout (a clean 10,000-row night was refused
  at p 8e-11, issue 19), so each class's McNemar z is judged against the other classes' dispersion (their mean
  z^2: Student t, classes - 1 degrees of freedom) wherever that exceeds the binomial's 1: one class pulled stands
  out from the others, boundaries that all moved a little do not.
Both per class, Bonferroni over 2 x classes at audit.pull_alpha."""
from __future__ import annotations

from typing import Any

import numpy as np
from scipy.stats import binomtest, fisher_exact, ks_2samp

from poisongate.promotion import check, mcnemar_p


def outputs(proba: np.ndarray, classes: list) -> dict[str, Any]:
    """A model's predicted-class shares and mean confidence (its top probability) on a set of rows."""
    pred, confidence = proba.argmax(axis=1), proba.max(axis=1)
    return {"rows": int(len(pred)),
            "share": {str(c): float(np.mean(pred == i)) if len(pred) else 0.0 for i, c in enumerate(classes)},
            "mean_confidence": float(confidence.mean()) if len(pred) else None}


def compare(candidate: np.ndarray, serving: np.ndarray, classes: list, y: np.ndarray | None = None
            ) -> dict[str, Any]:
    """Two models' probabilities on the same rows: shares, confidence, per-class tests, agreement (and with
    labels `y`, the confusion shift: candidate minus serving)."""
    pc, ps = candidate.argmax(axis=1), serving.argmax(axis=1)
    cc, cs = candidate.max(axis=1), serving.max(axis=1)
    per_class = {}
    for i, c in enumerate(classes):
        to, away = int(((pc == i) & (ps != i)).sum()), int(((ps == i) & (pc != i)).sum())
        shift_p = 1.0 if to + away == 0 else float(binomtest(to, to + away, 0.5).pvalue)
        ks = ks_2samp(cc[pc == i], cs[ps == i]) if (pc == i).any() and (ps == i).any() else None
        per_class[str(c)] = {"newly_predicted": to, "no_longer_predicted": away, "share_p_value": shift_p,
                             "confidence_ks": float(ks.statistic) if ks else None,
                             "confidence_p_value": float(ks.pvalue) if ks else None}
    out = {"candidate": outputs(candidate, classes), "serving": outputs(serving, classes),
           "agreement": float(np.mean(pc == ps)) if len(pc) else None, "per_class": per_class}
    if y is not None:
        k = len(classes)
        shift = np.zeros((k, k), np.int64)
        np.add.at(shift, (y, pc), 1)
        np.subtract.at(shift, (y, ps), 1)
        out["confusion_shift"] = shift.tolist()
    return out


def pull_checks(accepted_labels: np.ndarray, candidate_accepted: np.ndarray, serving_accepted: np.ndarray,
                y_holdout: np.ndarray, candidate_holdout: np.ndarray, serving_holdout: np.ndarray, classes: list,
                alpha: float) -> list[dict[str, Any]]:
    """The two target-class pull checks (predicted class indices), each at its worst class."""
    k = len(classes)
    bound = alpha  # the p-values below are Bonferroni-adjusted (times 2 x classes)
    accepted = []
    for i in range(k):
        labelled = accepted_labels == i
        pulled = int((labelled & (serving_accepted != i) & (candidate_accepted == i)).sum())
        of_class = y_holdout == i
        missed = int((of_class & (serving_holdout != i)).sum())
        table = [[pulled, int(labelled.sum()) - pulled], [missed, int(of_class.sum()) - missed]]
        p = float(fisher_exact(table, alternative="greater")[1]) if labelled.any() and of_class.any() else 1.0
        accepted.append((min(1.0, p * 2 * k), pulled))
    holdout = [(min(1.0, p * 2 * k), to) for p, to in holdout_pull_p(y_holdout, candidate_holdout, serving_holdout, k)]
    worst_a, worst_h = int(np.argmin([p for p, _ in accepted])), int(np.argmin([p for p, _ in holdout]))
    return [
        check(f"no target-class pull on tonight's accepted rows (class {classes[worst_a]}: rows labelled it that "
              "only the candidate predicts as it, one-sided Fisher vs the serving model's holdout misses of it, "
              "Bonferroni; value: those rows)", accepted[worst_a][1], bound, accepted[worst_a][0] >= bound,
              accepted[worst_a][0]),
        check(f"no target-class pull on the holdout (class {classes[worst_h]}: rows only the candidate wrongly "
              "predicts as it, McNemar against the other classes' dispersion, Bonferroni; value: those rows)",
              holdout[worst_h][1], bound, holdout[worst_h][0] >= bound, holdout[worst_h][0]),
    ]


def holdout_pull_p(y: np.ndarray, candidate: np.ndarray, serving: np.ndarray, k: int) -> list[tuple[float, int]]:
    """Per class c: (one-sided p, rows only the candidate wrongly predicts as c). Exact McNemar of those rows
    against the rows only the serving model wrongly predicts as c, unless the other classes' McNemar z^2 average
    above 1 (boundaries moved by retraining): then z / sqrt(that mean) against Student t with k - 1 degrees of
    freedom."""
    from scipy.stats import t

    c = np.arange(k)[:, None]
    wrong = y[None, :] != c
    to = (wrong & (candidate[None, :] == c) & (serving[None, :] != c)).sum(axis=1)
    away = (wrong & (serving[None, :] == c) & (candidate[None, :] != c)).sum(axis=1)
    z = (to - away) / np.sqrt(np.maximum(to + away, 1))
    out = []
    for i in range(k):
        dispersion = float(np.mean(np.delete(z, i) ** 2)) if k > 1 else 0.0
        p = float(t.sf(z[i] / np.sqrt(dispersion), k - 1)) if dispersion > 1.0 else mcnemar_p(int(to[i]), int(away[i]))
        out.append((p, int(to[i])))
    return out


def serving_over_runs(reports: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per run that reached the promotion gate, oldest first: the outputs on the golden holdout of the model that
    served after it (the candidate if promoted, else the model it was judged against)."""
    rows = []
    for report in reports:
        promote = report.get("stages", {}).get("promote") or {}
        holdout = (promote.get("outputs") or {}).get("holdout")
        if not holdout:
            continue
        promoted = bool(promote.get("passed"))
        model = "candidate" if promoted else promote["outputs"]["serving_model"]
        rows.append({"run_id": report["run_id"], "model": model, **holdout["candidate" if promoted else "serving"]})
    return rows


def monitor_table(rows: list[dict[str, Any]]) -> str:
    """`poisongate monitor`: one line per run, the serving model's predicted-class shares (%) and confidence."""
    if not rows:
        return "no run has reached the promotion gate with output monitoring yet"
    classes = list(rows[-1]["share"])
    head = f"{'run':<24} {'serving model':<24} {'confidence':>10}  " + " ".join(f"{c:>5}" for c in classes)
    lines = [head, "-" * len(head)]
    for r in rows:
        shares = " ".join(f"{100 * r['share'].get(c, 0.0):5.1f}" for c in classes)
        lines.append(f"{r['run_id']:<24} {r['model']:<24} {r['mean_confidence']:>10.4f}  {shares}")
    return "\n".join(lines)
