"""Certified accuracy floors by Learn-then-Test fixed-sequence testing (DESIGN.md section 4).

Input: P operating points (e.g. the router at P settings of τ or λ), ORDERED from the most
conservative (highest quality) to the cheapest, and each point's realised per-query scores and costs
on a held-out calibration split of n queries. Fixed-sequence testing (Angelopoulos et al. 2021,
"Learn then Test") walks j = 0, 1, ... and certifies point j while its p-value is <= δ; the
points certified before the first failure form the prefix, and the router uses the cheapest of
them (lowest calibration mean cost). The order must be fixed without looking at the calibration
labels (here: by validation accuracy). Two promises, by the p-value (`proteus.operating.bounds`):

- **window** (`window` = N >= 1, tolerance ε): for every τ, P(τ is certified and the accuracy of
  the next N requests routed at its point is below τ − ε) <= δ, for requests drawn like the
  calibration queries (`bounds.window_pvalues`). This is what a user checks: a window of traffic.
- **population** (`window` = 0): for every τ, P(τ is certified and the chosen point's expected
  accuracy is below τ) <= δ (H0_j: acc_j < τ; the first true null in the order must pass for any
  to be certified, so each test at the full level δ keeps the family-wise error <= δ). A finite
  window of traffic still misses τ about half the time at a point whose accuracy is just τ.
"""

from __future__ import annotations

import dataclasses
import enum

import numpy as np

from proteus.operating import bounds


class Fallback(enum.StrEnum):
    """What the router does for a τ that no operating point certifies."""

    BEST_EFFORT = "best_effort"  # route at point 0 (the most conservative), flagged infeasible
    REFUSE = "refuse"  # route nowhere (route_to = −1): the caller must refuse the request


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
      method: the p-value used (one of `bounds.METHODS`).
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
      window: N, the requests in the window the promise is about; 0: the population promise
        (tables written before windows existed read as 0).
      tolerance: ε, the window promise is accuracy >= τ − ε.
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
    window: int = 0
    tolerance: float = 0.0

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

    def promise(self) -> str:
        """The guarantee in words, e.g. 'P(accuracy of 1000 requests < τ − 0.02) <= 0.05'."""
        return promise(self.delta, self.window, self.tolerance)

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


def promise(delta: float, window: int, tolerance: float) -> str:
    """The guarantee of a certified τ in words (see the module docstring)."""
    if not window:
        return f"P(expected accuracy < τ) <= {delta:g}"
    floor = f"τ − {tolerance:g}" if tolerance else "τ"
    return f"P(accuracy of {window} requests < {floor}) <= {delta:g}"


def _reason(t: float, j: int, n_cert: int, acc: np.ndarray, lcb: np.ndarray, n: int,
            delta: float, fallback: str, promised: str) -> str:
    """Why τ = t is (or is not) certified: point j (−1: none) of a prefix of n_cert."""
    population = promised.startswith("P(expected")  # its wording predates windows: kept
    if j >= 0:
        why = f" >= τ={t:.4f}" if population else f"; {promised} at τ={t:.4f}"
        return (f"certified: point {j} of {n_cert} certified (calibration accuracy {acc[j]:.4f}, "
                f"{1 - delta:.0%} lower bound {lcb[j]:.4f}{why})")
    action = "routing at point 0 (best effort)" if fallback == Fallback.BEST_EFFORT else "refused"
    what = f"at δ={delta:g}" if population else f"({promised})"
    return (f"infeasible: no operating point certifies τ={t:.4f} {what}: the first point "
            f"has calibration accuracy {acc[0]:.4f} and {1 - delta:.0%} lower bound "
            f"{lcb[0]:.4f} (n={n}); {action}")


def certify(
    point_scores,
    point_costs,
    taus,
    delta: float = 0.05,
    method: str = "auto",
    fallback: Fallback | str = Fallback.BEST_EFFORT,
    window: int = 0,
    tolerance: float = 0.0,
) -> CertificationTable:
    """Certify accuracy floors for a grid of τ by fixed-sequence testing (see module docstring).

    Args:
      point_scores: [P, N] realised per-query scores in [0, 1] of each operating point on the
        calibration split, points ordered from the most conservative to the cheapest.
      point_costs: [P, N] realised per-query costs (USD).
      taus: [T] targets.
      delta: error level in (0, 1).
      method: "auto" or one of `bounds.METHODS`.
      fallback: behaviour for uncertified τ.
      window: N >= 1 for the window promise about the next N requests; 0 for the population
        promise (see the module docstring).
      tolerance: ε in [0, 1), the window promise's allowance below τ (0 with window = 0).

    Returns:
      The `CertificationTable`.
    """
    scores, costs, taus = _checked(point_scores, point_costs, taus, delta, window, tolerance)
    fallback = Fallback(fallback)
    method = bounds.resolve_method(method, scores)
    n = scores.shape[1]
    acc, cost = scores.mean(axis=1), costs.mean(axis=1)
    pv = (bounds.window_pvalues(acc, n, taus, method, window, tolerance) if window
          else bounds.pvalues(acc, n, taus, method))
    lcb = bounds.lower_bounds(acc, n, delta, method)
    chosen, n_cert = fixed_sequence(pv, cost, delta)
    default = 0 if fallback == Fallback.BEST_EFFORT else -1
    route_to = np.where(chosen >= 0, chosen, default)
    promised = promise(delta, window, tolerance)
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
            _reason(float(t), int(j), int(k), acc, lcb, n, delta, fallback, promised)
            for t, j, k in zip(taus, chosen, n_cert, strict=True)
        ),
        window=int(window),
        tolerance=float(tolerance),
    )


def _checked(point_scores, point_costs, taus, delta: float, window: int,
             tolerance: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`certify`'s inputs as float64 ([P, N] scores, [P, N] costs, [T] sorted τ); ValueError
    naming the argument that is out of range."""
    scores = np.atleast_2d(np.asarray(point_scores, np.float64))
    costs = np.atleast_2d(np.asarray(point_costs, np.float64))
    if scores.shape != costs.shape or scores.size == 0:
        raise ValueError(f"point_scores {scores.shape} and point_costs {costs.shape} must match")
    if not 0.0 < delta < 1.0:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    if np.any((scores < 0) | (scores > 1)) or not np.all(np.isfinite(scores)):
        raise ValueError("point_scores must be finite and in [0, 1]")
    if window < 0 or not 0.0 <= tolerance < 1.0 or (tolerance and not window):
        raise ValueError(f"window must be >= 0 and tolerance in [0, 1) (0 without a window), "
                         f"got window={window}, tolerance={tolerance}")
    return scores, costs, np.sort(np.atleast_1d(np.asarray(taus, np.float64)))


def certification_taus(grid, step: float) -> np.ndarray:
    """The τ the operating points are certified at: the report grid, extended down to 0.

    The certified router serves a τ by the smallest certified τ' >= τ, so without the extension
    a τ below the grid (a tenant content with 50% on a set whose lanes start at 0.59) would get
    the point certified for the grid's lowest τ, never a cheaper one. Below the grid the step is
    `step` (the config's `eval.tau_step`). grid: [T] sorted -> [T + L] sorted.
    """
    grid = np.asarray(grid, np.float64)
    below = np.round(np.arange(0.0, float(grid[0]) - 1e-9, float(step)), 6)
    return np.union1d(grid, below)
