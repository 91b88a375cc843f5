"""Tests for the group-table helpers shared by the cluster and task-table routers."""

import numpy as np
import pytest

from proteus.evaluation.baselines.tables import (
    default_alphas,
    fit_policy,
    group_means,
    table_choices,
)


def test_default_alphas_span_zero_to_one():
    alphas = default_alphas()
    assert alphas[0] == 0.0 and alphas[-1] == 1.0 and np.all(np.diff(alphas) > 0)


def test_group_means_shrink_toward_the_global_mean():
    groups = np.array([0, 0, 0, 1])
    scores = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    costs = np.array([[1.0, 2.0], [1.0, 2.0], [1.0, 2.0], [3.0, 2.0]])
    acc, cost = group_means(groups, 3, scores, costs, prior=0.0)
    # prior 0: plain group means; the empty group 2 is the global row (0.75, 0.5)
    np.testing.assert_allclose(acc, [[1.0, 1 / 3], [0.0, 1.0], [0.75, 0.5]])
    np.testing.assert_allclose(cost[:, 0], [1.0, 3.0, 1.5])
    acc, _ = group_means(groups, 3, scores, costs, prior=1.0)
    # group 1 (n = 1): (1·0 + 1·0.75) / 2 = 0.375 and (1·1 + 1·0.5) / 2 = 0.75
    np.testing.assert_allclose(acc[1], [0.375, 0.75])
    np.testing.assert_allclose(acc[0], [(3 + 0.75) / 4, (1 + 0.5) / 4])


def test_table_choices_minmax_and_global_hand_checked():
    acc = np.array([[0.5, 1.0]])
    cost = np.array([[1.0, 3.0]])
    # global, c_ref 3: model 1 wins when α·0.5 > (1 − α)·2/3, i.e. α > 4/7
    ch = table_choices(acc, cost, np.array([0.0, 0.57, 0.58, 1.0]), "global", 3.0)
    np.testing.assert_array_equal(ch[:, 0], [0, 0, 1, 1])
    # minmax: both gaps scale to 1, so model 1 wins when α > 1 − α, i.e. α > 0.5
    ch = table_choices(acc, cost, np.array([0.49, 0.51]), "minmax", 3.0)
    np.testing.assert_array_equal(ch[:, 0], [0, 1])
    # equal accuracy at α = 1: the cheaper model
    ch = table_choices(np.array([[0.7, 0.7]]), np.array([[2.0, 1.0]]), [1.0], "minmax", 1.0)
    assert ch[0, 0] == 1
    with pytest.raises(ValueError, match="unknown normalisation"):
        table_choices(acc, cost, [1.0], "zscore", 1.0)


def test_fit_policy_routes_at_the_cheapest_alpha_reaching_tau():
    groups = np.array([0, 0, 1, 1])
    scores = np.array([[1.0, 1.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    costs = np.tile([1.0, 3.0], (4, 1))
    data = (groups, scores, costs)
    policy = fit_policy(data, data, 2, np.array([0.0, 0.5, 0.6, 1.0]), 0.0, "global")
    # group 0: model 0 dominates; group 1 switches to model 1 above α = 4/7
    np.testing.assert_allclose(policy.tune_accuracy, [0.75, 0.75, 1.0, 1.0])
    np.testing.assert_allclose(policy.tune_cost, [1.0, 1.0, 2.0, 2.0])
    d = policy.route(np.array([1, 0]), [0.7, 0.9, 1.1])
    np.testing.assert_array_equal(d.choices, [[0, 0], [1, 0], [1, 0]])
    np.testing.assert_array_equal(d.feasible, [True, True, False])
    np.testing.assert_allclose(d.setting, [0.0, 0.6, 0.6])
