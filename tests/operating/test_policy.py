"""The τ → operating-point rule (proteus.policy.policy): hand-checked tables."""

import numpy as np
import pytest

from proteus.operating import policy as rule


def test_uncertified_choice_by_hand():
    acc, cost = [0.9, 0.8, 0.6], [3.0, 2.0, 1.0]  # testing order
    # n = 100, z = 1: τ = 0.5 needs 0.55 -> the cheapest point (2); τ = 0.7 needs 0.7458 -> 1
    assert rule.uncertified_choice(acc, cost, 0.5, 100, 1.0) == (2, True)
    assert rule.uncertified_choice(acc, cost, 0.7, 100, 1.0) == (1, True)
    assert rule.uncertified_choice(acc, cost, 0.7, 100, 0.0) == (1, True)
    assert rule.uncertified_choice(acc, cost, 0.89, 100, 1.0) == (0, False)
    assert rule.margin(0.7, 100, 1.0) == pytest.approx(np.sqrt(0.21) / 10)


def test_policy_resolves_fixed_model_points_and_refuses():
    table = {"tau": [None, 0.8], "model": [2, -1], "accuracy": [0.9, 0.7], "cost": [5.0, 1.0],
             "n_heldout": 10_000, "margin_z": 0.0}
    policy = rule.OperatingPolicy(table, None, "best_effort", ["a", "b", "c"])
    top = policy.resolve(0.85)
    assert (top.point, top.operating_model, top.feasible) == (0, 2, True)
    assert np.isnan(top.operating_tau) and "fixed model c" in top.reason
    cheap = policy.resolve(0.6)
    assert (cheap.point, cheap.operating_model, cheap.operating_tau) == (1, -1, 0.8)
    over = policy.resolve(0.95)
    assert (over.point, over.feasible) == (0, False) and "best effort: fixed model c" in over.reason
    refusing = rule.OperatingPolicy(table, None, "refuse", ["a", "b", "c"])
    for _ in range(2):  # the remembered point is refused again, not served
        with pytest.raises(rule.InfeasibleTauError, match="refused"):
            refusing.resolve(0.95)
    # a τ asked again gets the same point (remembered), and τ is still checked first
    assert policy.resolve(0.6) is cheap
    with pytest.raises(ValueError):
        policy.resolve(float("nan"))


def test_a_point_that_routes_around_models_carries_them_and_says_so():
    table = {"tau": [0.9, None, 0.8], "model": [-1, 2, -1], "accuracy": [0.95, 0.9, 0.7],
             "cost": [6.0, 5.0, 1.0], "n_heldout": 10_000, "margin_z": 0.0,
             "excluded": [[2, 0], [], []]}
    policy = rule.OperatingPolicy(table, None, "best_effort", ["a", "b", "c"])
    top = policy.resolve(0.93)
    assert (top.point, top.operating_tau, top.excluded) == (0, 0.9, (2, 0))
    assert "policy at τ'=0.9000 without c, a" in top.reason
    assert policy.resolve(0.85).excluded == () and policy.resolve(0.6).excluded == ()
    plain = rule.OperatingPolicy({k: v for k, v in table.items() if k != "excluded"}, None,
                                 "best_effort", ["a", "b", "c"])
    assert plain.resolve(0.93).excluded == () and "without" not in plain.resolve(0.93).reason


def test_a_certified_tau_served_around_a_model_names_it_in_its_reason():
    """Two points that score 1 on all 200 calibration rows: the cheaper (point 1, around model
    c) is certified for τ = 0.9, and its reason says how it is served."""
    from proteus.operating.certificate import certify  # noqa: PLC0415

    scores, costs = np.ones((2, 200)), np.array([[3.0] * 200, [1.0] * 200])
    cert = certify(scores, costs, np.array([0.9]), delta=0.05, method="clopper_pearson",
                   fallback="best_effort").to_dict()
    table = {"tau": [0.95, 0.9], "model": [-1, -1], "accuracy": [1.0, 1.0], "cost": [3.0, 1.0],
             "n_heldout": 200, "margin_z": 0.0, "excluded": [[], [2]]}
    point = rule.OperatingPolicy(table, cert, "best_effort", ["a", "b", "c"]).resolve(0.9)
    assert (point.point, point.excluded) == (1, (2,))
    assert point.reason.startswith("certified: ")
    assert point.reason.endswith("; served as policy at τ'=0.9000 without c")
    table["excluded"] = [[2], []]  # the certified point routes around nothing: no such clause
    plain = rule.OperatingPolicy(table, cert, "best_effort", ["a", "b", "c"]).resolve(0.9)
    assert "served as" not in plain.reason
