"""Tests for proteus.evaluation.metrics: every expectation below is computed by hand in the
comments."""

import math

import jax
import numpy as np
import pytest

from proteus.evaluation import metrics

# 4 queries x 2 models; model 1 is better and dearer.
SCORES = np.array([[0.0, 1.0], [1.0, 1.0], [0.0, 0.0], [1.0, 0.5]], np.float32)
COSTS = np.array([[1.0, 4.0], [1.0, 4.0], [1.0, 4.0], [1.0, 4.0]], np.float32)


def test_realised_per_tau():
    choices = np.array([[0, 0, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]])
    acc, cost = metrics.realised(SCORES, COSTS, choices)
    # all cheap: (0+1+0+1)/4; all strong: (1+1+0+.5)/4; q0 upgraded: (1+1+0+1)/4.
    np.testing.assert_allclose(acc, [0.5, 0.625, 0.75])
    np.testing.assert_allclose(cost, [1.0, 4.0, 1.75])
    acc1, cost1 = metrics.realised(SCORES, COSTS, choices[2])
    assert acc1 == pytest.approx(0.75) and cost1 == pytest.approx(1.75)


def test_realised_rejects_wrong_shape():
    with pytest.raises(ValueError, match="do not match"):
        metrics.realised(SCORES, COSTS, np.zeros((2, 3), int))


def test_per_query():
    out = metrics.per_query(SCORES, np.array([[1, 0, 0, 1]]))
    np.testing.assert_allclose(out, [[1.0, 1.0, 0.0, 0.5]])


def test_violation():
    np.testing.assert_allclose(metrics.violation([0.8, 0.9], [0.85, 0.87]), [0.0, 0.03], atol=1e-12)


def test_meets_floor_absorbs_grid_rounding():
    taus = np.arange(0.85, 0.96, 0.01)  # 0.86 is stored as 0.8600000000000001
    assert metrics.meets_floor(taus[1:2], [0.86]).all()
    assert not metrics.meets_floor([0.86], [0.8599]).any()
    assert metrics.meets_floor([0.86], [0.8599], tol=0.001).all()


def test_floor_compliance():
    taus = [0.8, 0.85, 0.9, 0.95]
    acc = [0.81, 0.84, 0.91, 0.90]
    assert metrics.floor_compliance(taus, acc) == pytest.approx(0.5)  # met at 0.8 and 0.9
    feas = [True, False, True, False]
    assert metrics.floor_compliance(taus, acc, feas) == pytest.approx(1.0)
    assert metrics.floor_compliance(taus, acc, tol=0.01) == pytest.approx(0.75)
    assert math.isnan(metrics.floor_compliance(taus, acc, [False] * 4))


def test_target_response_corr():
    assert metrics.target_response_corr([0.8, 0.9, 1.0], [0.5, 0.6, 0.7]) == pytest.approx(1.0)
    # x centred (-1, 0, 1), y centred (1, -2, 1): r = 0.
    assert metrics.target_response_corr([1, 2, 3], [1, -2, 1]) == pytest.approx(0.0)
    # x centred (-1, 0, 1), y = [0, 0, 3] centred (-1, -1, 2): r = 3 / sqrt(2 * 6).
    assert metrics.target_response_corr([1, 2, 3], [0, 0, 3]) == pytest.approx(3 / math.sqrt(12))
    assert math.isnan(metrics.target_response_corr([0.8, 0.9], [0.7, 0.7]))
    assert math.isnan(metrics.target_response_corr([0.8], [0.7]))


def test_savings_and_oracle_gap():
    np.testing.assert_allclose(metrics.savings([1.0, 2.5, 5.0], 5.0), [0.8, 0.5, 0.0])
    assert metrics.oracle_gap(0.95, [0.80, 0.91, 0.9]) == pytest.approx(0.04)


@pytest.mark.parametrize(
    "costs, accs, expected",
    [
        ([0.5], [0.8], 0.4),  # flat 0.8 on [0.5, 1]
        ([0.0, 1.0], [0.5, 0.9], 0.7),  # trapezoid
        ([0.0, 0.5, 1.0], [0.5, 0.9, 0.8], 0.35 + 0.45),  # hull rises to 0.9 then stays flat
        ([0.0, 0.5, 1.0], [0.5, 0.6, 0.9], 0.7),  # middle point under the chord is dropped
        ([0.0, 0.0, 1.0], [0.3, 0.5, 0.9], 0.7),  # same cost: the better point counts
        ([-1.0, 2.0], [0.5, 0.9], 0.7),  # costs are clipped to the range
    ],
)
def test_aiq_hand_checked(costs, accs, expected):
    assert metrics.aiq(costs, accs, (0.0, 1.0)) == pytest.approx(expected)


def test_aiq_normalises_cost_range():
    # lo=2, hi=6: cost 4 -> x = 0.5; area = 0.8 * 0.5.
    assert metrics.aiq([4.0], [0.8], (2.0, 6.0)) == pytest.approx(0.4)
    assert math.isnan(metrics.aiq([np.nan], [0.5], (0.0, 1.0)))
    with pytest.raises(ValueError, match="hi > lo"):
        metrics.aiq([1.0], [1.0], (1.0, 1.0))


def test_bootstrap_ci_covers_mean_and_is_reproducible():
    vals = np.tile([0.0, 1.0], 100)  # mean 0.5, sd of the mean 0.5 / sqrt(200) = 0.035
    lo, hi = metrics.bootstrap_ci(vals, n_boot=400, key=0)
    assert lo < 0.5 < hi
    assert hi - lo == pytest.approx(2 * 1.96 * 0.5 / np.sqrt(200), rel=0.25)
    assert (lo, hi) == metrics.bootstrap_ci(vals, n_boot=400, key=jax.random.key(0))
    lo2, hi2 = metrics.bootstrap_ci(np.stack([vals, np.ones(200)]), n_boot=100, key=1)
    assert lo2.shape == (2,) and lo2[1] == hi2[1] == 1.0  # constant row: degenerate interval


def test_summarize_hand_checked():
    taus = [0.8, 0.85, 0.9]
    acc = [0.82, 0.86, 0.88]
    cost = [1.0, 2.0, 3.0]
    out = metrics.summarize(taus, acc, cost, [True, True, False], 0.95, 4.0, (0.0, 4.0))
    assert tuple(out) == metrics.SUMMARY_KEYS
    assert out["floor_compliance"] == pytest.approx(1.0)
    assert out["max_savings_vs_best_fixed"] == pytest.approx(0.75)  # 1 - 1/4 at τ=0.8
    assert out["oracle_gap"] == pytest.approx(0.07)
    assert out["n_infeasible"] == 1
    # x = 0.25, 0.5, 0.75; slopes 0.16 then 0.08 (concave, all vertices kept); R = 0 below 0.25,
    # then trapezoids 0.25*(0.82+0.86)/2 + 0.25*(0.86+0.88)/2, then flat 0.25*0.88.
    assert out["aiq"] == pytest.approx(0.25 * 0.84 + 0.25 * 0.87 + 0.25 * 0.88)
    r = metrics.target_response_corr(taus, acc)
    assert out["target_response_corr"] == pytest.approx(r)
    assert isinstance(out["n_infeasible"], int)


def test_summarize_no_floor_met_gives_nan_savings():
    out = metrics.summarize([0.9], [0.5], [1.0], None, 0.95, 2.0, (0.0, 2.0))
    assert math.isnan(out["max_savings_vs_best_fixed"])
    assert out["floor_compliance"] == 0.0 and out["n_infeasible"] == 0


def test_distinct_points_and_a_summary_from_the_sweep():
    cost, acc = metrics.distinct_points([2.0, 1.0, None, 2.0, 1.0, np.nan], [0.9, 0.8, 0.5, 0.9,
                                                                            0.85, 0.7])
    assert cost.tolist() == [1.0, 1.0, 2.0] and acc.tolist() == [0.8, 0.85, 0.9]
    np.testing.assert_array_equal(metrics.as_floats([0.5, None]), [0.5, np.nan])
    # On the grid the router never reaches its cheapest point (x = 0.25, 0.8); its sweep adds
    # x = 0 at 0.6: R = 0.6 -> 0.8 over [0, 0.25], then 0.8 flat: 0.25 * 0.7 + 0.75 * 0.8.
    grid = metrics.summarize([0.7, 0.8], [0.8, 0.8], [1.0, 1.0], None, 0.9, 4.0, (0.0, 4.0))
    assert grid["aiq"] == pytest.approx(0.75 * 0.8)
    swept = metrics.summarize([0.7, 0.8], [0.8, 0.8], [1.0, 1.0], None, 0.9, 4.0, (0.0, 4.0),
                              aiq_points=([0.0, 1.0], [0.6, 0.8]))
    assert swept["aiq"] == pytest.approx(0.25 * 0.7 + 0.75 * 0.8)
    same = ("floor_compliance", "max_savings_vs_best_fixed", "oracle_gap", "n_infeasible")
    assert [swept[k] for k in same] == [grid[k] for k in same]


def test_hull_vertices_by_hand():
    # Dyadic values, so "on the chord" is exact in float64.
    x = np.array([0.0, 0.0, 0.25, 0.5, 0.625, 0.875, 1.0, 0.375, 0.75])
    y = np.array([0.25, 0.5, 0.625, 0.75, 0.75, 0.875, 0.875, 0.625, 0.8125])
    # 0: same x as 1, lower; 2: on the chord 1-3 (slope 0.5: 0.5 + 0.5 * 0.25 = 0.625);
    # 4: costlier than 3 with no gain; 6: as accurate as the maximum 5 but costlier (truncated);
    # 7: under the chord 1-3 (0.6875 at x=0.375); 8: under the chord 3-5
    # (0.75 + 0.125 / 0.375 * 0.25 = 0.8333 at x=0.75), kept until 5 arrives, then dropped.
    # 3 is above the chord 1-5 (0.5 + 0.375 * 0.5 = 0.6875 at x=0.5), so a vertex.
    out = metrics.hull_vertices(x, y)
    np.testing.assert_array_equal(out, [1, 3, 5])
    assert out.dtype == np.int64


def test_hull_vertices_small_cases():
    assert metrics.hull_vertices(np.array([]), np.array([])).tolist() == []
    assert metrics.hull_vertices([0.3], [0.4]).tolist() == [0]
    # decreasing accuracy with cost: only the cheapest point is a vertex
    assert metrics.hull_vertices([0.5, 0.0, 1.0], [0.6, 0.7, 0.2]).tolist() == [1]
    # a strictly concave increasing curve: every point, by increasing x
    assert metrics.hull_vertices([1.0, 0.0, 0.5], [1.0, 0.0, 0.75]).tolist() == [1, 2, 0]
