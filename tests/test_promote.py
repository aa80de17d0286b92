"""The promotion gate's paired tests: calibrated on clean retrains (false refusals within promote.alpha over many
seeded draws, at two holdout sizes), powerful on a planted drop, a lost class and a failed fold."""
import numpy as np
import pytest

from poisongate.promotion import decide, mcnemar, paired_margin_p

CLASSES = tuple(range(10))


@pytest.fixture
def cfg(config):
    return config.promote


def holdout(n, seed=0):
    return np.random.default_rng(seed).integers(0, len(CLASSES), n)


def model(y, accuracy, rng, like=None, agree=0.0):
    """Predictions right on about `accuracy` of the rows; with `like`, the same as it on an `agree` share."""
    pred = np.where(rng.random(len(y)) < accuracy, y, (y + rng.integers(1, len(CLASSES), len(y))) % len(CLASSES))
    if like is not None:
        same = rng.random(len(y)) < agree
        pred[same] = like[same]
    return pred


def cv(accuracies, rows=100):
    return {"fold_accuracy": list(accuracies), "fold_rows": [rows] * len(accuracies),
            "spread": max(accuracies) - min(accuracies)}


CLEAN_CV = cv([0.95, 0.96, 0.94, 0.95, 0.96])


def failing(decision):
    return [c["check"] for c in decision["checks"] if c["passed"] is False]


@pytest.mark.parametrize("rows", [150, 1500])
def test_clean_retrains_are_refused_at_most_at_the_stated_rate(cfg, rows):
    """Candidate, champion and baseline of the same quality, loosely correlated: over 400 draws the statistical
    checks refuse no more often than promote.alpha allows (binomial slack), at both holdout sizes."""
    cfg = cfg.model_copy(update={"max_accuracy_drop": None})  # the practical margin is a policy, not a test
    rng = np.random.default_rng(rows)
    refused = 0
    for _ in range(400):
        y = holdout(rows, int(rng.integers(1 << 30)))
        champion = model(y, 0.93, rng)
        candidate, baseline = model(y, 0.93, rng, champion, 0.5), model(y, 0.93, rng, champion, 0.5)
        folds = rng.binomial(100, 0.93, 5) / 100
        refused += not decide(y, CLASSES, candidate, champion, baseline, cv(folds), cfg)["passed"]
    assert refused <= 400 * cfg.alpha + 3 * np.sqrt(400 * cfg.alpha) + 1, refused


@pytest.mark.parametrize("rows", [100, 6000])
def test_folds_of_separately_trained_models_are_refused_at_most_at_the_stated_rate(cfg, rows):
    """Each fold's model is its own training: its accuracy varies by a point beyond its rows' binomial sampling
    (on a 6,000-row fold that is 3x the binomial sd, where a Fisher test of the worst fold refused a clean
    candidate, issue 19). The fold check alone (holdout checks all pass) refuses within its share of alpha."""
    y = holdout(360)
    rng = np.random.default_rng(rows)
    bound = cfg.alpha / 5  # the fold check's Bonferroni share with a champion
    refused = sum(not decide(y, CLASSES, y, y, y, cv(rng.binomial(rows, np.clip(rng.normal(0.93, 0.01, 5), 0, 1))
                                                      / rows, rows), cfg)["passed"] for _ in range(1000))
    assert refused <= 1000 * bound + 3 * np.sqrt(1000 * bound) + 1, refused


def test_a_planted_five_point_drop_is_refused_with_its_p_value(cfg):
    y = holdout(360)
    rng = np.random.default_rng(1)
    champion = model(y, 0.96, rng)
    candidate = champion.copy()
    worse = rng.choice(np.flatnonzero(champion == y), 18, replace=False)  # 5 points of 360
    candidate[worse] = (y[worse] + 1) % len(CLASSES)
    decision = decide(y, CLASSES, candidate, champion, champion, CLEAN_CV, cfg)
    assert not decision["passed"]
    check = next(c for c in decision["checks"] if c["check"].startswith("not worse than the champion"))
    assert check["passed"] is False and check["p_value"] < check["threshold"]
    assert check["value"] == pytest.approx(0.05) and "p=" in decision["reason"]


def test_a_clean_retrain_is_promoted(cfg):
    y = holdout(360)
    rng = np.random.default_rng(2)
    champion = model(y, 0.96, rng)
    candidate = model(y, 0.96, rng, champion, 0.9)
    assert decide(y, CLASSES, candidate, champion, champion, CLEAN_CV, cfg)["passed"]


def test_the_first_model_is_judged_against_the_trusted_reference_model(cfg):
    y = holdout(360)
    rng = np.random.default_rng(3)
    baseline = model(y, 0.95, rng)
    decision = decide(y, CLASSES, model(y, 0.80, rng, baseline, 0.3), None, baseline, CLEAN_CV, cfg)
    assert "not worse than the trusted-reference model (exact McNemar; value: accuracy drop)" in failing(decision)
    assert not any("champion" in c["check"] and c["passed"] is not None for c in decision["checks"]
                   if "practical" not in c["check"])


def test_one_class_lost_is_refused_though_overall_accuracy_holds(cfg):
    y = holdout(600)
    rng = np.random.default_rng(4)
    champion = model(y, 0.95, rng)
    candidate = champion.copy()
    candidate[y == 3] = 8  # class 3 now predicted as 8: 6 points overall, all of one class
    decision = decide(y, CLASSES, candidate, champion, champion, CLEAN_CV, cfg.model_copy(
        update={"max_accuracy_drop": None}))
    check = next(c for c in decision["checks"] if c["check"].startswith("no class worse than with the champion"))
    assert check["passed"] is False and "class 3" in check["check"]


def test_a_failed_fold_is_refused_but_folds_varying_by_chance_are_not(cfg):
    y = holdout(360)
    rng = np.random.default_rng(5)
    champion = model(y, 0.96, rng)
    failed = decide(y, CLASSES, champion, champion, champion, cv([0.95, 0.96, 0.50, 0.95, 0.96]), cfg)
    assert any(c.startswith("worst fold (fold 2)") for c in failing(failed))
    assert decide(y, CLASSES, champion, champion, champion, cv([0.90, 0.96, 0.93, 0.95, 0.97], rows=40), cfg)["passed"]


@pytest.mark.parametrize("training, check", [
    ({"nonfinite": True}, "training loss finite"),
])
def test_nonfinite_training_always_refuses(cfg, training, check):
    y = holdout(200)
    pred = model(y, 0.95, np.random.default_rng(6))
    assert failing(decide(y, CLASSES, pred, None, pred, CLEAN_CV, cfg, training)) == [check]


def test_loss_spikes_are_reported_not_refused_unless_a_bound_is_set(cfg):
    y = holdout(200)
    pred = model(y, 0.95, np.random.default_rng(7))
    spikes = {"loss_spikes": [{"epoch": 12, "loss": 9.1}]}
    reported = decide(y, CLASSES, pred, None, pred, CLEAN_CV, cfg, spikes)
    assert reported["passed"]
    assert next(c for c in reported["checks"] if "spikes" in c["check"])["value"] == 1
    bounded = decide(y, CLASSES, pred, None, pred, CLEAN_CV, cfg.model_copy(update={"max_loss_spikes": 0}), spikes)
    assert failing(bounded) == ["training loss spikes <= bound"]


def test_absolute_floors_are_off_by_default_and_enforced_when_set(cfg):
    y = holdout(200)
    pred = model(y, 0.5, np.random.default_rng(8))  # a hard problem: 50% is what the data allows
    assert cfg.min_accuracy is None and decide(y, CLASSES, pred, None, pred, CLEAN_CV, cfg)["passed"]
    floored = decide(y, CLASSES, pred, None, pred, CLEAN_CV, cfg.model_copy(update={"min_accuracy": 0.9}))
    assert failing(floored) == ["holdout accuracy >= floor"]


def test_mcnemar_is_the_exact_binomial_on_disagreements():
    lost, won = np.array([True] * 9 + [False] * 11), np.array([False] * 9 + [True] + [False] * 10)
    assert mcnemar(lost, won) == pytest.approx(10 / 1024 + 1 / 1024)  # P(X >= 9), X ~ Bin(10, 1/2)
    assert mcnemar(np.zeros(5, bool), np.zeros(5, bool)) == 1.0


@pytest.mark.parametrize("rows, lost, won", [(300, 0.06, 0.04), (6000, 0.08, 0.06)])
def test_the_class_margin_test_holds_its_level_at_the_margin(rows, lost, won):
    """Drop exactly at the 0.02 margin: the score test rejects at most its level (binomial slack), at two sizes."""
    rng = np.random.default_rng(rows)
    p = []
    for _ in range(2000):
        u = rng.random(rows)
        p.append(paired_margin_p(u < lost, (u >= lost) & (u < lost + won), 0.02))
    for level in (0.05, 0.01):
        assert np.mean(np.asarray(p) < level) <= level + 3 * np.sqrt(level / 2000), level


def test_a_class_boundary_moved_by_a_point_is_promoted_a_lost_class_is_not(cfg):
    """A large holdout (6,000 rows per class): one class 1.5 points down, another up, overall equal. McNemar alone
    calls that significant; beyond promote.class_recall_margin it is not. Ten points down in one class still is."""
    classes = (0, 1, 2)
    y = np.repeat(np.arange(3), 6000)
    rng = np.random.default_rng(9)
    champion = np.where(rng.random(len(y)) < 0.9, y, (y + 1) % 3)
    def moved(points):
        candidate = champion.copy()
        right = {c: np.flatnonzero((y == c) & (champion == y)) for c in (1, 2)}
        wrong2 = np.flatnonzero((y == 2) & (champion != y))
        candidate[right[1][: int(points * 6000)]] = 0  # class 1 loses
        candidate[wrong2[: int(points * 6000)]] = 2  # class 2 gains as much
        return candidate
    strict = cfg.model_copy(update={"class_recall_margin": 0.0, "max_accuracy_drop": None})
    assert not decide(y, classes, moved(0.015), champion, champion, CLEAN_CV, strict)["passed"]
    assert cfg.class_recall_margin == 0.05
    assert decide(y, classes, moved(0.015), champion, champion, CLEAN_CV, cfg)["passed"]
    lost = decide(y, classes, moved(0.10), champion, champion, CLEAN_CV, cfg)
    check = next(c for c in lost["checks"] if c["check"].startswith("no class worse than with the champion"))
    assert check["passed"] is False and "class 1" in check["check"] and "margin of 0.05" in check["check"]
