"""OnlineService and its SQLite store on the tiny hand-built artifact (no HTTP here)."""

import dataclasses

import numpy as np
import pytest

from proteus.online import adapter
from proteus.online import controller as ctl
from proteus.online.service import (
    OnlineService,
    OnlineSettings,
    bucket_tau,
    check_item,
    stream_key,
    tenant_of,
)
from proteus.online.store import Store
from proteus.serving import Router

pytest_plugins = ["tests.serving_fixtures"]

# smith=0: the plain integral, so sums can be checked by hand and feedback order does not matter.
CFG = ctl.ControllerConfig(k_i=0.01, margin=0.0, trust_after=0, boost=1.0, smith=0.0,
                           dead_band=0.0, allow_below_certified=True)


@pytest.fixture(scope="module")
def tiny_router(tiny_lane_artifact) -> Router:
    return Router.load(tiny_lane_artifact, warmup=0)


def make_service(router, path=":memory:", clock=None, **settings):
    clock = clock or (lambda: 0.0)
    store = Store(str(path), clock, **settings.pop("store", {}))
    return OnlineService(router, store, OnlineSettings(controller=CFG, **settings))


def features(n, seed=0):
    return np.random.default_rng(seed).normal(size=(n, 4)).astype(np.float32)


def test_bucket_rounds_up():
    assert bucket_tau(0.7, 0.01) == pytest.approx(0.7)
    assert bucket_tau(0.7001, 0.01) == pytest.approx(0.71)
    assert bucket_tau(0.999, 0.05) == 1.0
    assert stream_key("acme", 0.7) == "acme|0.7000"


def test_route_issues_ids_and_matches_the_router_at_rest(tiny_router):
    service = make_service(tiny_router)
    x = features(5)
    out = service.route(x, 0.7, tenant="acme")
    assert len({d["request_id"] for d in out}) == 5
    assert {d["stream"] for d in out} == {"acme|0.7000"}
    plain = tiny_router.route(x, 0.7)  # no feedback yet: the static point exactly
    assert [d["model"] for d in out] == [d["model"] for d in plain]
    assert all(d["offset"] == 0.0 and d["operating_tau"] == pytest.approx(0.7) for d in out)
    assert service.store.counts() == {"pending": 5, "total": 5}
    assert service.state("acme|0.7000").n_decisions == 5


def test_feedback_outcomes(tiny_router):
    clock = [0.0]
    service = make_service(tiny_router, clock=lambda: clock[0], feedback_ttl=10.0)
    ids = [d["request_id"] for d in service.route(features(4), 0.7)]
    res = service.feedback([
        {"request_id": ids[0], "score": 1.0, "cost": 1e-4},
        {"request_id": ids[0], "score": 0.0},  # duplicate within the same batch
        {"request_id": "nope", "score": 1.0},
        {"request_id": ids[1], "score": 1.5},
        {"request_id": ids[1], "score": True},
        {"request_id": ids[1], "score": 0.5, "cost": -1},
        {"request_id": ids[1], "score": 0.5, "extra": 1},
        {"score": 0.5},
        "not an object",
    ])
    assert [r["status"] for r in res] == ["accepted", "duplicate", "unknown"] + ["invalid"] * 6
    assert res[0]["stream"] == "default|0.7000"
    clock[0] = 11.0
    late = service.feedback([{"request_id": ids[2], "score": 0.0}])[0]
    assert late["status"] == "late" and "feedback_ttl" in late["detail"]
    assert service.feedback([{"request_id": ids[2], "score": 1.0}])[0]["status"] == "duplicate"
    state = service.state("default|0.7000")
    assert state.n_feedback == 1 and state.score_sum == 1.0 and state.cost_sum == 1e-4
    assert service.store.counts() == {"accepted": 1, "late": 1, "pending": 2, "total": 4}
    assert service.store.get(ids[0]).score == 1.0


def test_delayed_out_of_order_feedback_equals_in_order(tiny_router):
    x = features(30, seed=1)
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 2, 30).astype(float)
    states = []
    for order in (np.arange(30), rng.permutation(30)):
        service = make_service(tiny_router)
        ids = [d["request_id"] for d in service.route(x, 0.7)]
        for chunk in np.array_split(order, 4):  # arrives in 4 deliveries, any order
            service.feedback([{"request_id": ids[i], "score": scores[i]} for i in chunk])
        states.append(service.state("default|0.7000"))
    assert states[0].integral == pytest.approx(states[1].integral, abs=1e-12)
    assert states[0].integral == pytest.approx(0.01 * (30 * 0.7 - scores.sum()))
    assert states[0].n_feedback == states[1].n_feedback == 30


def test_feedback_moves_later_decisions(tiny_router):
    service = make_service(tiny_router)
    ids = [d["request_id"] for d in service.route(features(50), 0.7)]
    service.feedback([{"request_id": i, "score": 0.0} for i in ids])  # all wrong: buy quality
    after = service.route(features(2), 0.7)
    assert after[0]["operating_tau"] == pytest.approx(0.7 + 50 * 0.01 * 0.7 if 0.7 + 0.35 < 0.9
                                                      else 0.9)
    assert after[0]["offset"] > 0 and after[0]["tau"] == 0.7


def test_state_survives_a_new_process_view(tiny_router, tmp_path):
    db = tmp_path / "online.db"
    service = make_service(tiny_router, db)
    ids = [d["request_id"] for d in service.route(features(6), 0.7, tenant="t")]
    service.feedback([{"request_id": i, "score": 0.0} for i in ids[:3]])
    before = service.state("t|0.7000")
    again = make_service(tiny_router, db)  # a second connection reads what was committed
    assert again.state("t|0.7000") == before
    out = again.feedback([{"request_id": ids[0], "score": 1.0},
                          {"request_id": ids[4], "score": 1.0}])
    assert [r["status"] for r in out] == ["duplicate", "accepted"]


def test_retention_bounds_rows(tiny_router):
    service = make_service(tiny_router, store={"max_rows": 5, "purge_every": 1})
    first = service.route(features(3), 0.7)
    for _ in range(3):
        service.route(features(3), 0.7)  # each call is one committed write
    assert service.store.counts()["total"] <= 5 + 3
    service.store.purge()
    assert service.store.counts()["total"] == 5
    res = service.feedback([{"request_id": first[0]["request_id"], "score": 1.0}])
    assert res[0]["status"] == "unknown"


def test_bad_tau_is_a_clear_error(tiny_router):
    service = make_service(tiny_router)
    with pytest.raises(ValueError, match="tau"):
        service.route(features(1), float("nan"))
    with pytest.raises(ValueError, match="feature"):
        service.route(np.zeros((1, 3), np.float32), 0.7)


def test_knob_reads_lanes_through_their_accuracy(tiny_router):
    k = adapter.knob(tiny_router)  # lanes τ' [0.5, 0.7, 0.9], held-out accuracy [.55, .72, .85]
    np.testing.assert_allclose(k.positions, [0.55, 0.72, 0.85])
    assert k.position(0.6) == pytest.approx(0.635)
    np.testing.assert_allclose(k.operating_tau(np.asarray([0.55, 0.635, 0.85, 0.99])),
                               [0.5, 0.6, 0.9, 0.9])
    tiny_router.manifest["lambda"], saved = ({**tiny_router.manifest["lambda"],
                                              "lane_accuracy": [0.6, 0.7, 0.7]},
                                             tiny_router.manifest["lambda"])
    try:  # a flat lane still gets min_slope * Δτ' of knob
        np.testing.assert_allclose(adapter.knob(tiny_router).positions,
                                   [0.6, 0.7, 0.7 + adapter.MIN_SLOPE * 0.2])
    finally:
        tiny_router.manifest["lambda"] = saved


def test_state_from_another_artifact_is_reanchored(tiny_router, tmp_path):
    db = tmp_path / "online.db"
    service = make_service(tiny_router, db)
    service.route(features(1), 0.7)
    key = "default|0.7000"
    fresh = service.state(key)
    stale = {**fresh.to_dict(), "base": 0.6, "lo": 0.4, "integral": 0.05, "left": True}
    service.store.record_decisions([], {key: stale})  # as another artifact would have left it
    again = make_service(tiny_router, db)
    assert again.state(key).base == 0.6
    out = again.route(features(1), 0.7)
    state = again.state(key)
    assert (state.base, state.lo, state.hi) == (fresh.base, fresh.lo, fresh.hi)
    assert state.integral == 0.05 and out[0]["offset"] == pytest.approx(0.05)


def test_feedback_is_compensated_for_the_knob_move_since_its_decision(tiny_router):
    """The service passes each decision's knob position to the controller: the second of two
    shortfalls served at the same position integrates r − s − (p_now − p_served)."""
    cfg = dataclasses.replace(CFG, smith=1.0)
    service = OnlineService(tiny_router, Store(":memory:", lambda: 0.0),
                            OnlineSettings(controller=cfg))
    ids = [d["request_id"] for d in service.route(features(2), 0.7)]
    service.feedback([{"request_id": ids[0], "score": 0.0}])
    first = service.state("default|0.7000").integral
    assert first == pytest.approx(0.01 * 0.7)  # served where the knob still is: no correction
    service.feedback([{"request_id": ids[1], "score": 0.0}])
    # the knob moved up by `first` since ids[1] was served (well inside the lane range)
    assert service.state("default|0.7000").integral == pytest.approx(
        first + 0.01 * (0.7 - 0.0 - first))


def test_a_stream_at_rest_routes_at_its_fixed_model_point(tiny_fixed_point_artifact):
    """A static point that is one model (here "large", the only point certified-feasible at
    τ = 0.8) is served as that model while no feedback has moved the stream; once it has moved,
    the policy serves it at its knob position."""
    router = Router.load(tiny_fixed_point_artifact, warmup=0)
    service = make_service(router)
    at_rest = service.route(features(20), 0.8)
    assert {d["model"] for d in at_rest} == {"large"}
    assert all(d["operating_tau"] is None and d["knob_tau"] > 0 for d in at_rest)
    service.feedback([{"request_id": d["request_id"], "score": 1.0} for d in at_rest])
    moved = service.route(features(20), 0.8)  # all right: the knob went below the point
    assert all(d["operating_tau"] is not None and d["offset"] < 0 for d in moved)


def test_tenant_of_stream_and_health_keys():
    assert tenant_of(stream_key("acme", 0.7)) == "acme"
    assert tenant_of("a|b|0.7000") == "a|b"  # the tenant is all before the LAST "|"
    assert tenant_of("acme|gpt-4") == "acme"  # a "tenant|model" health key
    assert tenant_of("no-separator") == ""


@pytest.mark.parametrize("item, detail", [
    (5, "a feedback item must be an object, got 5"),
    ({"score": 1.0}, "request_id must be a non-empty string"),
    ({"request_id": "", "score": 1.0}, "request_id must be a non-empty string"),
    ({"request_id": 7, "score": 1.0}, "request_id must be a non-empty string"),
    ({"request_id": "r", "score": 1.0, "note": "x", "at": 1},
     "unknown field(s) ['at', 'note']; expected request_id, score, cost"),
    ({"request_id": "r"}, "score must be a number in [0, 1], got None"),
    ({"request_id": "r", "score": True}, "score must be a number in [0, 1], got True"),
    ({"request_id": "r", "score": 1.5}, "score must be a number in [0, 1], got 1.5"),
    ({"request_id": "r", "score": float("nan")}, "score must be a number in [0, 1], got nan"),
    ({"request_id": "r", "score": "1"}, "score must be a number in [0, 1], got '1'"),
    ({"request_id": "r", "score": 1, "cost": -1}, "cost must be a finite number >= 0 (USD), "
                                                  "got -1"),
    ({"request_id": "r", "score": 1, "cost": float("inf")}, "cost must be a finite number"),
    ({"request_id": "r", "score": 1, "cost": False}, "cost must be a finite number"),
])
def test_check_item_refusals(item, detail):
    rid = item.get("request_id") if isinstance(item, dict) else None
    got = check_item(item)
    assert got["status"] == "invalid" and got["request_id"] == rid
    assert got["detail"].startswith(detail)


def test_check_item_accepts_numbers_as_floats():
    assert check_item({"request_id": "r", "score": 1}) == {"request_id": "r", "score": 1.0,
                                                           "cost": None}
    got = check_item({"request_id": "r", "score": 0, "cost": 0})
    assert got == {"request_id": "r", "score": 0.0, "cost": 0.0}
    assert type(got["score"]) is float and type(got["cost"]) is float
    assert check_item({"request_id": "r", "score": 0.25, "cost": None})["cost"] is None
