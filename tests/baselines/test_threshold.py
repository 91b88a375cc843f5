"""Tests for the RouteLLM-style threshold router."""

import numpy as np
import pytest

from proteus.evaluation.baselines import RouterInputs, ThresholdRouter
from proteus.evaluation.baselines.threshold import strong_weak_score


def test_strong_weak_score():
    p = np.array([[0.2, 0.9], [0.5, 0.5]])
    np.testing.assert_allclose(strong_weak_score(p, 1, 0, "gap"), [0.7, 0.0])
    np.testing.assert_allclose(strong_weak_score(p, 1, 0, "win"), [0.72, 0.25])
    with pytest.raises(ValueError, match="unknown threshold score"):
        strong_weak_score(p, 1, 0, "odds")


def test_threshold_router_routes_largest_gain_first(toy):
    router = ThresholdRouter().fit(toy)
    assert (router.strong_model, router.weak_model) == (1, 0)
    d = router.route(toy.without_labels(), [0.5, 0.75, 1.0, 1.01])
    # gaps are (0, 0.8, 0.7, 0): τ=0.75 sends q1 only, τ=1 sends q1 and q2.
    np.testing.assert_array_equal(
        d.choices, [[0, 0, 0, 0], [0, 1, 0, 0], [0, 1, 1, 0], [0, 1, 1, 0]]
    )
    np.testing.assert_array_equal(d.feasible, [True, True, True, False])
    with pytest.raises(ValueError, match="call fit"):
        ThresholdRouter().route(toy, [0.5])


def test_threshold_router_chooses_the_useful_weak_model():
    # Model 0: free but always wrong. Model 1: cost 2, right on 3 of 4. Model 2: cost 10, right.
    scores = np.array([[0, 1, 1], [0, 1, 1], [0, 1, 1], [0, 0, 1]], float)
    costs = np.tile([1.0, 2.0, 10.0], (4, 1))
    p_hat = np.clip(scores, 0.1, 0.9)
    router = ThresholdRouter().fit(RouterInputs(scores, costs, p_hat, costs))
    assert (router.strong_model, router.weak_model) == (2, 1)
    d = router.route(RouterInputs(p_hat=p_hat), [1.0])
    np.testing.assert_array_equal(d.choices, [[1, 1, 1, 2]])
    fixed_weak = ThresholdRouter(weak=0).fit(RouterInputs(scores, costs, p_hat, costs))
    assert fixed_weak.weak_model == 0
