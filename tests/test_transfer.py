"""Soft labels transferred from the old models' labels to a new model (`proteus.pipeline.transfer`).

Hand-checked on tables built so the answer is known: a new model that answers as old model 0
does, a cost twice old model 1's, and the cross-fitting of each soft label.
"""

import numpy as np
import pytest

from proteus.data.dataset import RoutingDataset
from proteus.data.labels import ModelLabels
from proteus.pipeline import transfer
from proteus.training import columns


def table(n=600, seed=0):
    """(old scores [n, 3], old costs [n, 3], tasks [n], fold [n]): old model 0 random, model 1
    agreeing with it 60% of the time, model 2 noise; three tasks; two folds."""
    rng = np.random.default_rng(seed)
    s0 = (rng.uniform(size=n) < 0.5).astype(np.float32)
    s1 = np.where(rng.uniform(size=n) < 0.6, s0, 1 - s0).astype(np.float32)
    s2 = (rng.uniform(size=n) < 0.5).astype(np.float32)
    costs = rng.uniform(1e-4, 1e-3, size=(n, 3)).astype(np.float32)
    tasks = np.asarray(["a", "b", "c"], object)[np.arange(n) % 3]
    return np.column_stack([s0, s1, s2]), costs, tasks, (np.arange(n) % 2).astype(np.int32)


def test_the_design_is_the_old_scores_and_a_task_one_hot():
    x = transfer.transfer_design(np.asarray([[1.0, 0.0], [0.5, 1.0], [0.0, 0.0]]),
                                 np.asarray(["math", "", "law"], object))
    np.testing.assert_array_equal(x, [[1.0, 0.0, 0.0, 1.0],   # tasks sorted: law, math
                                      [0.5, 1.0, 0.0, 0.0],   # "" (unknown): no task column
                                      [0.0, 0.0, 1.0, 0.0]])
    assert x.dtype == np.float32


def test_a_new_model_that_answers_as_an_old_one_gets_its_answers():
    """New = old model 0 on every query, labelled on a third: every other query's soft label
    is old model 0's answer, all but certain; its cost, twice old model 1's, is recovered."""
    old, costs, tasks, fold = table()
    labelled = np.arange(len(fold)) % 3 == 0
    moved = transfer.transfer_labels(old, costs, tasks, fold, labelled, old[:, 0],
                                     2.0 * costs[:, 1], n_folds=2)
    np.testing.assert_array_equal(moved.rows, np.flatnonzero(~labelled))
    assert moved.n_fit == labelled.sum()
    target = old[moved.rows, 0]
    assert np.all(np.abs(moved.scores - target) < 0.2)  # the ridge keeps them off 0 and 1
    assert moved.scores.dtype == np.float32 and np.all((moved.scores > 0) & (moved.scores < 1))
    np.testing.assert_allclose(moved.costs, 2.0 * costs[moved.rows, 1], rtol=0.05)
    assert transfer.transfer_labels(old, costs, tasks, fold, labelled, old[:, 0], None,
                                    n_folds=2).costs is None


def test_each_soft_label_comes_from_a_fit_without_its_fold(monkeypatch):
    """Flipping the labels of fold 0's labelled queries leaves fold 0's soft labels as they
    were (they come from the regression fitted on fold 1) and moves fold 1's. One ridge: the
    ridge itself is chosen on every fold's out-of-fold loss, as a column's is."""
    monkeypatch.setattr(columns, "RIDGES", (1e-3,))
    old, costs, tasks, fold = table(seed=1)
    labelled = np.arange(len(fold)) % 3 != 2
    y = old[:, 1]
    flipped = np.where(fold == 0, 1.0 - y, y)
    a = transfer.transfer_labels(old, costs, tasks, fold, labelled, y, None, n_folds=2)
    b = transfer.transfer_labels(old, costs, tasks, fold, labelled, flipped, None, n_folds=2)
    in_fold0 = fold[a.rows] == 0
    np.testing.assert_allclose(b.scores[in_fold0], a.scores[in_fold0], atol=1e-6)
    assert np.max(np.abs(b.scores[~in_fold0] - a.scores[~in_fold0])) > 0.3


def test_too_few_labelled_pool_queries_are_refused():
    old, costs, tasks, fold = table()
    labelled = np.arange(len(fold)) < transfer.MIN_LABELLED - 1
    with pytest.raises(ValueError, match="49 of the new model's labelled queries are pool"):
        transfer.transfer_labels(old, costs, tasks, fold, labelled, old[:, 0], None, 2)


def pool_and_labels(n=300):
    old, costs, tasks, fold = table(n)
    ids = np.asarray([f"q{i}" for i in range(n)])
    features = np.random.default_rng(3).normal(size=(n, 4)).astype(np.float32)
    pool = RoutingDataset(name="pool", models=("m0", "m1", "m2"), scores=old, costs=costs,
                          query_ids=ids, tasks=tasks, features=features)
    mine = np.arange(n) % 2 == 0  # the new model's labels on half the pool, and a new query
    train = ModelLabels(query_ids=np.append(ids[mine], "fresh"),
                        scores=np.append(old[mine, 0], 1.0),
                        costs=np.append(costs[mine, 0], 1e-4),
                        features=np.concatenate([features[mine], np.ones((1, 4), np.float32)]),
                        tasks=np.append(tasks[mine], "a"))
    return pool, ids, fold, train


def test_the_labels_are_followed_by_the_pool_queries_without_one():
    pool, ids, fold, train = pool_and_labels()
    both, moved = transfer.with_transferred(pool, pool.models, ids, fold, train, train.features,
                                               n_folds=2)
    n = train.n
    np.testing.assert_array_equal(both.query_ids[:n], train.query_ids)
    np.testing.assert_array_equal(both.scores[:n], train.scores)
    np.testing.assert_array_equal(both.query_ids[n:], ids[1::2])  # the unlabelled half
    np.testing.assert_array_equal(both.scores[n:], moved.scores)
    np.testing.assert_array_equal(both.features[n:], pool.features[1::2])
    np.testing.assert_array_equal(both.tasks[n:], pool.tasks[1::2].astype(str))
    np.testing.assert_array_equal(both.costs[n:], moved.costs)
    assert moved.n_fit == 150  # "fresh" is not a pool query: no old labels to fit on
    assert transfer.lineage(moved) == {"n_transferred": 150, "transfer": {
        "fitted_on": 150, "ridge": moved.ridge}}
    assert transfer.lineage(None) == {"n_transferred": 0}
    assert moved.ridge in [float(r) for r in np.float32(columns.RIDGES)]


def test_a_pool_query_the_artifact_was_not_trained_on_is_refused():
    pool, ids, fold, train = pool_and_labels()
    with pytest.raises(ValueError, match="1 of the pool's 300 queries are not in the artifact's "
                                         "training pool \\(e.g. 'q0'\\)"):
        transfer.with_transferred(pool, pool.models, ids[1:], fold[1:], train,
                                    train.features, n_folds=2)
