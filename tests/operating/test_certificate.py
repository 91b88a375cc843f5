"""Tests for proteus.operating.certificate: LTT decisions, the table, and validity."""

import json
import math

import numpy as np
import pytest

from proteus.operating import bounds, certificate


def test_fixed_sequence_stops_at_first_failure():
    pvals = np.array([[0.01, 0.02, 0.2, 0.01], [0.3, 0.01, 0.01, 0.01]])
    costs = np.array([4.0, 3.0, 2.0, 1.0])
    chosen, n_cert = certificate.fixed_sequence(pvals, costs, 0.05)
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
    table = certificate.certify(scores, costs, [0.6, 0.8, 0.95, 0.5], delta=0.05)
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
    refuse = certificate.certify(scores, costs, [0.95], fallback="refuse")
    assert refuse.route_to == (-1,) and "refused" in refuse.reasons[0]


def test_certify_json_round_trip_and_lookup():
    scores, costs = _binary_points([98, 90, 70], 100, [5.0, 2.0, 1.0])
    table = certificate.certify(scores, costs, [0.6, 0.8, 0.95])
    back = certificate.CertificationTable.from_dict(json.loads(json.dumps(table.to_dict())))
    assert back == table
    assert table.lookup(0.7)[:2] == (1, True)  # uses the τ = 0.8 decision
    assert table.lookup(0.6)[:2] == (2, True)
    assert table.lookup(0.97) == (0, False, table.lookup(0.97)[2])
    assert "above the certified grid" in table.lookup(0.97)[2]


def test_certify_auto_uses_bentkus_for_partial_credit_and_validates():
    scores = np.full((2, 50), 0.5)
    table = certificate.certify(scores, np.ones((2, 50)), [0.3])
    assert table.method == "hoeffding_bentkus"
    with pytest.raises(ValueError, match="must match"):
        certificate.certify(scores, np.ones((2, 49)), [0.3])
    with pytest.raises(ValueError, match="delta"):
        certificate.certify(scores, np.ones((2, 50)), [0.3], delta=1.5)
    with pytest.raises(ValueError, match="needs binary"):
        certificate.certify(scores, np.ones((2, 50)), [0.3], method="clopper_pearson")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        certificate.certify(scores + 1.0, np.ones((2, 50)), [0.3])


# Coverage through `certify` (the public path) over 2,000 calibration draws. The points are in
# a fixed order with costs falling, in one block per τ (highest first): a lead point ~3
# standard errors (at n = 200) above τ, then three points just below τ (true nulls). For each τ
# every earlier point is (almost) surely certified, so LTT's test of the first null decides: a
# valid procedure violates at most δ of the time, while one that tests every point (no stop at
# the first failure), or at a looser level, violates more often.
TAUS = np.array([0.55, 0.7, 0.85])
TRUE_ACC = np.array([0.95, 0.849, 0.848, 0.847, 0.80, 0.699, 0.698, 0.697,
                     0.65, 0.549, 0.548, 0.547])
COSTS = np.linspace(12.0, 1.0, TRUE_ACC.size)
N_SEEDS = 2_000


def _calibration_counts(rng, n: int, graded: bool) -> tuple[np.ndarray, np.ndarray]:
    """([S, P] queries scoring 1, [S, P] scoring 1 or 0.5): N_SEEDS draws with means TRUE_ACC.

    Binary: Binomial(n, a) ones. Graded: scores in {0, 0.5, 1} with P(0.5) = 0.04 and
    P(1) = a − 0.02 (mean a), so "auto" picks Hoeffding–Bentkus.
    """
    a = np.broadcast_to(TRUE_ACC, (N_SEEDS, TRUE_ACC.size))
    if not graded:
        ones = rng.binomial(n, a)
        return ones, ones
    counts = rng.multinomial(n, np.stack([a - 0.02, np.full_like(a, 0.04), 1 - a - 0.02], -1))
    return counts[..., 0], counts[..., 0] + counts[..., 1]


def _scores(ones: np.ndarray, halves: np.ndarray, n: int) -> np.ndarray:
    """[P] counts -> [P, n] per-query scores (sorted: only the mean matters to a bound)."""
    q = np.arange(n)
    return np.where(q < ones[:, None], 1.0, np.where(q < halves[:, None], 0.5, 0.0))


@pytest.mark.parametrize("n", [200, 2000])
@pytest.mark.parametrize("graded", [False, True], ids=["binary", "graded"])
def test_certify_violation_rate_is_at_most_delta(n, graded):
    """Per τ, P(declared feasible and the chosen point's TRUE accuracy < τ) <= δ, over 2,000
    calibration draws through `certify`; allowance 3 binomial standard errors (0.015)."""
    delta, rng = 0.05, np.random.default_rng(n + graded)
    ones, halves = _calibration_counts(rng, n, graded)
    costs = np.broadcast_to(COSTS[:, None], (COSTS.size, n))
    chosen = np.empty((N_SEEDS, TAUS.size), np.int64)
    for s in range(N_SEEDS):
        table = certificate.certify(_scores(ones[s], halves[s], n), costs, TAUS, delta=delta)
        chosen[s] = table.chosen
    assert table.method == ("hoeffding_bentkus" if graded else "clopper_pearson")
    violated = (chosen >= 0) & (TRUE_ACC[np.maximum(chosen, 0)] < TAUS)
    rate = violated.mean(axis=0)
    assert np.all(rate <= delta + 3 * math.sqrt(delta * (1 - delta) / N_SEEDS)), rate
    if not graded:  # Clopper-Pearson is nearly exact here: the allowance is tight, not vacuous
        assert rate.max() > delta / 2, rate
    # Not vacuous: every τ is (almost) always certified, at the lead point or below it.
    assert np.all(np.mean(chosen >= 0, axis=0) > 0.99), np.mean(chosen >= 0, axis=0)
    # And the check has power: the naive rule (cheapest point whose calibration mean >= τ)
    # violates far more often than δ.
    means = (ones + halves) / (2.0 * n)  # [S, P]
    naive = np.where(means[:, None, :] >= TAUS[None, :, None], COSTS, np.inf).argmin(-1)
    assert (TRUE_ACC[naive] < TAUS).mean(axis=0).min() > 0.5


def test_certification_taus_extend_the_grid_down_to_zero_by_hand():
    np.testing.assert_allclose(certificate.certification_taus([0.3, 0.55], 0.1),
                               [0.0, 0.1, 0.2, 0.3, 0.55])  # 0.3 once, nothing added above
    np.testing.assert_allclose(certificate.certification_taus([0.25, 0.9], 0.1),
                               [0.0, 0.1, 0.2, 0.25, 0.9])
    np.testing.assert_allclose(certificate.certification_taus([0.0, 0.5], 0.1), [0.0, 0.5])


# The window promise: P(τ certified and the next N requests routed at its point score below
# τ − ε) <= δ. Points dense around each τ (costs falling with accuracy), calibration and window
# drawn i.i.d.; the p-values for all draws are computed in one call, then each draw goes through
# `fixed_sequence`, the rule `certify` applies to them (checked below).
W_TAUS = np.array([0.6, 0.75, 0.9])
W_ACC = np.sort(np.concatenate([np.linspace(t + 0.08, t - 0.04, 25) for t in W_TAUS]))[::-1]
W_COSTS = np.linspace(10.0, 1.0, W_ACC.size)
W_DRAWS = 1000


def _means(rng, size: int, graded: bool) -> np.ndarray:
    """[W_DRAWS, P] mean scores of `size` queries per point: binary, or {0, 0.5, 1} scores
    with P(0.5) = 0.04 and mean W_ACC."""
    if not graded:
        return rng.binomial(size, W_ACC, (W_DRAWS, W_ACC.size)) / size
    probs = np.stack([W_ACC - 0.02, np.full_like(W_ACC, 0.04), 1 - W_ACC - 0.02], -1)
    counts = rng.multinomial(size, probs, (W_DRAWS, W_ACC.size))
    return (counts[..., 0] + 0.5 * counts[..., 1]) / size


def _window_misses(n, window, tolerance, graded, population=False, seed=0):
    """([T] share of draws with τ certified and the window missing τ − ε, [T] certified)."""
    rng = np.random.default_rng(seed)
    calib, future = _means(rng, n, graded), _means(rng, window, graded)
    method = "hoeffding_bentkus" if graded else "clopper_pearson"
    flat = calib.ravel()
    pv = (bounds.pvalues(flat, n, W_TAUS, method) if population
          else bounds.window_pvalues(flat, n, W_TAUS, method, window, tolerance))
    pv = pv.reshape(W_TAUS.size, W_DRAWS, W_ACC.size)
    chosen = np.stack([certificate.fixed_sequence(pv[:, s], W_COSTS, 0.05)[0]
                       for s in range(W_DRAWS)])  # [S, T]
    got = np.take_along_axis(future, np.maximum(chosen, 0), axis=1)
    missed = (chosen >= 0) & (got < W_TAUS - tolerance - 1e-9)
    return missed.mean(axis=0), (chosen >= 0).mean(axis=0)


@pytest.mark.parametrize("graded", [False, True], ids=["binary", "graded"])
@pytest.mark.parametrize("n,window,tolerance", [(1000, 100, 0.0), (300, 2000, 0.02)])
def test_window_certificate_holds_over_many_draws(n, window, tolerance, graded):
    """Per τ the miss share is within δ + 3 Monte Carlo standard errors, every τ is certified in
    most draws (not vacuous), and with a short window the population certificate, which
    ignores the window's own noise, misses far more often than δ (the check has power)."""
    share, certified = _window_misses(n, window, tolerance, graded)
    assert np.all(share <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / W_DRAWS)), share
    assert np.all(certified > 0.9), certified
    if window == 100:
        population, _ = _window_misses(n, window, tolerance, graded, population=True)
        assert population.max() > 0.15, population


def test_certify_applies_the_window_pvalues_in_fixed_sequence():
    rng = np.random.default_rng(3)
    scores = (rng.random((W_ACC.size, 400)) < W_ACC[:, None]).astype(float)
    table = certificate.certify(scores, W_COSTS[:, None] * np.ones((1, 400)), W_TAUS,
                                window=250, tolerance=0.01)
    pv = bounds.window_pvalues(scores.mean(axis=1), 400, W_TAUS, "clopper_pearson", 250, 0.01)
    np.testing.assert_allclose(table.pvalues, pv)
    assert table.chosen == tuple(certificate.fixed_sequence(pv, W_COSTS, 0.05)[0])
    assert (table.window, table.tolerance) == (250, 0.01)
    assert table.promise() == "P(accuracy of 250 requests < τ − 0.01) <= 0.05"
    assert "P(accuracy of 250 requests < τ − 0.01) <= 0.05" in table.reasons[0]
    old = {k: v for k, v in table.to_dict().items() if k not in ("window", "tolerance")}
    assert certificate.CertificationTable.from_dict(old).window == 0  # written before windows
    with pytest.raises(ValueError, match="tolerance"):
        certificate.certify(scores, scores, W_TAUS, tolerance=0.01)  # ε needs a window


@pytest.mark.parametrize("shift", [0.0, 0.01])
def test_window_bound_is_tight_on_its_worst_pool_and_an_optimistic_one_fails(shift):
    """A pool of n + N rows with exactly k* + need − 1 successes, cut at random into calib (n)
    and window (N), k* the fewest calibration successes the bound certifies: certified-and-missed
    happens in at most δ of 20,000 cuts and in more than half of δ (the bound is exact there).
    Computing k* at τ − 0.01 instead (a bound optimistic by 0.01) breaks δ on its own worst
    pool."""
    n, window, tau, delta = 600, 600, 0.8, 0.05
    k = np.arange(n + 1)
    p = bounds.window_pvalues(k / n, n, [tau - shift], "clopper_pearson", window)[0]
    k_star = int(k[np.argmax(p <= delta)])
    need = int(bounds.window_need([tau], window, 0.0)[0])  # what the window must really score
    successes = k_star + need - 1
    calib = np.random.default_rng(7).hypergeometric(successes, n + window - successes, n, 20_000)
    share = np.mean((calib >= k_star) & (successes - calib < need))
    se = math.sqrt(delta * (1 - delta) / calib.size)
    if shift == 0.0:
        assert delta / 2 < share <= delta + 3 * se, share
    else:
        assert share > delta + 3 * se, share
