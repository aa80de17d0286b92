import numpy as np
import pytest

from tasks.attacks import ATTACKS, simulate
from tasks.config import PoisongateError


@pytest.mark.parametrize("name", sorted(ATTACKS))
@pytest.mark.parametrize("rate", [0.1, 0.3])
def test_attack_poisons_exact_share_deterministically_and_leaves_the_rest(digits, name, rate):
    X, y = digits["batch"]
    Xp, yp, mask = simulate(X, y, name, rate, seed=3, n_classes=10)
    assert mask.sum() == round(rate * len(y))
    changed = (Xp != X).any(axis=1) | (yp != y)
    assert np.array_equal(changed, mask)  # every poisoned row changed, every other row byte-identical
    assert np.array_equal(Xp[~mask].tobytes(), X[~mask].tobytes())
    Xq, yq, mask2 = simulate(X, y, name, rate, seed=3, n_classes=10)
    assert np.array_equal(mask, mask2) and np.array_equal(Xp, Xq) and np.array_equal(yp, yq)


def test_outliers_lie_far_outside_the_data_range(digits):
    X, y = digits["batch"]
    Xp, _, mask = simulate(X, y, "outliers", 0.2, seed=0, n_classes=10)
    assert (Xp[mask].max(axis=1) > X.max() + 5 * (X.max() - X.min()) - 1e-3).all()


def test_unknown_attack_is_a_clear_error(digits):
    with pytest.raises(PoisongateError, match="unknown attack 'nope'"):
        simulate(*digits["batch"], "nope", 0.1, 0, 10)
