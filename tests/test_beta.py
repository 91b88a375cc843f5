"""Tests for proteus.training.beta: the sampler is exact in distribution, the derivatives are
right."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.scipy.special import betaln, digamma
from jax.test_util import check_grads
from scipy import special, stats

from proteus.training import beta

# (α, β) over the policy's range: the uniform corner, skewed near 1, moderate, concentrated.
PAIRS = [(1.0, 1.0), (1.0, 30.0), (40.0, 1.0001), (2.5, 7.0), (300.0, 4000.0)]
N = 20_000


@pytest.fixture(scope="module")
def draws():
    """N draws for every pair, all pairs in one vmapped call (as a policy step draws lanes)."""
    alpha = jnp.asarray([[a] * N for a, _ in PAIRS], jnp.float32)
    b = jnp.asarray([[b] * N for _, b in PAIRS], jnp.float32)
    # Key 1: at key 0 the uniform pair scored p = 1.2e-4, chance (over 40 keys the p-values of
    # every pair were uniform on [0, 1], and 4M-draw means and variances sat within 2 SE).
    keys = jax.random.split(jax.random.key(1), len(PAIRS))
    return np.asarray(jax.jit(jax.vmap(beta.sample))(keys, alpha, b), np.float64)


@pytest.mark.parametrize("i", range(len(PAIRS)))
def test_sampler_matches_scipy_beta(draws, i):
    a, b = PAIRS[i]
    x = draws[i]
    assert np.all((x >= 0.0) & (x <= 1.0))
    # Kolmogorov-Smirnov against the exact CDF: a wrong sampler (e.g. a biased acceptance test)
    # at N = 20,000 gives p-values far below 1e-4; a correct one fails one key in 10,000.
    assert stats.kstest(x, stats.beta(a, b).cdf).pvalue > 1e-4
    mean, var = stats.beta.stats(a, b, moments="mv")
    # Mean within 5 standard errors; variance within 5 (approximate, 4th-moment) standard errors.
    assert abs(x.mean() - mean) < 5.0 * np.sqrt(var / N)
    kurt = stats.beta.stats(a, b, moments="k")
    var_se = var * np.sqrt((kurt + 2.0) / N)
    assert abs(x.var() - var) < 5.0 * var_se


def test_sampler_is_per_lane_reproducible_and_key_dependent():
    alpha = jnp.linspace(1.0, 20.0, 64).reshape(4, 16)
    b = jnp.linspace(30.0, 1.0, 64).reshape(4, 16)
    keys = jax.random.split(jax.random.key(3), 4)
    together = jax.vmap(beta.sample)(keys, alpha, b)
    # A lane's draws do not depend on which other lanes share the vmapped loop.
    for k in range(4):
        np.testing.assert_array_equal(together[k], beta.sample(keys[k], alpha[k], b[k]))
    assert not np.allclose(together[0], beta.sample(keys[1], alpha[0], b[0]))


def test_gamma_handles_non_finite_shapes_without_hanging():
    out = beta.gamma_ge1(jax.random.key(0), jnp.array([2.0, jnp.nan, jnp.inf]))
    assert np.isfinite(out[0]) and np.isnan(out[1]) and np.isnan(out[2])


def test_trigamma_matches_scipy():
    x = np.concatenate([np.linspace(0.05, 2.0, 40), np.geomspace(2.0, 1e5, 40)])
    with jax.enable_x64(True):
        got = np.asarray(beta.trigamma(jnp.asarray(x, jnp.float64)))
    np.testing.assert_allclose(got, special.polygamma(1, x), rtol=1e-8)
    np.testing.assert_allclose(beta.trigamma(jnp.asarray(x, jnp.float32)),
                               special.polygamma(1, x), rtol=2e-6)


def _reference(mu, a, b):
    """The textbook formulas with JAX's own special-function derivatives."""
    mu = jnp.clip(mu, beta.MU_EPS, 1.0 - beta.MU_EPS)
    lp = (a - 1.0) * jnp.log(mu) + (b - 1.0) * jnp.log1p(-mu) - betaln(a, b)
    ent = (betaln(a, b) - (a - 1.0) * digamma(a) - (b - 1.0) * digamma(b)
           + (a + b - 2.0) * digamma(a + b))
    return lp, ent


def test_custom_derivatives_equal_autodiff_of_the_formulas():
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        mu = jnp.asarray(rng.uniform(0.01, 0.99, 12))
        a = jnp.asarray(rng.uniform(1.0, 50.0, 12))
        b = jnp.asarray(rng.uniform(1.0, 3000.0, 12))
        w = jnp.asarray(rng.normal(size=(2, 12)))

        def weighted(fn):
            return lambda *args: (w[0] * fn(*args)[0] + w[1] * fn(*args)[1]).sum()

        fused = weighted(beta.log_prob_and_entropy)
        apart = weighted(lambda m, x, y: (beta.log_prob(m, x, y), beta.entropy(x, y)))
        want = jax.grad(weighted(_reference), argnums=(0, 1, 2))(mu, a, b)
        for fn in (fused, apart):
            got = jax.grad(fn, argnums=(0, 1, 2))(mu, a, b)
            for g, e in zip(got, want, strict=True):
                np.testing.assert_allclose(g, e, rtol=1e-7, atol=1e-10)
        np.testing.assert_allclose(beta.log_prob_and_entropy(mu, a, b), _reference(mu, a, b),
                                   rtol=1e-12)
        check_grads(lambda x, y: beta.log_prob_and_entropy(mu, x, y)[1], (a, b), order=1,
                    modes=("fwd", "rev"))


def test_clipped_mu_has_no_mu_gradient():
    g = jax.grad(lambda m: beta.log_prob(m, jnp.full(3, 2.0), jnp.full(3, 3.0)).sum())(
        jnp.array([0.0, 0.5, 1.0]))
    # inside: (α − 1)/μ − (β − 1)/(1 − μ) = 2 − 4 = −2; at the clipped ends: 0.
    np.testing.assert_allclose(g, [0.0, -2.0, 0.0], rtol=1e-6)


def test_gamma_loop_path_matches_scipy_gamma():
    # One proposal per element up front, so most of the shape-1 draws finish inside the loop.
    x = np.asarray(jax.jit(lambda k: beta.gamma_ge1(k, jnp.ones(N), first_proposals=1))(
        jax.random.key(5)), np.float64)
    assert stats.kstest(x, stats.gamma(1.0).cdf).pvalue > 1e-4
