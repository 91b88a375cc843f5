"""Label-only baselines: the oracle, fixed models and the zero-router (DESIGN.md section 5)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from proteus.baselines.base import (
    Decisions,
    RouterInputs,
    argmax_cheapest,
    taus_array,
)
from proteus.data.dataset import oracle_choice


@dataclasses.dataclass(frozen=True, eq=False)
class OracleRouter:
    """Per query the best realised score, cheapest among ties; reads the routed split's labels.

    The choice does not depend on τ; τ is declared feasible when the oracle's accuracy reaches it.
    """

    name: str = "oracle"

    def fit(self, tune: RouterInputs) -> OracleRouter:
        del tune  # nothing to learn
        return self

    def route(self, test: RouterInputs, taus) -> Decisions:
        scores, costs = test.need(self.name, "scores", "costs")
        taus = taus_array(taus)
        choice = oracle_choice(scores, costs)
        acc = scores[np.arange(scores.shape[0]), choice].mean()
        return Decisions.make(np.tile(choice, (taus.size, 1)), acc >= taus - 1e-9)


@dataclasses.dataclass(frozen=True, eq=False)
class FixedRouter:
    """Every query to one model; `model=None` picks the best model on the tuning split.

    Attributes:
      model: the model index, or None for the most accurate on `fit` (cheapest among ties).
      tune_accuracy: set by `fit`: [M] tuning accuracy of each model.
      tune_cost: set by `fit`: [M] tuning mean cost of each model.
    """

    model: int | None = None
    tune_accuracy: np.ndarray | None = None
    tune_cost: np.ndarray | None = None

    @property
    def name(self) -> str:
        return "best_fixed" if self.model is None else f"fixed:{self.model}"

    def fit(self, tune: RouterInputs) -> FixedRouter:
        scores, costs = tune.need(self.name, "scores", "costs")
        return dataclasses.replace(self, tune_accuracy=scores.mean(0), tune_cost=costs.mean(0))

    @property
    def chosen(self) -> int:
        """The routed model index (needs `fit` when `model` is None)."""
        if self.tune_accuracy is None:
            raise ValueError(f"{self.name}: call fit first")
        if self.model is not None:
            return self.model
        return int(argmax_cheapest(self.tune_accuracy[None], self.tune_cost[None])[0])

    def route(self, test: RouterInputs, taus) -> Decisions:
        taus = taus_array(taus)
        m = self.chosen
        choices = np.full((taus.size, test.n_queries), m)
        feasible = self.tune_accuracy[m] >= taus - 1e-9
        return Decisions.make(choices, feasible, np.full(taus.size, float(m)))


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
