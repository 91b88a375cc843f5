"""What routing around models leaves of a stream's static point, on the artifact's held-out
rows (`proteus.online.heldout`), and the exclusion's choice to keep or undo the climb."""

import dataclasses

import numpy as np
import pytest

from proteus.data.dataset import RoutingDataset
from proteus.online import adapter, drift, heldout, watch
from proteus.online import controller as ctl
from proteus.online.service import OnlineService, OnlineSettings, request_unit
from proteus.online.store import Store
from proteus.serving import Router
from proteus.training import export, reopen

pytest_plugins = ["tests.serving_fixtures"]

N_HELD = 200


COSTS = (1e-4, 2e-4, 4e-4)  # small, medium, large: USD per request on the held-out rows


def _rows(split: str, scores: np.ndarray, features: np.ndarray,
          costs: tuple[float, ...] = COSTS) -> RoutingDataset:
    n = len(scores)
    return RoutingDataset(name="held", models=("small", "medium", "large"),
                          scores=scores.astype(np.float32),
                          costs=np.tile(np.asarray(costs, np.float32), (n, 1)),
                          query_ids=np.asarray([f"{split}{i}" for i in range(n)]),
                          tasks=np.asarray([""] * n), features=features)


@pytest.fixture
def held_artifact(tmp_path, tiny_bundle):
    """fn(scores [N_HELD, 3], name, lane_lams, costs) -> the tiny lane router (τ 0.7 served by
    the policy at τ' 0.7, knob position 0.72; its lanes' λ replaced by `lane_lams`) carrying
    held-out rows with these scores and per-model costs."""
    operating = {"tau": [0.9, 0.7, 0.5], "model": [-1, -1, -1], "accuracy": [0.85, 0.72, 0.55],
                 "cost": [3e-4, 2e-4, 1e-4], "n_heldout": 10**6, "margin_z": 0.0}
    x = np.random.default_rng(5).normal(size=(N_HELD, 4)).astype(np.float32)
    half = N_HELD // 2

    def make(scores, name="a", lane_lams=None, costs=COSTS):
        held = reopen.HeldoutRows(_rows("v", scores[:half], x[:half], costs),
                                  _rows("c", scores[half:], x[half:], costs),
                                  np.asarray(["p0"]), np.zeros(1, np.int32))
        out = str(tmp_path / name)
        bundle = dataclasses.replace(tiny_bundle, operating=operating, heldout=held)
        if lane_lams is not None:
            bundle = dataclasses.replace(bundle, lane_lams=np.asarray(lane_lams, np.float32))
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


def test_a_point_that_routes_around_a_model_does_so_at_rest_only(held_artifact):
    """A static point that itself routes around "large" (an onboarded artifact's point without
    its new model) is measured and served around it at rest; that is the point's routing, not
    a drift reroute (no probe asked, `unmasked` without it). Off its point the knob moves the
    plain policy, "large" included; a drift exclusion of "medium" adds to the point's own."""
    scores = np.zeros((N_HELD, 3))
    scores[:, 2] = 1.0
    router = held_artifact(scores)
    knob, measure = _measure(router)
    static = adapter.static_point(router, knob, 0.7)
    own = static._replace(point=static.point._replace(excluded=(2,)))
    assert measure.without(static, ()) > 0.0
    assert _measure(router)[1].without(own, ()) == 0.0  # a new measure: it caches by point
    x, n = measure.rows.features, N_HELD
    at_rest, inverse = np.full(n, own.base), np.zeros(n, np.int64)
    asked = []
    probe = lambda i, m: asked.append((i, m)) or True
    served = adapter.serve(router, knob, x, at_rest, [own], inverse, probe=probe)
    assert not (served.decisions.model == 2).any() and not (served.unmasked == 2).any()
    assert asked == [] and not served.probed.any()
    plain = router.run(x, np.full(n, own.point.operating_tau, np.float32)).model
    keep = plain != 2
    np.testing.assert_array_equal(served.decisions.model[keep], plain[keep])
    medium = np.zeros((n, 3), bool)
    medium[:, 1] = True
    both = adapter.serve(router, knob, x, at_rest, [own], inverse, excluded=medium,
                         probe=lambda i, m: False)
    assert (both.decisions.model == 0).all()
    moved = adapter.serve(router, knob, x, np.full(n, own.base + 0.05), [own], inverse)
    assert (moved.decisions.model == 2).any()


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


def test_the_upper_envelope_by_hand():
    """Points served at 0.5 (the static point), 0.6, 0.7, 0.75, 0.8: 0.6 lies under the segment
    0.5 -> 0.7 (0.005 of accuracy per unit of cost against 0.025) and 0.75 costs more than 0.7
    for less accuracy: neither is a vertex; the vertices' slopes fall (concave)."""
    hull = heldout.upper_envelope(np.asarray([0.5, 0.6, 0.7, 0.75, 0.8]),
                                  np.asarray([1.0, 3.0, 5.0, 5.5, 6.0]),
                                  np.asarray([0.70, 0.71, 0.80, 0.79, 0.81]))
    np.testing.assert_allclose(hull.served, [0.5, 0.7, 0.8])
    np.testing.assert_allclose(hull.accuracy, [0.70, 0.80, 0.81])
    np.testing.assert_allclose(hull.cost, [1.0, 5.0, 6.0])
    # the static point stays the first vertex even where a later point is cheaper
    cheaper = heldout.upper_envelope(np.asarray([0.5, 0.6]), np.asarray([2.0, 1.0]),
                                     np.asarray([0.7, 0.8]))
    np.testing.assert_allclose(cheaper.served, [0.5, 0.6])
    flat = heldout.upper_envelope(np.asarray([0.5, 0.6]), np.asarray([1.0, 2.0]),
                                  np.asarray([0.7, 0.7]))
    np.testing.assert_allclose(flat.served, [0.5])  # nothing above the point buys accuracy


def test_a_draw_mixes_the_two_vertices_around_the_position():
    """Vertices served at 0.5, 0.7, 0.8 with accuracy 0.7, 0.8, 0.81: on the knob, with the dead
    band 0.05, they sit at 0.5, 0.5 + 0.05 + 0.1 = 0.65 and 0.66."""
    hull = heldout.Hull(np.asarray([0.5, 0.7, 0.8]), np.asarray([0.7, 0.8, 0.81]),
                        np.asarray([1.0, 5.0, 6.0]))
    np.testing.assert_allclose(hull.axis(0.05), [0.5, 0.65, 0.66])
    np.testing.assert_allclose(hull.axis(0.0), [0.5, 0.6, 0.61])
    # 0.575 is halfway from 0.5 to 0.65: served at 0.7 for units below 0.5, else at 0.5
    assert [hull.draw(0.575, u, 0.05) for u in (0.0, 0.49, 0.5, 0.99)] == [0.7, 0.7, 0.5, 0.5]
    assert hull.draw(0.652, 0.1, 0.05) == 0.8 and hull.draw(0.652, 0.3, 0.05) == 0.7
    assert hull.draw(0.65, 0.0, 0.05) == 0.7 and hull.draw(0.5, 0.0, 0.05) == 0.5  # on a vertex
    assert hull.draw(0.4, 0.0, 0.05) == 0.5 and hull.draw(0.9, 0.99, 0.05) == 0.8  # outside
    units = np.random.default_rng(0).uniform(size=4000)
    share = np.mean([hull.draw(0.6125, u, 0.05) == 0.7 for u in units])
    assert share == pytest.approx(0.75, abs=0.02)


# λ of the lanes τ' 0.5, 0.7, 0.9: at the top lane (μ 0.99) the tiny router sends more rows to
# "small" (114 of 200) than at the static point τ' 0.7 (77), and none to "medium" anywhere; on
# these held-out rows "small" alone is right and the dearest
LAMS, DEAR_SMALL = [0.3, 1.0, 100.0], (4e-4, 2e-4, 1e-4)


def test_the_envelope_of_a_point_on_the_heldout_rows(held_artifact):
    """Only "small" is ever right: each knob position's accuracy is its share of "small" (77
    and 114 of 200). The envelope starts at the static point (measured as `without` measures
    it) and ends at the top lane, which buys accuracy at a higher cost; around "small" nothing
    buys accuracy."""
    scores = np.zeros((N_HELD, 3))
    scores[:, 0] = 1.0
    router = held_artifact(scores, lane_lams=LAMS, costs=DEAR_SMALL)
    knob, measure = _measure(router)
    static = adapter.static_point(router, knob, 0.7)
    hull = measure.hull(static, ())
    np.testing.assert_allclose(hull.served, [static.base, knob.positions[-1]], rtol=1e-6)
    np.testing.assert_allclose(hull.accuracy, [0.385, 0.57], rtol=1e-6)
    assert hull.accuracy[0] == pytest.approx(measure.without(static, ()))
    # a row costs 4e-4 at "small", 1e-4 at "large" (the only other choice)
    np.testing.assert_allclose(hull.cost, [1e-4 + 3e-4 * p for p in (0.385, 0.57)], rtol=1e-5)
    np.testing.assert_allclose(measure.hull(static, (1,)).served, hull.served)
    around = measure.hull(static, (0,))
    np.testing.assert_allclose(around.served, [static.base])
    assert measure.hull(static, (0,)) is around  # measured once per (point, set)


def test_a_stream_off_its_point_is_served_on_the_envelope(held_artifact):
    """With "medium" routed around and the stream's knob 60% of the way from the static point
    to the top lane on the envelope's axis (its two vertices), each request goes to one of the
    two, the top one for about 60% of them, the same request twice to the same one; the ledger
    keeps the stream's position (the delay compensation's `served_at`). With
    `DriftConfig(mix=False)` every request is served at the position itself."""
    scores = np.zeros((N_HELD, 3))
    scores[:, 0] = 1.0
    x = np.random.default_rng(3).normal(size=(2000, 4)).astype(np.float32)
    served = {}
    for mix in (True, False):
        settings = OnlineSettings(controller=ctl.ControllerConfig(dead_band=0.0),
                                  drift=drift.DriftConfig(mix=mix))
        service = OnlineService(held_artifact(scores, f"mix{mix}", LAMS, DEAR_SMALL),
                                Store(":memory:", lambda: 0.0), settings)
        service.route(np.zeros((1, 4), np.float32), 0.7)
        service.watch.health["default|medium"] = drift.ModelHealth(excluded=True)
        state = service._states["default|0.7000"]
        hull = service.heldout.hull(adapter.static_point(service.router, service.knob, 0.7),
                                    (1,))
        state.integral, state.left = 0.6 * (hull.axis(0.0)[1] - state.base), True
        out = service.route(np.concatenate([x, x[:5]]), 0.7)
        served[mix] = np.asarray([r["operating_tau"] for r in out], np.float64)
        knob_tau = service._tau_at(state.base + state.integral)
        assert all(r["knob_tau"] == pytest.approx(knob_tau) for r in out)
        ledger = [service.store.get(r["request_id"]).operating_tau for r in out[:50]]
        np.testing.assert_allclose(ledger, knob_tau)
    assert set(np.round(served[True], 5)) == {0.7, 0.9}  # the two vertices' τ'
    assert np.mean(np.isclose(served[True][:2000], 0.9)) == pytest.approx(0.6, abs=0.03)
    np.testing.assert_array_equal(served[True][2000:], served[True][:5])  # same request, same draw
    np.testing.assert_allclose(served[False], knob_tau)
    # below its point (allowed once trusted), a stream is served on the knob itself
    below = OnlineService(held_artifact(scores, "below", LAMS, DEAR_SMALL),
                          Store(":memory:", lambda: 0.0),
                          OnlineSettings(controller=ctl.ControllerConfig(
                              dead_band=0.0, allow_below_certified=True, trust_after=0)))
    below.route(np.zeros((1, 4), np.float32), 0.7)
    below.watch.health["default|medium"] = drift.ModelHealth(excluded=True)
    state = below._states["default|0.7000"]
    state.integral, state.left = -0.1, True
    out = below.route(x[:50], 0.7)
    np.testing.assert_allclose([r["operating_tau"] for r in out], below._tau_at(state.base - 0.1))


def test_a_request_draws_the_same_unit_in_the_same_stream():
    x = np.arange(4, dtype=np.float32)
    units = [request_unit(x, "a|0.7000"), request_unit(x, "a|0.7000"),
             request_unit(x, "b|0.7000"), request_unit(x + 1, "a|0.7000")]
    assert units[0] == units[1] and len(set(units)) == 3
    assert all(0.0 <= u < 1.0 for u in units)


def test_an_exclusion_measures_its_envelopes_before_the_next_request(held_artifact):
    """Feedback that excludes the model a stream uses most (every answer of it scored 0) returns
    with that stream's envelope without the model already measured (outside the service's
    lock); the next request finds it cached."""
    scores = np.zeros((N_HELD, 3))
    scores[:, 0] = 1.0
    service = OnlineService(held_artifact(scores, "warm", LAMS, DEAR_SMALL),
                            Store(":memory:", lambda: 0.0),
                            OnlineSettings(drift=drift.DriftConfig(arl=20.0)))
    x = np.random.default_rng(4).normal(size=(200, 4)).astype(np.float32)
    events = []
    service.listeners.append(events.append)
    for _ in range(10):
        out = service.route(x, 0.7)
        bad = int(np.bincount([d["model_index"] for d in out], minlength=3).argmax())
        service.feedback([{"request_id": d["request_id"],
                           "score": 0.0 if d["model_index"] == bad else 1.0} for d in out])
        if events:
            break
    assert events and events[0]["event"] == "excluded"
    static = adapter.static_point(service.router, service.knob, 0.7)
    key = (static.point.point, service.watch.excluded_models("default"))
    assert key in service.heldout._hulls
    calls = []
    service.heldout._chosen = lambda *a: calls.append(a)  # a new measure would call it
    service.route(x[:5], 0.7)
    assert calls == []
