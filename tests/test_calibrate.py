"""Tests for proteus.calibrate: bounds against known values, LTT decisions, and validity."""

import json
import math

import numpy as np
import pytest

from proteus import calibrate


def test_clopper_pearson_known_values():
    # k = n: the bound solves p^n = δ.
    assert calibrate.clopper_pearson_lower([10], 10, 0.05)[0] == pytest.approx(0.05**0.1, abs=1e-9)
    # Standard tables: one-sided 95% lower bound for 90/100 is 0.8363; for 5/10 it is 0.2224.
    assert calibrate.clopper_pearson_lower([90], 100, 0.05)[0] == pytest.approx(0.8363, abs=1e-4)
    assert calibrate.clopper_pearson_lower([5], 10, 0.05)[0] == pytest.approx(0.2224, abs=1e-4)
    assert calibrate.clopper_pearson_lower([0], 50, 0.05)[0] == 0.0
    with pytest.raises(ValueError, match="successes"):
        calibrate.clopper_pearson_lower([11], 10, 0.05)


def test_clopper_pearson_is_the_inverse_of_its_pvalue():
    lcb = calibrate.clopper_pearson_lower([90], 100, 0.05)[0]
    p_at, p_above = calibrate.pvalues([0.9], 100, [lcb, lcb + 1e-6], "clopper_pearson")[:, 0]
    assert p_at <= 0.05 < p_above


def test_pvalues_hand_checked():
    # Binary, 10/10 correct: P(Bin(10, 0.9) >= 10) = 0.9^10.
    p = calibrate.pvalues([1.0], 10, [0.9], "clopper_pearson")
    assert p[0, 0] == pytest.approx(0.9**10, rel=1e-9)
    # Hoeffding: exp(-2 * 100 * 0.05^2) = exp(-0.5); no evidence when mean <= τ.
    p = calibrate.pvalues([0.95], 100, [0.9, 0.96], "hoeffding")
    np.testing.assert_allclose(p[:, 0], [math.exp(-0.5), 1.0], rtol=1e-9)
    # Hoeffding-Bentkus, mean 1 (risk 0), α = 0.1: h(0, 0.1) = -log 0.9, so the Hoeffding part is
    # 0.9^100; the Bentkus part is e * P(Bin(100, 0.1) <= 0) = e * 0.9^100; the min is 0.9^100.
    p = calibrate.pvalues([1.0], 100, [0.9], "hoeffding_bentkus")
    assert p[0, 0] == pytest.approx(0.9**100, rel=1e-6)


def test_lower_bounds_hoeffding_and_bentkus():
    lcb = calibrate.lower_bounds([0.9], 200, 0.05, "hoeffding")[0]
    assert lcb == pytest.approx(0.9 - math.sqrt(math.log(20) / 400), abs=1e-9)
    hb = calibrate.lower_bounds([0.9, 0.99], 1000, 0.05, "hoeffding_bentkus")
    hoeff = calibrate.lower_bounds([0.9, 0.99], 1000, 0.05, "hoeffding")
    cp = calibrate.clopper_pearson_lower([900, 990], 1000, 0.05)
    assert np.all(hb > hoeff)  # Bentkus is tighter than Hoeffding
    assert np.all(hb <= cp + 1e-12)  # but not tighter than the exact binomial bound
    with pytest.raises(ValueError, match="unknown method"):
        calibrate.lower_bounds([0.9], 10, 0.05, "wilson")


def test_fixed_sequence_stops_at_first_failure():
    pvals = np.array([[0.01, 0.02, 0.2, 0.01], [0.3, 0.01, 0.01, 0.01]])
    costs = np.array([4.0, 3.0, 2.0, 1.0])
    chosen, n_cert = calibrate.fixed_sequence(pvals, costs, 0.05)
    # row 0: points 0, 1 certified; point 3 has a small p-value but comes after the failure.
    np.testing.assert_array_equal(chosen, [1, -1])
    np.testing.assert_array_equal(n_cert, [2, 0])


def _binary_points(correct_counts, n, costs_per_point):
    scores = np.zeros((len(correct_counts), n))
    for j, k in enumerate(correct_counts):
        scores[j, :k] = 1.0
    return scores, np.tile(np.asarray(costs_per_point, float)[:, None], (1, n))


def test_certify_table_and_fallbacks():
    # 3 points with 98, 90, 70 of 100 correct; 95% CP bounds ~0.9372, ~0.8363, ~0.6149.
    scores, costs = _binary_points([98, 90, 70], 100, [5.0, 2.0, 1.0])
    table = calibrate.certify(scores, costs, [0.6, 0.8, 0.95, 0.5], delta=0.05)
    assert table.method == "clopper_pearson"
    assert table.taus == (0.5, 0.6, 0.8, 0.95)  # sorted
    assert table.chosen == (2, 2, 1, -1)
    assert table.route_to == (2, 2, 1, 0)
    assert table.feasible == (True, True, True, False)
    assert table.n_certified == (3, 3, 2, 0)
    np.testing.assert_allclose(table.accuracy, [0.98, 0.9, 0.7])
    assert table.lcb[1] == pytest.approx(0.8363, abs=1e-4)
    assert "infeasible" in table.reasons[3] and "best effort" in table.reasons[3]
    assert table.reasons[2].startswith("certified: point 1")
    refuse = calibrate.certify(scores, costs, [0.95], fallback="refuse")
    assert refuse.route_to == (-1,) and "refused" in refuse.reasons[0]


def test_certify_json_round_trip_and_lookup():
    scores, costs = _binary_points([98, 90, 70], 100, [5.0, 2.0, 1.0])
    table = calibrate.certify(scores, costs, [0.6, 0.8, 0.95])
    back = calibrate.CertificationTable.from_dict(json.loads(json.dumps(table.to_dict())))
    assert back == table
    assert table.lookup(0.7)[:2] == (1, True)  # uses the τ = 0.8 decision
    assert table.lookup(0.6)[:2] == (2, True)
    assert table.lookup(0.97) == (0, False, table.lookup(0.97)[2])
    assert "above the certified grid" in table.lookup(0.97)[2]


def test_certify_auto_uses_bentkus_for_partial_credit_and_validates():
    scores = np.full((2, 50), 0.5)
    table = calibrate.certify(scores, np.ones((2, 50)), [0.3])
    assert table.method == "hoeffding_bentkus"
    with pytest.raises(ValueError, match="must match"):
        calibrate.certify(scores, np.ones((2, 49)), [0.3])
    with pytest.raises(ValueError, match="delta"):
        calibrate.certify(scores, np.ones((2, 50)), [0.3], delta=1.5)
    with pytest.raises(ValueError, match="needs binary"):
        calibrate.certify(scores, np.ones((2, 50)), [0.3], method="clopper_pearson")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        calibrate.certify(scores + 1.0, np.ones((2, 50)), [0.3])


def _violation_rates(method, draw, n_seeds=200, n_cal=400, delta=0.05):
    """Per τ: P(declared feasible and violated), the same for the naive rule, P(feasible).

    LTT bounds the first, unconditional probability by δ for every τ; a violation is a fresh test
    draw whose accuracy is below τ."""
    acc_true = np.array([0.95, 0.93, 0.91, 0.895, 0.87, 0.845, 0.82, 0.795])
    cost = np.linspace(8.0, 1.0, acc_true.size)
    taus = np.array([0.8, 0.85, 0.9, 0.955])  # each has a point just below it
    rng = np.random.default_rng(0)
    means = np.stack([draw(rng, acc_true, n_cal) for _ in range(n_seeds)])  # [S, P]
    pv = calibrate.pvalues(means.ravel(), n_cal, taus, method).reshape(taus.size, n_seeds, -1)
    bad = np.zeros((2, taus.size))
    feasible = np.zeros(taus.size)
    for s in range(n_seeds):
        chosen, _ = calibrate.fixed_sequence(pv[:, s], cost, delta)
        ok = chosen >= 0
        feasible += ok
        # A fresh test draw of 10^6 queries: accuracy within ~0.0003 of the truth.
        test_acc = rng.binomial(1_000_000, acc_true[np.maximum(chosen, 0)]) / 1e6
        bad[0] += ok & (test_acc < taus)
        naive = np.where(means[s][None, :] >= taus[:, None], cost[None, :], np.inf).argmin(1)
        bad[1] += (means[s][naive] >= taus) & (acc_true[naive] < taus)
    return bad[0] / n_seeds, bad[1] / n_seeds, feasible / n_seeds


@pytest.mark.parametrize("method", ["clopper_pearson", "hoeffding_bentkus"])
def test_certified_violation_rate_is_at_most_delta(method):
    if method == "clopper_pearson":
        draw = lambda rng, acc, n: rng.binomial(n, acc) / n
    else:  # partial credit: per-query scores Beta-distributed with the true means
        draw = lambda rng, acc, n: rng.beta(4 * acc, 4 * (1 - acc), (n, acc.size)).mean(0)
    certified, naive, feasible = _violation_rates(method, draw)
    slack = 3 * math.sqrt(0.05 * 0.95 / 200)
    assert np.all(certified <= 0.05 + slack), certified
    # Pooled over τ, the share of feasible declarations that were violated stays below δ too.
    assert certified.sum() / feasible.sum() <= 0.05, (certified, feasible)
    assert feasible[0] > 0.9  # the procedure is not vacuous: τ = 0.8 is almost always certified
    assert naive.max() > 0.15  # and the check has power: picking by the point estimate fails
