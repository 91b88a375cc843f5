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

Lower confidence bounds (reported per point) invert the same p-value: LCB = sup{τ : p(τ) <= δ}.
Clopper–Pearson's is the δ-quantile of Beta(k, n − k + 1) and Hoeffding's is closed form; the
Hoeffding–Bentkus bound is found by 64-step bisection. Every bound is kept on the conservative
side (p(LCB) <= δ). All of it is float64 numpy and `scipy.special` (the regularised incomplete beta
and its inverse, the functions behind `scipy.stats.binom` and `scipy.stats.beta`).
"""

from __future__ import annotations

import dataclasses
import enum
import math

import numpy as np
from scipy import special

METHODS = ("clopper_pearson", "hoeffding_bentkus", "hoeffding")


class Fallback(enum.StrEnum):
    """What the router does for a τ that no operating point certifies."""

    BEST_EFFORT = "best_effort"  # route at point 0 (the most conservative), flagged infeasible
    REFUSE = "refuse"  # route nowhere (route_to = −1): the caller must refuse the request


# ------------------------------------------------------------------ p-values


def _pvalue(method: str, mean: np.ndarray, n: int, tau: np.ndarray) -> np.ndarray:
    """p-values of H0: accuracy < τ; `mean` and `tau` broadcast together (float64)."""
    mean, tau = np.broadcast_arrays(np.asarray(mean, np.float64), np.asarray(tau, np.float64))
    if method == "clopper_pearson":
        k = np.round(mean * n)
        # P(Bin(n, τ) >= k) = I_τ(k, n − k + 1) (`scipy.stats.binom.sf(k − 1, n, τ)`, faster)
        p = special.betainc(np.maximum(k, 1.0), n - k + 1.0, np.clip(tau, 0.0, 1.0))
        return np.where(k <= 0, 1.0, p)
    if method == "hoeffding":
        gap = np.maximum(mean - tau, 0.0)
        return np.exp(-2.0 * n * gap * gap)
    if method == "hoeffding_bentkus":
        risk = np.clip(1.0 - mean, 0.0, 1.0)
        alpha = np.clip(1.0 - tau, 1e-15, 1.0 - 1e-15)
        x = np.minimum(risk, alpha)
        h = special.xlogy(x, x / alpha) + special.xlogy(1.0 - x, (1.0 - x) / (1.0 - alpha))
        m = np.ceil(n * risk - 1e-9)
        # P(Bin(n, α) <= m) = I_{1−α}(n − m, m + 1) (`scipy.stats.binom.cdf(m, n, α)`, faster)
        cdf = np.where(m >= n, 1.0, special.betainc(np.maximum(n - m, 1.0), m + 1.0, 1.0 - alpha))
        return np.minimum(np.minimum(np.exp(-n * h), math.e * cdf), 1.0)
    raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")


def _check_named(method: str) -> None:
    """`pvalues` and `lower_bounds` see only means: "auto" (which needs the scores) is refused."""
    if method not in METHODS:
        why = " ('auto' needs the per-query scores: use certify())" if method == "auto" else ""
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}{why}")


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
      method: one of `METHODS` ("auto" is resolved by `certify`, which sees the scores).

    Returns:
      [T, P] float64 p-values.
    """
    _check_named(method)
    means = np.atleast_1d(np.asarray(means, np.float64))
    taus = np.atleast_1d(np.asarray(taus, np.float64))
    return _pvalue(method, means[None, :], int(n), taus[:, None])


def lower_bounds(means, n: int, delta: float, method: str) -> np.ndarray:
    """One-sided (1 − δ) lower confidence bounds of accuracy: [P] means -> [P] float64.

    sup{τ : p(τ) <= δ}, returned on the side where p <= δ.
    """
    _check_named(method)
    means = np.atleast_1d(np.asarray(means, np.float64))
    if method == "hoeffding":
        lcb = np.maximum(means - math.sqrt(math.log(1.0 / delta) / (2.0 * n)), 0.0)
    elif method == "clopper_pearson":
        k = np.round(means * n)
        lcb = special.betaincinv(np.maximum(k, 1.0), n - k + 1.0, delta)  # Beta δ-quantile
        lcb = np.where(k <= 0, 0.0, lcb)
    else:  # hoeffding_bentkus: p <= δ where either part is, and each part is monotone in τ
        lcb = np.maximum(_hoeffding_kl_lower(means, n, delta), _bentkus_lower(means, n, delta))
    for i in range(64):  # a quantile or closed form can land a few ulps on the wrong side
        over = (lcb > 0) & (_pvalue(method, means, n, lcb) > delta)
        if not over.any():
            break
        lcb = np.where(over, np.maximum(lcb - np.spacing(lcb) * 2.0**i, 0.0), lcb)
    return lcb


def _hoeffding_kl_lower(means: np.ndarray, n: int, delta: float) -> np.ndarray:
    """[P] sup{τ : exp(−n·h(min(R, α), α)) <= δ}, with α = 1 − τ and R = 1 − mean.

    For τ >= mean (α <= R) h is 0 and p = 1; below the mean h(R, α) falls as τ rises, so the
    bound is found by bisection on [0, mean]; 56 halvings reach float64 resolution.
    """
    mean = np.clip(means, 0.0, 1.0)
    risk = 1.0 - mean
    need = math.log(1.0 / delta) / n  # exp(−n·h) <= δ  <=>  h >= log(1/δ)/n
    lo, hi = np.zeros_like(mean), mean.copy()
    with np.errstate(divide="ignore", invalid="ignore"):  # mean 0: no bound (0 below)
        for _ in range(56):
            mid = 0.5 * (lo + hi)  # τ in (0, mean]: α = 1 − τ in [R, 1), 1 − α = τ
            h = special.xlogy(risk, risk / (1.0 - mid)) + special.xlogy(mean, mean / mid)
            ok = h >= need
            lo, hi = np.where(ok, mid, lo), np.where(ok, hi, mid)
    return np.where(mean > 0.0, lo, 0.0)


def _bentkus_lower(means: np.ndarray, n: int, delta: float) -> np.ndarray:
    """[P] sup{τ : e·P(Bin(n, 1 − τ) <= m) <= δ}; P(Bin(n, 1 − τ) <= m) = I_τ(n − m, m + 1)."""
    m = np.ceil(n * np.clip(1.0 - means, 0.0, 1.0) - 1e-9)
    q = special.betaincinv(np.maximum(n - m, 1.0), m + 1.0, min(delta / math.e, 1.0))
    return np.where(m >= n, 0.0, q)


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
