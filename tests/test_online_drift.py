"""The per-model drift test: its likelihood ratio by hand, its stated false-alarm rate measured by
simulation, detection and readmission, the routing around an excluded model (against the
exported function's own choices) and the re-pointing of the streams it served."""

import math

import numpy as np
import pytest

from proteus.online import controller as ctl
from proteus.online import drift, watch
from proteus.online.service import OnlineService, OnlineSettings
from proteus.online.store import Store
from proteus.operating import exclusion
from proteus.serving import Router

pytest_plugins = ["tests.serving_fixtures"]
CFG = drift.DriftConfig(tolerance=0.05, shift=0.15, arl=50.0, probe_every=4)


def test_llr_by_hand():
    # p̂ = 0.8: q_a = 0.75, q_b = 0.65
    assert drift.llr(CFG, 1.0, 0.8) == pytest.approx(math.log(0.65 / 0.75))
    assert drift.llr(CFG, 0.0, 0.8) == pytest.approx(math.log(0.35 / 0.25))
    assert drift.llr(CFG, 0.5, 0.8) == pytest.approx(
        0.5 * math.log(0.65 / 0.75) + 0.5 * math.log(0.35 / 0.25))
    assert drift.llr(CFG, 0.0, 0.05) == 0.0  # q_a and q_b clip to the same value: no evidence
    assert CFG.threshold == pytest.approx(math.log(50.0))
    with pytest.raises(ValueError, match="tolerance < shift"):
        drift.DriftConfig(tolerance=0.2, shift=0.1)


def _run_length(rng, cfg, cap, partial=False):
    """Feedbacks until the exclusion test alarms for a model realising p̂ − a exactly (the
    boundary of H_ok, where the bound is tight); `cap` if it never does."""
    health = drift.ModelHealth()
    for n in range(1, cap + 1):
        p_hat = rng.uniform(0.3, 0.95)
        mean = p_hat - cfg.tolerance
        score = (rng.beta(4 * mean, 4 * (1 - mean)) if partial  # partial credit, same mean
                 else float(rng.random() < mean))
        if drift.update(health, cfg, score, p_hat, float(n)) == "excluded":
            return n
    return cap


@pytest.mark.parametrize("partial", [False, True])
def test_false_alarm_rate_is_within_the_stated_bound(partial):
    """The guarantee: at the edge of H_ok, mean feedbacks to a false exclusion >= arl (Lorden)
    and P(excluded within n feedbacks) <= n / arl (Ville, over each restart), for 0/1 scores and
    partial credit alike."""
    rng = np.random.default_rng(1)
    runs = [_run_length(rng, CFG, 20 * int(CFG.arl), partial) for _ in range(300)]
    assert np.mean(runs) >= CFG.arl
    within = drift.DriftConfig(arl=1000.0)
    early = [_run_length(rng, within, 100, partial) < 100 for _ in range(300)]
    assert np.mean(early) <= 100 / within.arl


def test_a_fall_is_found_and_a_recovery_readmits():
    rng = np.random.default_rng(0)
    health, cfg = drift.ModelHealth(), drift.DriftConfig(arl=1000.0)
    for n in range(1, 1000):  # realises 0.55 where 0.85 was predicted
        if drift.update(health, cfg, float(rng.random() < 0.55), 0.85, float(n)) == "excluded":
            break
    assert health.excluded and 20 < n < 200, n
    assert health.last_shortfall == pytest.approx(0.3, abs=0.12)
    assert health.last_evidence["predicted"] == pytest.approx(0.85)
    assert health.down == health.up == 0.0 and health.events == 1 and health.changed_at == n
    for m in range(1, 1000):  # back to its prediction
        if drift.update(health, cfg, float(rng.random() < 0.85), 0.85, float(n + m)) is not None:
            break
    assert not health.excluded and health.events == 2 and m < 300
    rows = np.random.default_rng(5).normal(size=(400, 4)).astype(np.float32)
    probes = [drift.probe(health, CFG, row.tobytes()) for row in rows]
    assert 60 < sum(probes) < 140 and health.would_serve == 400  # 1 in probe_every = 4
    assert probes == [drift.probe(health, CFG, row.tobytes()) for row in rows]  # by content


def test_choose_reproduces_the_exported_choice(tiny_artifact):
    """The numpy rule without exclusions equals the exported function's choice on every row, at
    every lane; with one model excluded it is never chosen and the rest keep their order."""
    router = Router.load(tiny_artifact, warmup=0)
    x = np.random.default_rng(0).normal(size=(400, 4)).astype(np.float32)
    for tau in (0.5, 0.6, 0.7, 0.8, 0.9):
        raw = router.run(x, np.full(400, tau, np.float32))
        none = np.zeros((400, 3), bool)
        np.testing.assert_array_equal(
            exclusion.choose(raw.mu, raw.p_hat, raw.c_hat, router.cost_scale, none), raw.model)
        out = np.zeros((400, 3), bool)
        out[:, 2] = True
        again = exclusion.choose(raw.mu, raw.p_hat, raw.c_hat, router.cost_scale, out)
        assert not (again == 2).any()
        keep = raw.model != 2
        np.testing.assert_array_equal(again[keep], raw.model[keep])
    every = np.ones((400, 3), bool)  # a row cannot lose every model
    np.testing.assert_array_equal(
        exclusion.choose(raw.mu, raw.p_hat, raw.c_hat, router.cost_scale, every), raw.model)


def _service(router, **drift_kw):
    cfg = ctl.ControllerConfig(k_i=0.01, trust_after=0, boost=1.0, smith=0.0)
    settings = OnlineSettings(controller=cfg, drift=drift.DriftConfig(**{
        "arl": 20.0, "probe_every": 5, **drift_kw}))
    return OnlineService(router, Store(":memory:", lambda: clock[0]), settings)


clock = [0.0]


def test_the_service_routes_around_a_fallen_model_and_back(tiny_lane_artifact, caplog):
    """Feedback says the model the router uses most realises nothing: it is excluded for this
    tenant only (one log line naming it and the shortfall), routed around but for one request in
    probe_every, and readmitted once its probes score as predicted again."""
    router = Router.load(tiny_lane_artifact, warmup=0)
    service = _service(router)
    events = []
    service.listeners.append(events.append)
    x = np.random.default_rng(3).normal(size=(200, 4)).astype(np.float32)
    first = service.route(x, 0.7, tenant="a")
    counts = np.bincount([d["model_index"] for d in first], minlength=3)
    bad = int(np.argmax(counts))
    name = router.models[bad]
    for step in range(10):
        clock[0] = float(step + 1)
        out = service.route(x, 0.7, tenant="a")
        service.feedback([{"request_id": d["request_id"],
                           "score": 0.0 if d["model_index"] == bad else 1.0} for d in out])
        if events:
            break
    assert [(e["event"], e["model"], e["tenant"]) for e in events] == [("excluded", name, "a")]
    assert events[0]["shortfall"] > 0.2 and events[0]["streams"] == ["a|0.7000"]
    assert f"model {name!r} excluded for tenant 'a'" in caplog.text
    assert service.controllers("a")["models"][f"a|{name}"]["excluded"]
    after = service.route(x, 0.7, tenant="a")
    served = [d for d in after if d["model_index"] == bad]
    rerouted = [d for d in after if d["rerouted_from"] == name]
    assert all(d["probe"] for d in served) and len(rerouted) > 0
    assert 0.1 < len(served) / (len(served) + len(rerouted)) < 0.35  # ~1 in probe_every = 5
    other = service.route(x, 0.7, tenant="b")  # another tenant still routes to it
    assert [d["model_index"] for d in other] == [d["model_index"] for d in first]
    for step in range(60):  # its probes now score as predicted
        clock[0] = float(20 + step)
        out = service.route(x, 0.7, tenant="a")
        service.feedback([{"request_id": d["request_id"], "score": d["p_hat"][d["model"]]}
                          for d in out])
        if len(events) == 2:
            break
    assert events[1]["event"] == "readmitted" and events[1]["model"] == name
    again = service.route(x, 0.7, tenant="a")
    assert not any(d["rerouted_from"] for d in again)


def test_exclusion_repoints_the_stream(tiny_lane_artifact):
    """On exclusion the stream's integral goes back to its value when the test's statistic was
    last 0, â restarts at the setpoint, and feedback on decisions made before counts only."""
    router = Router.load(tiny_lane_artifact, warmup=0)
    cfg = ctl.ControllerConfig(k_i=0.01, trust_after=0, boost=1.0, smith=0.0)
    w = watch.Watch(router.models, drift.DriftConfig(arl=20.0), cfg, {})
    state = ctl.new_state(0.7, 0.72, 0.55, 0.85)
    states = {"t|0.7000": state}
    model = router.models[0]
    assert w.apply("t", model, "t|0.7000", 1.0, 0.8, 1.0, states) is None
    assert w.health[f"t|{model}"].anchors == {"t|0.7000": [0.0, 0]}
    for n in range(40):
        event = w.apply("t", model, "t|0.7000", 0.0, 0.8, 2.0 + n, states)
        if event is not None:
            break
        state.integral = 0.1  # the controller climbed while the model failed
    assert event["event"] == "excluded" and event["streams"] == ["t|0.7000"]
    assert state.integral == 0.0 and state.acc_est == pytest.approx(0.72)
    assert state.repointed == pytest.approx(event_time(w, model))
    before = state.integral
    ctl.record(state, cfg, 0.0, 1e-4)  # what the service does with a stale feedback
    assert state.integral == before and state.n_feedback == 1 and state.cost_sum == 1e-4
    assert set(w.dirty_states()) == {f"t|{model}"} and w.dirty_states() == {}


def test_a_minor_model_takes_back_only_its_share_of_the_climb():
    """The climb since the anchor (0.1 -> 0.3) is undone in proportion to the excluded model's
    share of the stream's feedback since then: all of it for a model that served everything, a
    tenth for one that served a tenth (a climb another drift caused stays)."""
    state = ctl.new_state(0.7, 0.72, 0.55, 0.85)
    state.integral, state.n_feedback = 0.3, 1100
    assert watch.attributed(state, 0.1, 100, 1000) == pytest.approx(0.1)
    assert watch.attributed(state, 0.1, 100, 100) == pytest.approx(0.28)
    assert watch.attributed(state, 0.4, 100, 1000) == pytest.approx(0.3)  # never raised


def event_time(w, model):
    return w.health[f"t|{model}"].changed_at


def test_a_version_1_store_is_upgraded(tmp_path):
    import sqlite3  # noqa: PLC0415

    path = tmp_path / "v1.db"
    db = sqlite3.connect(path)
    db.executescript("""
        CREATE TABLE decisions (request_id TEXT PRIMARY KEY, stream TEXT NOT NULL,
          created REAL NOT NULL, operating_tau REAL NOT NULL, model TEXT NOT NULL,
          c_hat REAL NOT NULL, score REAL, cost REAL, outcome TEXT, scored_at REAL);
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES ('schema', '1');
        INSERT INTO decisions VALUES ('old', 't|0.7000', 1.0, 0.7, 'm', 1e-4, NULL, NULL, NULL,
                                      NULL);""")
    db.commit()
    db.close()
    store = Store(str(path), lambda: 2.0)
    assert store.get("old").p_hat is None and store.get("old").model == "m"
    assert store.health() == {}
    store.close()
    assert Store(str(path), lambda: 2.0).get("old").stream == "t|0.7000"


def test_health_key_is_tenant_bar_model():
    assert watch.health_key("acme", "gpt-4") == "acme|gpt-4"
    assert watch.health_key("a|b", "m").rpartition("|") == ("a|b", "|", "m")


def test_log_event_one_warning_line(caplog):
    excluded = {"event": "excluded", "tenant": "acme", "model": "large",
                "streams": ["acme|0.8000", "acme|0.9000"], "shortfall": 0.2, "feedbacks": 40,
                "realised": 0.6, "predicted": 0.8, "probe_every": 4}
    readmitted = {"event": "readmitted", "tenant": "acme", "model": "large", "streams": [],
                  "shortfall": -0.0123, "feedbacks": 80, "realised": 0.8123,
                  "predicted": 0.8, "probe_every": 4}
    with caplog.at_level("WARNING", logger="proteus.online"):
        watch.log_event(excluded)
        watch.log_event(readmitted)
        watch.log_event({"event": "readmitted", "tenant": "acme", "model": "large"})
    assert [(r.name, r.levelname) for r in caplog.records] == [("proteus.online", "WARNING")] * 3
    assert [r.getMessage() for r in caplog.records[:2]] == [
        "model 'large' excluded for tenant 'acme': realised 0.600 against predicted 0.800 on its "
        "last 40 feedbacks (+0.200 short); routing around it (1 in 4 of its requests still "
        "probes it), 2 streams re-pointed",
        "model 'large' readmitted for tenant 'acme': realised 0.812 against predicted 0.800 on "
        "its last 80 feedbacks (-0.012 short); routing to it again"]
    # no feedbacks to quote: no numbers (this once read "...'acme': ; routing to it again")
    assert caplog.records[2].getMessage() == \
        "model 'large' readmitted for tenant 'acme'; routing to it again"
