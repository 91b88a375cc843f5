"""Tests for proteus.operating.bounds: p-values and lower bounds against known values."""

import math

import numpy as np
import pytest

from proteus.operating import bounds


def test_clopper_pearson_known_values():
    # k = n: the bound solves p^n = δ.
    assert bounds.clopper_pearson_lower([10], 10, 0.05)[0] == pytest.approx(0.05**0.1, abs=1e-9)
    # Standard tables: one-sided 95% lower bound for 90/100 is 0.8363; for 5/10 it is 0.2224.
    assert bounds.clopper_pearson_lower([90], 100, 0.05)[0] == pytest.approx(0.8363, abs=1e-4)
    assert bounds.clopper_pearson_lower([5], 10, 0.05)[0] == pytest.approx(0.2224, abs=1e-4)
    assert bounds.clopper_pearson_lower([0], 50, 0.05)[0] == 0.0
    with pytest.raises(ValueError, match="successes"):
        bounds.clopper_pearson_lower([11], 10, 0.05)


def test_clopper_pearson_is_the_inverse_of_its_pvalue():
    lcb = bounds.clopper_pearson_lower([90], 100, 0.05)[0]
    p_at, p_above = bounds.pvalues([0.9], 100, [lcb, lcb + 1e-6], "clopper_pearson")[:, 0]
    assert p_at <= 0.05 < p_above


def test_pvalues_hand_checked():
    # Binary, 10/10 correct: P(Bin(10, 0.9) >= 10) = 0.9^10.
    p = bounds.pvalues([1.0], 10, [0.9], "clopper_pearson")
    assert p[0, 0] == pytest.approx(0.9**10, rel=1e-9)
    # Hoeffding: exp(-2 * 100 * 0.05^2) = exp(-0.5); no evidence when mean <= τ.
    p = bounds.pvalues([0.95], 100, [0.9, 0.96], "hoeffding")
    np.testing.assert_allclose(p[:, 0], [math.exp(-0.5), 1.0], rtol=1e-9)
    # Hoeffding-Bentkus, mean 1 (risk 0), α = 0.1: h(0, 0.1) = -log 0.9, so the Hoeffding part is
    # 0.9^100; the Bentkus part is e * P(Bin(100, 0.1) <= 0) = e * 0.9^100; the min is 0.9^100.
    p = bounds.pvalues([1.0], 100, [0.9], "hoeffding_bentkus")
    assert p[0, 0] == pytest.approx(0.9**100, rel=1e-6)


def test_pvalues_and_bounds_need_a_named_method():
    # "auto" needs the per-query scores (binary or not), which only `certify` sees.
    for fn, args in ((bounds.pvalues, ([0.9], 10, [0.8])), (bounds.lower_bounds,
                                                                ([0.9], 10, 0.05))):
        with pytest.raises(ValueError, match="'auto' needs the per-query scores"):
            fn(*args, "auto")


def test_lower_bounds_hoeffding_and_bentkus():
    lcb = bounds.lower_bounds([0.9], 200, 0.05, "hoeffding")[0]
    assert lcb == pytest.approx(0.9 - math.sqrt(math.log(20) / 400), abs=1e-9)
    hb = bounds.lower_bounds([0.9, 0.99], 1000, 0.05, "hoeffding_bentkus")
    hoeff = bounds.lower_bounds([0.9, 0.99], 1000, 0.05, "hoeffding")
    cp = bounds.clopper_pearson_lower([900, 990], 1000, 0.05)
    assert np.all(hb > hoeff)  # Bentkus is tighter than Hoeffding
    assert np.all(hb <= cp + 1e-12)  # but not tighter than the exact binomial bound
    with pytest.raises(ValueError, match="unknown method"):
        bounds.lower_bounds([0.9], 10, 0.05, "wilson")


@pytest.mark.parametrize("method", bounds.METHODS)
def test_lower_bounds_stay_on_the_conservative_side(method):
    """p(LCB) <= δ to the last bit (quantiles and closed forms are stepped back if needed)."""
    n = 100
    means = np.arange(1, n + 1) / n
    lcb = bounds.lower_bounds(means, n, 0.05, method)
    p = np.diag(bounds.pvalues(means, n, lcb, method))  # [τ = LCB_j, point j]
    assert np.all(p[lcb > 0] <= 0.05) and np.all(lcb <= means)


def test_window_pvalue_binary_by_hand():
    """n = 2 calibration queries both correct (k = 2), a window of N = 1 that must be correct
    (τ = 1): P(BetaBinomial(1, 2, 1) = 0) = 1/3. With ε = 0.5 the window needs 1 of 1 only
    when τ − ε > 0: at τ = 0.5 it needs nothing, so nothing can miss (p = 0)."""
    p = bounds.window_pvalues([1.0], 2, [1.0, 0.5], "clopper_pearson", window=1)
    np.testing.assert_allclose(p[:, 0], [1 / 3, 1.0 / 3])  # need = 1 at τ = 0.5 too (ceil 0.5)
    p = bounds.window_pvalues([1.0], 2, [1.0, 0.5], "clopper_pearson", window=1, tolerance=0.5)
    np.testing.assert_allclose(p[:, 0], [1 / 3, 0.0])
    assert bounds.window_need([0.85, 0.9], 100, 0.02).tolist() == [83, 88]


def test_window_pvalue_binary_is_the_worst_case_hypergeometric_tail():
    """The Beta-binomial bound equals P(the calibration holds >= k of the k + need − 1 successes
    of the n + N rows): the exchangeable worst case, so a re-cut pool is covered too."""
    from scipy import stats

    n, window, taus = 300, 500, np.array([0.6, 0.8, 0.9])
    k = np.array([200, 250, 280])
    p = bounds.window_pvalues(k / n, n, taus, "clopper_pearson", window, tolerance=0.01)
    need = bounds.window_need(taus, window, 0.01)[:, None]
    hyp = stats.hypergeom.sf(k[None, :] - 1, n + window, k[None, :] + need - 1, n)
    np.testing.assert_allclose(p, hyp, rtol=1e-9, atol=1e-300)
    assert bounds.window_pvalues([0.0], n, [0.5], "clopper_pearson", window)[0, 0] == 1.0


def test_window_pvalue_tends_to_the_population_pvalue_at_tau_minus_epsilon():
    """As the window grows, its own noise vanishes: the bound approaches P(Bin(n, τ − ε) >= k)."""
    n, k = 400, 340
    pop = bounds.pvalues([k / n], n, [0.8], "clopper_pearson")[0, 0]
    big = bounds.window_pvalues([k / n], n, [0.82], "clopper_pearson", 1_000_000, 0.02)[0, 0]
    small = bounds.window_pvalues([k / n], n, [0.82], "clopper_pearson", 400, 0.02)[0, 0]
    assert big == pytest.approx(pop, rel=0.02) and small > 2 * pop


@pytest.mark.parametrize("method", ["hoeffding_bentkus", "hoeffding"])
def test_window_pvalue_graded_is_conservative_against_the_exact_binary_one(method):
    """The [0, 1]-score bound holds for binary scores too, so it can never be below the exact
    binary p-value; and it is monotone: a higher calibration mean never raises it."""
    means = np.array([0.7, 0.75, 0.8, 0.85])
    exact = bounds.window_pvalues(means, 500, [0.7, 0.75], "clopper_pearson", 800, 0.01)
    graded = bounds.window_pvalues(means, 500, [0.7, 0.75], method, 800, 0.01)
    assert np.all(graded >= exact - 1e-12)
    assert np.all(np.diff(graded, axis=1) <= 1e-12)
    with pytest.raises(ValueError, match="window"):
        bounds.window_pvalues(means, 500, [0.7], method, 0)


def test_resolve_method_auto_by_scores_and_named_checked():
    binary = np.array([[0.0, 1.0], [1.0, 1.0]])
    graded = np.array([0.5, 1.0])
    assert bounds.resolve_method("auto", binary) == "clopper_pearson"
    assert bounds.resolve_method("auto", graded) == "hoeffding_bentkus"
    # a named method is kept as it is when the scores allow it
    assert bounds.resolve_method("hoeffding", graded) == "hoeffding"
    assert bounds.resolve_method("clopper_pearson", binary) == "clopper_pearson"
    with pytest.raises(ValueError, match="clopper_pearson needs binary"):
        bounds.resolve_method("clopper_pearson", graded)
    with pytest.raises(ValueError, match="unknown method 'wilson'; expected 'auto'"):
        bounds.resolve_method("wilson", binary)
