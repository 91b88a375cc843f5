"""The zero-router baseline and its cheapest two-model mix (DESIGN.md section 5).

The oracle and the fixed models need no router object: their numbers come from the routed split's
labels (`RoutingDataset.oracle`, `best_fixed`) and `proteus.pipeline.baselines.constant_router`.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from proteus.evaluation.baselines.base import (
    Decisions,
    RouterInputs,
    argmax_cheapest,
    taus_array,
)


def cheapest_mix(accuracy: np.ndarray, cost: np.ndarray, tau: float) -> tuple[int, int, float]:
    """Cheapest convex mix of at most two models whose mixed accuracy reaches τ.

    Args:
      accuracy: [M] model accuracies.
      cost: [M] model mean costs.
      tau: the target.

    Returns:
      (low, high, fraction): send `fraction` of the queries to `high`, the rest to `low`. When no
      mix reaches τ, (best, best, 1.0) with `best` the most accurate (cheapest among ties) model and
      fraction = nan, so callers can tell.
    """
    best_cost, best = math.inf, None
    m = accuracy.size
    for i in range(m):
        if accuracy[i] >= tau - 1e-9 and cost[i] < best_cost:
            best_cost, best = float(cost[i]), (i, i, 0.0)
        for j in range(m):
            if accuracy[i] < tau < accuracy[j]:
                frac = (tau - accuracy[i]) / (accuracy[j] - accuracy[i])
                mix = (1 - frac) * cost[i] + frac * cost[j]
                if mix < best_cost:
                    best_cost, best = float(mix), (i, j, float(frac))
    if best is None:
        top = int(argmax_cheapest(accuracy[None], cost[None])[0])
        return top, top, math.nan
    return best


@dataclasses.dataclass(frozen=True, eq=False)
class ZeroRouter:
    """RouterBench's zero-router: the cheapest convex mix of two fixed models reaching τ.

    The mix is chosen on the tuning split's per-model accuracy and cost. On the routed split it is
    realised deterministically: a permutation of the N query positions, fixed by `seed`, sends the
    first ceil(fraction * N) positions to the stronger model and the rest to the weaker one (the
    same queries for every τ with the same pair, so the realised fraction is exact).
    `Decisions.setting` is the share sent to the dearer model of the mix (0 when one model reaches
    τ alone; 1, with feasible False, when no mix does and everything goes to the best model).

    Attributes:
      seed: seeds the fixed permutation.
      tune_accuracy, tune_cost: set by `fit`: [M] per-model tuning accuracy and mean cost.
    """

    seed: int = 0
    tune_accuracy: np.ndarray | None = None
    tune_cost: np.ndarray | None = None
    name: str = "zero_router"

    def fit(self, tune: RouterInputs) -> ZeroRouter:
        scores, costs = tune.need(self.name, "scores", "costs")
        return dataclasses.replace(self, tune_accuracy=scores.mean(0), tune_cost=costs.mean(0))

    def route(self, test: RouterInputs, taus) -> Decisions:
        if self.tune_accuracy is None:
            raise ValueError(f"{self.name}: call fit first")
        taus = taus_array(taus)
        n = test.n_queries
        rank = np.empty(n, dtype=np.int64)
        rank[np.random.default_rng(self.seed).permutation(n)] = np.arange(n)
        choices = np.empty((taus.size, n), dtype=np.int32)
        feasible = np.empty(taus.size, dtype=bool)
        setting = np.empty(taus.size)
        for t, tau in enumerate(taus):
            low, high, frac = cheapest_mix(self.tune_accuracy, self.tune_cost, float(tau))
            feasible[t] = not math.isnan(frac)
            frac = 1.0 if math.isnan(frac) else frac
            n_high = min(n, math.ceil(frac * n - 1e-9))
            choices[t] = np.where(rank < n_high, high, low)
            setting[t] = frac
        return Decisions.make(choices, feasible, setting)
