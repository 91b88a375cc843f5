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
