"""Tests for proteus.evaluation.baselines.base."""

import numpy as np
import pytest

from proteus.data.dataset import RoutingDataset
from proteus.evaluation.baselines import Decisions, RouterInputs, pick_settings
from proteus.evaluation.baselines.base import argmax_cheapest, realised_table, taus_array


def test_router_inputs_need_without_labels_and_size(toy):
    assert toy.n_queries == 4
    scores, p_hat = toy.need("x", "scores", "p_hat")
    assert scores.dtype == np.float64 and p_hat.shape == (4, 2)
    blind = toy.without_labels()
    assert blind.scores is None and blind.costs is None and blind.n_queries == 4
    np.testing.assert_array_equal(blind.need_tasks("x"), ["easy", "hard", "hard", "easy"])
    assert RouterInputs(tasks=np.array(["a", ""])).n_queries == 2
    with pytest.raises(ValueError, match="carrot needs RouterInputs.scores"):
        blind.need("carrot", "scores")
    with pytest.raises(ValueError, match="empty"):
        _ = RouterInputs().n_queries
    with pytest.raises(ValueError, match="task_table needs RouterInputs.tasks, which is None"):
        RouterInputs(features=toy.features).need_tasks("task_table")
    with pytest.raises(ValueError, match="every task label is empty"):
        RouterInputs(tasks=np.array(["", ""])).need_tasks("task_table")


def test_router_inputs_from_dataset(toy):
    ds = RoutingDataset(
        name="toy",
        models=("a", "b"),
        scores=toy.scores,
        costs=toy.costs,
        query_ids=np.array(["0", "1", "2", "3"]),
        tasks=np.array(["a", "b", "b", ""]),
        features=toy.features,
    )
    inputs = RouterInputs.from_dataset(ds, p_hat=toy.p_hat)
    assert inputs.p_hat is not None and inputs.c_hat is None
    np.testing.assert_array_equal(inputs.features, toy.features)
    # tasks are query metadata: filled from the dataset and kept without labels
    np.testing.assert_array_equal(inputs.without_labels().tasks, ["a", "b", "b", ""])


def test_argmax_cheapest_breaks_ties_by_cost():
    obj = np.array([[0.5, 0.5, 0.1], [0.2, 0.9, 0.9]])
    cost = np.array([[3.0, 1.0, 0.0], [0.0, 5.0, 4.0]])
    np.testing.assert_array_equal(argmax_cheapest(obj, cost), [1, 2])


def test_realised_table():
    scores = np.array([[0.0, 1.0], [1.0, 1.0]])
    costs = np.array([[1.0, 3.0], [1.0, 3.0]])
    acc, cost = realised_table(scores, costs, np.array([[0, 0], [1, 0]]))
    np.testing.assert_allclose(acc, [0.5, 1.0])
    np.testing.assert_allclose(cost, [1.0, 2.0])


def test_pick_settings_cheapest_reaching_else_most_accurate():
    acc = np.array([0.5, 0.75, 1.0, 1.0])
    cost = np.array([1.0, 3.25, 6.0, 5.5])
    idx, feas = pick_settings(acc, cost, np.array([0.4, 0.7, 0.9, 1.2]))
    np.testing.assert_array_equal(idx, [0, 1, 3, 3])  # τ=1.2: most accurate, cheaper of the tie
    np.testing.assert_array_equal(feas, [True, True, True, False])


def test_decisions_make_and_taus_array():
    d = Decisions.make([[0, 1]], [True])
    assert d.choices.dtype == np.int32 and np.isnan(d.setting).all()
    with pytest.raises(ValueError, match="disagree"):
        Decisions.make([[0, 1]], [True, False])
    np.testing.assert_array_equal(taus_array(0.9), [0.9])
