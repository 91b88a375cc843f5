"""benchmarks/task_prior_probe.py: the task prior by hand, and a run on a trained workdir."""


from benchmarks import task_prior_probe

pytest_plugins = ["tests.serving_fixtures"]


def test_probe_runs_on_a_trained_workdir(trained):
    out = task_prior_probe.probe(str(trained.workdir))
    assert set(out) == {"pool_without", "pool_with", "val_without", "val_with"}
    assert all(0.0 < v < 1.0 for v in out.values())
