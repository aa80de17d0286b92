import numpy as np

from poisongate.attacks import simulate
from poisongate.poisoning_gate import LISTED_ROWS, Screening, quarantine_frame, screen, summary
from poisongate.reports import run_report


def test_filter_quarantines_most_flipped_labels_with_reasons(digits, config):
    X_ref, y_ref = digits["reference"]
    X, y = digits["batch"]
    _, y_bad, poisoned = simulate(X, y, "label_flip", 0.3, seed=0, n_classes=10)
    result = screen(X_ref, y_ref, X, y_bad, config.filter)
    q = result.quarantined
    assert (q & poisoned).sum() / poisoned.sum() >= 0.85
    # the clean share of the selected rows stays near filter.fdr (0.1); the flips blur the label models a little
    assert (q & ~poisoned).sum() / q.sum() <= 0.15
    reasons = result.reasons()
    assert all("knn_label" in reasons[i] for i in np.flatnonzero(result.selected_by["knn_label"]))
    assert all(reasons[i] == "" for i in np.flatnonzero(~q))


def test_filter_catches_extreme_values(digits, config):
    X_ref, y_ref = digits["reference"]
    X_bad, y, poisoned = simulate(*digits["batch"], "outliers", 0.1, seed=0, n_classes=10)
    q = screen(X_ref, y_ref, X_bad, y, config.filter).quarantined
    assert q[poisoned].all()


def test_quarantine_frame_keeps_rows_as_received_plus_reasons_and_scores(digits):
    batch = digits["frames"][2][0]
    mask = np.zeros(len(batch), bool)
    mask[[1, 4]] = True
    reasons = ["" if not m else "knn_label 1 >= 0.9" for m in mask]
    n = len(batch)
    screening = Screening({"knn_label": np.arange(n, dtype=float)}, {"knn_label": 0.9},
                          {"knn_label": np.linspace(1, 0, n)}, np.linspace(1, 0, n), mask)
    frame = quarantine_frame(batch, mask, reasons, screening)
    assert frame["id"].tolist() == batch["id"].iloc[[1, 4]].tolist()
    assert frame["score_knn_label"].tolist() == [1.0, 4.0]
    assert frame["p_combined"].tolist() == np.linspace(1, 0, n)[[1, 4]].tolist()
    assert frame[batch.columns].equals(batch.iloc[[1, 4]])


def test_tail_quantile_extrapolates_a_strict_rate_past_a_few_hundred_trusted_scores():
    from poisongate.poisoning_gate import tail_quantile

    scores = np.random.default_rng(0).exponential(size=500)
    assert tail_quantile(scores, 0.9) == np.quantile(scores, 0.9)  # 50 rows beyond: the plain quantile
    assert abs(tail_quantile(scores, 0.999) - np.log(1000)) < 1.0  # 0.5 rows beyond: the fitted tail
    assert tail_quantile(scores, 0.999) > np.quantile(scores, 0.99)


def test_every_flagging_detector_is_named_in_the_row_reason(digits, config):
    X_ref, y_ref = digits["reference"]
    X, y = digits["batch"]
    X_bad, y_bad = X.copy(), y.copy()
    X_bad[:40, 10] = 1e4  # extreme values
    y_bad[:40] = (y_bad[:40] + 1) % 10  # and flipped labels on the same rows
    cfg = config.replace("filter", detectors={k: config.filter.detectors[k].model_dump()
                                              for k in ("robust_zscore", "knn_label")}).filter
    result = screen(X_ref, y_ref, X_bad, y_bad, cfg)
    reasons = result.reasons()
    assert result.selected_by["knn_label"][:40].sum() >= 10  # many flips: the BH cutoff admits knn's p-values
    for i in np.flatnonzero(result.selected_by["knn_label"][:40]):
        assert "robust_zscore" in reasons[i] and "knn_label" in reasons[i]


def test_a_summary_lists_a_few_quarantined_rows_and_the_report_counts_the_rest(digits, config):
    X_ref, y_ref = digits["reference"]
    X, y = digits["batch"]
    screening = screen(X_ref, y_ref, X, y, config.filter)
    everything = np.ones(len(X), bool)  # a refused batch: every row quarantined (1M rows must not become 1M dicts)
    listed = summary(screening, config.filter, np.arange(len(X)), everything, screening.reasons(), "refused", 1.0)
    assert [r["id"] for r in listed["quarantined_rows"]] == list(range(LISTED_ROWS))
    report = run_report.build("r1", {"filter": listed}, "batch refused", {}, "0" * 40, [])
    assert f"| ... | {len(X) - LISTED_ROWS} more in quarantine/r1.parquet |" in run_report.markdown(report)
