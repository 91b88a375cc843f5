"""The replay benchmark on generated data: scenarios, metrics, the split rebuild, the launcher."""

import dataclasses
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from experiments import replay as rp
from proteus.data import RoutingDataset, load_source
from proteus.serving import Router

pytest_plugins = ["tests.serving_fixtures"]
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_test() -> RoutingDataset:
    """300 queries x the tiny artifact's 3 models, 4-d features, tasks "easy" and "hard"."""
    rng = np.random.default_rng(0)
    n = 300
    tasks = np.where(np.arange(n) < 100, "hard", "easy")
    p = np.where(tasks[:, None] == "hard", [0.2, 0.4, 0.7], [0.6, 0.8, 0.95])
    return RoutingDataset(
        name="tiny", models=("small", "medium", "large"),
        scores=(rng.random((n, 3)) < p).astype(np.float32),
        costs=np.tile(np.float32([1e-4, 1e-3, 1e-2]), (n, 1)),
        query_ids=np.asarray([f"q{i}" for i in range(n)]), tasks=tasks,
        features=rng.normal(size=(n, 4)).astype(np.float32))


def test_scenarios_change_what_they_say(tiny_test):
    cfg = rp.ReplayConfig(n=4000, warmup=500, shift_at=0.5)
    still = rp.make_stream(tiny_test, cfg, key_model=2)
    assert still.shifts == [] and np.array_equal(still.scores, tiny_test.scores[still.rows])
    shift = rp.make_stream(tiny_test, rp.ReplayConfig(n=4000, warmup=500, shift_at=0.5,
                                                      scenario="task_shift"), 2)
    hard = tiny_test.tasks[shift.rows] == "hard"
    assert shift.info["hard_tasks"] == ["hard"]
    assert hard[2000:].mean() > hard[:2000].mean() + 0.3  # half the draws moved to "hard"
    reg = rp.make_stream(tiny_test, rp.ReplayConfig(n=4000, warmup=500, shift_at=0.5,
                                                    scenario="model_regression"), 2)
    before = tiny_test.scores[reg.rows, 2]
    assert np.array_equal(reg.scores[:2000, 2], before[:2000])
    lost = 1 - reg.scores[2000:, 2].sum() / before[2000:].sum()
    assert 0.2 < lost < 0.4 and np.array_equal(reg.scores[:, :2], tiny_test.scores[reg.rows, :2])
    price = rp.make_stream(tiny_test, rp.ReplayConfig(n=4000, warmup=500, shift_at=0.5,
                                                      scenario="price_change"), 1)
    np.testing.assert_allclose(price.costs[2000:, 1], 4e-3)
    np.testing.assert_allclose(price.costs[:2000, 1], 1e-3)


def test_key_model_of_a_fixed_model_point_is_that_model(tiny_fixed_point_artifact, tiny_test):
    # Only a fixed-model point ("large", index 2) is certified-feasible at τ = 0.8: the regression
    # must hit the model the static router uses (before, the policy ran at τ' = NaN instead).
    router = Router.load(tiny_fixed_point_artifact, warmup=0)
    assert router.resolve(0.8).operating_model == 2
    assert rp.key_model(router, tiny_test, 0.8) == 2


def test_a_static_point_that_routes_around_a_model_is_replayed_as_served(tiny_lane_artifact,
                                                                         tiny_test):
    """The static routers go through the serving path (`Router.run_points`): a point that routes
    around "large" never sends a request there, and the others keep the policy's own choice."""
    router = Router.load(tiny_lane_artifact, warmup=0)
    x, point = tiny_test.features, router.resolve(0.7)
    plain = rp.point_models(router, x, point, None)
    assert (plain == 2).any()
    around = rp.point_models(router, x, point._replace(excluded=(2,)), None)
    assert not (around == 2).any()
    np.testing.assert_array_equal(around[plain != 2], plain[plain != 2])
    stream = rp.make_stream(tiny_test, rp.ReplayConfig(n=1500, warmup=500), 0)
    served = rp.run_static(router, x[stream.rows], stream, point._replace(excluded=(2,)))
    assert not (served["model"] == 2).any() and len(served["model"]) == 1500


def test_an_artifact_whose_pool_changed_replays_the_rows_it_carries(monkeypatch, tiny_test):
    """An onboarded artifact (a lineage) is replayed on the val or calib rows it carries, which
    hold its new model's labels; its test split (no such labels) is refused, naming why."""
    from proteus.training import reopen  # noqa: PLC0415

    manifest = {"lineage": [{"added": "new", "removed": None}], "training": {}}
    carried = reopen.HeldoutRows(tiny_test, tiny_test.without_models(["large"]),
                                 np.asarray(["p0"]), np.zeros(1, np.int32))
    monkeypatch.setattr(reopen, "read_heldout", lambda path, m: carried if path else None)
    assert rp.load_split(manifest, split="val", path="art") is tiny_test
    assert rp.load_split(manifest, split="calib", path="art").models == ("small", "medium")
    with pytest.raises(ValueError, match=r"changed after training \(added new\): replay it on "
                       "the held-out rows it carries, --split=val or --split=calib"):
        rp.load_split(manifest, split="test", path="art")
    with pytest.raises(ValueError, match="carries no held-out rows"):
        rp.load_split(manifest, split="val")
    with pytest.raises(ValueError, match="not on a data source \\(drop --source\\)"):
        rp.load_split(manifest, "synthetic:routerbench?n=300&seed=1", "val", "art")
    # a column fitted on the val rows (onboarding's) leaves calib the only held-out rows
    fitted = {**manifest, "models": ["small", "new"],
              "lineage": [{"added": "new", "removed": None, "n_val_fitted": 3}]}
    assert rp.load_split(fitted, split="calib", path="art").models == ("small", "medium")
    with pytest.raises(ValueError, match="column of new was fitted on its val rows .*"
                       "--split=calib"):
        rp.load_split(fitted, split="val", path="art")
    with pytest.raises(ValueError, match=r"\(added new\): replay it on the held-out rows it "
                       r"carries, --split=calib \(its test split"):
        rp.load_split(fitted, split="test", path="art")


def test_window_metrics_by_hand():
    cfg = rp.ReplayConfig(n=12, warmup=2, window=4, window_step=2, tau=0.5, tolerance=0.0)
    score = np.asarray([0, 0, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1], np.float64)
    ends, acc = rp.windows(score, cfg)
    np.testing.assert_array_equal(ends, [6, 8, 10, 12])
    np.testing.assert_allclose(acc, [0.5, 0.0, 0.5, 1.0])
    assert rp.recovery(score, 4, cfg) is None  # windows from 4 step 50 only: [4, 8) = 0
    assert rp.recovery(score, 8, cfg) == 0


def test_replay_runs_three_routers(tiny_lane_artifact, tiny_test, tmp_path):
    router = Router.load(tiny_lane_artifact, warmup=0)
    cfg = rp.ReplayConfig(scenario="model_regression", tau=0.7, n=3000, warmup=500,
                          window=500)
    out = rp.replay(router, tiny_test, cfg)
    assert set(out["routers"]) == set(rp.ROUTERS)
    for s in out["routers"].values():
        assert 0.0 <= s["share_windows_below"] <= 1.0 and len(s["recovery"]) == 1
        assert len(s["windows"]["accuracy"]) == len(s["windows"]["end"]) > 0
    (stream,) = out["online_controllers"].values()
    assert stream["n_decisions"] == 3000
    assert 500 <= stream["n_feedback"] <= 700  # 20% of the requests, minus the last 200
    assert set(out["checks"]) >= {"online_long_run_ge_tau", "online_windows_95pct"}
    json.dumps(out)  # replay.json is plain JSON
    rp.plot(out, str(tmp_path / "replay.png"))
    assert (tmp_path / "replay.png").stat().st_size > 0
    assert "| online |" in rp.table(out)
    from benchmarks import replay_table  # noqa: PLC0415 (the docs' table from replay.json)

    (tmp_path / "replay.json").write_text(json.dumps(out))
    row = replay_table.row(str(tmp_path / "replay.json"))
    assert row.startswith("| 0.7 | model_regression | 0 | ") and row.count(" / ") == 9


def test_splits_are_rebuilt_and_checked():
    source = "synthetic:routerbench?n=300&seed=1"
    splits = {"pred": 0.4, "val": 0.2, "test": 0.4}
    expect = load_source(source).split(splits, salt="s")
    manifest = {"training": {"data_source": source, "split_fingerprints": {
        "test": expect["test"].fingerprint(), "val": expect["val"].fingerprint()},
        "config": {"data": {
            "encoder": "precomputed", "splits": splits, "split_salt": "s", "cache_dir": ""}}}}
    test = rp.load_split(manifest)
    assert test.fingerprint() == expect["test"].fingerprint() and test.features is not None
    val = rp.load_split(manifest, split="val")
    assert val.fingerprint() == expect["val"].fingerprint()
    assert not set(val.query_ids) & set(test.query_ids)
    with pytest.raises(ValueError, match="no 'calib' split"):
        rp.load_split(manifest, split="calib")
    manifest["training"]["split_fingerprints"]["test"] = "0" * 16
    with pytest.raises(ValueError, match="fingerprint"):
        rp.load_split(manifest)


def test_launcher_smoke(text_artifact, tmp_path):
    """`python -m launch.replay` end to end on the smoke run's artifact (synthetic data)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}
    out = subprocess.run(
        [sys.executable, "-m", "launch.replay", f"--artifact={text_artifact}",
         "--scenario=task_shift", "--tau=0.6", "--n=2500", "--seeds=3,4",
         f"--workdir={tmp_path}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "| online |" in out.stdout and "checks:" in out.stdout
    for seed in (3, 4):  # one process, one directory per seed
        payload = json.loads((tmp_path / f"seed{seed}" / "replay.json").read_text())
        assert payload["scenario"] == "task_shift" and payload["config"]["seed"] == seed
        assert payload["split"] == "test" and (tmp_path / f"seed{seed}" / "replay.png").exists()


def test_the_http_replay_gives_the_in_process_numbers(tiny_text_artifact, tiny_test, caplog):
    """`--via=both`: the same scenario through a running gateway (fake upstream answering from
    the stream's outcomes, feedback posted to /v1/feedback after the delay) chooses the same
    model for every request as the in-process replay, so every number agrees; the gateway's
    start-up warnings for its operator (state in ':memory:', the tenant's τ range) are not shown.
    The gateway's stream is the in-process one, tenant included: a stream's envelope draws hash
    its name (`request_unit`), and open mode's tenant ("open") drew differently."""
    router = Router.load(tiny_text_artifact, warmup=0)
    texts = np.asarray([f"question {i}" for i in range(tiny_test.n_queries)])
    data = dataclasses.replace(tiny_test, texts=texts)
    cfg = rp.ReplayConfig(scenario="model_regression", tau=0.7, n=800, warmup=200, window=200,
                          delay=40)
    with caplog.at_level(logging.WARNING):
        out = rp.replay(router, data, cfg, via="both")
    assert "not kept" not in caplog.text and "may ask for" not in caplog.text
    assert out["agreement"]["same_model"] == 1.0
    online, http = out["routers"]["online"], out["routers"]["online_http"]
    for key in ("long_run_accuracy", "long_run_cost", "share_windows_below", "recovery"):
        assert online[key] == http[key], key
    assert out["checks_http"] == out["checks"]
    assert set(out["agreement"]["online_http_controllers"]) == {"default|0.7000"}
    (stream,) = out["agreement"]["online_http_controllers"].values()
    assert stream["n_decisions"] == 800 and stream["n_feedback"] == out["online_controllers"][
        "default|0.7000"]["n_feedback"]


def test_the_envelope_bound_routes_around_the_regressed_model(tiny_lane_artifact, tiny_test):
    """benchmarks/envelope_bound.py: around a model the router never chooses ("medium"),
    the point is the static router itself (cost 1.0x, its accuracy); around the replay's
    regressed model, the point scores less."""
    from benchmarks import envelope_bound  # noqa: PLC0415 (a benchmark script)
    router = Router.load(tiny_lane_artifact, warmup=0)
    n = tiny_test.n_queries
    chosen = router.run(tiny_test.features, np.full(n, 0.7, np.float32)).model
    assert not np.any(chosen == 1)
    static_accuracy = tiny_test.scores[np.arange(n), chosen].mean()
    model, hull, at_rest = envelope_bound.envelope(router, tiny_test, 0.7, model=1)
    assert model == 1 and hull.cost[0] / at_rest == pytest.approx(1.0)
    assert hull.accuracy[0] == pytest.approx(static_accuracy)
    assert at_rest == pytest.approx(tiny_test.costs[np.arange(n), chosen].mean())
    key, around, _ = envelope_bound.envelope(router, tiny_test, 0.7)
    assert key == rp.key_model(router, tiny_test, 0.7)
    assert around.accuracy[0] < static_accuracy
