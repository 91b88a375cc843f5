"""Task-table router: per task, the best model mix (DESIGN.md section 5, where the data has tasks).

Training-free: per task, each model's mean score and mean cost on the reference (training) split;
at trade-off α each task routes to argmax_m α·acc − (1 − α)·cost/c_ref (see `tables`, "global"
normalisation, so α/(1 − α) is one price of accuracy for every task and the α sweep traces the
per-task convex hulls jointly). α per τ is the cheapest α whose realised accuracy on the labelled
`fit` split reaches τ; at α = 1 every task goes to its most accurate training model.

This router reads `RouterInputs.tasks` of the routed queries: query metadata, not a label, but at
serving time it exists only if the client sends the task with the query. Queries whose task is ""
(unknown) or absent from the reference split share one extra row: the reference's ""-task queries
shrunk toward the global means, i.e. the global means when there are none.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from proteus.evaluation.baselines.base import Decisions, RouterInputs
from proteus.evaluation.baselines.tables import GroupPolicy, default_alphas, fit_policy
from proteus.tasks import UNKNOWN, TaskVocabulary


def task_index(tasks: np.ndarray, vocab: tuple[str, ...]) -> np.ndarray:
    """[N] int row of each task in `vocab`; "" and unseen tasks (`TaskVocabulary.label_ids`'s
    UNKNOWN) get the extra row len(vocab)."""
    ids = TaskVocabulary(vocab).label_ids(tasks).astype(np.int64)
    return np.where(ids == UNKNOWN, len(vocab), ids)


@dataclasses.dataclass(frozen=True, eq=False)
class TaskTableRouter:
    """Per-task table router; see the module docstring.

    Attributes:
      reference: labelled reference split (needs tasks, scores, costs): the training split.
      alphas: [A] candidate α (1: accuracy only, 0: cost only).
      prior: pseudo-counts shrinking each task's per-model means toward the global means.
      normalise: "global" (cost / c_ref) or "minmax" (per task; see `tables`).
      vocab: set by `fit`: the reference split's non-empty task names, sorted.
      policy: set by `fit`: the per-task tables and each α's tuning accuracy and cost.
    """

    reference: RouterInputs
    alphas: np.ndarray = dataclasses.field(default_factory=default_alphas)
    prior: float = 5.0
    normalise: str = "global"
    vocab: tuple[str, ...] | None = None
    policy: GroupPolicy | None = None
    name: str = "task_table"

    def fit(self, tune: RouterInputs) -> TaskTableRouter:
        ref_t = self.reference.need_tasks(self.name)
        ref_s, ref_c = self.reference.need(self.name, "scores", "costs")
        tune_t = tune.need_tasks(self.name)
        tune_s, tune_c = tune.need(self.name, "scores", "costs")
        vocab = TaskVocabulary.of_labels(ref_t.tolist()).names
        policy = fit_policy(
            (task_index(ref_t, vocab), ref_s, ref_c),
            (task_index(tune_t, vocab), tune_s, tune_c),
            len(vocab) + 1,
            self.alphas,
            self.prior,
            self.normalise,
        )
        return dataclasses.replace(self, vocab=vocab, policy=policy)

    def route(self, test: RouterInputs, taus) -> Decisions:
        if self.policy is None:
            raise ValueError(f"{self.name}: call fit first")
        return self.policy.route(task_index(test.need_tasks(self.name), self.vocab), taus)
