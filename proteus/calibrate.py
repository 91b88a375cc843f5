"""Certified accuracy floors by Learn-then-Test fixed-sequence testing (DESIGN.md section 4).

Input: P operating points (e.g. the router at P settings of τ or λ), ORDERED from the most
conservative (highest quality) to the cheapest, and each point's realised per-query scores and costs
on a held-out calibration split of N queries. For each requested τ the null hypothesis of point j is
H0_j: acc_j < τ. Fixed-sequence testing (Angelopoulos et al. 2021, "Learn then Test") walks j = 0,
1, ... and rejects H0_j while its p-value is <= δ; the points rejected before the first failure are
certified, and the router uses the cheapest of them (lowest calibration mean cost). Each test is at
the full level δ, and the family-wise error is still <= δ, so under exchangeability of calibration
and test queries P(acc_chosen < τ) <= δ for every τ. The order must be fixed without looking at the
calibration labels (e.g. by the nominal τ of each point, or by validation accuracy).

p-values for H0: mean score < τ, with n calibration queries and mean score a:
  * "clopper_pearson" (binary scores; exact): P(Binomial(n, τ) >= n·a) = I_τ(n·a, n − n·a + 1),
    the regularised incomplete beta. Its inversion is the exact Clopper–Pearson lower bound.
  * "hoeffding_bentkus" ([0, 1] scores; Bates et al. 2021, RCPS): with losses 1 − score, mean
    R = 1 − a and α = 1 − τ: min(exp(−n·h(min(R, α), α)), e·P(Binomial(n, α) <= ceil(n·R))),
    h(x, y) = x log(x/y) + (1−x) log((1−x)/(1−y)). Valid for any [0, 1] scores, much tighter than
    Hoeffding for accuracies near 1.
  * "hoeffding": exp(−2n (a − τ)_+²).
  "auto" uses Clopper–Pearson when every score is 0 or 1, Hoeffding–Bentkus otherwise.

Lower confidence bounds (reported per point) invert the same p-value: LCB = sup{τ : p(τ) <= δ}, by
64-step bisection kept on the conservative side. All of it runs under float64 (`jax.enable_x64`)
because float32 `betainc` is off by ~0.5% at n in the thousands.
"""

from __future__ import annotations

import dataclasses
import enum
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import betainc, xlogy

METHODS = ("clopper_pearson", "hoeffding_bentkus", "hoeffding")


class Fallback(enum.StrEnum):
    """What the router does for a τ that no operating point certifies."""

    BEST_EFFORT = "best_effort"  # route at point 0 (the most conservative), flagged infeasible
    REFUSE = "refuse"  # route nowhere (route_to = −1): the caller must refuse the request


# ------------------------------------------------------------------ p-values (one τ, one point)


def _pvalue(method: str, mean: jax.Array, n: jax.Array, tau: jax.Array) -> jax.Array:
    """p-value of H0: accuracy < τ for one point with mean score `mean` over n queries."""
    if method == "clopper_pearson":
        k = jnp.round(mean * n)
        p = betainc(jnp.maximum(k, 1.0), n - k + 1.0, jnp.clip(tau, 0.0, 1.0))
        return jnp.where(k <= 0, 1.0, p)
    if method == "hoeffding":
        gap = jnp.maximum(mean - tau, 0.0)
        return jnp.exp(-2.0 * n * gap * gap)
    if method == "hoeffding_bentkus":
        risk = jnp.clip(1.0 - mean, 0.0, 1.0)
        alpha = jnp.clip(1.0 - tau, 1e-15, 1.0 - 1e-15)
        x = jnp.minimum(risk, alpha)
        h = xlogy(x, x / alpha) + xlogy(1.0 - x, (1.0 - x) / (1.0 - alpha))
        m = jnp.ceil(n * risk - 1e-9)  # P(Bin(n, α) <= m) = I_{1−α}(n − m, m + 1)
        cdf = jnp.where(m >= n, 1.0, betainc(jnp.maximum(n - m, 1.0), m + 1.0, 1.0 - alpha))
        return jnp.minimum(jnp.minimum(jnp.exp(-n * h), jnp.e * cdf), 1.0)
    raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")


@functools.partial(jax.jit, static_argnums=0)
def _pvalue_pairs(method: str, means: jax.Array, n: jax.Array, taus: jax.Array) -> jax.Array:
    """[K] means, [K] taus -> [K] p-values."""
    return jax.vmap(lambda m, t: _pvalue(method, m, n, t))(means, taus)


def _padded(x: np.ndarray) -> jax.Array:
    """x padded to a power-of-two length (>= 8), so a few compiled shapes serve every size."""
    size = max(8, 1 << max(0, int(x.size - 1).bit_length()))
    return jnp.asarray(np.pad(x, (0, size - x.size), mode="edge"), jnp.float64)


@functools.partial(jax.jit, static_argnums=0)
def _lower_bounds(method: str, means: jax.Array, n: jax.Array, delta: jax.Array) -> jax.Array:
    """[P] means -> [P] sup{τ : p(τ) <= δ} by bisection (returns the side with p <= δ)."""

    def one(mean: jax.Array) -> jax.Array:
        def step(_, bounds):
            lo, hi = bounds
            mid = 0.5 * (lo + hi)
            ok = _pvalue(method, mean, n, mid) <= delta
            return jnp.where(ok, mid, lo), jnp.where(ok, hi, mid)

        lo, _ = jax.lax.fori_loop(0, 64, step, (jnp.zeros_like(mean), jnp.ones_like(mean)))
        return lo

    return jax.vmap(one)(means)


def _resolve(method: str, scores: np.ndarray) -> str:
    binary = bool(np.all((scores == 0.0) | (scores == 1.0)))
    if method == "auto":
        return "clopper_pearson" if binary else "hoeffding_bentkus"
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected 'auto' or one of {METHODS}")
    if method == "clopper_pearson" and not binary:
        raise ValueError("clopper_pearson needs binary (0/1) scores; use hoeffding_bentkus")
    return method


def pvalues(means, n: int, taus, method: str) -> np.ndarray:
    """p-values of H0: acc_j < τ for every (τ, point).

    Args:
      means: [P] calibration mean scores.
      n: number of calibration queries.
      taus: [T] targets.
      method: one of `METHODS`.

    Returns:
      [T, P] float64 p-values.
    """
    _resolve(method, np.zeros(1))
    means = np.atleast_1d(np.asarray(means, np.float64))
    taus = np.atleast_1d(np.asarray(taus, np.float64))
    mm, tt = np.meshgrid(means, taus)  # [T, P] each
    with jax.enable_x64(True):
        out = _pvalue_pairs(method, _padded(mm.ravel()), jnp.float64(n), _padded(tt.ravel()))
        return np.asarray(out, np.float64)[: mm.size].reshape(mm.shape)


def lower_bounds(means, n: int, delta: float, method: str) -> np.ndarray:
    """One-sided (1 − δ) lower confidence bounds of accuracy: [P] means -> [P] float64."""
    _resolve(method, np.zeros(1))
    means = np.atleast_1d(np.asarray(means, np.float64))
    with jax.enable_x64(True):
        out = _lower_bounds(method, _padded(means), jnp.float64(n), jnp.float64(delta))
        return np.asarray(out, np.float64)[: means.size]


def clopper_pearson_lower(k, n: int, delta: float) -> np.ndarray:
    """Exact one-sided Clopper–Pearson lower bound: the δ-quantile of Beta(k, n − k + 1).

    Args:
      k: [P] successes (0 <= k <= n).
      n: trials.
      delta: one-sided error level.

    Returns:
      [P] float64 (0 where k = 0). E.g. n = k = 10, δ = 0.05: 0.05^(1/10) = 0.7411.
    """
    k = np.atleast_1d(np.asarray(k, np.float64))
    if np.any((k < 0) | (k > n)):
        raise ValueError(f"successes must be in [0, n={n}], got {k}")
    return lower_bounds(k / n, n, delta, "clopper_pearson")


# ------------------------------------------------------------------ fixed-sequence testing


def fixed_sequence(pvals: np.ndarray, costs: np.ndarray, delta: float):
    """Fixed-sequence (LTT) decisions for T targets and P ordered points.

    Args:
      pvals: [T, P] p-values, points in testing order.
      costs: [P] calibration mean cost of each point.
      delta: level.

    Returns:
      (chosen [T] int: the cheapest certified point or −1, n_certified [T] int: prefix length).
    """
    prefix = np.cumprod(pvals <= delta, axis=1).astype(bool)  # rejected before first failure
    n_cert = prefix.sum(axis=1)
    masked = np.where(prefix, np.asarray(costs)[None, :], np.inf)
    chosen = np.where(n_cert > 0, np.argmin(masked, axis=1), -1)
    return chosen.astype(np.int64), n_cert.astype(np.int64)


# ------------------------------------------------------------------ the certification table


@dataclasses.dataclass(frozen=True)
class CertificationTable:
    """Per-τ certified routing decisions; plain Python values only, so `to_dict` is valid JSON.

    Attributes:
      taus: [T] targets, increasing.
      delta: error level δ.
      method: the p-value used (one of `METHODS`).
      fallback: a `Fallback` value.
      n_calibration: N, calibration queries.
      accuracy: [P] calibration accuracy of each operating point (in testing order).
      cost: [P] calibration mean cost of each point.
      lcb: [P] (1 − δ) lower confidence bound of each point's accuracy.
      pvalues: [T][P] p-values of H0: acc_j < τ.
      n_certified: [T] length of the certified prefix.
      chosen: [T] the cheapest certified point, or −1.
      route_to: [T] the point to route at: `chosen`; if none, 0 ("best_effort") or −1 ("refuse").
      feasible: [T] True where some point is certified.
      reasons: [T] a human-readable reason for each decision.
    """

    taus: tuple[float, ...]
    delta: float
    method: str
    fallback: str
    n_calibration: int
    accuracy: tuple[float, ...]
    cost: tuple[float, ...]
    lcb: tuple[float, ...]
    pvalues: tuple[tuple[float, ...], ...]
    n_certified: tuple[int, ...]
    chosen: tuple[int, ...]
    route_to: tuple[int, ...]
    feasible: tuple[bool, ...]
    reasons: tuple[str, ...]

    def to_dict(self) -> dict:
        """A JSON-serialisable dict (tuples become lists under `json.dumps`)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> CertificationTable:
        """Inverse of `to_dict` (e.g. after a JSON round trip)."""
        tup = lambda x: tuple(tuple(v) if isinstance(v, list) else v for v in x)
        fields = {f.name for f in dataclasses.fields(cls)}
        kw = {k: (tup(v) if isinstance(v, list) else v) for k, v in d.items() if k in fields}
        return cls(**kw)

    def lookup(self, tau: float) -> tuple[int, bool, str]:
        """(route_to, feasible, reason) for any τ: the decision of the smallest grid τ' >= τ.

        A certificate for τ' also certifies every τ <= τ' (acc >= τ' implies acc >= τ). Above the
        grid nothing is certified.
        """
        idx = int(np.searchsorted(np.asarray(self.taus), tau - 1e-12, side="left"))
        if idx >= len(self.taus):
            route = 0 if self.fallback == Fallback.BEST_EFFORT else -1
            why = f"τ={tau:.4f} is above the certified grid (max {self.taus[-1]:.4f})"
            return route, False, why
        return self.route_to[idx], self.feasible[idx], self.reasons[idx]


def _reason(t: float, j: int, n_cert: int, lcb: np.ndarray, acc: np.ndarray, table_args) -> str:
    delta, n, fallback = table_args
    if j >= 0:
        return (
            f"certified: point {j} of {n_cert} certified (calibration accuracy {acc[j]:.4f}, "
            f"{1 - delta:.0%} lower bound {lcb[j]:.4f} >= τ={t:.4f})"
        )
    action = "routing at point 0 (best effort)" if fallback == Fallback.BEST_EFFORT else "refused"
    return (
        f"infeasible: no operating point certifies τ={t:.4f} at δ={delta:g}: the first point "
        f"has calibration accuracy {acc[0]:.4f} and {1 - delta:.0%} lower bound {lcb[0]:.4f} "
        f"(n={n}); {action}"
    )


def certify(
    point_scores,
    point_costs,
    taus,
    delta: float = 0.05,
    method: str = "auto",
    fallback: Fallback | str = Fallback.BEST_EFFORT,
) -> CertificationTable:
    """Certify accuracy floors for a grid of τ by fixed-sequence testing (see module docstring).

    Args:
      point_scores: [P, N] realised per-query scores in [0, 1] of each operating point on the
        calibration split, points ordered from the most conservative to the cheapest.
      point_costs: [P, N] realised per-query costs (USD).
      taus: [T] targets.
      delta: error level in (0, 1).
      method: "auto" or one of `METHODS`.
      fallback: behaviour for uncertified τ.

    Returns:
      The `CertificationTable`.
    """
    scores = np.atleast_2d(np.asarray(point_scores, np.float64))
    costs = np.atleast_2d(np.asarray(point_costs, np.float64))
    taus = np.sort(np.atleast_1d(np.asarray(taus, np.float64)))
    if scores.shape != costs.shape or scores.size == 0:
        raise ValueError(f"point_scores {scores.shape} and point_costs {costs.shape} must match")
    if not 0.0 < delta < 1.0:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    if np.any((scores < 0) | (scores > 1)) or not np.all(np.isfinite(scores)):
        raise ValueError("point_scores must be finite and in [0, 1]")
    fallback = Fallback(fallback)
    method = _resolve(method, scores)
    n = scores.shape[1]
    acc, cost = scores.mean(axis=1), costs.mean(axis=1)
    pv = pvalues(acc, n, taus, method)
    lcb = lower_bounds(acc, n, delta, method)
    chosen, n_cert = fixed_sequence(pv, cost, delta)
    default = 0 if fallback == Fallback.BEST_EFFORT else -1
    route_to = np.where(chosen >= 0, chosen, default)
    args = (delta, n, fallback)
    return CertificationTable(
        taus=tuple(map(float, taus)),
        delta=float(delta),
        method=method,
        fallback=str(fallback),
        n_calibration=int(n),
        accuracy=tuple(map(float, acc)),
        cost=tuple(map(float, cost)),
        lcb=tuple(map(float, lcb)),
        pvalues=tuple(tuple(map(float, row)) for row in pv),
        n_certified=tuple(map(int, n_cert)),
        chosen=tuple(map(int, chosen)),
        route_to=tuple(map(int, route_to)),
        feasible=tuple(bool(c >= 0) for c in chosen),
        reasons=tuple(
            _reason(float(t), int(j), int(k), lcb, acc, args)
            for t, j, k in zip(taus, chosen, n_cert, strict=True)
        ),
    )
