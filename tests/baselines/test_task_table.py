"""Tests for the per-task table router."""

import numpy as np
import pytest

from proteus.evaluation import metrics
from proteus.evaluation.baselines import RouterInputs, TaskTableRouter, make_router


def _two_tasks() -> RouterInputs:
    """Task A: model 0 right on both queries, model 1 on one; task B the other way round.

    Costs 1 and 3 (c_ref 3). Task A always routes to model 0 (better and cheaper); task B
    switches to model 1 when α·(1 − 0.5) > (1 − α)·(3 − 1)/3, i.e. α > 4/7:
      α <= 4/7: accuracy 0.75, cost 1;   α > 4/7: accuracy 1.0, cost 2.
    """
    scores = np.array([[1, 1], [1, 0], [1, 1], [0, 1]], float)
    costs = np.tile([1.0, 3.0], (4, 1))
    return RouterInputs(scores, costs, tasks=np.array(["A", "A", "B", "B"]))


def test_task_table_routes_each_task_to_its_best_model():
    ref = _two_tasks()
    router = TaskTableRouter(reference=ref, prior=0.0).fit(ref)
    assert router.vocab == ("A", "B")
    test = RouterInputs(tasks=np.array(["B", "A", "C", ""]))  # no labels, no features
    d = router.route(test, [0.7, 0.75, 0.9, 1.0, 1.01])
    # unseen "C" and unknown "" use the global row: equal accuracy 0.75, so the cheaper model 0
    np.testing.assert_array_equal(
        d.choices, [[0, 0, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0]]
    )
    np.testing.assert_array_equal(d.feasible, [True, True, True, True, False])
    assert d.setting[0] == 0.0 and 4 / 7 < d.setting[2] < 0.6
    assert d.setting[4] == d.setting[3]  # infeasible: the most accurate (cheapest) α
    acc, cost = metrics.realised(ref.scores, ref.costs, router.route(ref, [0.75, 1.0]).choices)
    np.testing.assert_allclose(acc, [0.75, 1.0])
    np.testing.assert_allclose(cost, [1.0, 2.0])


def test_task_table_is_registered_and_needs_tasks(toy):
    router = make_router("task_table", reference=toy).fit(toy)
    d = router.route(toy.without_labels(), [1.0])
    np.testing.assert_array_equal(d.choices, [[0, 1, 1, 0]])  # easy: cheap model, hard: model 1
    with pytest.raises(ValueError, match="task_table needs RouterInputs.tasks, which is None"):
        router.route(RouterInputs(features=toy.features), [0.5])
    blank = RouterInputs(toy.scores, toy.costs, tasks=np.array([""] * 4))
    with pytest.raises(ValueError, match="every task label is empty"):
        TaskTableRouter(reference=blank).fit(toy)
    with pytest.raises(ValueError, match="call fit"):
        TaskTableRouter(reference=toy).route(toy, [0.5])
