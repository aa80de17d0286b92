import pytest

from tasks.promote import decide


def metrics(accuracy, recalls):
    return {"accuracy": accuracy, "class_recall": {str(i): r for i, r in enumerate(recalls)}}


CV = {"spread": 0.03}


@pytest.fixture
def cfg(params):
    return params["promote"]


def test_first_model_is_promoted_when_it_clears_the_floors(cfg):
    decision = decide(metrics(0.95, [0.95, 0.9, 0.97]), None, CV, cfg)
    assert decision["passed"] and decision["reason"] == "promoted"
    assert [c["passed"] for c in decision["checks"]] == [True, True, True, None, None]


def test_first_model_below_the_floor_is_refused(cfg):
    decision = decide(metrics(0.80, [0.95, 0.6, 0.9]), None, CV, cfg)
    assert not decision["passed"]
    assert "holdout accuracy >= floor failed" in decision["reason"]
    assert "every class recall >= floor failed" in decision["reason"]


def test_worse_candidate_is_refused_naming_the_check(cfg):
    decision = decide(metrics(0.93, [0.93] * 3), metrics(0.95, [0.95] * 3), CV, cfg)
    assert not decision["passed"]
    failing = [c["check"] for c in decision["checks"] if c["passed"] is False]
    assert failing == ["accuracy drop vs champion <= bound"]


def test_one_class_dropping_is_refused_though_overall_accuracy_rose(cfg):
    decision = decide(metrics(0.97, [1.0, 1.0, 0.80]), metrics(0.95, [0.93, 0.93, 0.99]), CV, cfg)
    assert not decision["passed"]
    assert [c["check"] for c in decision["checks"] if c["passed"] is False] == ["largest class recall drop vs champion <= bound"]


def test_unstable_cross_validation_is_refused(cfg):
    decision = decide(metrics(0.97, [0.97] * 3), None, {"spread": 0.3}, cfg)
    assert not decision["passed"] and "cv fold spread" in decision["reason"]


def test_equal_or_better_candidate_is_promoted(cfg):
    assert decide(metrics(0.95, [0.95] * 3), metrics(0.95, [0.95] * 3), CV, cfg)["passed"]
