"""What routing around models leaves of a stream's static point, on the artifact's held-out
rows (`proteus.online.heldout`), and the exclusion's choice to keep or undo the climb."""

import dataclasses

import numpy as np
import pytest

from proteus.data.dataset import RoutingDataset
from proteus.online import adapter, drift, heldout, watch
from proteus.online import controller as ctl
from proteus.online.service import OnlineService, OnlineSettings
from proteus.online.store import Store
from proteus.serving import Router
from proteus.training import export, reopen

pytest_plugins = ["tests.serving_fixtures"]

N_HELD = 200


def _rows(split: str, scores: np.ndarray, features: np.ndarray) -> RoutingDataset:
    n = len(scores)
    return RoutingDataset(name="held", models=("small", "medium", "large"),
                          scores=scores.astype(np.float32),
                          costs=np.full((n, 3), 1e-4, np.float32),
                          query_ids=np.asarray([f"{split}{i}" for i in range(n)]),
                          tasks=np.asarray([""] * n), features=features)


@pytest.fixture
def held_artifact(tmp_path, tiny_bundle):
    """fn(scores [N_HELD, 3]) -> the tiny lane router (τ 0.7 served by the policy at τ' 0.7,
    knob position 0.72) carrying held-out rows with these scores."""
    operating = {"tau": [0.9, 0.7, 0.5], "model": [-1, -1, -1], "accuracy": [0.85, 0.72, 0.55],
                 "cost": [3e-4, 2e-4, 1e-4], "n_heldout": 10**6, "margin_z": 0.0}
    x = np.random.default_rng(5).normal(size=(N_HELD, 4)).astype(np.float32)
    half = N_HELD // 2

    def make(scores, name="a"):
        held = reopen.HeldoutRows(_rows("v", scores[:half], x[:half]),
                                  _rows("c", scores[half:], x[half:]),
                                  np.asarray(["p0"]), np.zeros(1, np.int32))
        out = str(tmp_path / name)
        bundle = dataclasses.replace(tiny_bundle, operating=operating, heldout=held)
        export.write_artifact(bundle, out, verify=False)
        return Router.load(out, warmup=0)
    return make


def _measure(router):
    knob = adapter.knob(router)
    return knob, heldout.HeldoutAccuracy(router, knob, heldout.load_heldout(router))


def test_heldout_rows_are_read_in_the_artifacts_order(held_artifact):
    scores = np.random.default_rng(1).uniform(size=(N_HELD, 3))
    _, measure = _measure(held_artifact(scores))
    np.testing.assert_allclose(measure.rows.scores, scores.astype(np.float32))
    assert measure.rows.features.shape == (N_HELD, 4)
    np.testing.assert_array_equal(measure.rows.task_ids, np.full(N_HELD, -1))


def test_an_artifact_without_heldout_rows_measures_nothing(tiny_lane_artifact):
    router = Router.load(tiny_lane_artifact, warmup=0)
    knob, measure = _measure(router)
    assert measure.rows is None
    assert measure.without(adapter.static_point(router, knob, 0.7), (0,)) is None


def test_routing_around_the_only_right_model_leaves_nothing(held_artifact):
    """Only "large" is ever right: with it the point scores its share of "large"; around it,
    0. A fixed-model point keeps its model's mean when another model is excluded."""
    scores = np.zeros((N_HELD, 3))
    scores[:, 2] = 1.0
    router = held_artifact(scores)
    knob, measure = _measure(router)
    static = adapter.static_point(router, knob, 0.7)
    x = measure.rows.features
    share = np.mean(router.run(x, np.full(N_HELD, 0.7, np.float32)).model == 2)
    assert measure.without(static, ()) == pytest.approx(share)
    assert measure.without(static, (2,)) == 0.0
    assert measure.without(static, (0, 1)) == 1.0  # every row goes to "large"
    fixed = static._replace(point=static.point._replace(operating_model=1,
                                                        operating_tau=float("nan")))
    assert measure.without(fixed, (0,)) == 0.0  # "medium" alone, never right


def test_streams_on_one_point_share_one_measure(held_artifact, monkeypatch):
    """τ 0.6 and 0.7 both resolve to the point τ' 0.7 (accuracy 0.72): measured once (each measure
    routes every held-out row: 0.6-0.7 s on the real sets)."""
    router = held_artifact(np.ones((N_HELD, 3)))
    knob, measure = _measure(router)
    calls = []
    real = measure._measure
    monkeypatch.setattr(measure, "_measure", lambda *a: calls.append(a) or real(*a))
    points = [adapter.static_point(router, knob, tau) for tau in (0.6, 0.7)]
    assert points[0].point.point == points[1].point.point
    assert [measure.without(p, (2,)) for p in points] == [1.0, 1.0] and len(calls) == 1
    measure.without(points[0], (1,))  # another set: measured
    assert len(calls) == 2


@pytest.mark.parametrize("short", [False, True])
def test_the_climb_is_kept_only_where_routing_around_falls_short(tiny_lane_artifact, short):
    """On exclusion the integral's climb since the anchor (0 -> 0.1) is undone when routing
    around the model brings the point back to its setpoint, kept when it does not."""
    router = Router.load(tiny_lane_artifact, warmup=0)
    cfg = ctl.ControllerConfig(k_i=0.01, trust_after=0, boost=1.0, smith=0.0)
    asked = []
    w = watch.Watch(router.models, drift.DriftConfig(arl=20.0), cfg, {},
                    lambda stream, excluded: asked.append((stream, excluded)) or short)
    state = ctl.new_state(0.7, 0.72, 0.55, 0.85)
    states = {"t|0.7000": state}
    w.apply("t", router.models[1], "t|0.7000", 1.0, 0.8, 1.0, states)
    for n in range(40):
        event = w.apply("t", router.models[1], "t|0.7000", 0.0, 0.8, 2.0 + n, states)
        if event is not None:
            break
        state.integral = 0.1
    assert event["event"] == "excluded" and asked == [("t|0.7000", (1,))]
    assert state.integral == pytest.approx(0.1 if short else 0.0)
    assert w.excluded_models("t") == (1,) and w.excluded_models("other") == ()


def test_the_service_asks_the_heldout_rows(held_artifact):
    """The service's rule: short when the point, around the models, measures below τ + margin
    on the held-out rows. All right: never short; only "large" right: short around it."""
    settings = OnlineSettings(controller=ctl.ControllerConfig(margin=0.02))
    ones = OnlineService(held_artifact(np.ones((N_HELD, 3)), "ones"),
                         Store(":memory:", lambda: 0.0), settings)
    scores = np.zeros((N_HELD, 3))
    scores[:, 2] = 1.0
    large = OnlineService(held_artifact(scores, "large"), Store(":memory:", lambda: 0.0),
                          settings)
    for service in (ones, large):
        service.route(np.zeros((1, 4), np.float32), 0.7)
    assert not ones._short_without("default|0.7000", (2,))
    assert large._short_without("default|0.7000", (2,))
    assert not large._short_without("default|0.7000", (0, 1))  # all to "large": 1.0
