"""The Beta distribution of the policy: an exact vectorised sampler, log-density and entropy.

The policy's α, β are >= 1 (networks.PolicyHead), and a training step draws one μ per query and
lane, then differentiates the log-density and the entropy with respect to α and β. Two things
made this costly with the stock functions (benchmarks/profile_policy.py):

- `jax.random.beta` draws two Gammas per element with a per-element rejection loop: every
  element splits its own key on every trial, so a [K, B] draw runs K·B threefry splits per
  round and a while loop per element. Here every round proposes for the WHOLE array at once
  (a few threefry calls of the array's size) and keeps, per element, the first accepted one.
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
FIRST_PROPOSALS = 2  # proposals per element drawn at once before the sampler's loop
MAX_ROUNDS = 64  # bound on the sampler's proposal rounds (never reached in practice, see below)


# ----------------------------------------------------------------------------- sampling


def _marsaglia_tsang(key: Array, d: Array, c: Array, shape: tuple[int, ...]):
    """Proposals of shape [*shape] (shape ends with d's shape): (accepted?, d·v).

    The normal and the uniform of a proposal come from ONE threefry call (a [2, ...] uniform
    draw, the normal by inverse CDF as `jax.random.normal` does): on CPU every random call is a
    small loop of its own, and their count, not the numbers drawn, set the sampler's cost.
    """
    u = jax.random.uniform(key, (2, *shape), d.dtype)
    lo = jnp.nextafter(jnp.asarray(-1.0, d.dtype), jnp.asarray(1.0, d.dtype))
    x = jnp.sqrt(jnp.asarray(2.0, d.dtype)) * jax.lax.erf_inv(jnp.maximum(2.0 * u[0] - 1.0, lo))
    t = 1.0 + c * x
    v = t * t * t
    safe_v = jnp.where(v > 0.0, v, 1.0)  # log v only where the proposal is valid
    accept = (v > 0.0) & (jnp.log(u[1]) < 0.5 * x * x + d - d * v + d * jnp.log(safe_v))
    return accept, d * safe_v


def gamma_ge1(key: Array, shape_param: Array, first_proposals: int = FIRST_PROPOSALS,
              max_rounds: int = MAX_ROUNDS) -> Array:
    """Gamma(a, 1) draws for a >= 1 by Marsaglia & Tsang (2000), vectorised over the array.

    A proposal x ~ N(0, 1), u ~ U(0, 1) gives v = (1 + x / sqrt(9d))^3 (d = a − 1/3), accepted
    when log u < x²/2 + d − d·v + d·log v, with probability >= 0.95 for every a >= 1. Each element
    keeps its FIRST accepted proposal, so it is an exact Gamma(a) draw: its proposals are fresh
    i.i.d. draws (keyed by round and position, never reused) and which element receives which
    proposal depends only on earlier acceptances, never on the proposals' values.

    The first round proposes `first_proposals` times for every element at once. The few elements
    left open (a fraction <= 0.05^first_proposals) are finished by a while loop that proposes
    only for them: each round gathers up to `slots` open elements (n/16, at least 64) instead of
    re-drawing the whole array, so the random numbers drawn stay close to the ~4 per element a
    Gamma needs. `max_rounds` only guards against a hang: elements still open after it (never in
    practice) keep value 0; NaN/inf shapes give NaN.

    Args:
      key: a PRNG key.
      shape_param: any shape, float, every entry >= 1.
      first_proposals, max_rounds: static.

    Returns:
      draws of the same shape and dtype.
    """
    a = shape_param.reshape(-1)
    n = a.shape[0]
    slots = min(n, max(64, -(-n // 16)))
    d = a - 1.0 / 3.0
    c = jax.lax.rsqrt(9.0 * d)
    accept, value = _marsaglia_tsang(jax.random.fold_in(key, 0), d, c, (first_proposals, n))
    first = jnp.argmax(accept, axis=0)  # index of the first accepted proposal (0 if none)
    value = jnp.where(accept.any(axis=0), jnp.take_along_axis(value, first[None], 0)[0], 0.0)
    bad = ~jnp.isfinite(a)  # nothing to draw: NaN/inf shapes propagate below
    done = accept.any(axis=0) | bad

    def body(carry):
        rnd, done, value = carry
        (open_idx,) = jnp.nonzero(~done, size=slots, fill_value=n)  # n: an empty slot
        safe = jnp.minimum(open_idx, n - 1)
        ok, proposal = _marsaglia_tsang(jax.random.fold_in(key, rnd), d[safe], c[safe], (slots,))
        target = jnp.where(ok & (open_idx < n), open_idx, n)  # index n is dropped
        value = value.at[target].set(proposal, mode="drop")
        return rnd + 1, done.at[target].set(True, mode="drop"), value

    def cond(carry):
        rnd, done, _ = carry
        return (rnd < max_rounds) & ~jnp.all(done)

    _, _, value = jax.lax.while_loop(cond, body, (1, done, value))
    return jnp.where(bad, jnp.nan, value).reshape(shape_param.shape)


def sample(key: Array, alpha: Array, beta: Array) -> Array:
    """Exact Beta(α, β) draws for α, β >= 1: X / (X + Y) with X ~ Gamma(α), Y ~ Gamma(β).

    alpha, beta: the same shape (one lane: [B]) -> μ of that shape in [0, 1].
    """
    chex.assert_equal_shape([alpha, beta])
    with jax.named_scope("beta_sample"):  # a name for profiles (benchmarks/profile_policy.py)
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
