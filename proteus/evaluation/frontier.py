"""The oracle's frontier: the Lagrangian upgrade path of per-query (value, cost) choices.

`upgrade_path` solves max λ·v − c per query for every λ >= 0 at once (the breakpoints of the
Lagrangian, enumerated exactly), `path_choices` reads deterministic choices reaching a mean value
off it (the plug-in baseline's rule), and `perfect_frontier_cost` the cheapest mean cost reaching
each accuracy τ with known scores (results.json's `perfect_frontier_cost`, DESIGN.md section 6).
Shapes: N queries, M models, T targets, S path segments.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from proteus.evaluation.metrics import FLOOR_EPS


@dataclasses.dataclass(frozen=True)
class UpgradePath:
    """The parametric solution of `max λ·v − c` per query, for every λ >= 0 at once.

    Each query starts at its cheapest model (highest value among equal costs) and moves up its
    efficient frontier (the lower-right convex hull of its (v, c) points) one segment at a time.
    Segments of all queries are sorted by their price λ = Δc / Δv; taking them in this order is the
    greedy solution of the fractional (LP) problem, and at any λ the taken segments are exactly
    those with price <= λ, i.e. the per-query argmax of λ·v − c (ties to the higher value).

    Attributes:
      start: [N] int starting model per query.
      query: [S] int query of each segment, in price order.
      to_model: [S] int model reached by each segment.
      d_value: [S] float64 gain in value.
      d_cost: [S] float64 extra cost.
      price: [S] float64 Δc / Δv, non-decreasing.
      value0: [] float64 mean value at the start.
      cost0: [] float64 mean cost at the start.
    """

    start: np.ndarray
    query: np.ndarray
    to_model: np.ndarray
    d_value: np.ndarray
    d_cost: np.ndarray
    price: np.ndarray
    value0: float
    cost0: float

    @property
    def n_queries(self) -> int:
        return int(self.start.shape[0])

    def mean_value_after(self) -> np.ndarray:
        """[S] mean value once segments 0..s are taken."""
        return self.value0 + np.cumsum(self.d_value) / self.n_queries

    def mean_cost_after(self) -> np.ndarray:
        """[S] mean cost once segments 0..s are taken."""
        return self.cost0 + np.cumsum(self.d_cost) / self.n_queries


def upgrade_path(values, costs) -> UpgradePath:
    """Build the `UpgradePath` of [N, M] values (true or predicted) and [N, M] costs."""
    v, c = np.asarray(values, np.float64), np.asarray(costs, np.float64)
    n, m = v.shape
    rows = np.arange(n)
    min_c = c.min(axis=1, keepdims=True)
    cur = np.argmax(np.where(c <= min_c, v, -np.inf), axis=1)
    start = cur.copy()
    parts: list[tuple[np.ndarray, ...]] = []
    for _ in range(m - 1):
        dv = v - v[rows, cur][:, None]
        dc = c - c[rows, cur][:, None]
        up = dv > 0
        price = np.where(up, np.maximum(dc, 0.0) / np.where(up, dv, 1.0), np.inf)
        best = price.min(axis=1)
        has = np.isfinite(best)
        if not has.any():
            break
        tie = up & (price <= best[:, None])
        nxt = np.argmax(np.where(tie, v, -np.inf), axis=1)
        q = rows[has]
        parts.append((q, nxt[has], dv[q, nxt[has]], dc[q, nxt[has]], best[has]))
        cur = np.where(has, nxt, cur)
    cat = lambda k, dt: np.concatenate([p[k] for p in parts]) if parts else np.zeros(0, dt)
    price = cat(4, np.float64)
    order = np.argsort(price, kind="stable")  # stable: a query's own segments stay in order
    return UpgradePath(
        start=start,
        query=cat(0, np.int64)[order],
        to_model=cat(1, np.int64)[order],
        d_value=cat(2, np.float64)[order],
        d_cost=np.maximum(cat(3, np.float64)[order], 0.0),
        price=price[order],
        value0=float(v[rows, start].mean()),
        cost0=float(c[rows, start].mean()),
    )


def path_choices(path: UpgradePath, target: float) -> tuple[np.ndarray, bool]:
    """Deterministic choices reaching mean value `target` along `path`.

    Takes the shortest price-ordered prefix of segments whose mean value reaches `target`
    (the Lagrangian argmax at the crossing price, ties resolved greedily).

    Returns:
      ([N] int choices, reached): when `target` is above the path's end, every segment is taken
      (the per-query highest value) and `reached` is False.
    """
    after = path.mean_value_after()
    need = target - FLOOR_EPS
    if path.value0 >= need:
        return path.start.copy(), True
    k = int(np.searchsorted(after, need, side="left"))
    reached = k < after.size
    k = min(k, after.size - 1)
    last = np.full(path.n_queries, -1, dtype=np.int64)
    np.maximum.at(last, path.query[: k + 1], np.arange(k + 1))
    choice = np.where(last >= 0, path.to_model[np.maximum(last, 0)], path.start)
    return choice, bool(reached)


def perfect_frontier_cost(scores, costs, taus) -> np.ndarray:
    """Cheapest mean cost reaching mean accuracy τ with known scores and per-query randomisation.

    Solves the LP `min mean_i Σ_m w_im c_im  s.t.  mean_i Σ_m w_im y_im >= τ, w_i in the simplex`.
    Its Lagrangian relaxation is the per-query `argmax_m λ·y − c`; instead of bisecting on λ, all
    breakpoints are enumerated exactly (`upgrade_path`), and at the crossing breakpoint the one
    partially taken segment is the fractional mix. Exact up to float64 rounding.

    Args:
      scores: [N, M] true scores in [0, 1].
      costs: [N, M] USD costs.
      taus: [T] targets.

    Returns:
      [T] float64 minimum mean cost; +inf where τ exceeds the oracle accuracy.
    """
    path = upgrade_path(scores, costs)
    taus = np.asarray(taus, np.float64)
    if path.d_value.size == 0:
        return np.where(taus <= path.value0 + FLOOR_EPS, path.cost0, np.inf)
    value = np.concatenate([[path.value0], path.mean_value_after()])
    cost = np.concatenate([[path.cost0], path.mean_cost_after()])
    # Piecewise-linear interpolation of cost against value; flat (cost0) below value0.
    out = np.interp(taus, value, cost, left=path.cost0, right=np.inf)
    return np.where(taus > value[-1] + FLOOR_EPS, np.inf, np.where(taus > value[-1], cost[-1], out))
