"""Is one router's AIQ really above another's? A paired bootstrap over the test queries.

AIQ (`metrics.aiq`) is the area under a router's cost-accuracy hull on one test split. Two routers
evaluated on the same few hundred or thousand queries differ by chance as well as by skill; a
difference of 0.003 on 629 queries says little. Resampling the queries (the same resample for
every router, so the comparison is paired) gives a percentile interval of each difference
AIQ(reference) − AIQ(other): an interval that contains 0 means the test split cannot tell the two
routers apart.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from proteus.evaluation import metrics


def weighted_points(scores: np.ndarray, costs: np.ndarray, choices: np.ndarray,
                    weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean accuracy and cost of each τ's routing under query weights.

    Args:
      scores, costs: [N, M] test outcomes.
      choices: [T, N] int model per query and τ; a row of -1 marks a τ the router refused
        (its point is NaN and leaves the hull).
      weights: [B, N] non-negative query weights (bootstrap counts), rows summing to N.

    Returns:
      (accuracy, cost): [B, T] each.
    """
    refused = (choices < 0).all(axis=1)  # [T]
    safe = np.where(choices < 0, 0, choices)
    rows = np.arange(scores.shape[0])[None, :]
    acc_q, cost_q = scores[rows, safe], costs[rows, safe]  # [T, N]
    total = weights.sum(axis=1, keepdims=True)
    acc = weights @ acc_q.T / total  # [B, T]
    cost = weights @ cost_q.T / total
    acc[:, refused] = np.nan
    cost[:, refused] = np.nan
    return acc, cost


def paired_aiq(scores: np.ndarray, costs: np.ndarray, choices: Mapping[str, np.ndarray],
               reference: str, cost_range: tuple[float, float], n_boot: int = 1000,
               alpha: float = 0.05, seed: int = 0) -> dict[str, dict[str, float]]:
    """AIQ(reference) − AIQ(r) for every other router r, with a paired percentile interval.

    Args:
      scores, costs: [N, M] test outcomes.
      choices: router name -> [T, N] model per τ and query (-1 rows: refused τ).
      reference: the router every other one is compared with (a key of `choices`).
      cost_range: AIQ's cost normalisation (the same for every router and resample).
      n_boot, alpha, seed: resamples, two-sided level, and the resampling seed.

    Returns:
      {router: {"diff", "lo", "hi"}} for every router but the reference; diff is the difference
      on the test split itself, (lo, hi) the (alpha/2, 1 − alpha/2) bootstrap percentiles.
    """
    n = scores.shape[0]
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n, np.full(n, 1.0 / n), size=n_boot).astype(np.float64)
    weights = np.concatenate([np.ones((1, n)), counts])  # row 0: the split as it is
    curves = {}
    for name, ch in choices.items():
        acc, cost = weighted_points(scores, costs, np.asarray(ch), weights)
        curves[name] = np.array([metrics.aiq(c, a, cost_range) for c, a in zip(cost, acc,
                                                                                strict=True)])
    ref = curves[reference]
    out = {}
    for name, curve in curves.items():
        if name == reference:
            continue
        diff = ref - curve  # [1 + n_boot]
        lo, hi = np.quantile(diff[1:], [alpha / 2, 1 - alpha / 2])
        out[name] = {"diff": float(diff[0]), "lo": float(lo), "hi": float(hi)}
    return out


def crossfit_aiq(scores: np.ndarray, costs: np.ndarray, choices: Mapping[str, np.ndarray],
                 cost_range: tuple[float, float], repeats: int = 20,
                 seed: int = 0) -> dict[str, float]:
    """Each router's AIQ with its hull chosen on one half of the queries, measured on the other.

    AIQ's hull keeps, among a router's settings, those that look best on the very queries they
    are measured on; the more distinct settings a router has (a continuous knob swept finely
    reaches hundreds), the more of that luck it collects. Here the queries are split into two
    random halves (the same splits for every router); the settings that are hull vertices on one
    half are kept, and on the other half the area under the polyline through those settings
    (`metrics.polyline_area`: no point skipped, so a lucky one that falls back counts) is
    measured. Both ways, averaged over `repeats` splits.

    Args:
      scores, costs: [N, M] test outcomes.
      choices: router name -> [T, N] model per setting (τ) and query (-1 rows: refused).
      cost_range: AIQ's cost normalisation.
      repeats, seed: random splits, and their seed.

    Returns:
      {router: cross-fitted AIQ}.
    """
    n = scores.shape[0]
    rng = np.random.default_rng(seed)
    halves = []
    for _ in range(repeats):
        half = np.zeros(n, bool)
        half[rng.permutation(n)[: n // 2]] = True
        halves += [half, ~half]  # rows 2r and 2r + 1 are complements
    weights = np.stack(halves).astype(np.float64)  # [2R, N]
    out = {}
    for name, ch in choices.items():
        acc, cost = weighted_points(scores, costs, np.asarray(ch), weights)  # [2R, T] each
        values = []
        for pick in range(2 * repeats):
            measure = pick ^ 1  # the complementary half
            kept = metrics.aiq_hull(cost[pick], acc[pick], cost_range)[0]
            values.append(metrics.polyline_area(cost[measure, kept], acc[measure, kept],
                                                cost_range))
        out[name] = float(np.mean(values))
    return out


def paired_markdown(paired: Mapping) -> str:
    """A report section: one row per router with AIQ(reference) − AIQ(router) and its interval."""
    ref, level = paired["reference"], 100 * (1 - paired["alpha"])
    lines = [f"\n## Paired AIQ differences ({ref} minus each router; {paired['n_boot']} "
             f"test resamples, {level:.0f}% interval)\n",
             "| router | difference | interval | the test split can tell them apart |",
             "|---|---|---|---|"]
    for name, d in sorted(paired["routers"].items(), key=lambda kv: kv[1]["diff"]):
        apart = "yes" if d["lo"] > 0 or d["hi"] < 0 else "no"
        lines.append(f"| {name} | {d['diff']:+.4f} | [{d['lo']:+.4f}, {d['hi']:+.4f}] | {apart} |")
    return "\n".join(lines) + "\n"


def crossfit_markdown(crossfit: Mapping) -> str:
    """A report section: every router's cross-fitted AIQ, highest first."""
    lines = [f"\n## Cross-fitted AIQ (each router's hull chosen on one half of the test split, "
             f"measured on the other; {crossfit['repeats']} random halvings)\n",
             "| router | cross-fitted AIQ |", "|---|---|"]
    for name, value in sorted(crossfit["routers"].items(), key=lambda kv: -kv[1]):
        lines.append(f"| {name} | {value:.4f} |")
    return "\n".join(lines) + "\n"
