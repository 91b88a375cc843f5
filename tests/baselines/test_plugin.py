"""Tests for the PROTEUS-plugin, CARROT-style and OmniRouter-style baselines."""

import numpy as np
import pytest

from proteus.evaluation import metrics
from proteus.evaluation.baselines import CarrotRouter, OmniRouter, PluginRouter, plugin_choices
from proteus.evaluation.baselines.plugin import default_lam_grid, mus_to_lam_grid


def test_plugin_choices_hand_checked(toy):
    # q1 flips above λ = 1.125, q2 above λ ≈ 1.286; λ = inf is argmax p̂ (ties to the cheaper).
    ch = plugin_choices(toy.p_hat, toy.c_hat, [0.0, 1.2, 1.3, np.inf], c_ref=10.0)
    np.testing.assert_array_equal(ch, [[0, 0, 0, 0], [0, 1, 0, 0], [0, 1, 1, 0], [0, 1, 1, 0]])


def test_mus_to_lam_grid():
    np.testing.assert_allclose(mus_to_lam_grid([0.0, 0.5, 0.2, 1.0]), [np.inf, 1.0, 4.0, 0.0])
    grid = default_lam_grid()
    assert grid[0] == 0.0 and np.isinf(grid[-1]) and np.all(np.diff(grid) > 0)


def test_proteus_plugin_picks_the_cheapest_lambda_reaching_tau(toy):
    router = PluginRouter().fit(toy)
    assert router.c_ref == pytest.approx(10.0)  # the dearest model's mean cost
    d = router.route(toy.without_labels(), [0.5, 0.75, 1.0, 1.01])
    np.testing.assert_array_equal(
        d.choices, [[0, 0, 0, 0], [0, 1, 0, 0], [0, 1, 1, 0], [0, 1, 1, 0]]
    )
    np.testing.assert_array_equal(d.feasible, [True, True, True, False])
    assert 1.125 < d.setting[1] < 0.9 / 0.7
    acc, cost = metrics.realised(toy.scores, toy.costs, d.choices)
    np.testing.assert_allclose(cost, [1.0, 3.25, 5.5, 5.5])
    with pytest.raises(ValueError, match="call fit"):
        PluginRouter().route(toy, [0.5])


def test_carrot_reports_mu_and_matches_plugin(toy):
    d = CarrotRouter().fit(toy).route(toy.without_labels(), [0.75])
    np.testing.assert_array_equal(d.choices, [[0, 1, 0, 0]])
    # μ = 1 / (1 + λ) with λ in (1.125, 1.286): μ in (0.4375, 0.4706).
    assert 0.4375 < d.setting[0] < 0.4706


def test_omnirouter_uses_predictions_only(toy):
    # Mean p̂ all cheap: (0.9+0.1+0.2+0.9)/4 = 0.525; upgrading q1 adds 0.2, q2 adds 0.175.
    d = OmniRouter().fit(toy).route(toy.without_labels(), [0.5, 0.7, 0.9, 0.95])
    np.testing.assert_array_equal(
        d.choices, [[0, 0, 0, 0], [0, 1, 0, 0], [0, 1, 1, 0], [0, 1, 1, 0]]
    )
    np.testing.assert_array_equal(d.feasible, [True, True, True, False])
