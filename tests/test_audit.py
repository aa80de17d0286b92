"""The post-training audit: TracIn influence over the candidate's trajectory, its calibrated threshold, and the
output monitor's target-class pull."""
import jax
import numpy as np
import optax
import pytest
from flax import nnx
from sklearn.metrics import roc_auc_score

from poisongate import attacks, audit
from poisongate.learning import models
from poisongate.learning.training import train_model
from poisongate.output_monitor import compare, monitor_table, pull_checks, serving_over_runs
from poisongate.promotion import decide


def trained(X, y, classes, train):
    spec = models.model_spec(train, X, classes)
    return spec, train_model(models.scale(X, spec), y, spec, train, checkpoint_every=5)


@pytest.fixture(scope="module")
def boundary_flipped(digits, config):
    """The default reference (trusted) + its first batch with 10% boundary flips, trained as the train stage does."""
    (X_ref, y_ref), (X_hold, y_hold), (X, y) = digits["reference"], digits["holdout"], digits["batch"]
    _, y_bad, flipped = attacks.simulate(X, y, "boundary_flip", 0.1, 0, 10)
    X_all, y_all = np.concatenate([X_ref, X]), np.concatenate([y_ref, y_bad])
    train = config.train.model_copy(update={"epochs": 20})
    spec, t = trained(X_all, y_all, digits["schema"].classes, train)
    return dict(X=X_all, y=y_all, spec=spec, t=t, hold=(X_hold, y_hold), flipped=flipped, n_ref=len(X_ref),
                lr=train.learning_rate)


def harm_of(case, chunk_rows=128):
    return audit.harm(case["t"].graphdef, list(case["t"].trajectory), case["lr"], models.scale(case["X"], case["spec"]),
                      case["y"], models.scale(case["hold"][0], case["spec"]), case["hold"][1], chunk_rows, 10)


def test_gradient_dots_equal_dots_of_per_example_gradients(boundary_flipped):
    case = boundary_flipped
    graphdef, (_, params) = case["t"].graphdef, case["t"].trajectory[0]
    X, y = models.scale(case["X"][:50], case["spec"]), case["y"][:50].astype(np.int32)
    directions = audit.class_holdout_gradients(graphdef, params, models.scale(case["hold"][0], case["spec"]),
                                               case["hold"][1].astype(np.int32), 10)

    def row_loss(p, x, t):
        return optax.softmax_cross_entropy_with_integer_labels(nnx.merge(graphdef, p)(x[None]), t[None])[0]

    # TracIn's definition: each row's own gradient (vmap of grad), flattened, dotted with each class's direction
    grads = jax.vmap(jax.grad(row_loss), in_axes=(None, 0, 0))(params, X, y)
    G = np.concatenate([np.asarray(g).reshape(len(X), -1) for g in jax.tree.leaves(grads)], axis=1)
    D = np.concatenate([np.asarray(d).reshape(10, -1) for d in jax.tree.leaves(directions)], axis=1)
    np.testing.assert_allclose(np.asarray(audit.gradient_dots(graphdef, params, directions, X, y)), G @ D.T,
                               rtol=1e-3, atol=1e-6)


def test_influence_ranks_boundary_flips_above_clean_rows_deterministically(boundary_flipped):
    case = boundary_flipped
    assert [step for step, _ in case["t"].trajectory] == [5, 10, 15, 20]
    harm = harm_of(case)
    np.testing.assert_allclose(harm, harm_of(case, chunk_rows=64), rtol=1e-5, atol=1e-9)  # chunks change nothing
    np.testing.assert_array_equal(harm, harm_of(case))  # deterministic
    tonight = harm[case["n_ref"]:]
    assert roc_auc_score(case["flipped"], tonight) > 0.9
    judgement = audit.judge(harm[: case["n_ref"]], tonight, 0.01)
    flagged = judgement.flagged
    caught = int((flagged & case["flipped"]).sum())  # at a 1% false-alarm rate: the clearest third, nearly no clean
    assert caught >= case["flipped"].sum() // 3 and caught >= 0.8 * flagged.sum()
    assert np.all(tonight[flagged] >= judgement.threshold) and np.all(tonight[~flagged] < judgement.threshold)


def test_the_threshold_flags_at_most_its_rate_of_clean_rows():
    # exchangeable trusted and clean rows, heavy-tailed like TracIn harm: the flagged share stays at its rate
    rng, rate = np.random.default_rng(0), 0.01
    shares = [audit.judge(rng.standard_t(3, 540), rng.standard_t(3, 150), rate).flagged.mean() for _ in range(400)]
    assert np.mean(shares) <= rate * 1.15


def test_a_clean_batch_is_flagged_within_its_rate(digits, config):
    (X_ref, y_ref), (X_hold, y_hold), (X, y) = digits["reference"], digits["holdout"], digits["batch"]
    X_all, y_all = np.concatenate([X_ref, X]), np.concatenate([y_ref, y])
    spec, t = trained(X_all, y_all, digits["schema"].classes, config.train.model_copy(update={"epochs": 20}))
    trusted = np.arange(len(X_all)) < len(X_ref)
    *_, judgement = audit.audit_rows(t.graphdef, list(t.trajectory), spec, X_all, y_all, trusted, ~trusted, X_hold,
                                     y_hold, config.train.learning_rate, config.audit)
    from scipy.stats import binom

    assert judgement.flagged.sum() <= binom.ppf(0.999, len(X), config.audit.false_alarm_rate)


def one_hot(pred, k=10, confidence=0.9):
    p = np.full((len(pred), k), (1 - confidence) / (k - 1))
    p[np.arange(len(pred)), pred] = confidence
    return p


def test_a_target_class_pull_is_refused_naming_the_class(config):
    rng = np.random.default_rng(0)
    y_hold, labels = rng.integers(0, 10, 400), rng.integers(0, 10, 300)
    serving_hold = np.where(rng.uniform(size=400) < 0.03, (y_hold + 1) % 10, y_hold)
    serving_acc = np.where(rng.uniform(size=300) < 0.03, (labels + 1) % 10, labels)
    clean = pull_checks(labels, labels, serving_acc, y_hold, y_hold, serving_hold, list(range(10)), 0.001)
    assert all(c["passed"] for c in clean)
    # a backdoor: 40 rows that look like other classes, labelled 7; the serving model calls them what they look
    # like, the candidate learned the label
    looks = rng.integers(0, 7, 40)
    labels2, serving2 = np.concatenate([labels, np.full(40, 7)]), np.concatenate([serving_acc, looks])
    pulled = pull_checks(labels2, labels2, serving2, y_hold, y_hold, serving_hold, list(range(10)), 0.001)
    assert pulled[0]["passed"] is False and "class 7" in pulled[0]["check"] and pulled[0]["value"] >= 40
    assert pulled[0]["p_value"] < pulled[0]["threshold"]
    cv = {"fold_accuracy": [0.95] * 5, "fold_rows": [100] * 5, "spread": 0.0}
    decision = decide(y_hold, tuple(range(10)), y_hold, serving_hold, serving_hold, cv, config.promote, {}, pulled)
    assert not decision["passed"] and "class 7" in decision["reason"]


def retrained(rng, y, serving, tilt):
    """A clean retrain: it re-decides half the rows, erring (6%) into classes with weights exp(N(0, tilt))."""
    k = 10
    weights = np.tile(np.exp(rng.normal(0, tilt, k)), (len(y), 1))
    weights[np.arange(len(y)), y] = 0
    wrong_as = (np.cumsum(weights / weights.sum(1, keepdims=True), axis=1) > rng.random(len(y))[:, None]).argmax(1)
    redecided = np.where(rng.random(len(y)) < 0.94, y, wrong_as)
    return np.where(rng.random(len(y)) < 0.5, redecided, serving)


def test_the_holdout_pull_allows_boundaries_moved_by_retraining_and_refuses_a_pulled_class(config):
    """On a 10,000-row holdout two clean trainings move every class boundary by more than McNemar's binomial null
    allows (a clean night was refused at p 8e-11, issue 19): judged against the other classes' dispersion, such
    retrains pass; a candidate that calls half of class 3 class 7 is refused, naming class 7."""
    rng, alpha, k = np.random.default_rng(3), config.audit.pull_alpha, list(range(10))
    refused = 0
    for _ in range(40):
        y = rng.integers(0, 10, 10_000)
        serving = retrained(rng, y, y, 0.0)
        candidate = retrained(rng, y, serving, 0.6)
        refused += not pull_checks(y[:0], y[:0], y[:0], y, candidate, serving, k, alpha)[1]["passed"]
    assert refused <= 2  # the binomial-only McNemar refused about 40% of these
    pulled = np.where((y == 3) & (rng.random(len(y)) < 0.5), 7, candidate)
    check = pull_checks(y[:0], y[:0], y[:0], y, pulled, serving, k, alpha)[1]
    assert check["passed"] is False and "class 7" in check["check"] and check["p_value"] < alpha


def test_output_comparison_and_the_monitor_table():
    y = np.arange(100) % 4
    candidate, serving = one_hot(y, 4), one_hot(np.where(np.arange(100) < 10, 0, y), 4, 0.8)
    out = compare(candidate, serving, [0, 1, 2, 3], y)
    assert out["agreement"] == pytest.approx(1 - 7 / 100)  # rows 1-3, 5-7, 9 changed class
    assert out["per_class"]["0"]["no_longer_predicted"] == 7 and out["per_class"]["0"]["confidence_p_value"] < 1e-6
    assert np.asarray(out["confusion_shift"]).sum() == 0
    reports = [{"run_id": f"r{i}", "stages": {"promote": {"passed": i == 1, "outputs": {
        "serving_model": "champion", "holdout": out}}}} for i in range(2)]
    rows = serving_over_runs(reports)
    assert [r["model"] for r in rows] == ["champion", "candidate"]
    table = monitor_table(rows).splitlines()
    assert len(table) == 4 and table[2].startswith("r0") and "0.8000" in table[2] and "0.9000" in table[3]
