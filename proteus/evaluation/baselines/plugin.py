"""Predictor-based baselines: PROTEUS-plugin, CARROT-style and OmniRouter-style routers.

All three route with the shared predictor's p_hat [N, M] and c_hat [N, M] and the plug-in rule

    m*(λ) = argmax_m  λ·p̂_m − ĉ_m / c_ref          (ties to the lower ĉ; λ = inf: argmax p̂)

and differ in how λ is set for a requested τ:
  * PROTEUS-plugin: on a labelled split (the PROTEUS policy split), the cheapest λ of a log grid
    whose REALISED accuracy reaches τ; no RL policy.
  * CARROT: the same search over CARROT's parameterisation argmax (1−μ)p̂ − μĉ/c_ref, μ on a
    uniform grid in [0, 1] (λ = (1−μ)/μ), tuned on validation.
  * OmniRouter: Lagrangian dual decomposition on the PREDICTED p̂ and ĉ of the routed batch itself:
    the smallest λ whose choices have mean p̂ >= τ; no realised labels at all.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from proteus.evaluation import frontier
from proteus.evaluation.baselines.base import (
    Decisions,
    RouterInputs,
    argmax_cheapest,
    pick_settings,
    realised_table,
    taus_array,
)


def default_lam_grid() -> np.ndarray:
    """[G] λ grid: 0, 200 log-spaced values in [1e-2, 1e4], and inf (pure quality)."""
    return np.concatenate([[0.0], np.geomspace(1e-2, 1e4, 200), [np.inf]])


def plugin_choices(p_hat: np.ndarray, c_hat: np.ndarray, lam_grid, c_ref: float) -> np.ndarray:
    """Plug-in choices for each λ.

    Args:
      p_hat: [N, M] predicted correctness.
      c_hat: [N, M] predicted cost (USD).
      lam_grid: [G] non-negative λ values (inf allowed).
      c_ref: the cost scale (USD).

    Returns:
      [G, N] int argmax_m λ p̂ − ĉ / c_ref, ties to the lower ĉ.
    """
    lam_grid = np.atleast_1d(np.asarray(lam_grid, np.float64))
    cost = c_hat / c_ref
    out = np.empty((lam_grid.size, p_hat.shape[0]), dtype=np.int64)
    for g, lam in enumerate(lam_grid):  # one [N, M] objective at a time bounds memory
        obj = p_hat if np.isinf(lam) else lam * p_hat - cost
        out[g] = argmax_cheapest(obj, cost)
    return out


@dataclasses.dataclass(frozen=True, eq=False)
class PluginRouter:
    """Plug-in rule with λ per τ chosen on a labelled split (PROTEUS-plugin).

    Attributes:
      lam_grid: [G] candidate λ values.
      c_ref: cost scale; None: the highest per-model mean realised cost on the `fit` split.
      tune_accuracy: set by `fit`: [G] realised accuracy of each λ on the `fit` split.
      tune_cost: set by `fit`: [G] realised mean cost of each λ.
    """

    name: str = "proteus_plugin"
    lam_grid: np.ndarray = dataclasses.field(default_factory=default_lam_grid)
    c_ref: float | None = None
    tune_accuracy: np.ndarray | None = None
    tune_cost: np.ndarray | None = None

    def fit(self, tune: RouterInputs) -> PluginRouter:
        scores, costs, p_hat, c_hat = tune.need(self.name, "scores", "costs", "p_hat", "c_hat")
        c_ref = float(costs.mean(0).max()) if self.c_ref is None else self.c_ref
        choices = plugin_choices(p_hat, c_hat, self.lam_grid, c_ref)
        acc, cost = realised_table(scores, costs, choices)
        return dataclasses.replace(self, c_ref=c_ref, tune_accuracy=acc, tune_cost=cost)

    def _setting(self, idx: np.ndarray) -> np.ndarray:
        return np.asarray(self.lam_grid, np.float64)[idx]

    def route(self, test: RouterInputs, taus) -> Decisions:
        if self.tune_accuracy is None:
            raise ValueError(f"{self.name}: call fit first")
        p_hat, c_hat = test.need(self.name, "p_hat", "c_hat")
        idx, feasible = pick_settings(self.tune_accuracy, self.tune_cost, taus_array(taus))
        uniq, inverse = np.unique(idx, return_inverse=True)
        per_setting = plugin_choices(p_hat, c_hat, np.asarray(self.lam_grid)[uniq], self.c_ref)
        return Decisions.make(per_setting[inverse], feasible, self._setting(idx))


def mus_to_lam_grid(mus) -> np.ndarray:
    """CARROT's μ (cost weight) to the plug-in λ: (1−μ)p̂ − μĉ ∝ λp̂ − ĉ with λ = (1−μ)/μ."""
    mus = np.asarray(mus, np.float64)
    with np.errstate(divide="ignore"):
        return np.where(mus > 0, (1.0 - mus) / np.where(mus > 0, mus, 1.0), np.inf)


@dataclasses.dataclass(frozen=True, eq=False)
class CarrotRouter(PluginRouter):
    """CARROT-style plug-in: argmax (1−μ)p̂ − μ ĉ/c_ref, μ grid-searched per τ on validation.

    Attributes:
      mus: [G] candidate μ in [0, 1] (0: pure quality, 1: pure cost); overrides `lam_grid`.
    """

    name: str = "carrot"
    mus: np.ndarray = dataclasses.field(default_factory=lambda: np.linspace(0.0, 1.0, 201))

    def __post_init__(self) -> None:
        object.__setattr__(self, "lam_grid", mus_to_lam_grid(self.mus))

    def _setting(self, idx: np.ndarray) -> np.ndarray:
        return np.asarray(self.mus, np.float64)[idx]


@dataclasses.dataclass(frozen=True, eq=False)
class OmniRouter:
    """OmniRouter-style dual decomposition over the routed batch's predictions (no labels).

    For each τ the batch problem `min mean ĉ  s.t.  mean p̂ >= τ` is relaxed to per-query
    `argmax λ p̂ − ĉ`; λ is the smallest value meeting the predicted constraint, found exactly from
    the breakpoints of the Lagrangian (`frontier.upgrade_path`) rather than by bisection. Where even
    argmax p̂ has mean p̂ < τ the router declares τ infeasible and routes at argmax p̂.
    """

    name: str = "omnirouter"

    def fit(self, tune: RouterInputs) -> OmniRouter:
        del tune  # tuned on the routed batch itself
        return self

    def route(self, test: RouterInputs, taus) -> Decisions:
        p_hat, c_hat = test.need(self.name, "p_hat", "c_hat")
        taus = taus_array(taus)
        path = frontier.upgrade_path(p_hat, c_hat)
        choices = np.empty((taus.size, p_hat.shape[0]), dtype=np.int64)
        feasible = np.empty(taus.size, dtype=bool)
        for t, tau in enumerate(taus):
            choices[t], feasible[t] = frontier.path_choices(path, float(tau))
        return Decisions.make(choices, feasible)
