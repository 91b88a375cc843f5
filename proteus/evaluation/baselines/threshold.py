"""RouteLLM-style strong/weak threshold router (DESIGN.md section 5).

The strong model is the most accurate model on the tuning split (the best fixed model). A query
goes to the strong model when its score s exceeds a threshold, else to the weak model, where

    s = p̂_strong − p̂_weak            ("gap": the predicted gain of the strong model), or
    s = p̂_strong · (1 − p̂_weak)     ("win": P(strong right, weak wrong) if independent).

Candidate thresholds are the tuning split's score quantiles (plus −inf: all strong), so every
routed fraction from 0 to 1 is available; per τ the cheapest threshold whose tuning accuracy
reaches τ is used, and its threshold VALUE is applied to the routed split (as RouteLLM calibrates
thresholds). The weak model is chosen on the tuning split too: among models cheaper than the
strong one, the one whose threshold curve has the largest AIQ over [cheapest model cost, strong
cost] (`metrics.aiq`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from proteus.evaluation import metrics
from proteus.evaluation.baselines.base import (
    Decisions,
    RouterInputs,
    argmax_cheapest,
    pick_settings,
    realised_table,
    taus_array,
)


def strong_weak_score(p_hat: np.ndarray, strong: int, weak: int, kind: str) -> np.ndarray:
    """[N] routing score of each query (higher: more reason to use the strong model)."""
    ps, pw = p_hat[:, strong], p_hat[:, weak]
    if kind == "gap":
        return ps - pw
    if kind == "win":
        return ps * (1.0 - pw)
    raise ValueError(f"unknown threshold score {kind!r}; expected 'gap' or 'win'")


def _threshold_curve(scores, costs, s: np.ndarray, strong: int, weak: int, n_thresholds: int):
    """Candidate thresholds [G] and their tuning (accuracy [G], cost [G])."""
    quant = np.quantile(s, np.linspace(0.0, 1.0, n_thresholds))
    thresholds = np.unique(np.concatenate([[-np.inf], quant]))
    choices = np.where(s[None, :] > thresholds[:, None], strong, weak)
    acc, cost = realised_table(scores, costs, choices)
    return thresholds, acc, cost


@dataclasses.dataclass(frozen=True, eq=False)
class ThresholdRouter:
    """Strong/weak threshold router; see the module docstring.

    Attributes:
      score: "gap" or "win".
      weak: the weak model index, or None to choose it on the tuning split.
      n_thresholds: number of quantile thresholds tried.
      strong_model, weak_model, thresholds, tune_accuracy, tune_cost: set by `fit`.
    """

    score: str = "gap"
    weak: int | None = None
    n_thresholds: int = 201
    strong_model: int | None = None
    weak_model: int | None = None
    thresholds: np.ndarray | None = None
    tune_accuracy: np.ndarray | None = None
    tune_cost: np.ndarray | None = None
    name: str = "threshold"

    def fit(self, tune: RouterInputs) -> ThresholdRouter:
        scores, costs, p_hat = tune.need(self.name, "scores", "costs", "p_hat")
        acc_m, cost_m = scores.mean(0), costs.mean(0)
        strong = int(argmax_cheapest(acc_m[None], cost_m[None])[0])
        if self.weak is not None:
            candidates = [self.weak]
        else:
            candidates = [m for m in range(acc_m.size) if cost_m[m] < cost_m[strong]]
        best = None
        span = (float(cost_m.min()), float(max(cost_m[strong], cost_m.min() + 1e-12)))
        for weak in candidates or [strong]:
            s = strong_weak_score(p_hat, strong, weak, self.score)
            curve = _threshold_curve(scores, costs, s, strong, weak, self.n_thresholds)
            area = metrics.aiq(curve[2], curve[1], span)
            if best is None or area > best[0]:
                best = (area, weak, curve)
        _, weak, (thresholds, acc, cost) = best
        return dataclasses.replace(
            self,
            strong_model=strong,
            weak_model=weak,
            thresholds=thresholds,
            tune_accuracy=acc,
            tune_cost=cost,
        )

    def route(self, test: RouterInputs, taus) -> Decisions:
        if self.thresholds is None:
            raise ValueError(f"{self.name}: call fit first")
        (p_hat,) = test.need(self.name, "p_hat")
        idx, feasible = pick_settings(self.tune_accuracy, self.tune_cost, taus_array(taus))
        thr = self.thresholds[idx]
        s = strong_weak_score(p_hat, self.strong_model, self.weak_model, self.score)
        choices = np.where(s[None, :] > thr[:, None], self.strong_model, self.weak_model)
        return Decisions.make(choices, feasible, thr)
