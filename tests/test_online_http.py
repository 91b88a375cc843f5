"""POST /v1/feedback and GET /v1/controllers against real loopback servers (127.0.0.1 only).

One server runs in a thread of this process; the durability test runs the server in a child
process, kills it with SIGKILL mid-stream and restarts it on the same SQLite file.
"""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import uvicorn

from proteus.online import controller as ctl
from proteus.online.http import create_app
from proteus.online.service import OnlineService, OnlineSettings
from proteus.online.store import Store
from proteus.serving import Router

pytest_plugins = ["tests.serving_fixtures"]
REPO = Path(__file__).resolve().parents[1]

# The child server: loads the artifact, opens the store, serves on a socket it bound itself.
CHILD = """
import socket, sys, time
import uvicorn
from proteus.online import controller as ctl
from proteus.online.http import create_app
from proteus.online.service import OnlineService, OnlineSettings
from proteus.online.store import Store
from proteus.serving import Router
cfg = ctl.ControllerConfig(k_i=0.01, trust_after=0, boost=1.0, smith=0.0)  # sums by hand
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
                                k_i=0.01, trust_after=0, smith=0.0)))
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
    rid = route(port, 1, tenant="web")[0]
    status, body = call(port, "POST", "/v1/feedback", {"request_id": rid, "score": 1.0,
                                                       "cost": 2e-4})
    assert (status, body["status"], body["stream"]) == (200, "accepted", "web|0.7000")
    status, body = call(port, "POST", "/v1/feedback", {"request_id": rid, "score": 0.0})
    assert (status, body["status"]) == (409, "duplicate")
    status, body = call(port, "POST", "/v1/feedback", {"request_id": "missing", "score": 0.0})
    assert (status, body["status"]) == (404, "unknown")
    status, body = call(port, "POST", "/v1/feedback", {"request_id": rid, "score": 2})
    assert (status, body["status"]) == (422, "invalid") and "[0, 1]" in body["detail"]
    status, body = call(port, "POST", "/v1/feedback", b"{not json")
    assert status == 400 and "JSON" in body["detail"]


def test_batched_feedback_and_controllers(server):
    port, service = server
    ids = route(port, 6, tau=0.65, tenant="batch")
    items = [{"request_id": i, "score": 0.0} for i in ids[::-1]]  # out of order
    items.append({"request_id": "missing", "score": 1.0})
    status, body = call(port, "POST", "/v1/feedback", {"feedback": items})
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
                     {"feedback": [{"request_id": i, "score": 0.0} for i in ids[:12]]})[1]
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
                                 {"request_id": ids[15], "score": 1.0}]})[1]
        assert [r["status"] for r in res["results"]] == ["duplicate", "accepted"]
        resumed = call(port, "GET", "/v1/controllers")[1]["controllers"]["crash|0.7000"]
        assert resumed["n_feedback"] == 13
        assert resumed["integral"] == pytest.approx(before["integral"]
                                                    + 0.01 * (before["setpoint"] - 1.0))
    finally:
        proc.terminate()
        proc.wait(timeout=30)
