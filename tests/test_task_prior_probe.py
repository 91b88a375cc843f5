"""benchmarks/task_prior_probe.py: the task prior by hand, and a run on a trained workdir."""

import numpy as np

from benchmarks import task_prior_probe
from proteus.training import crossfit

pytest_plugins = ["tests.serving_fixtures"]


def test_task_deviation_by_hand():
    # One model; task 0: 2 right of 2, task 1: 0 of 2; the pool-wide accuracy is 1/2 (logit 0).
    # Shrunk by k = PRIOR_COUNT pseudo-queries at 1/2: (2 + k/2)/(2 + k) and (k/2)/(2 + k).
    scores = np.array([[1.0], [1.0], [0.0], [0.0]])
    table = task_prior_probe.task_deviation(scores, np.array([0, 0, 1, 1]), np.ones(4), 2)
    k = crossfit.PRIOR_COUNT
    p = np.array([(2 + k / 2) / (2 + k), (k / 2) / (2 + k)])
    np.testing.assert_allclose(table[:2, 0], np.log(p / (1 - p)), rtol=1e-5)
    assert table[-1, 0] == 0.0 and table.dtype == np.float64  # an unknown task moves nothing


def test_probe_runs_on_a_trained_workdir(trained):
    out = task_prior_probe.probe(str(trained.workdir))
    assert set(out) == {"pool_without", "pool_with", "val_without", "val_with"}
    assert all(0.0 < v < 1.0 for v in out.values())
