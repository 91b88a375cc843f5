"""The query-id split (`split_indices`, `RoutingDataset.split`) every certificate depends on:
a disjoint cover, exact per-task fractions, no dependence on row order or Python's hash seed,
a golden assignment and sensitivity to the salt."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from proteus.data.dataset import RoutingDataset, split_indices, task_index, task_vocabulary
from tests.conftest import REPO_ROOT

FRACTIONS = {"pred": 0.35, "policy": 0.25, "val": 0.1, "calib": 0.1, "test": 0.2}


def _ids_tasks(n: int = 1003, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """[n] ids and [n] tasks of uneven sizes (3 tasks, ~60/30/10%), in a shuffled row order."""
    rng = np.random.default_rng(seed)
    tasks = rng.choice(np.array(["arc", "mbpp", "wino"]), size=n, p=[0.6, 0.3, 0.1])
    return np.array([f"id-{i:05d}" for i in range(n)]), tasks


def _by_id(ids: np.ndarray, parts: dict[str, np.ndarray]) -> dict[str, set[str]]:
    return {name: set(ids[idx].tolist()) for name, idx in parts.items()}


def test_split_is_a_disjoint_cover_with_each_tasks_fractions():
    ids, tasks = _ids_tasks()
    parts = split_indices(ids, tasks, FRACTIONS)
    assert list(parts) == list(FRACTIONS)
    everything = np.concatenate(list(parts.values()))
    np.testing.assert_array_equal(np.sort(everything), np.arange(ids.size))  # disjoint cover
    for idx in parts.values():
        assert idx.dtype == np.int64 and np.all(np.diff(idx) > 0)  # sorted, no repeats
    for task in np.unique(tasks):
        n_task = int((tasks == task).sum())
        for name, idx in parts.items():
            got = int((tasks[idx] == task).sum())
            assert abs(got - FRACTIONS[name] * n_task) < 1.0, (task, name, got, n_task)


def test_split_ignores_row_order():
    ids, tasks = _ids_tasks()
    perm = np.random.default_rng(1).permutation(ids.size)
    assert _by_id(ids, split_indices(ids, tasks, FRACTIONS)) == \
        _by_id(ids[perm], split_indices(ids[perm], tasks[perm], FRACTIONS))


GOLDEN_IDS = [f"q{i}" for i in range(12)]
GOLDEN_TASKS = ["a"] * 8 + ["b"] * 4
GOLDEN_FRACTIONS = {"train": 0.5, "calib": 0.25, "test": 0.25}
# sha256("proteus\x1f" + id) order within each task, cut at 4/6/8 ("a") and 2/3/4 ("b").
GOLDEN = {"train": [0, 2, 4, 7, 9, 11], "calib": [3, 5, 10], "test": [1, 6, 8]}


def test_split_golden_assignment_in_another_process_with_another_hash_seed():
    """The assignment is fixed by sha256, not Python's salted `hash`: this process and a child
    with PYTHONHASHSEED=12345 both give the golden split."""
    here = split_indices(np.array(GOLDEN_IDS), np.array(GOLDEN_TASKS), GOLDEN_FRACTIONS)
    assert {k: v.tolist() for k, v in here.items()} == GOLDEN
    code = ("import json, numpy as np; from proteus.data.dataset import split_indices; "
            f"p = split_indices(np.array({GOLDEN_IDS}), np.array({GOLDEN_TASKS}), "
            f"{GOLDEN_FRACTIONS}); print(json.dumps({{k: v.tolist() for k, v in p.items()}}))")
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(REPO_ROOT)}
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, env=env, check=True,
                         capture_output=True, text=True).stdout
    assert json.loads(out) == GOLDEN


def test_split_salt_moves_rows_but_keeps_sizes():
    ids, tasks = _ids_tasks()
    a = split_indices(ids, tasks, FRACTIONS, salt="proteus")
    b = split_indices(ids, tasks, FRACTIONS, salt="proteus-2")
    assert [len(v) for v in a.values()] == [len(v) for v in b.values()]
    kept = np.mean([np.isin(a[n], b[n]).mean() for n in FRACTIONS])
    # Independent assignments keep a row in its split with probability sum f² ~ 0.22 on average
    # over splits of size f: far from 1.
    assert kept < 0.5, kept


def test_dataset_split_matches_split_indices_and_validates_fractions():
    ids, tasks = _ids_tasks(n=200)
    rng = np.random.default_rng(2)
    scores = (rng.uniform(size=(200, 2)) < 0.7).astype(np.float32)
    ds = RoutingDataset(name="t", models=("a", "b"), scores=scores,
                        costs=np.ones((200, 2), np.float32), query_ids=ids, tasks=tasks)
    parts = ds.split(FRACTIONS, salt="s")
    idx = split_indices(ids, tasks, FRACTIONS, salt="s")
    for name, sub in parts.items():
        np.testing.assert_array_equal(sub.query_ids, ids[idx[name]])
        np.testing.assert_array_equal(sub.scores, scores[idx[name]])  # rows travel together
    with pytest.raises(ValueError, match="sum to 1"):
        split_indices(ids, tasks, {"a": 0.5, "b": 0.4})
    with pytest.raises(ValueError, match=">= 0"):
        split_indices(ids, tasks, {"a": 1.5, "b": -0.5})


def test_task_vocabulary_and_index_mark_unknown_tasks():
    tasks = np.array(["b", "a", "", "b"])
    assert task_vocabulary(tasks) == ("a", "b")  # "" is an unknown task, not a name
    np.testing.assert_array_equal(task_index(("a", "b"), np.array(["b", "a", "zz", ""])),
                                  [1, 0, -1, -1])
    assert task_index(("a",), "a").tolist() == [0]


def test_concatenate_keeps_rows_in_order_and_refuses_other_models():
    from proteus.data.dataset import RoutingDataset, concatenate

    def part(ids, models=("a", "b")):
        n = len(ids)
        return RoutingDataset(name="x", models=models, scores=np.full((n, 2), 0.5, np.float32),
                              costs=np.ones((n, 2), np.float32), query_ids=np.array(ids),
                              tasks=np.array([""] * n), features=np.eye(n, 3, dtype=np.float32))
    both = concatenate([part(["q1", "q2"]), part(["q3"])])
    assert both.query_ids.tolist() == ["q1", "q2", "q3"] and both.features.shape == (3, 3)
    assert both.texts is None
    with pytest.raises(ValueError, match="different models"):
        concatenate([part(["q1"]), part(["q2"], models=("a", "c"))])
