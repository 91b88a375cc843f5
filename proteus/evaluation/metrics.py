"""Evaluation metrics of DESIGN.md section 6, vectorised over a grid of T accuracy targets τ.

Every function takes plain numpy or jax arrays and returns Python floats or numpy arrays, so it can
be used on any router's output without the trainer. Shapes: N queries, M models, T targets, P
operating points.

Means of scores are taken in float64. Floor checks (`floor_compliance`, `summarize`) accept an
accuracy within `FLOOR_EPS` (1e-9) below τ as meeting it: this only absorbs float rounding of τ
grids such as `np.arange(0.85, 0.96, 0.01)` and never a real miss on any realistic N.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from proteus.types import PRNGKey

FLOOR_EPS = 1e-9

SUMMARY_KEYS = (
    "floor_compliance",
    "target_response_corr",
    "max_savings_vs_best_fixed",
    "oracle_gap",
    "aiq",
    "n_infeasible",
)


def _f64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.float64)


def as_floats(values) -> np.ndarray:
    """[T] float64 from a results list, None (a refused τ, a JSON null) as NaN."""
    return np.asarray([np.nan if v is None else v for v in np.ravel(values)], np.float64)


def realised(scores, costs, choices) -> tuple[np.ndarray, np.ndarray]:
    """Mean realised score and cost of per-τ choices.

    Args:
      scores: [N, M] float scores in [0, 1].
      costs: [N, M] float USD per call.
      choices: [T, N] int model index per τ and query (or [N] for a single τ).

    Returns:
      (accuracy, cost): [T] float64 each ([] when `choices` is [N]).
    """
    scores, costs = _f64(scores), _f64(costs)
    choices = np.asarray(choices, dtype=np.int64)
    single = choices.ndim == 1
    choices = np.atleast_2d(choices)
    if choices.shape[1] != scores.shape[0]:
        raise ValueError(f"choices {choices.shape} do not match scores {scores.shape}")
    rows = np.arange(scores.shape[0])[None, :]
    acc = scores[rows, choices].mean(axis=1)
    cost = costs[rows, choices].mean(axis=1)
    return (acc[0], cost[0]) if single else (acc, cost)


def per_query(values, choices) -> np.ndarray:
    """Per-query realised values: [N, M] values, [T, N] choices -> [T, N] float64."""
    values = _f64(values)
    choices = np.atleast_2d(np.asarray(choices, dtype=np.int64))
    return values[np.arange(values.shape[0])[None, :], choices]


def violation(taus, accuracy) -> np.ndarray:
    """Shortfall below the floor: [T], [T] -> [T] float64 = max(0, τ − accuracy)."""
    return np.maximum(0.0, _f64(taus) - _f64(accuracy))


def meets_floor(taus, accuracy, tol: float = 0.0) -> np.ndarray:
    """[T] bool: accuracy >= τ − tol (up to `FLOOR_EPS` of float rounding)."""
    return _f64(accuracy) >= _f64(taus) - tol - FLOOR_EPS


def floor_compliance(taus, accuracy, feasible=None, tol: float = 0.0) -> float:
    """Share of targets met among those the router declared feasible.

    Args:
      taus: [T] targets.
      accuracy: [T] realised accuracy.
      feasible: [T] bool declared feasibility; None means all declared feasible.
      tol: slack below τ still counted as met.

    Returns:
      A float in [0, 1]; nan when no τ is declared feasible.
    """
    met = meets_floor(taus, accuracy, tol)
    mask = np.ones_like(met) if feasible is None else np.asarray(feasible, dtype=bool)
    if not mask.any():
        return float("nan")
    return float(met[mask].mean())


def target_response_corr(taus, accuracy) -> float:
    """Pearson r of τ against accuracy(τ) over the grid; nan if either is constant or T < 2."""
    x, y = _f64(taus), _f64(accuracy)
    if x.size < 2:
        return float("nan")
    dx, dy = x - x.mean(), y - y.mean()
    denom = np.sqrt((dx * dx).sum() * (dy * dy).sum())
    if denom <= 1e-15 * max(1.0, float(np.abs(y).max())):
        return float("nan")
    return float((dx * dy).sum() / denom)


def savings(cost, reference_cost: float) -> np.ndarray:
    """Relative saving against a reference: [T] -> [T] float64 = 1 − cost / reference_cost."""
    return 1.0 - _f64(cost) / float(reference_cost)


def oracle_gap(oracle_accuracy: float, accuracy) -> float:
    """Oracle accuracy minus the router's highest accuracy over the grid ([T] -> float)."""
    return float(oracle_accuracy - np.max(_f64(accuracy)))


def aiq(costs, accuracies, cost_range: tuple[float, float]) -> float:
    """RouterBench's Average Improvement in Quality of a set of operating points.

    Convention (RouterBench, Hu et al. 2024, made precise here):
      1. Costs are normalised to x = (c − lo) / (hi − lo) and clipped to [0, 1].
      2. R(x) is the non-decreasing convex hull of the points: the highest accuracy reachable by a
         convex mix of points whose mixed normalised cost is <= x. It is the upper concave envelope
         of the points up to its highest point, then flat. R(x) = 0 for x below the cheapest point
         (no operating point is affordable there).
      3. AIQ = ∫_0^1 R(x) dx, so it is in [0, 1] and comparable across routers sharing `cost_range`
         (use e.g. the cheapest and the most expensive fixed model's mean test cost).
    Examples: one point (x=0.5, acc=0.8) gives 0.8 * 0.5 = 0.4; points (0, 0.5) and (1, 0.9) give
    0.7.

    Args:
      costs: [P] mean costs of the operating points (e.g. one per τ).
      accuracies: [P] mean accuracies.
      cost_range: (lo, hi) with hi > lo, the costs mapped to 0 and 1.

    Returns:
      The area as a float (nan when there are no finite points).
    """
    vertices, _ = aiq_hull(costs, accuracies, cost_range)
    return polyline_area(_f64(costs).ravel()[vertices], _f64(accuracies).ravel()[vertices],
                         cost_range)


def polyline_area(costs, accuracies, cost_range: tuple[float, float]) -> float:
    """∫_0^1 R(x) dx for the polyline through given operating points, none dropped.

    R is 0 below the cheapest point, the straight line between points adjacent in normalised cost
    (what mixing the two realises), and flat after the dearest. On a hull's vertices this is
    `aiq`; on settings chosen elsewhere (`paired_aiq.crossfit_aiq`) a point that falls under the
    chord of its neighbours pulls the area down instead of being skipped.

    Args:
      costs, accuracies: [K] finite mean cost and accuracy of each point.
      cost_range: (lo, hi), the costs mapped to 0 and 1 (clipped).

    Returns:
      The area (nan for K = 0).
    """
    lo, hi = map(float, cost_range)
    c, y = _f64(costs).ravel(), _f64(accuracies).ravel()
    if c.size == 0:
        return float("nan")
    x = np.clip((c - lo) / (hi - lo), 0.0, 1.0)
    order = np.lexsort((y, x))
    hx, hy = np.append(x[order], 1.0), np.append(y[order], y[order][-1])
    return float(np.sum(0.5 * (hy[1:] + hy[:-1]) * np.diff(hx)))


def distinct_points(costs, accuracies) -> tuple[np.ndarray, np.ndarray]:
    """The distinct finite (cost, accuracy) pairs of a router's operating points, by cost.

    A knob sweep of a thousand τ reaches a few dozen points; these are what its AIQ needs (the
    results file stores them as a router's "sweep").

    Args:
      costs, accuracies: [T] per-τ means (None or NaN where a τ was refused).

    Returns:
      (cost [P], accuracy [P]) float64, sorted by cost, then accuracy.
    """
    c, a = as_floats(costs), as_floats(accuracies)
    ok = np.isfinite(c) & np.isfinite(a)
    pairs = np.unique(np.stack([c[ok], a[ok]], axis=1), axis=0)
    return pairs[:, 0], pairs[:, 1]


def aiq_hull(costs, accuracies, cost_range: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """The operating points `aiq` integrates: (vertex indices [K] into the P points, by cost;
    normalised costs [P], NaN where a point is not finite). No finite point: K = 0."""
    lo, hi = map(float, cost_range)
    if not hi > lo:
        raise ValueError(f"cost_range must have hi > lo, got {cost_range}")
    c, a = _f64(costs).ravel(), _f64(accuracies).ravel()
    ok = np.flatnonzero(np.isfinite(c) & np.isfinite(a))
    x = np.full(c.shape, np.nan)
    x[ok] = np.clip((c[ok] - lo) / (hi - lo), 0.0, 1.0)
    return ok[hull_vertices(x[ok], a[ok])], x


def hull_vertices(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """[K] indices of the points that are vertices of the upper concave envelope of (x, y),
    truncated at its maximum, by increasing x (the hull `aiq` integrates).

    Among points of equal x only the highest can be a vertex; a point costlier than a vertex
    without a gain, or on or under a chord, is not one.
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    order = np.lexsort((-y, x))  # by x, then highest y first
    hull: list[int] = []
    for i in order:
        if hull and (x[i] == x[hull[-1]] or y[i] <= y[hull[-1]]):
            continue  # same cost with lower accuracy, or costlier without gain: dominated
        while len(hull) >= 2:
            (x1, y1), (x2, y2) = (x[hull[-2]], y[hull[-2]]), (x[hull[-1]], y[hull[-1]])
            if (y2 - y1) * (x[i] - x1) <= (y[i] - y1) * (x2 - x1):
                hull.pop()  # hull[-1] lies on or under the chord: not a vertex
            else:
                break
        hull.append(int(i))
    return np.asarray(hull, np.int64)


# ------------------------------------------------------------------ intervals and summaries


def bootstrap_ci(
    per_query_values,
    n_boot: int = 1000,
    alpha: float = 0.05,
    key: PRNGKey | int = 0,
) -> tuple[np.ndarray | float, np.ndarray | float]:
    """Percentile bootstrap interval of the mean over queries.

    The same resampled query sets are used for every row, so intervals of different τ (rows) are
    jointly resampled.

    Args:
      per_query_values: [T, N] or [N] per-query values (e.g. `per_query(scores, choices)`).
      n_boot: number of bootstrap resamples.
      alpha: two-sided level; the interval is the (alpha/2, 1 − alpha/2) percentiles.
      key: a `jax.random.key` or an int seed.

    Returns:
      (lo, hi): [T] float64 arrays, or floats for [N] input.
    """
    vals = jnp.asarray(per_query_values, dtype=jnp.float32)
    single = vals.ndim == 1
    if isinstance(key, int):
        key = jax.random.key(key)
    means = np.asarray(_bootstrap_means(jnp.atleast_2d(vals), key, n_boot), dtype=np.float64)
    lo = np.quantile(means, alpha / 2, axis=0)
    hi = np.quantile(means, 1 - alpha / 2, axis=0)
    return (float(lo[0]), float(hi[0])) if single else (lo, hi)


@functools.partial(jax.jit, static_argnums=2)
def _bootstrap_means(vals: jax.Array, key: PRNGKey, n_boot: int) -> jax.Array:
    """[T, N] values -> [n_boot, T] means of resampled query sets (one resample at a time)."""
    n = vals.shape[1]
    idx = jax.random.randint(key, (n_boot, n), 0, n)
    return jax.lax.map(lambda i: vals[:, i].mean(axis=1), idx)


def summarize(
    taus,
    accuracy,
    cost,
    feasible,
    oracle_accuracy: float,
    best_fixed_cost: float,
    cost_range: tuple[float, float],
    aiq_points: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, float | int]:
    """The DESIGN.md section 7 summary of one router over the τ grid.

    Args:
      taus: [T] targets.
      accuracy: [T] realised test accuracy.
      cost: [T] realised mean test cost.
      feasible: [T] bool declared feasibility (None: all feasible).
      oracle_accuracy: test accuracy of the oracle.
      best_fixed_cost: test mean cost of the best fixed model (the savings reference).
      cost_range: (lo, hi) cost normalisation of `aiq`.
      aiq_points: (cost [P], accuracy [P]) the router reaches over its whole knob sweep (see
        `proteus.pipeline.evaluation.sweep_taus`); None: AIQ over the T grid points.

    Returns:
      dict with exactly `SUMMARY_KEYS`:
        floor_compliance: `floor_compliance(taus, accuracy, feasible)`.
        target_response_corr: `target_response_corr(taus, accuracy)` over the whole grid.
        max_savings_vs_best_fixed: the largest `savings(cost, best_fixed_cost)` over τ whose floor
          was met (whatever was declared); nan if no floor was met.
        oracle_gap: `oracle_gap(oracle_accuracy, accuracy)`.
        aiq: `aiq(cost, accuracy, cost_range)` of `aiq_points`, else of the T grid points.
        n_infeasible: number of τ declared infeasible.
    """
    taus, accuracy, cost = _f64(taus), _f64(accuracy), _f64(cost)
    feas = np.ones(taus.shape, bool) if feasible is None else np.asarray(feasible, bool)
    met = meets_floor(taus, accuracy)
    sav = savings(cost, best_fixed_cost)
    return {
        "floor_compliance": floor_compliance(taus, accuracy, feas),
        "target_response_corr": target_response_corr(taus, accuracy),
        "max_savings_vs_best_fixed": float(sav[met].max()) if met.any() else float("nan"),
        "oracle_gap": oracle_gap(oracle_accuracy, accuracy),
        "aiq": aiq(*(aiq_points if aiq_points is not None else (cost, accuracy)), cost_range),
        "n_infeasible": int((~feas).sum()),
    }
