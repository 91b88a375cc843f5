"""Group-table routing shared by the training-free cluster and task-table baselines.

Both routers put every query in one of G groups (its nearest k-means centroid, or its task) and
route it by a [G, M] table of per-group mean score and mean cost measured on a labelled reference
split (the training split). One trade-off knob α in [0, 1] picks, per group,

    m*(g, α) = argmax_m  α·acc_n[g, m] − (1 − α)·cost_n[g, m]      (ties to the cheaper model)

where the normalisation is either
  * "minmax" (Avengers-Pro): acc and cost min-max scaled across the models of each group, so α
    means the same trade-off in every group whatever its accuracy or cost spread; or
  * "global": raw accuracy and cost / c_ref, c_ref the reference split's highest per-model mean
    cost (the plug-in rule's scale), so α/(1 − α) is a price of accuracy shared by all groups.

`fit_policy` evaluates every α of a grid on a labelled tuning split (realised accuracy and mean
cost), and `GroupPolicy.route` picks per τ the cheapest α reaching τ with `base.pick_settings`.

Small groups' per-model means are shrunk toward the model's mean over the whole reference split
with `prior` pseudo-counts, (n·mean_g + prior·mean_all) / (n + prior), so a group of a handful of
queries does not elect the model that happened to be right on them (the winner's curse over M
noisy means); an empty group is the global row.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from proteus.evaluation.baselines.base import (
    Decisions,
    argmax_cheapest,
    pick_settings,
    realised_table,
    taus_array,
)

NORMALISATIONS = ("minmax", "global")


def default_alphas() -> np.ndarray:
    """[A] α grid: 0, α = λ/(1 + λ) for 401 λ log-spaced in [1e-4, 1e4], and 1.

    Uniform in log(α/(1 − α)) rather than in α, so both ends are resolved: with "global"
    normalisation the useful λ = α/(1 − α) spans accuracy gaps of 1e-3 against cost gaps of ~1.
    """
    lam_grid = np.geomspace(1e-4, 1e4, 401)
    return np.concatenate([[0.0], lam_grid / (1.0 + lam_grid), [1.0]])


def group_means(
    groups: np.ndarray, n_groups: int, scores: np.ndarray, costs: np.ndarray, prior: float
) -> tuple[np.ndarray, np.ndarray]:
    """Per-group per-model mean score and cost, shrunk toward the global means.

    Args:
      groups: [N] int group of each reference query, in [0, n_groups).
      n_groups: G.
      scores: [N, M] realised scores.
      costs: [N, M] realised costs.
      prior: pseudo-counts of the global mean in each group (0: plain group means).

    Returns:
      (acc [G, M], cost [G, M]) float64; a group with no queries gets the global means.
    """
    onehot = (groups[:, None] == np.arange(n_groups)[None, :]).astype(np.float64)  # [N, G]
    n = onehot.sum(axis=0)[:, None]  # [G, 1]
    # weight of the group's own mean; 0 for an empty group even when prior == 0
    w = np.divide(n, n + prior, out=np.zeros_like(n), where=n + prior > 0)
    safe_n = np.maximum(n, 1.0)
    acc = w * (onehot.T @ scores) / safe_n + (1.0 - w) * scores.mean(axis=0)[None, :]
    cost = w * (onehot.T @ costs) / safe_n + (1.0 - w) * costs.mean(axis=0)[None, :]
    return acc, cost


def _minmax(x: np.ndarray) -> np.ndarray:
    """Rows of [G, M] scaled to [0, 1] across models; a constant row becomes 0."""
    lo = x.min(axis=1, keepdims=True)
    span = x.max(axis=1, keepdims=True) - lo
    return np.divide(x - lo, span, out=np.zeros_like(x), where=span > 0)


def table_choices(
    acc: np.ndarray, cost: np.ndarray, alphas: np.ndarray, normalise: str, c_ref: float
) -> np.ndarray:
    """The model each group routes to at each α (see the module docstring).

    Args:
      acc: [G, M] group mean scores.
      cost: [G, M] group mean costs (USD).
      alphas: [A] trade-off weights in [0, 1] (1: accuracy only).
      normalise: "minmax" or "global".
      c_ref: cost scale for "global" (USD).

    Returns:
      [A, G] int model index; ties go to the cheaper model (by the group's mean cost).
    """
    if normalise == "minmax":
        acc_n, cost_n = _minmax(acc), _minmax(cost)
    elif normalise == "global":
        acc_n, cost_n = acc, cost / c_ref
    else:
        raise ValueError(f"unknown normalisation {normalise!r}; expected one of {NORMALISATIONS}")
    alphas = np.asarray(alphas, np.float64)[:, None, None]
    objective = alphas * acc_n[None] - (1.0 - alphas) * cost_n[None]  # [A, G, M]
    return argmax_cheapest(objective, np.broadcast_to(cost, objective.shape))


@dataclasses.dataclass(frozen=True, eq=False)
class GroupPolicy:
    """A fitted group table: per α a model per group, and each α's tuning accuracy and cost.

    Attributes:
      alphas: [A] the α grid.
      choice: [A, G] int model of each group at each α.
      tune_accuracy: [A] realised accuracy of each α on the tuning split.
      tune_cost: [A] realised mean cost of each α on the tuning split.
    """

    alphas: np.ndarray
    choice: np.ndarray
    tune_accuracy: np.ndarray
    tune_cost: np.ndarray

    def route(self, groups: np.ndarray, taus) -> Decisions:
        """Route queries in `groups` ([N] int) at the cheapest α reaching each τ on tuning."""
        idx, feasible = pick_settings(self.tune_accuracy, self.tune_cost, taus_array(taus))
        return Decisions.make(self.choice[idx][:, groups], feasible, self.alphas[idx])


def fit_policy(
    reference: tuple[np.ndarray, np.ndarray, np.ndarray],
    tune: tuple[np.ndarray, np.ndarray, np.ndarray],
    n_groups: int,
    alphas: np.ndarray,
    prior: float,
    normalise: str,
) -> GroupPolicy:
    """Group tables from `reference`, each α evaluated on `tune`.

    Args:
      reference: (groups [R] int, scores [R, M], costs [R, M]) of the reference split.
      tune: (groups [N] int, scores [N, M], costs [N, M]) of the tuning split.
      n_groups: G; every group index is in [0, G).
      alphas: [A] α grid.
      prior: shrinkage pseudo-counts (see `group_means`).
      normalise: "minmax" or "global".

    Returns:
      The fitted `GroupPolicy`.
    """
    ref_groups, ref_scores, ref_costs = reference
    acc, cost = group_means(ref_groups, n_groups, ref_scores, ref_costs, prior)
    c_ref = float(max(ref_costs.mean(axis=0).max(), 1e-12))
    alphas = np.asarray(alphas, np.float64)
    choice = table_choices(acc, cost, alphas, normalise, c_ref)
    tune_groups, tune_scores, tune_costs = tune
    tune_acc, tune_cost = realised_table(tune_scores, tune_costs, choice[:, tune_groups])
    return GroupPolicy(alphas, choice, tune_acc, tune_cost)
