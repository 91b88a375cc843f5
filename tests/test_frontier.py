"""The oracle frontier: the upgrade path, its choices and the perfect frontier cost."""

import numpy as np

from proteus.evaluation import frontier


def test_perfect_frontier_cost_two_queries():
    # q0: (y, c) = (0, 1) or (1, 3): price 2 per unit of value.
    # q1: (y, c) = (0.5, 1) or (1, 1.5): price 1 per unit of value.
    # Start: mean acc 0.25, mean cost 1. Upgrade q1 first: +0.25 acc for +0.25 cost (acc 0.5,
    # cost 1.25); then q0: +0.5 acc for +1 cost (acc 1.0, cost 2.25).
    scores = np.array([[0.0, 1.0], [0.5, 1.0]])
    costs = np.array([[1.0, 3.0], [1.0, 1.5]])
    taus = [0.1, 0.25, 0.4, 0.5, 0.75, 1.0, 1.01]
    expected = [1.0, 1.0, 1.15, 1.25, 1.75, 2.25, np.inf]
    np.testing.assert_allclose(frontier.perfect_frontier_cost(scores, costs, taus), expected)


def test_perfect_frontier_matches_brute_force_lp():
    # Random 3 x 3 instance: brute force over a fine grid of per-query mixes of the hull.
    rng = np.random.default_rng(0)
    scores = rng.uniform(size=(3, 3))
    costs = rng.uniform(size=(3, 3))
    tau = float(np.mean(scores.max(1))) - 0.05
    got = frontier.perfect_frontier_cost(scores, costs, [tau])[0]
    grid = np.linspace(0, 1, 41)
    best = np.inf
    # each query mixes two of its models (an LP optimum needs at most one fractional query,
    # and mixes two models there); enumerate pairs and weights.
    for a in range(9):
        for b in range(9):
            for w in grid:
                for q in range(3):
                    ch = [a // 3, a % 3, b // 3]
                    alt = [b % 3] * 3
                    y = np.array([scores[i, ch[i]] for i in range(3)])
                    c = np.array([costs[i, ch[i]] for i in range(3)])
                    y[q] = (1 - w) * y[q] + w * scores[q, alt[q]]
                    c[q] = (1 - w) * c[q] + w * costs[q, alt[q]]
                    if y.mean() >= tau - 1e-12:
                        best = min(best, c.mean())
    assert got <= best + 1e-9
    assert got >= best - 0.05  # grid resolution of the brute force


def test_upgrade_path_and_choices():
    scores = np.array([[0.0, 1.0], [0.5, 1.0]])
    costs = np.array([[1.0, 3.0], [1.0, 1.5]])
    path = frontier.upgrade_path(scores, costs)
    np.testing.assert_array_equal(path.start, [0, 0])
    np.testing.assert_array_equal(path.query, [1, 0])  # q1 (price 1) before q0 (price 2)
    np.testing.assert_allclose(path.price, [1.0, 2.0])
    np.testing.assert_allclose(path.mean_value_after(), [0.5, 1.0])
    np.testing.assert_allclose(path.mean_cost_after(), [1.25, 2.25])
    ch, ok = frontier.path_choices(path, 0.4)
    np.testing.assert_array_equal(ch, [0, 1])
    assert ok
    ch, ok = frontier.path_choices(path, 0.2)
    np.testing.assert_array_equal(ch, [0, 0])
    assert ok
    ch, ok = frontier.path_choices(path, 1.5)
    np.testing.assert_array_equal(ch, [1, 1])
    assert not ok


def test_upgrade_path_skips_dominated_models():
    # q0: model 1 costs more than model 2 for less value: never on the path.
    scores = np.array([[0.2, 0.5, 0.9]])
    costs = np.array([[1.0, 5.0, 3.0]])
    path = frontier.upgrade_path(scores, costs)
    np.testing.assert_array_equal(path.to_model, [2])
    np.testing.assert_allclose(path.price, [2.0 / 0.7])
