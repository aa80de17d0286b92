import numpy as np

from poisongate.attacks import simulate
from poisongate.poisoning_gate import quarantine_frame, screen


def test_filter_quarantines_most_flipped_labels_with_reasons(digits, config):
    X_ref, y_ref = digits["reference"]
    X, y = digits["batch"]
    _, y_bad, poisoned = simulate(X, y, "label_flip", 0.3, seed=0, n_classes=10)
    result = screen(X_ref, y_ref, X, y_bad, config.filter)
    q = result.quarantined
    assert (q & poisoned).sum() / poisoned.sum() >= 0.85
    assert (q & ~poisoned).sum() / (~poisoned).sum() <= 0.05
    reasons = result.reasons()
    assert all("knn_label" in reasons[i] for i in np.flatnonzero(result.flags["knn_label"]))
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
    reasons = ["" if not m else "knn_label 1 > 0.9" for m in mask]
    frame = quarantine_frame(batch, mask, reasons, {"knn_label": np.arange(len(batch), dtype=float)})
    assert frame["id"].tolist() == batch["id"].iloc[[1, 4]].tolist()
    assert frame["score_knn_label"].tolist() == [1.0, 4.0]
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
    X_bad[0, 10] = 1e4  # extreme value
    y_bad[0] = (y_bad[0] + 1) % 10  # and a flipped label
    cfg = config.replace("filter", detectors={k: config.filter.detectors[k].model_dump()
                                              for k in ("robust_zscore", "knn_label")}).filter
    reason = screen(X_ref, y_ref, X_bad, y_bad, cfg).reasons()[0]
    assert "robust_zscore" in reason and "knn_label" in reason
