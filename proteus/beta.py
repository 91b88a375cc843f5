"""The Beta distribution of the policy: an exact vectorised sampler, log-density and entropy.

The policy's α, β are >= 1 (networks.PolicyHead), and a training step draws one μ per query and
lane, then differentiates the log-density and the entropy with respect to α and β. Two things
made this costly with the stock functions (benchmarks/profile_policy.py):

- `jax.random.beta` draws two Gammas per element with a per-element rejection loop: every
  element splits its own key on every trial, so a [K, B] draw runs K·B threefry splits per
  round and a while loop per element. Here every round proposes for the WHOLE array at once
  (two threefry calls of the array's size) and keeps, per element, the first accepted proposal.
- Reverse-mode through `digamma` goes through `polygamma(1, .)`, which XLA evaluates as a
  Hurwitz zeta series; the entropy's gradient needs it three times per element. The derivatives
  here are written out (custom JVPs) with a short trigamma, and `log_prob_and_entropy` evaluates
  betaln and the three digammas once for both terms of the loss.

All functions are elementwise over any shape (one lane's [B] in training).
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
from jax.scipy.special import betaln, digamma

from proteus.types import Array

MU_EPS = 1e-6  # log-densities are evaluated at μ clipped to [MU_EPS, 1 − MU_EPS]
MAX_ROUNDS = 64  # bound on the sampler's proposal rounds (never reached in practice, see below)


# ----------------------------------------------------------------------------- sampling


def gamma_ge1(key: Array, shape_param: Array, max_rounds: int = MAX_ROUNDS) -> Array:
    """Gamma(a, 1) draws for a >= 1 by Marsaglia & Tsang (2000), vectorised over the array.

    Each round proposes x ~ N(0, 1), u ~ U(0, 1) for every element and accepts
    v = (1 + x / sqrt(9d))^3 (d = a − 1/3) when log u < x²/2 + d − d·v + d·log v; an element keeps
    its first accepted proposal, so each element is an exact Gamma(a) draw (its proposals are an
    i.i.d. sequence, keyed by fold_in(key, round)). The loop runs until every element has one.
    A proposal is accepted with probability >= 0.95 for every a >= 1, so B·K = 10^4 elements need
    about 4 rounds; `max_rounds` only guards against a hang on non-finite input (elements still
    open after it, with probability < n·0.05^64, keep their last proposal; NaN shapes give NaN).

    Args:
      key: a PRNG key.
      shape_param: any shape, float, every entry >= 1.
      max_rounds: static bound on proposal rounds.

    Returns:
      draws of the same shape and dtype.
    """
    a = shape_param
    d = a - 1.0 / 3.0
    c = jax.lax.rsqrt(9.0 * d)

    def body(carry):
        rnd, done, value = carry
        k_norm, k_unif = jax.random.split(jax.random.fold_in(key, rnd))
        x = jax.random.normal(k_norm, a.shape, a.dtype)
        u = jax.random.uniform(k_unif, a.shape, a.dtype)
        t = 1.0 + c * x
        v = t * t * t
        safe_v = jnp.where(v > 0.0, v, 1.0)  # log v only where the proposal is valid
        accept = (v > 0.0) & (jnp.log(u) < 0.5 * x * x + d - d * v + d * jnp.log(safe_v))
        value = jnp.where(done, value, d * safe_v)
        return rnd + 1, done | accept, value

    def cond(carry):
        rnd, done, _ = carry
        return (rnd < max_rounds) & ~jnp.all(done)

    done0 = ~jnp.isfinite(a)  # nothing to draw: NaN/inf shapes propagate below
    _, _, value = jax.lax.while_loop(cond, body, (0, done0, jnp.zeros_like(a)))
    return jnp.where(done0, jnp.nan, value)


def sample(key: Array, alpha: Array, beta: Array) -> Array:
    """Exact Beta(α, β) draws for α, β >= 1: X / (X + Y) with X ~ Gamma(α), Y ~ Gamma(β).

    alpha, beta: the same shape (one lane: [B]) -> μ of that shape in [0, 1].
    """
    chex.assert_equal_shape([alpha, beta])
    g = gamma_ge1(key, jnp.stack([alpha, beta]))  # one loop for both Gammas
    return g[0] / (g[0] + g[1])


# ----------------------------------------------------------------------------- special functions


def trigamma(x: Array) -> Array:
    """ψ'(x) for x > 0: six steps of ψ'(x) = ψ'(x + 1) + 1/x², then the asymptotic series.

    At y = x + 6 >= 6 the series 1/y + 1/(2y²) + Σ B_2k / y^(2k+1) (to k = 4) is accurate to
    ~1e-9 relative, well within float32 and enough for float64 gradient checks.
    """
    acc = jnp.zeros_like(x)
    for n in range(6):  # unrolled: six elementwise steps
        acc = acc + 1.0 / jnp.square(x + n)
    iy = 1.0 / (x + 6.0)
    iy2 = iy * iy
    tail = iy + 0.5 * iy2 + iy * iy2 * (1.0 / 6.0 - iy2 * (1.0 / 30.0 - iy2 * (
        1.0 / 42.0 - iy2 / 30.0)))
    return acc + tail


def _clipped_logs(mu: Array) -> tuple[Array, Array, Array]:
    mu_c = jnp.clip(mu, MU_EPS, 1.0 - MU_EPS)
    return mu_c, jnp.log(mu_c), jnp.log1p(-mu_c)


@jax.custom_jvp
def log_prob(mu: Array, alpha: Array, beta: Array) -> Array:
    """log Beta(μ; α, β), elementwise; μ clipped to [1e-6, 1 − 1e-6] for finiteness."""
    _, log_mu, log_1m = _clipped_logs(mu)
    return (alpha - 1.0) * log_mu + (beta - 1.0) * log_1m - betaln(alpha, beta)


@log_prob.defjvp
def _log_prob_jvp(primals, tangents):
    mu, alpha, beta = primals
    d_mu, d_alpha, d_beta = tangents
    mu_c, log_mu, log_1m = _clipped_logs(mu)
    out = (alpha - 1.0) * log_mu + (beta - 1.0) * log_1m - betaln(alpha, beta)
    psi_ab = digamma(alpha + beta)
    # ∂/∂α log B(α, β) = ψ(α) − ψ(α + β); the clip has zero derivative outside (eps, 1 − eps).
    inside = (mu > MU_EPS) & (mu < 1.0 - MU_EPS)
    dmu = jnp.where(inside, (alpha - 1.0) / mu_c - (beta - 1.0) / (1.0 - mu_c), 0.0)
    d_out = ((log_mu - digamma(alpha) + psi_ab) * d_alpha
             + (log_1m - digamma(beta) + psi_ab) * d_beta + dmu * d_mu)
    return out, d_out


def _entropy(alpha, beta, lbeta, psi_a, psi_b, psi_ab):
    return lbeta - (alpha - 1.0) * psi_a - (beta - 1.0) * psi_b + (alpha + beta - 2.0) * psi_ab


def _entropy_grads(alpha, beta):
    """(∂H/∂α, ∂H/∂β): the digamma terms of ∂ log B cancel, leaving trigammas only."""
    shared = (alpha + beta - 2.0) * trigamma(alpha + beta)
    return shared - (alpha - 1.0) * trigamma(alpha), shared - (beta - 1.0) * trigamma(beta)


@jax.custom_jvp
def entropy(alpha: Array, beta: Array) -> Array:
    """Differential entropy of Beta(α, β), elementwise."""
    return _entropy(alpha, beta, betaln(alpha, beta), digamma(alpha), digamma(beta),
                    digamma(alpha + beta))


@entropy.defjvp
def _entropy_jvp(primals, tangents):
    alpha, beta = primals
    d_alpha, d_beta = tangents
    g_alpha, g_beta = _entropy_grads(alpha, beta)
    return entropy(alpha, beta), g_alpha * d_alpha + g_beta * d_beta


@jax.custom_jvp
def log_prob_and_entropy(mu: Array, alpha: Array, beta: Array) -> tuple[Array, Array]:
    """(log Beta(μ; α, β), H[Beta(α, β)]) sharing betaln and the digammas; all one shape.

    The policy loss needs both on the same (α, β): evaluated together, each special function
    runs once per element (forward and derivative), not once per term.
    """
    _, log_mu, log_1m = _clipped_logs(mu)
    lbeta = betaln(alpha, beta)
    psi_a, psi_b, psi_ab = digamma(alpha), digamma(beta), digamma(alpha + beta)
    lp = (alpha - 1.0) * log_mu + (beta - 1.0) * log_1m - lbeta
    return lp, _entropy(alpha, beta, lbeta, psi_a, psi_b, psi_ab)


@log_prob_and_entropy.defjvp
def _log_prob_and_entropy_jvp(primals, tangents):
    mu, alpha, beta = primals
    d_mu, d_alpha, d_beta = tangents
    mu_c, log_mu, log_1m = _clipped_logs(mu)
    lbeta = betaln(alpha, beta)
    psi_a, psi_b, psi_ab = digamma(alpha), digamma(beta), digamma(alpha + beta)
    lp = (alpha - 1.0) * log_mu + (beta - 1.0) * log_1m - lbeta
    ent = _entropy(alpha, beta, lbeta, psi_a, psi_b, psi_ab)
    inside = (mu > MU_EPS) & (mu < 1.0 - MU_EPS)
    dmu = jnp.where(inside, (alpha - 1.0) / mu_c - (beta - 1.0) / (1.0 - mu_c), 0.0)
    d_lp = ((log_mu - psi_a + psi_ab) * d_alpha + (log_1m - psi_b + psi_ab) * d_beta
            + dmu * d_mu)
    g_alpha, g_beta = _entropy_grads(alpha, beta)
    return (lp, ent), (d_lp, g_alpha * d_alpha + g_beta * d_beta)
