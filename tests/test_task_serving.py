"""Serving a router with a task prior: the manifest, the routing function's task input, and the
task field of every front end (Python API, HTTP protocol, JSONL, online service, replays)."""

import dataclasses
import io
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import expit

from experiments import replay, runs, validate
from experiments.configs import quickstart
from proteus import operating, serving, tasks
from proteus.data import dataset
from proteus.evaluation.baselines import task_table
from proteus.online import http as online_http
from proteus.online.service import OnlineService, OnlineSettings
from proteus.online.store import Store
from proteus.pipeline import setup as setup_lib
from proteus.serving import protocol, route_cli
from proteus.serving.dispatch import route_items
from proteus.training import export, networks
from tests import core_helpers

pytest_plugins = ["tests.serving_fixtures"]


# The tiny router's task prior: with scale, prior weight and shift 0 and task weight 1, its p̂ is
# exactly sigmoid(TINY_TASK_PRIOR[task]) (the last row, 0, for an unknown task).
TINY_TASKS = ("easy", "hard")
TINY_TASK_PRIOR = np.asarray([[1.0, 0.0, 3.0], [-2.0, 0.0, -1.0], [0.0, 0.0, 0.0]], np.float32)


@pytest.fixture(scope="session")
def tiny_task_artifact(tmp_path_factory, tiny_bundle) -> str:
    """The tiny router with a task prior over `TINY_TASKS` (exported and verified)."""
    spec = tiny_bundle.spec._replace(tasks=len(TINY_TASKS))
    params = jax.jit(networks.init_params, static_argnums=0)(
        spec, jax.random.key(0), tiny_bundle.params["stats"])
    params["policy"] = tiny_bundle.params["policy"]
    m = spec.n_models
    params["calib"] = {**params["calib"], "scale": np.zeros(m, np.float32),
                       "shift": np.zeros(m, np.float32), "task_weight": np.ones(m, np.float32),
                       "task_prior": TINY_TASK_PRIOR}
    out = str(tmp_path_factory.mktemp("tiny_task") / "artifact")
    export.write_artifact(dataclasses.replace(tiny_bundle, spec=spec, params=params,
                                              tasks=TINY_TASKS), out)
    return out

X = np.random.default_rng(3).normal(size=(3, 4)).astype(np.float32)


@pytest.fixture(scope="module")
def task_router(tiny_task_artifact) -> serving.Router:
    return serving.Router.load(tiny_task_artifact, warmup=0)


def p_hats(decisions) -> np.ndarray:
    return np.asarray([list(d["p_hat"].values()) for d in decisions])


def test_manifest_lists_the_tasks_and_the_function_takes_them(tiny_task_artifact):
    with open(f"{tiny_task_artifact}/manifest.json") as f:
        manifest = json.load(f)
    assert manifest["tasks"] == list(TINY_TASKS) and manifest["spec"]["tasks"] == 2
    assert manifest["function"]["inputs"][-1] == export.TASK_INPUT


def test_p_hat_is_the_task_prior_by_hand(task_router):
    assert task_router.tasks == TINY_TASKS
    assert task_router.info()["tasks"] == list(TINY_TASKS)
    easy = task_router.route(X, 0.5, "easy")
    mixed = task_router.route(X, 0.5, ["hard", None, "easy"])
    np.testing.assert_allclose(p_hats(easy), expit(np.tile(TINY_TASK_PRIOR[0], (3, 1))),
                               rtol=1e-6)
    np.testing.assert_allclose(p_hats(mixed), expit(TINY_TASK_PRIOR[[1, 2, 0]]), rtol=1e-6)
    np.testing.assert_allclose(p_hats(task_router.route(X, 0.5)), 0.5)  # no task: unknown
    assert task_router.task_ids(["hard", None], 2).tolist() == [1, -1]


def test_bad_tasks_are_refused_by_name(task_router, tiny_artifact):
    with pytest.raises(ValueError, match=r"unknown task 'medium'.*\['easy', 'hard'\]"):
        task_router.route(X, 0.5, "medium")
    with pytest.raises(ValueError, match="2 tasks for 3 queries"):
        task_router.route(X, 0.5, ["easy", "hard"])
    with pytest.raises(ValueError, match="a name, None or a list of them, got int"):
        task_router.route(X, 0.5, 3)
    plain = serving.Router.load(tiny_artifact, warmup=0)
    assert plain.tasks == () and plain.task_ids(None, 2).tolist() == [-1, -1]
    with pytest.raises(ValueError, match="trained without a task prior"):
        plain.route(X, 0.5, "easy")


def test_http_items_carry_their_task(task_router):
    body = {"requests": [{"features": X[0].tolist(), "tau": 0.5, "task": "hard"},
                         {"features": X[1].tolist(), "tau": 0.5}]}
    items, _ = protocol.parse_body(json.dumps(body).encode(), task_router, protocol.Limits())
    assert [item.task_id for item in items] == [1, -1]
    decisions = route_items(task_router, items)
    np.testing.assert_allclose(p_hats(decisions), expit(TINY_TASK_PRIOR[[1, 2]]), rtol=1e-6)
    for task, message in (("medium", "unknown task"), (["easy"], "must be a task name")):
        bad = {"features": X[0].tolist(), "tau": 0.5, "task": task}
        with pytest.raises(protocol.RequestError, match=message) as err:
            protocol.parse_body(json.dumps(bad).encode(), task_router, protocol.Limits())
        assert err.value.status == 422


def test_jsonl_lines_take_their_task_or_the_default(task_router):
    lines = [json.dumps({"features": X[0].tolist(), "task": "hard"}),
             json.dumps({"features": X[1].tolist()}),
             json.dumps({"features": X[2].tolist(), "task": "nope"})]
    out = io.StringIO()
    assert route_cli.route_jsonl(task_router, lines, out, 0.5, task="easy") == (2, 1)
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    np.testing.assert_allclose(p_hats(rows[:2]), expit(TINY_TASK_PRIOR[[1, 0]]), rtol=1e-6)
    assert rows[2]["line"] == 3 and "unknown task 'nope'" in rows[2]["error"]


def test_online_service_routes_with_the_task(task_router):
    service = OnlineService(task_router, Store(":memory:", lambda: 0.0), OnlineSettings())
    decisions = service.route(X[:2], 0.5, task=["easy", "hard"])
    np.testing.assert_allclose(p_hats(decisions), expit(TINY_TASK_PRIOR[[0, 1]]), rtol=1e-6)
    with pytest.raises(ValueError, match="unknown task"):
        service.route(X[:1], 0.5, task="medium")
    body = json.dumps({"features": X[0].tolist(), "tau": 0.5, "task": "hard"}).encode()
    got = online_http.route_response(service, body, None)
    np.testing.assert_allclose(list(got["p_hat"].values()), expit(TINY_TASK_PRIOR[1]), rtol=1e-6)
    with pytest.raises(online_http.BodyError, match="must be a task name"):
        online_http.route_response(service, body.replace(b'"hard"', b'["hard"]'), None)


def test_replayed_requests_carry_known_tasks(task_router, tiny_artifact):
    names = np.asarray(["hard", "other", "easy"])
    assert replay.task_names(task_router, names) == ["hard", None, "easy"]
    assert replay.task_names(serving.Router.load(tiny_artifact, warmup=0), names) is None


@pytest.fixture(scope="module")
def task_run(tmp_path_factory):
    """A smoke run with the task prior on synthetic data (its families are the tasks), evaluated
    and exported."""
    root = tmp_path_factory.mktemp("task_run")
    config = quickstart.get_config("smoke")
    config.data.source = "synthetic:routerbench?n=2000&seed=0&signal=0.9"
    config.data.encoder = "hashing:dim=64"
    config.data.cache_dir = str(root / "feature_cache")
    config.model.task_prior = True
    runs.evaluate(config, str(root / "workdir"), progress=False, baselines=False)
    runs.export(str(root / "workdir"), str(root / "artifact"))
    run = runs.load_trained(str(root / "workdir"))
    return (run.config, run.splits, run.setup, run.state,
            serving.Router.load(str(root / "artifact"), warmup=0))


def test_a_trained_task_prior_is_exported_and_served(task_run):
    config, splits, setup, state, router = task_run
    pool = setup_lib.training_pool(splits, config.train.folds, config.data.split_salt)[0]
    assert setup.task_names == tuple(sorted(set(pool.tasks.tolist()))) == router.tasks
    assert setup.static.spec.tasks == len(setup.task_names) >= 2
    params = jax.tree.map(lambda x: x[0], state.params)
    assert params["calib"]["task_prior"].shape == (len(setup.task_names) + 1, len(router.models))
    assert np.any(np.asarray(params["calib"]["task_weight"]) != 0)  # fitted, not the init
    test = splits["test"]
    want = networks.predicted(setup.static.spec, params, jnp.asarray(test.features, jnp.float32),
                              setup_lib.query_tasks(setup, test))[1]
    got = p_hats(router.route(test.features, 0.5, test.tasks.tolist()))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    without = p_hats(router.route(test.features, 0.5))
    assert not np.allclose(without, got)  # the task changes the prediction


def test_task_prior_needs_two_tasks(tmp_path):
    config = core_helpers.tiny_config()
    config.train.folds = 2
    config.model.task_prior = True
    ds = core_helpers.separable_dataset()
    splits = core_helpers.tiny_splits(config, dataclasses.replace(
        ds, tasks=np.full(ds.n_queries, "only")))
    with pytest.raises(ValueError, match="model.task_prior=True needs a task column with >= 2"):
        setup_lib.make_setup(config, splits)
    config.train.folds = 1
    assert any("model.task_prior=True needs cross-fitting" in p
               for p in validate.problems(config))


def test_check_task_name_takes_a_name_or_null():
    assert serving.check_task_name(None) is None and serving.check_task_name("law") == "law"
    with pytest.raises(ValueError, match="'task' must be a task name .* got int"):
        serving.check_task_name(3)


# ------------------------------------------------------------------ one request model (#27)


def test_one_rule_for_unknown_task_names(task_router, tiny_artifact):
    """Before: three name -> index maps treated an unknown task three ways (-1 silently,
    ValueError, None). One type now: None and "" are unknown (-1); a name outside the vocabulary
    is refused; data labels outside it are unknown only through `label_ids` / `known`."""
    vocab = tasks.TaskVocabulary(TINY_TASKS)
    assert vocab.ids(["hard", None, ""]).tolist() == [1, -1, -1]
    with pytest.raises(tasks.UnknownTaskError, match=r"unknown task 'zz'.*\['easy', 'hard'\]"):
        vocab.ids(["zz"])
    labels = np.asarray(["hard", "zz", ""])
    assert vocab.label_ids(labels).tolist() == [1, -1, -1] == dataset.task_index(
        TINY_TASKS, labels).tolist()
    assert task_table.task_index(labels, TINY_TASKS).tolist() == [1, 2, 2]  # its extra row
    assert replay.task_names(task_router, labels) == vocab.known(labels) == ["hard", None, None]
    assert task_router.vocabulary == vocab
    for front_door in (lambda: task_router.task_ids(["zz"], 1),
                       lambda: protocol.make_item(task_router, 0.5, features=X[0], task="zz"),
                       lambda: online_http.route_response(
                           OnlineService(task_router, Store(":memory:", lambda: 0.0)),
                           json.dumps({"features": X[0].tolist(), "tau": 0.5,
                                       "task": "zz"}).encode(), None)):
        with pytest.raises((ValueError, protocol.RequestError), match="unknown task 'zz'"):
            front_door()


def test_tau_is_checked_once_per_distinct_value(task_router, monkeypatch):
    """Before: `Router.decide` checked each τ twice (`check_taus`, then `resolve`)."""
    seen = []
    real = operating.check_tau
    monkeypatch.setattr(operating.policy, "check_tau", lambda tau: seen.append(tau) or real(tau))
    task_router.policy._memo.clear()
    task_router.decide(X, 0.61)
    assert seen == [0.61]
    seen.clear()
    task_router.decide(X, np.asarray([0.62, 0.63, 0.62]))
    assert sorted(seen) == [0.62, 0.63]
    with pytest.raises(ValueError, match="tau must be a number in"):
        task_router.decide(X, [0.5, "0.6", 0.7])
    with pytest.raises(ValueError, match=r"one number per query \(3\)"):
        task_router.decide(X, [0.5, 0.6])
