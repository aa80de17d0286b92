import pytest

from poisongate.promotion import decide, largest_fold_gap


def metrics(accuracy, recalls):
    return {"accuracy": accuracy, "class_recall": {str(i): r for i, r in enumerate(recalls)}}


CV = {"spread": 0.03, "fold_accuracy": [0.95, 0.96, 0.97, 0.98, 0.97]}


@pytest.fixture
def cfg(config):
    return config.promote


def failing(decision):
    return [c["check"] for c in decision["checks"] if c["passed"] is False]


def test_first_model_is_promoted_when_it_clears_the_floors(cfg):
    decision = decide(metrics(0.95, [0.95, 0.9, 0.97]), None, CV, cfg)
    assert decision["passed"] and decision["reason"] == "promoted"
    assert [c["passed"] for c in decision["checks"]] == [True] * 6 + [None, None]  # nothing to compare against


def test_every_check_records_value_threshold_and_verdict(cfg):
    decision = decide(metrics(0.95, [0.95] * 3), metrics(0.95, [0.95] * 3), CV, cfg,
                      {"nonfinite": False, "loss_spikes": []})
    assert len(decision["checks"]) == 8
    for c in decision["checks"]:
        assert set(c) == {"check", "value", "threshold", "passed"} and c["passed"] is True and c["value"] is not None


def test_first_model_below_the_floor_is_refused(cfg):
    decision = decide(metrics(0.80, [0.95, 0.6, 0.9]), None, CV, cfg)
    assert not decision["passed"]
    assert "holdout accuracy >= floor failed" in decision["reason"]
    assert "every class recall >= floor failed" in decision["reason"]


def test_worse_candidate_is_refused_naming_the_failing_checks(cfg):
    decision = decide(metrics(0.85, [0.85, 0.70, 0.95]), metrics(0.95, [0.95] * 3), CV, cfg)
    assert not decision["passed"]
    assert failing(decision) == ["holdout accuracy >= floor", "every class recall >= floor",
                                 "accuracy drop vs champion <= bound",
                                 "largest class recall drop vs champion <= bound (class 1)"]
    for name in failing(decision):
        assert name in decision["reason"]


def test_slightly_worse_candidate_is_refused_on_the_drop_alone(cfg):
    decision = decide(metrics(0.93, [0.93] * 3), metrics(0.95, [0.95] * 3), CV, cfg)
    assert failing(decision) == ["accuracy drop vs champion <= bound"]


def test_one_class_dropping_is_refused_though_overall_accuracy_rose(cfg):
    decision = decide(metrics(0.97, [1.0, 1.0, 0.80]), metrics(0.95, [0.93, 0.93, 0.99]), CV, cfg)
    assert not decision["passed"]
    assert failing(decision) == ["largest class recall drop vs champion <= bound (class 2)"]
    drop = next(c for c in decision["checks"] if c["check"].startswith("largest class"))
    assert drop["value"] == pytest.approx(0.19) and drop["threshold"] == cfg.max_class_recall_drop


def test_class_drop_within_eps_is_promoted(cfg):
    eps = cfg.max_class_recall_drop
    assert decide(metrics(0.97, [1.0, 1.0, 0.99 - eps]), metrics(0.95, [0.93, 0.93, 0.99]), CV, cfg)["passed"]


def test_unstable_cross_validation_is_refused(cfg):
    decision = decide(metrics(0.97, [0.97] * 3), None, {"spread": 0.3, "fold_accuracy": [0.9, 0.6, 0.9]}, cfg)
    assert not decision["passed"] and "cv fold spread" in decision["reason"]


def test_one_fold_far_below_the_others_is_refused_though_the_spread_is_within_bound(cfg):
    folds = [0.97, 0.97, 0.98, 0.97, 0.90]  # spread 0.08 <= 0.10, but one fold 0.07 below the rest
    decision = decide(metrics(0.97, [0.97] * 3), None, {"spread": max(folds) - min(folds), "fold_accuracy": folds}, cfg)
    assert failing(decision) == ["worst fold below median of the others <= bound"]
    assert largest_fold_gap(folds) == pytest.approx(0.07)


@pytest.mark.parametrize("training, check", [
    ({"nonfinite": True}, "training loss finite"),
    ({"nonfinite": False, "loss_spikes": [{"epoch": 12, "loss": 9.1}]}, "training loss spikes <= bound"),
])
def test_training_monitor_flags_block_promotion(cfg, training, check):
    decision = decide(metrics(0.97, [0.97] * 3), None, CV, cfg, training)
    assert failing(decision) == [check]


def test_training_summary_without_monitor_flags_is_tolerated(cfg):
    assert decide(metrics(0.97, [0.97] * 3), None, CV, cfg, {"final_loss": 0.01})["passed"]


def test_equal_or_better_candidate_is_promoted(cfg):
    assert decide(metrics(0.95, [0.95] * 3), metrics(0.95, [0.95] * 3), CV, cfg)["passed"]
