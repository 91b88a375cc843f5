"""Tests for the zero-router baseline and its cheapest two-model mix."""

import math

import numpy as np
import pytest

from proteus import metrics
from proteus.baselines import ZeroRouter, cheapest_mix

TAUS = [0.5, 0.75, 1.0]


def test_cheapest_mix_hand_checked():
    acc = np.array([0.5, 0.8, 1.0])
    cost = np.array([1.0, 2.0, 10.0])
    assert cheapest_mix(acc, cost, 0.4) == (0, 0, 0.0)
    # τ = 0.6: (0,1) at 1/3 costs 4/3; model 1 alone costs 2; (0,2) at 0.2 costs 2.8.
    low, high, frac = cheapest_mix(acc, cost, 0.6)
    assert (low, high) == (0, 1) and frac == pytest.approx(1 / 3)
    # τ = 0.9: (1,2) at 0.5 costs 6; (0,2) at 0.8 costs 8.2.
    low, high, frac = cheapest_mix(acc, cost, 0.9)
    assert (low, high) == (1, 2) and frac == pytest.approx(0.5)
    low, high, frac = cheapest_mix(acc, cost, 1.1)
    assert (low, high) == (2, 2) and math.isnan(frac)


def test_zero_router_realises_the_mix_exactly_and_deterministically(toy):
    router = ZeroRouter(seed=3).fit(toy)  # accuracies (0.5, 1.0), costs (1, 10)
    d = router.route(toy.without_labels(), [0.5, 0.75, 1.0, 1.1])
    np.testing.assert_allclose(d.setting, [0.0, 0.5, 0.0, 1.0])  # share on the dearer model
    np.testing.assert_array_equal((d.choices == 1).sum(1), [0, 2, 4, 4])
    np.testing.assert_array_equal(d.feasible, [True, True, True, False])
    again = ZeroRouter(seed=3).fit(toy).route(toy, [0.75])
    np.testing.assert_array_equal(again.choices[0], d.choices[1])
    _, cost = metrics.realised(toy.scores, toy.costs, d.choices)
    assert cost[1] == pytest.approx(5.5)
    with pytest.raises(ValueError, match="call fit"):
        ZeroRouter().route(toy, [0.5])
