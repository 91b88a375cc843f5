"""The interface every baseline router shares, and the helpers they have in common.

A router is a frozen dataclass with two methods:

    fitted = router.fit(tune)                 # tune: RouterInputs of a labelled split
    decisions = fitted.route(test, taus)      # Decisions(choices [T, N], feasible [T], setting [T])

`fit` never sees τ: it records whatever the method needs (e.g. the tuning split's accuracy and cost
of every candidate setting), and `route` picks a setting per requested τ, so one fitted router
serves any τ grid, as PROTEUS does. `fit` returns a new router and leaves `self` unchanged.

Label discipline: no router reads `scores`/`costs` of the routed split. Every router routes from
`p_hat`, `c_hat`, `features` and (the task-table router) `tasks` alone; pass
`test.without_labels()` to make that checkable.
"""

from __future__ import annotations

import dataclasses
from typing import Protocol, Self

import numpy as np

from proteus.data.dataset import RoutingDataset

# Relative tolerance under which two objective values count as a tie (broken to the cheaper model).
TIE_RTOL = 1e-12


@dataclasses.dataclass(frozen=True, eq=False)
class RouterInputs:
    """What a router may look at for N queries and M models; any field may be None.

    Attributes:
      scores: [N, M] float realised scores in [0, 1] (labels).
      costs: [N, M] float realised USD costs (labels).
      p_hat: [N, M] float predicted correctness in [0, 1].
      c_hat: [N, M] float predicted USD cost.
      features: [N, D] float query features.
      tasks: [N] str task family of each query ("" when unknown). Query metadata, not a label:
        `without_labels` keeps it, but at serving time a router has it only if the client sends it.
    """

    scores: np.ndarray | None = None
    costs: np.ndarray | None = None
    p_hat: np.ndarray | None = None
    c_hat: np.ndarray | None = None
    features: np.ndarray | None = None
    tasks: np.ndarray | None = None

    @classmethod
    def from_dataset(cls, ds: RoutingDataset, p_hat=None, c_hat=None) -> RouterInputs:
        """Inputs of a `RoutingDataset` split, with the shared predictor's outputs if given."""
        as64 = lambda a: None if a is None else np.asarray(a, np.float64)
        tasks = np.asarray(ds.tasks).astype(str)
        return cls(ds.scores, ds.costs, as64(p_hat), as64(c_hat), ds.features, tasks)

    def without_labels(self) -> RouterInputs:
        """A copy with `scores` and `costs` removed (what a router may see at serving time)."""
        return dataclasses.replace(self, scores=None, costs=None)

    @property
    def n_queries(self) -> int:
        for name in ("scores", "p_hat", "costs", "c_hat", "features", "tasks"):
            arr = getattr(self, name)
            if arr is not None:
                return int(np.shape(arr)[0])
        raise ValueError("RouterInputs is empty")

    def need(self, who: str, *names: str) -> tuple[np.ndarray, ...]:
        """The named fields as float64 arrays; raise ValueError naming `who` and a missing field."""
        out = []
        for name in names:
            arr = getattr(self, name)
            if arr is None:
                raise ValueError(f"{who} needs RouterInputs.{name}, which is None")
            out.append(np.asarray(arr, dtype=np.float64))
        return tuple(out)

    def need_tasks(self, who: str) -> np.ndarray:
        """[N] str task labels; raise ValueError naming `who` when they are None or all ""."""
        if self.tasks is None:
            raise ValueError(f"{who} needs RouterInputs.tasks, which is None")
        tasks = np.asarray(self.tasks).astype(str)
        if tasks.size and not np.any(tasks != ""):
            raise ValueError(f"{who} needs RouterInputs.tasks, but every task label is empty")
        return tasks


@dataclasses.dataclass(frozen=True, eq=False)
class Decisions:
    """A router's answer for T targets and N queries.

    Attributes:
      choices: [T, N] int32 model index per τ and query.
      feasible: [T] bool, False where the router could not reach τ on its tuning data (it then
        routes at its maximum-quality setting).
      setting: [T] float64 the tuned knob per τ (λ, μ, threshold, mix fraction; nan if none).
    """

    choices: np.ndarray
    feasible: np.ndarray
    setting: np.ndarray

    @classmethod
    def make(cls, choices, feasible, setting=None) -> Decisions:
        choices = np.asarray(choices, dtype=np.int32)
        feasible = np.asarray(feasible, dtype=bool)
        if setting is None:
            setting = np.full(feasible.shape, np.nan)
        if choices.ndim != 2 or choices.shape[0] != feasible.shape[0]:
            raise ValueError(f"choices {choices.shape} and feasible {feasible.shape} disagree")
        return cls(choices, feasible, np.asarray(setting, dtype=np.float64))


class Router(Protocol):
    """The protocol every baseline implements (see the module docstring)."""

    @property
    def name(self) -> str: ...

    def fit(self, tune: RouterInputs) -> Self: ...

    def route(self, test: RouterInputs, taus) -> Decisions: ...


def taus_array(taus) -> np.ndarray:
    """[T] float64 targets from a scalar, list or array."""
    return np.atleast_1d(np.asarray(taus, dtype=np.float64))


def argmax_cheapest(objective: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Per row the argmax of `objective`, the lowest `cost` among ties. [..., M] -> [...] int."""
    best = objective.max(axis=-1, keepdims=True)
    tie = objective >= best - TIE_RTOL * np.maximum(1.0, np.abs(best))
    return np.argmin(np.where(tie, cost, np.inf), axis=-1)


def realised_table(scores: np.ndarray, costs: np.ndarray, choices: np.ndarray):
    """Mean realised (accuracy [G], cost [G]) of G candidate settings' choices [G, N]."""
    rows = np.arange(scores.shape[0])[None, :]
    return scores[rows, choices].mean(axis=1), costs[rows, choices].mean(axis=1)


def pick_settings(accuracy: np.ndarray, cost: np.ndarray, taus: np.ndarray, eps: float = 1e-9):
    """Per τ the cheapest candidate setting whose tuning accuracy reaches τ.

    Args:
      accuracy: [G] tuning-split accuracy of each candidate setting.
      cost: [G] tuning-split mean cost.
      taus: [T] targets.
      eps: float slack absorbing rounding of τ grids.

    Returns:
      (index [T] int, feasible [T] bool). Where no setting reaches τ, the index is the most
      accurate setting (cheapest among ties) and feasible is False.
    """
    ok = accuracy[None, :] >= taus[:, None] - eps  # [T, G]
    masked = np.where(ok, cost[None, :], np.inf)
    cheapest = np.argmin(masked, axis=1)
    top = int(argmax_cheapest(accuracy[None, :], cost[None, :])[0])
    feasible = ok.any(axis=1)
    return np.where(feasible, cheapest, top), feasible
