"""The online controller inside the gateway: /v1/feedback steers the (tenant, τ) stream, its state
in the usage database, GET /v1/controllers and /metrics; a model that falls is routed around
(header, metric, log line); and a SIGKILL of `launch.gateway --online` loses nothing it
acknowledged."""

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time

import httpx
import pytest

from proteus.gateway import app as gateway
from proteus.gateway import fake, runner
from proteus.gateway.config import load_models
from proteus.online import controller as ctl
from proteus.online import drift
from proteus.online.service import OnlineSettings
from tests import gateway_helpers as gh

pytest_plugins = ["tests.serving_fixtures"]
PROMPTS = [f"question {i}: " + "why " * (i % 7) + "is the sky blue" * (i % 3) for i in range(40)]


@pytest.fixture(scope="module")
def router(tiny_bundle, tmp_path_factory):
    return gh.text_router(tiny_bundle, str(tmp_path_factory.mktemp("online_gw") / "artifact"))


@pytest.fixture(scope="module")
def upstream():
    with runner.server_thread(fake.FakeUpstream(record=False)) as running:
        yield running


def online_gateway(router, upstream_url, tmp_path):
    upstreams = load_models(gh.models_file(tmp_path, upstream_url, {m: {} for m in router.models}),
                            router.models)
    online = OnlineSettings(
        controller=ctl.ControllerConfig(k_i=0.05, trust_after=0, boost=1.0, smith=0.0),
        drift=drift.DriftConfig(arl=20.0, probe_every=5))
    settings = gateway.GatewaySettings(usage_db=str(tmp_path / "gateway.sqlite3"), online=online)
    return gateway.create_gateway(router, upstreams, None, settings)


async def ask(client, prompts, tau="0.5"):
    """(request id, model, headers) of each answered chat completion."""
    out = []
    for text in prompts:
        got = await client.post("/v1/chat/completions", content=gh.chat(text, f"proteus-{tau}"),
                                headers={"content-type": "application/json"})
        assert got.status_code == 200, got.text
        out.append((got.headers["x-proteus-request-id"], got.headers["x-proteus-model"],
                    got.headers))
    return out


def metric(text: str, name: str, **labels) -> float | None:
    """The value of the series `name` with these labels in a /metrics body (None: absent)."""
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_feedback_steers_the_stream(router, upstream, tmp_path):
    asyncio.run(_feedback_steers_the_stream(router, upstream, tmp_path))


async def _feedback_steers_the_stream(router, upstream, tmp_path):
    app = online_gateway(router, upstream.url, tmp_path)
    async with gh.in_process(app) as client:
        answered = await ask(client, PROMPTS[:10])
        state = (await client.get("/v1/controllers")).json()
        stream = state["controllers"]["open|0.5000"]
        assert stream["n_decisions"] == 10 and stream["offset"] == 0.0
        items = [{"request_id": rid, "score": 0.0} for rid, _, _ in answered]
        got = await client.post("/v1/feedback", json={"feedback": items})
        assert got.status_code == 200 and got.json()["counts"]["accepted"] == 10
        again = await client.post("/v1/feedback", json=items[0])
        assert again.status_code == 409  # the first score stands
        assert (await client.post("/v1/feedback", json={"request_id": "no", "score": 1.0})
                ).status_code == 404
        moved = (await client.get("/v1/controllers")).json()["controllers"]["open|0.5000"]
        assert moved["n_feedback"] == 10 and moved["offset"] > 0
        assert moved["operating_tau"] > stream["operating_tau"]  # all wrong: buy quality
        text = (await client.get("/metrics")).text
        assert metric(text, "proteus_online_offset", tenant="open", tau="0.5") == pytest.approx(
            moved["offset"])
        assert metric(text, "proteus_gateway_feedback_total", tenant="open", tau="0.5") == 10
    with contextlib.closing(sqlite3.connect(tmp_path / "gateway.sqlite3")) as db:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"usage", "decisions", "controllers", "health"} <= tables  # one database
        assert db.execute("SELECT COUNT(*) FROM decisions WHERE outcome='accepted'"
                          ).fetchone()[0] == 10


def test_a_model_that_falls_is_routed_around(router, upstream, tmp_path, caplog):
    asyncio.run(_a_model_that_falls_is_routed_around(router, upstream, tmp_path, caplog))


async def _a_model_that_falls_is_routed_around(router, upstream, tmp_path, caplog):
    app = online_gateway(router, upstream.url, tmp_path)
    async with gh.in_process(app) as client:
        answered = await ask(client, PROMPTS)
        models = [m for _, m, _ in answered]
        bad = max(set(models), key=models.count)
        for _ in range(3):  # the model the router prefers realises nothing, the others all
            items = [{"request_id": rid, "score": 0.0 if m == bad else 1.0}
                     for rid, m, _ in answered]
            assert (await client.post("/v1/feedback", json={"feedback": items})).status_code == 200
            health = (await client.get("/v1/controllers")).json()["models"].get(f"open|{bad}")
            if health and health["excluded"]:
                break
            answered = await ask(client, PROMPTS)
        assert health["excluded"] and health["last_shortfall"] > 0.2
        assert f"model {bad!r} excluded for tenant 'open'" in caplog.text
        after = await ask(client, PROMPTS)
        rerouted = [h for _, m, h in after if h.get("x-proteus-rerouted-from") == bad]
        probes = [m for _, m, _ in after if m == bad]
        assert rerouted and len(probes) < len(rerouted) / 2  # ~1 in probe_every = 5 probes
        text = (await client.get("/metrics")).text
        assert metric(text, "proteus_online_model_excluded", tenant="open", model=bad) == 1.0
        assert metric(text, "proteus_online_model_events_total", tenant="open", model=bad,
                      event="excluded") == 1.0
        assert metric(text, "proteus_online_rerouted_total", tenant="open", model=bad) >= 1


def test_controllers_need_the_online_controller(router, upstream, tmp_path):
    asyncio.run(_controllers_need_the_online_controller(router, upstream, tmp_path))


async def _controllers_need_the_online_controller(router, upstream, tmp_path):
    upstreams = load_models(gh.models_file(tmp_path, upstream.url, {m: {} for m in router.models}),
                            router.models)
    app = gateway.create_gateway(router, upstreams, None, gateway.GatewaySettings())
    async with gh.in_process(app) as client:
        got = await client.get("/v1/controllers")
        assert got.status_code == 404 and got.json()["error"]["code"] == "online_off"


def _port() -> int:
    import socket  # noqa: PLC0415

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(router, models, db):
    """`launch.gateway --online` on a free loopback port: (process, base URL)."""
    port = _port()
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "launch.gateway", f"--artifact={router.path}",
         f"--models_file={models}", f"--usage_db={db}", f"--port={port}", "--online",
         "--drift_arl=20", "--log_level=warning", "--noaccess_log"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read()
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return proc, url
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("the gateway did not come up")


def test_kill_and_restart_loses_nothing_acknowledged(router, upstream, tmp_path):
    """SIGKILL (no shutdown hook runs) after 20 routed requests and 12 acknowledged scores:
    the restarted gateway has every decision, the same controllers and model tests, refuses the
    acknowledged scores as duplicates and takes the others."""
    models = gh.models_file(tmp_path, upstream.url, {m: {} for m in router.models})
    db = tmp_path / "gateway.sqlite3"
    proc, url = start(router, models, db)
    try:
        ids, served = [], []
        for text in PROMPTS[:20]:
            got = httpx.post(url + "/v1/chat/completions", content=gh.chat(text, "proteus-0.5"),
                             headers={"content-type": "application/json"}, timeout=30)
            assert got.status_code == 200, got.text
            ids.append(got.headers["x-proteus-request-id"])
            served.append(got.headers["x-proteus-model"])
        items = [{"request_id": i, "score": 0.0} for i in ids[:12]]
        acked = httpx.post(url + "/v1/feedback", json={"feedback": items}, timeout=30).json()
        assert acked["counts"]["accepted"] == 12
        before = httpx.get(url + "/v1/controllers", timeout=30).json()
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    proc, url = start(router, models, db)
    try:
        after = httpx.get(url + "/v1/controllers", timeout=30).json()
        assert after["controllers"] == before["controllers"]
        assert after["models"] == before["models"]
        assert after["decisions"] == {"accepted": 12, "pending": 8, "total": 20}
        res = httpx.post(url + "/v1/feedback", json={"feedback": [
            {"request_id": ids[0], "score": 1.0}, {"request_id": ids[15], "score": 1.0}]},
            timeout=30).json()
        assert [r["status"] for r in res["results"]] == ["duplicate", "accepted"]
        resumed = httpx.get(url + "/v1/controllers", timeout=30).json()["controllers"]
        assert resumed["open|0.5000"]["n_feedback"] == 13
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_an_artifact_reload_is_refused_while_online(router, upstream, tmp_path):
    """The streams were measured on the served pool's points: a reload would serve them at
    points of another pool, so it is refused, counted, and the old router keeps serving."""
    asyncio.run(_reload_refused(router, upstream, tmp_path))


async def _reload_refused(router, upstream, tmp_path):
    app = online_gateway(router, upstream.url, tmp_path)
    async with gh.in_process(app) as client:
        assert app.reload_artifact() is False
        assert app.router is router
        body = (await client.get("/metrics")).text
        assert metric(body, "proteus_gateway_artifact_reloads_total", result="error") == 1.0
        assert (await ask(client, PROMPTS[:2]))[0][1] in router.models
