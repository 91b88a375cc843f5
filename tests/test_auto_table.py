"""The table config end to end on a tiny generated table: `pipeline.resolve` is deterministic,
no choice can depend on test labels (and the check would catch a rule that read them), and the
launchers' job records and reuses the choices (experiments/configs/table.py, proteus.pipeline.auto).
"""

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from experiments import runs
from experiments.configs import table
from proteus.data import load_source
from proteus.data.dataset import RoutingDataset
from proteus.pipeline import auto, setup
from proteus.pipeline import config as config_lib

N = 400  # queries; the size rule makes it a small set (calib 0.2)
TOPICS = ("apple", "river", "stone", "cloud")
MODELS = ("small", "medium", "large")


def write_table(path, permute_test_labels: bool = False) -> str:
    """A wide table: prompts whose topic word and task say which model is right.

    With `permute_test_labels`, the rows of the test split (as the size rule's splits cut it)
    get each other's scores and costs: every test label moves to another test query.
    """
    rng = np.random.default_rng(0)
    topic = rng.integers(0, len(TOPICS), N)
    task = np.where(rng.random(N) < 0.5, "alpha", "beta")
    skill = np.stack([0.35 + 0.4 * (topic < 2), 0.5 + 0.3 * (task == "beta"),
                      np.full(N, 0.85)], axis=1)  # [N, M] chance of a right answer
    scores = (rng.random((N, 3)) < skill).astype(float)
    costs = np.array([1e-5, 1e-4, 1e-3]) * (1.0 + 0.1 * rng.random((N, 3)))
    ids = np.array([f"q{i}" for i in range(N)])
    if permute_test_labels:
        cut = dict(auto.auto_rules.size_rule(N)[0])
        test = setup.split_indices(ids, task, cut)["test"]
        moved = rng.permutation(test)
        scores[test], costs[test] = scores[moved], costs[moved]
    frame = pd.DataFrame({"query_id": ids, "task": task,
                          "prompt": [f"a question about the {TOPICS[t]} number {i}"
                                     for i, t in enumerate(topic)]})
    for j, m in enumerate(MODELS):
        frame[m], frame[f"{m}|cost"] = scores[:, j], costs[:, j]
    if str(path).endswith(".parquet"):
        frame.to_parquet(path)
    else:
        frame.to_csv(path, index=False)
    return str(path)


@pytest.fixture(autouse=True)
def hashing_only(monkeypatch):
    """Two hashing widths as the candidate encoders: no torch, and a real choice to make."""
    monkeypatch.setattr(auto, "TEXT_ENCODERS", (("hashing:dim=64", ()), ("hashing", ())))


def resolve(path: str, variants: str = "smoke"):
    return auto.resolve(table.get_config(f"{path},{variants}"), progress=False)


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    d = tmp_path_factory.mktemp("tables")
    return write_table(d / "t.csv"), write_table(d / "t_permuted.csv", permute_test_labels=True)


def test_permuting_test_labels_changes_no_choice_and_no_evidence(tables):
    plain, permuted = tables
    a, b = resolve(plain), resolve(permuted)
    ds_a, ds_b = load_source(f"table:{plain}"), load_source(f"table:{permuted}")
    assert not np.array_equal(ds_a.scores, ds_b.scores)  # the permutation moved test labels
    assert a.auto.to_dict() == b.auto.to_dict()  # every choice, every evidence number
    assert config_lib.auto_settings(a) == ()
    assert set(a.auto) == {"size", "encoder", "task_prior", "tau_range"}
    assert a.data.splits.calib == 0.2 and a.train.batch_size == 64  # size rule; smoke's batch
    assert a.data.encoder in ("hashing:dim=64", "hashing")
    # (a == b also says the resolution is reproducible: a resolver whose evidence varied from
    # call to call would fail it, so no third resolution is run to check that)


def test_the_permutation_check_catches_a_rule_that_reads_test_labels(tables, monkeypatch):
    """The same check on a resolver whose evidence also reads the test rows: it fails."""
    real_pool = setup.training_pool

    def leaky_pool(splits, folds, salt):
        policy = _concat(splits["policy"], splits["test"])
        return real_pool({**splits, "policy": policy}, folds, salt)

    monkeypatch.setattr(auto, "training_pool", leaky_pool)
    plain, permuted = tables
    assert resolve(plain).auto.to_dict() != resolve(permuted).auto.to_dict()


def _concat(a: RoutingDataset, b: RoutingDataset) -> RoutingDataset:
    cat = lambda x, y: None if x is None else np.concatenate([x, y])
    return dataclasses.replace(a, **{f: cat(getattr(a, f), getattr(b, f)) for f in (
        "scores", "costs", "query_ids", "tasks", "texts", "features")})


def test_the_launchers_job_records_and_reuses_the_choices(tmp_path, monkeypatch):
    monkeypatch.setattr(auto, "TEXT_ENCODERS", (("hashing:dim=64", ()),))  # one: quicker
    source = write_table(tmp_path / "t.parquet")
    workdir = str(tmp_path / "run")
    config = table.get_config(f"{source},smoke")
    res = runs.evaluate(config, workdir, progress=False, baselines=False)
    assert set(res["auto"]) == {"size", "encoder", "task_prior", "tau_range"}
    tau = res["auto"]["tau_range"]["choice"]
    assert res["taus"][0] <= tau["tau_lo"] and tau["tau_hi"] in res["taus"]
    with open(tmp_path / "run" / "config.json") as f:
        recorded = json.load(f)
    assert recorded["auto"] == res["auto"] and recorded["model"]["task_prior"] in (False, True)
    with open(tmp_path / "run" / "results.json") as f:
        assert json.load(f)["auto"] == res["auto"]
    monkeypatch.setattr(auto, "resolve", lambda *a, **k: pytest.fail("measured twice"))
    again = runs.evaluate(config, workdir, progress=False, baselines=False)  # resumes
    assert again["auto"] == res["auto"]
    assert again["summary"]["proteus"]["aiq"] == res["summary"]["proteus"]["aiq"]
