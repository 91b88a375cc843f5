"""POST /v1/feedback and GET /v1/controllers against real loopback servers (127.0.0.1 only).

One server runs in a thread of this process; the durability test runs the server in a child
process, kills it with SIGKILL mid-stream and restarts it on the same SQLite file.
"""

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import types
import urllib.error
import urllib.request
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn
from fastapi import FastAPI

from proteus.gateway import keys, runner
from proteus.gateway.config import Tenant, load_keys
from proteus.online import controller as ctl
from proteus.online import http as online_http
from proteus.online.http import TENANT_HEADER, BodyError, create_app
from proteus.online.service import OnlineService, OnlineSettings
from proteus.online.store import Store
from proteus.serving import Router
from proteus.serving.server import ServerSettings
from tests import gateway_helpers

pytest_plugins = ["tests.serving_fixtures"]
REPO = Path(__file__).resolve().parents[1]
JSON = {"content-type": "application/json"}

# The child server: loads the artifact, opens the store, serves on a socket it bound itself.
CHILD = """
import socket, sys, time
import uvicorn
from proteus.online import controller as ctl
from proteus.online.http import create_app
from proteus.online.service import OnlineService, OnlineSettings
from proteus.online.store import Store
from proteus.serving import Router
cfg = ctl.ControllerConfig(k_i=0.01, trust_after=0, boost=1.0, smith=0.0, dead_band=0.0,
                           allow_below_certified=True)  # sums by hand
service = OnlineService(Router.load(sys.argv[1], warmup=0), Store(sys.argv[2], time.time),
                        OnlineSettings(controller=cfg))
sock = socket.socket()
sock.bind(("127.0.0.1", 0))
print(sock.getsockname()[1], flush=True)
uvicorn.Server(uvicorn.Config(create_app(service), log_level="warning")).run(sockets=[sock])
"""


def call(port, method, path, body=None, headers=None):
    """(status, JSON) of one HTTP request to 127.0.0.1:port."""
    data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body)
                                      .encode())
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                 headers={"content-type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


@pytest.fixture(scope="module")
def server(tiny_lane_artifact):
    """A thread-hosted server over an in-memory store: (port, service)."""
    service = OnlineService(Router.load(tiny_lane_artifact, warmup=0), Store(":memory:", time.time),
                            OnlineSettings(controller=ctl.ControllerConfig(
                                k_i=0.01, trust_after=0, smith=0.0, dead_band=0.0,
                                allow_below_certified=True)))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    srv = uvicorn.Server(uvicorn.Config(create_app(service), log_level="warning"))
    thread = threading.Thread(target=srv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.time() + 30
    while not srv.started and time.time() < deadline:
        time.sleep(0.05)
    assert srv.started, "the loopback server did not start"
    yield sock.getsockname()[1], service
    srv.should_exit = True
    thread.join(timeout=10)


def route(port, n, tau=0.7, tenant=None):
    reqs = [{"features": np.random.default_rng(i).normal(size=4).tolist(), "tau": tau}
            for i in range(n)]
    headers = {"x-proteus-tenant": tenant} if tenant else None
    status, body = call(port, "POST", "/v1/route", {"requests": reqs}, headers)
    assert status == 200, body
    return [d["request_id"] for d in body["decisions"]]


def test_single_feedback_statuses(server):
    port, _ = server
    rid, web = route(port, 1, tenant="web")[0], {"x-proteus-tenant": "web"}
    status, body = call(port, "POST", "/v1/feedback", {"request_id": rid, "score": 1.0,
                                                       "cost": 2e-4}, web)
    assert (status, body["status"], body["stream"]) == (200, "accepted", "web|0.7000")
    status, body = call(port, "POST", "/v1/feedback", {"request_id": rid, "score": 0.0}, web)
    assert (status, body["status"]) == (409, "duplicate")
    status, body = call(port, "POST", "/v1/feedback", {"request_id": "missing", "score": 0.0})
    assert (status, body["status"]) == (404, "unknown")
    status, body = call(port, "POST", "/v1/feedback", {"request_id": rid, "score": 2}, web)
    assert (status, body["status"]) == (422, "invalid") and "[0, 1]" in body["detail"]
    status, body = call(port, "POST", "/v1/feedback", b"{not json")
    assert status == 400 and "JSON" in body["detail"]


def test_batched_feedback_and_controllers(server):
    port, service = server
    ids = route(port, 6, tau=0.65, tenant="batch")
    items = [{"request_id": i, "score": 0.0} for i in ids[::-1]]  # out of order
    items.append({"request_id": "missing", "score": 1.0})
    status, body = call(port, "POST", "/v1/feedback", {"feedback": items},
                        {"x-proteus-tenant": "batch"})
    assert status == 200
    assert body["counts"] == {"accepted": 6, "duplicate": 0, "late": 0, "unknown": 1,
                              "invalid": 0}
    assert [r["status"] for r in body["results"]][-1] == "unknown"
    status, body = call(port, "GET", "/v1/controllers")
    assert status == 200
    c = body["controllers"]["batch|0.6500"]
    assert c["n_feedback"] == 6 and c["n_decisions"] == 6
    assert c["integral"] == pytest.approx(6 * 0.01 * c["setpoint"])  # six scores of 0
    assert c["operating_tau"] > 0.65 and c["offset"] > 0
    assert body["decisions"]["accepted"] >= 6


def test_route_errors(server):
    port, _ = server
    status, body = call(port, "POST", "/v1/route", {"features": [0.0] * 4, "tau": 1.5})
    assert status == 422 and "tau" in body["detail"]
    status, body = call(port, "POST", "/v1/route", {"features": [0.0] * 3, "tau": 0.7})
    assert status == 422 and "feature" in body["detail"]
    status, body = call(port, "POST", "/v1/feedback", {"feedback": []})
    assert status == 400


CRASH = {"x-proteus-tenant": "crash"}


def start_child(artifact, db):
    env = {**os.environ, "PYTHONPATH": str(REPO), "JAX_PLATFORMS": "cpu"}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, artifact, str(db)], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, text=True)
    port = int(proc.stdout.readline())
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if call(port, "GET", "/healthz")[0] == 200:
                return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise AssertionError("the child server did not come up")


def test_kill_and_restart_loses_nothing_acknowledged(tiny_lane_artifact, tmp_path):
    db = tmp_path / "online.db"
    proc, port = start_child(tiny_lane_artifact, db)
    try:
        ids = route(port, 20, tenant="crash")
        acked = call(port, "POST", "/v1/feedback",
                     {"feedback": [{"request_id": i, "score": 0.0} for i in ids[:12]]}, CRASH)[1]
        assert acked["counts"]["accepted"] == 12
        before = call(port, "GET", "/v1/controllers")[1]["controllers"]["crash|0.7000"]
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # no shutdown hook runs
        proc.wait(timeout=30)
    proc, port = start_child(tiny_lane_artifact, db)
    try:
        after = call(port, "GET", "/v1/controllers")[1]
        assert after["controllers"]["crash|0.7000"] == before
        assert after["decisions"] == {"accepted": 12, "pending": 8, "total": 20}
        res = call(port, "POST", "/v1/feedback",
                   {"feedback": [{"request_id": ids[0], "score": 1.0},
                                 {"request_id": ids[15], "score": 1.0}]}, CRASH)[1]
        assert [r["status"] for r in res["results"]] == ["duplicate", "accepted"]
        resumed = call(port, "GET", "/v1/controllers")[1]["controllers"]["crash|0.7000"]
        assert resumed["n_feedback"] == 13
        assert resumed["integral"] == pytest.approx(before["integral"]
                                                    + 0.01 * (before["setpoint"] - 1.0))
    finally:
        proc.terminate()
        proc.wait(timeout=30)


# ------------------------------------------------------------------ issue 26 item 7


def test_feedback_is_bound_to_its_tenant(server):
    """The probe: feedback for another tenant's request was accepted (X-Proteus-Tenant: evil).
    Open mode binds the request and its feedback to the header's tenant."""
    port, _ = server
    rid = route(port, 1, tenant="owner")[0]
    status, body = call(port, "POST", "/v1/feedback", {"request_id": rid, "score": 1.0},
                        {"x-proteus-tenant": "evil"})
    assert (status, body["status"]) == (404, "unknown")
    status, body = call(port, "POST", "/v1/feedback", {"request_id": rid, "score": 1.0})
    assert (status, body["status"]) == (404, "unknown")  # no header: the default tenant
    status, body = call(port, "POST", "/v1/feedback", {"request_id": rid, "score": 1.0},
                        {"x-proteus-tenant": "owner"})
    assert (status, body["status"]) == (200, "accepted")


@pytest.fixture(scope="module")
def keyed(tiny_lane_artifact, tmp_path_factory):
    """The app with the gateway's keys file (tenants "a" and "b") and small limits: (url,)."""
    path = tmp_path_factory.mktemp("online_keys") / "keys.toml"
    tenants = load_keys(gateway_helpers.keys_file(path, {"a": {}, "b": {}}))
    service = OnlineService(Router.load(tiny_lane_artifact, warmup=0), Store(":memory:", time.time))
    settings = ServerSettings(max_body_bytes=4096, read_timeout_s=0.5, header_timeout_s=0.5)
    app = create_app(service, keys=tenants, settings=settings)
    with runner.server_thread(app, settings=settings) as running:
        yield running.url


def test_keys_authenticate_and_bind_the_tenant(keyed):
    """The gateway's keys: a request needs one, routes into its key's tenant, and feedback or
    controllers of another tenant's requests are out of reach."""
    body = {"features": [0.0] * 4, "tau": 0.7}
    assert httpx.post(keyed + "/v1/route", json=body).status_code == 401
    got = httpx.post(keyed + "/v1/route", json={**body}, headers={
        **gateway_helpers.auth("a"), TENANT_HEADER: "b"})  # the header cannot pick a tenant
    assert got.status_code == 200 and got.json()["stream"] == "a|0.7000"
    rid = got.json()["request_id"]
    score = {"request_id": rid, "score": 1.0}
    assert httpx.post(keyed + "/v1/feedback", json=score).status_code == 401
    as_b = httpx.post(keyed + "/v1/feedback", json=score, headers=gateway_helpers.auth("b"))
    assert as_b.status_code == 404 and as_b.json()["status"] == "unknown"
    b_sees = httpx.get(keyed + "/v1/controllers", headers=gateway_helpers.auth("b")).json()
    assert b_sees["controllers"] == {}
    as_a = httpx.post(keyed + "/v1/feedback", json=score, headers=gateway_helpers.auth("a"))
    assert as_a.status_code == 200 and as_a.json()["status"] == "accepted"
    assert httpx.get(keyed + "/healthz").status_code == 200  # liveness needs no key


def test_limits_of_the_gateway(keyed):
    """Content type, body size, JSON depth and a body that never completes, as at the gateway."""
    a = gateway_helpers.auth("a")
    for path in ("/v1/route", "/v1/feedback"):
        got = httpx.post(keyed + path, content=b'{"request_id": "x", "score": 1}',
                         headers={**a, "content-type": "text/plain"})
        assert got.status_code == 415 and got.json()["error"]["code"] == "unsupported_media_type"
        got = httpx.post(keyed + path, content=b"[" * 100_000, headers={**a, **JSON})
        assert got.status_code in (400, 413)
        got = httpx.post(keyed + path, content=b"[" * 1000 + b"]" * 1000, headers={**a, **JSON})
        assert got.status_code == 400 and "nested deeper" in got.json()["detail"]
    host, port = keyed.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(b"POST /v1/route HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n"
                     b"authorization: Bearer " + gateway_helpers.key("a").encode() +
                     b"\r\ncontent-length: 100\r\n\r\n{\"tau\"")
        assert sock.recv(4096).startswith(b"HTTP/1.1 408")


def test_error_response_in_both_shapes():
    err = BodyError(413, "3 feedback items exceed the limit of 2", "batch_too_large")
    got = online_http.error_response(err)
    assert got.status_code == 413
    assert json.loads(got.body) == {
        "detail": "3 feedback items exceed the limit of 2",
        "error": {"message": "3 feedback items exceed the limit of 2",
                  "type": "invalid_request_error", "param": None, "code": "batch_too_large"}}
    plain = json.loads(online_http.error_response(BodyError(400, "bad")).body)
    assert plain["error"]["code"] == "invalid_request"  # BodyError's default code


class _Outcomes:
    """A stand-in service: each request id's outcome is its name's prefix ("late-1": late)."""

    def __init__(self):
        self.calls = []

    def feedback(self, items, tenant):
        self.calls.append((items, tenant))
        return [{"request_id": i["request_id"], "status": i["request_id"].split("-")[0]}
                for i in items]


def test_feedback_response_status_and_counts():
    service = _Outcomes()
    for outcome, status in [("accepted", 200), ("duplicate", 409), ("late", 410),
                            ("unknown", 404), ("invalid", 422)]:
        body = json.dumps({"request_id": f"{outcome}-1", "score": 1.0}).encode()
        assert online_http.feedback_response(service, body, 10, "acme") == (
            status, {"request_id": f"{outcome}-1", "status": outcome})
    assert service.calls[-1] == ([{"request_id": "invalid-1", "score": 1.0}], "acme")
    batch = {"feedback": [{"request_id": "accepted-1"}, {"request_id": "unknown-2"},
                          {"request_id": "accepted-3"}]}
    status, body = online_http.feedback_response(service, json.dumps(batch).encode(), 3)
    assert status == 200 and [r["status"] for r in body["results"]] == [
        "accepted", "unknown", "accepted"]
    assert body["counts"] == {"accepted": 2, "duplicate": 0, "late": 0, "unknown": 1,
                              "invalid": 0}
    assert service.calls[-1][1] is None  # no tenant: every tenant's requests


@pytest.mark.parametrize("raw, status, code, message", [
    (b'{"feedback": []}', 400, "invalid_request", "'feedback' must be a non-empty list"),
    (b'{"feedback": {"request_id": "a"}}', 400, "invalid_request", "non-empty list"),
    (b'{"feedback": [{}, {}, {}]}', 413, "batch_too_large",
     "3 feedback items exceed the limit of 2"),
    (b'[{"request_id": "a"}]', 400, "invalid_request", "body must be a feedback object"),
    (b'{"request_id": ', 400, "invalid_json", "malformed JSON"),
    (b'{"a": [[[[1]]]]}', 400, "invalid_json", "nested deeper than 3 levels"),
])
def test_feedback_response_refusals(raw, status, code, message):
    service = _Outcomes()
    with pytest.raises(BodyError, match=message) as err:
        online_http.feedback_response(service, raw, 2, settings=ServerSettings(max_json_depth=3))
    assert (err.value.status, err.value.code) == (status, code)
    assert service.calls == []  # nothing reached the service


class _Controllers(_Outcomes):
    """`_Outcomes` that also answers GET /v1/controllers with the tenant it was asked for."""

    def controllers(self, tenant):
        self.calls.append(("controllers", tenant))
        return {"controllers": {"for": tenant}}


def _asgi(app, requests):
    """(status, JSON) of each (method, path, body, headers) request to `app`, in process."""
    async def send():
        transport = httpx.ASGITransport(app)
        async with httpx.AsyncClient(transport=transport, base_url="http://online") as client:
            return [await client.request(method, path, content=body, headers=headers)
                    for method, path, body, headers in requests]

    return [(r.status_code, r.json()) for r in asyncio.run(send())]


def test_add_online_routes_mounts_feedback_and_controllers_open():
    """Open (no keys): the tenant is the X-Proteus-Tenant header, else "default"; controllers
    of every tenant (None); the status is the single item's outcome."""
    service, app = _Controllers(), FastAPI()
    online_http.add_online_routes(app, service, max_batch=2)
    one = json.dumps({"request_id": "late-1", "score": 0.5}).encode()
    three = json.dumps({"feedback": [{"request_id": f"accepted-{i}"} for i in range(3)]}).encode()
    got = _asgi(app, [("POST", "/v1/feedback", one, {**JSON, TENANT_HEADER: "acme"}),
                      ("POST", "/v1/feedback", one, JSON),
                      ("POST", "/v1/feedback", three, JSON),
                      ("POST", "/v1/feedback", one, {"content-type": "text/plain"}),
                      ("GET", "/v1/controllers", None, {TENANT_HEADER: "acme"})])
    assert got[0] == (410, {"request_id": "late-1", "status": "late"})
    assert got[1][0] == 410
    assert got[2][0] == 413 and got[2][1]["error"]["code"] == "batch_too_large"  # 3 > max_batch 2
    assert got[3][0] == 415 and got[3][1]["detail"] == "Content-Type must be application/json"
    assert got[4] == (200, {"controllers": {"for": None}})  # open: the header is ignored here
    assert service.calls == [([{"request_id": "late-1", "score": 0.5}], "acme"),
                             ([{"request_id": "late-1", "score": 0.5}], "default"),
                             ("controllers", None)]


def test_add_online_routes_with_keys_binds_the_keys_tenant():
    service, app = _Controllers(), FastAPI()
    access = online_http.Access({keys.hash_key("sk-a"): Tenant("a", 0.8)})
    online_http.add_online_routes(app, service, access)
    one = json.dumps({"request_id": "accepted-1"}).encode()
    a = {"authorization": "Bearer sk-a"}
    got = _asgi(app, [("POST", "/v1/feedback", one, {**JSON, **a, TENANT_HEADER: "b"}),
                      ("POST", "/v1/feedback", one, JSON),
                      ("GET", "/v1/controllers", None, a),
                      ("GET", "/v1/controllers", None, {"authorization": "Bearer sk-b"})])
    assert got[0] == (200, {"request_id": "accepted-1", "status": "accepted"})
    assert got[1][0] == 401 and got[1][1]["error"]["code"] == "missing_api_key"
    assert got[2] == (200, {"controllers": {"for": "a"}})
    assert got[3][0] == 401 and got[3][1]["detail"] == "incorrect API key provided"
    # the header cannot pick another tenant; refused requests never reach the service
    assert service.calls == [([{"request_id": "accepted-1"}], "a"), ("controllers", "a")]


def test_runner_uvicorn_config_settings_given_else_the_apps_else_defaults():
    given = ServerSettings(header_timeout_s=1.5, keep_alive_timeout_s=3)
    own = ServerSettings(header_timeout_s=2.5, keep_alive_timeout_s=4)
    with_own = types.SimpleNamespace(http_settings=own)
    bare = object()
    cases = [(runner.uvicorn_config(with_own, settings=given), 3, 1.5),
             (runner.uvicorn_config(with_own), 4, 2.5),
             (runner.uvicorn_config(bare), 5, 10.0)]  # ServerSettings' defaults
    for config, keep_alive, header_timeout in cases:
        assert config.timeout_keep_alive == keep_alive
        timers = []  # the protocol's header timer, armed on a stand-in connection
        conn = types.SimpleNamespace(cycle=None, loop=types.SimpleNamespace(
            call_later=lambda delay, _, timers=timers: timers.append(delay)))
        config.http._arm_header_timer(conn)
        assert timers == [header_timeout]
        assert (config.ws, config.lifespan, config.access_log) == ("none", "on", False)
        assert (config.host, config.port, config.log_level) == ("127.0.0.1", 0, "warning")
        assert config.http.__name__.startswith("HeaderTimeout")
    config = runner.uvicorn_config(bare, "127.0.0.3", 8124, "info")
    assert (config.app, config.host, config.port, config.log_level) == (bare, "127.0.0.3", 8124,
                                                                        "info")
