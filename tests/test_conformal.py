"""The poisoning gate's statistics: conformal p-values, their combination, Benjamini-Hochberg selection and the
batch-level tests. Each is checked for calibration on many seeded clean draws at two sizes, and for power on a
planted shift."""
import numpy as np
import pandas as pd
import pytest
from conftest import blobs

from poisongate import poisoning_gate as gate
from poisongate.detectors import registry as detectors

CHEAP = ("robust_zscore", "mahalanobis", "knn_label")  # row-level detectors fast enough for many draws


def cheap_config(config, **update):
    return config.replace("filter", detectors={k: config.filter.detectors[k].model_dump() for k in CHEAP},
                          **update).filter


@pytest.mark.parametrize("rows", [200, 2000])
@pytest.mark.parametrize("law", ["exponential", "lognormal", "pareto"])
def test_conformal_p_values_are_valid_at_every_level_on_light_and_heavy_tails(rows, law):
    rng = np.random.default_rng(rows)
    draw = {"exponential": lambda n: rng.exponential(size=n), "lognormal": lambda n: rng.lognormal(0, 1.5, n),
            "pareto": lambda n: rng.pareto(1.5, n)}[law]
    p = np.concatenate([gate.conformal_p(draw(rows), draw(500)) for _ in range(40)])  # 20,000 clean p-values
    for level in (0.001, 0.01, 0.1):  # binomial slack: 4 standard errors plus one calibration rank
        assert (p <= level).mean() <= level + 4 * np.sqrt(level / len(p)) + 1.0 / rows, level
    cal = draw(rows)
    shifted = gate.conformal_p(cal, draw(500) + 2 * cal.max())
    assert np.median(shifted) < 2.0 / rows  # power: a planted shift gets small p-values


def test_conformal_p_is_monotone_and_honours_the_floor_and_nan():
    cal = np.random.default_rng(0).exponential(size=300)
    s = np.linspace(-1, 30, 200)
    p = gate.conformal_p(cal, s, floor=0.0)
    assert np.all(np.diff(p) <= 1e-12) and p[s <= 0].tolist() == [1.0] * int((s <= 0).sum())
    assert p[-1] < 1e-4  # far past every trusted score: the fitted tail, far below 1 / 301
    assert gate.conformal_p(cal, np.array([np.nan]))[0] == 0.0


def test_combined_p_values_stay_valid_when_detectors_are_copies_of_each_other():
    """Perfect dependence (the same score three times) is where Fisher's method would break; the combination is
    calibrated on the trusted rows' own statistics, so it holds."""
    rng = np.random.default_rng(1)
    out = []
    for _ in range(30):
        cal, batch = rng.exponential(size=400), rng.exponential(size=400)
        own = {k: gate.conformal_p(cal, cal) for k in "abc"}
        p = {k: gate.conformal_p(cal, batch) for k in "abc"}
        out.append(gate.combine(own, p, {"a": "labels", "b": "labels", "c": "features"}))
    combined = np.concatenate(out)
    for level in (0.01, 0.05):
        assert (combined <= level).mean() <= level + 4 * np.sqrt(level / len(combined)) + 2 / 400


@pytest.mark.parametrize("rows", [100, 1000])
def test_clean_batches_quarantine_almost_nothing_at_every_size(config, rows):
    X_ref, y_ref = blobs(1000 // 3, seed=0)
    cfg = cheap_config(config)
    flagged, batches_with_any = 0, 0
    for seed in range(1, 11):
        X, y = blobs(rows // 3, seed=seed)
        q = gate.screen(X_ref, y_ref, X, y, cfg).quarantined
        flagged += int(q.sum())
        batches_with_any += bool(q.any())
    assert flagged / (10 * rows) <= 0.005  # the target for clean rows
    assert batches_with_any <= 4  # BH at fdr 0.1 on all-clean rows: P(any) <= 0.1 (10 draws: slack for 4)


def test_under_attack_the_flagged_set_is_mostly_poisoned_and_its_p_values_are_small(config):
    X_ref, y_ref = blobs(1000 // 3, seed=0)
    X, y = blobs(400 // 3, seed=3)
    poisoned = np.zeros(len(y), bool)
    poisoned[:40] = True
    X[:40] += 6 * X_ref.std(axis=0)  # extreme rows
    y[40:80] = (y[40:80] + 1) % 3  # and flipped labels
    poisoned[40:80] = True
    s = gate.screen(X_ref, y_ref, X, y, cheap_config(config))
    q = s.quarantined
    assert q[:40].all() and q[40:80].mean() >= 0.8
    assert (q & ~poisoned).sum() / max(q.sum(), 1) <= 0.15  # near the FDR of 0.1
    assert s.combined[:40].max() < 1e-3
    reasons = s.reasons()
    assert all(any(k in reasons[i] for k in ("robust_zscore", "mahalanobis")) for i in range(40))


def test_scores_file_holds_every_rows_scores_p_values_and_combined_p(config):
    X_ref, y_ref = blobs(600 // 3, seed=0)
    X, y = blobs(120 // 3, seed=1)
    X[:5] += 50
    s = gate.screen(X_ref, y_ref, X, y, cheap_config(config))
    frame = gate.scores_frame(np.arange(len(y)), s, s.quarantined)
    assert len(frame) == len(y)
    for name in CHEAP:
        assert {f"score_{name}", f"p_{name}", f"flag_{name}"} <= set(frame.columns)
        assert frame[f"p_{name}"].between(0, 1).all()
    assert frame["p_combined"].between(0, 1).all() and frame.loc[:4, "selected"].all()
    assert frame["selected"].sum() == s.quarantined.sum()


def batch_shift_p(X_ref, X, cfg):
    det = detectors.make("batch_shift", cfg.detectors["batch_shift"])
    gate.calibrate(det, X_ref, np.zeros(len(X_ref), np.int32), 0.01, 5, 0)
    return float(det.p_values(det.calibration, det.score(X, np.zeros(len(X), np.int32))[:1])[0])


@pytest.mark.parametrize("rows", [200, 20000])
def test_batch_shift_p_value_is_calibrated_at_sizes_below_and_far_above_the_reference(config, rows):
    """The issue's case: a clean batch much larger than its reference is not "shifted", because the reference's
    own sampling error counts (two-sample statistics)."""
    rng = np.random.default_rng(rows)
    cfg = config.filter
    p = [batch_shift_p(rng.standard_normal((2000, 8)), rng.standard_normal((rows, 8)), cfg) for _ in range(20)]
    assert np.mean(np.asarray(p) <= 0.05) <= 0.2  # 20 draws at level 0.05: expect 1, allow 4
    shifted = rng.standard_normal((rows, 8)) + 0.5
    assert batch_shift_p(rng.standard_normal((2000, 8)), shifted, cfg) < 0.002


def test_a_firing_batch_level_detector_is_named_with_its_statistic_and_p_value(config):
    X_ref, y_ref = blobs(800 // 3, seed=0)
    X, y = blobs(300 // 3, seed=1)
    X += 0.4 * X_ref.std(axis=0)  # every row moved a little: no row stands out, the batch does
    cfg = config.replace("filter", detectors={"batch_shift": {"false_positive_rate": 0.002},
                                              "robust_zscore": {}}).filter
    s = gate.screen(X_ref, y_ref, X, y, cfg)
    why = gate.refusal(s, cfg)
    assert why is not None and why.startswith("batch_shift statistic ")
    t = s.batch_tests["batch_shift"]
    assert f"p {t['p_value']:.2g} <= 0.002" in why and not t["passed"]
    assert s.quarantined.mean() < 0.5  # refused as a batch, not by flagging every row
    summary = gate.summary(s, cfg, np.arange(len(y)), s.quarantined, s.reasons(), why, s.share)
    assert summary["batch_tests"]["batch_shift"]["statistic"] == pytest.approx(t["statistic"])
    pd.testing.assert_series_equal(pd.Series([why]), pd.Series([summary["reason"]]))


@pytest.mark.parametrize("law", ["exponential", "lognormal", "pareto", "halfnormal"])
def test_the_fitted_tail_holds_its_level_on_a_fifty_row_reference(law):
    """Wine-sized: 53 trusted rows leave 5 past the tail's start. A fit to 5 points is uncertain, and its p-values
    must say so: over 400 reference draws, clean rows get p <= 0.002 no more often than that (slack: 4 standard
    errors), yet a row far past the reference still gets a p-value Benjamini-Hochberg can select."""
    rng = np.random.default_rng(53)
    draw = {"exponential": lambda n: rng.exponential(size=n), "lognormal": lambda n: rng.lognormal(0, 1.5, n),
            "pareto": lambda n: rng.pareto(1.5, n), "halfnormal": lambda n: np.abs(rng.standard_normal(n))}[law]
    p = np.concatenate([gate.conformal_p(draw(53), draw(50)) for _ in range(400)])
    for level in (0.002, 0.01):
        assert (p <= level).mean() <= level + 4 * np.sqrt(level / 400 / 10), level
    cal = draw(53)
    assert gate.conformal_p(cal, np.array([20 * cal.max()]))[0] < 0.1 / 20  # BH at 0.1 over 20 rows selects it


def test_trusted_rows_are_judged_against_the_others_as_a_batch_row_would_be():
    """Leave-one-out: a trusted row's p-value is the p-value a batch row with its score gets against the other
    trusted rows, so the combined p-value (calibrated on trusted rows' p-values) is not lenient at 50 rows."""
    rng = np.random.default_rng(7)
    cal = rng.exponential(size=53)
    own = gate.conformal_p(cal, cal, leave_one_out=True)
    for i in (int(np.argmax(cal)), int(np.argmin(cal)), 17):
        others = np.delete(cal, i)
        assert own[i] == pytest.approx(gate.conformal_p(others, cal[i : i + 1])[0], rel=0.05)
    assert own.max() <= 1.0 and own[np.argmax(cal)] < 2.0 / 54  # not the 2 / 54 of a set holding itself
