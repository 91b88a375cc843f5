"""Reloading the gateway onto a new artifact under load: no request fails, requests routed
before the swap are answered by the old pool's upstreams, requests after it by the new pool's
(issue 30 item 2).

In process (`GatewayApp.reload_artifact` while client threads keep asking for completions) and
through the launcher (`python -m launch.gateway`, SIGHUP, the artifact replaced in place as
`launch.onboard --overwrite` does and the models file rewritten for the new pool).
"""

import dataclasses
import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from proteus import serving
from proteus.gateway import app as gateway
from proteus.gateway import config, fake, runner
from proteus.serving import server
from tests import gateway_helpers as gh
from tests import load_helpers

pytest_plugins = ["tests.serving_fixtures"]
OLD, NEW = ("small", "medium", "large"), ("xsmall", "xmedium", "xlarge")  # every name new


@pytest.fixture(scope="module")
def upstream():
    with runner.server_thread(fake.FakeUpstream()) as running:
        yield running


@pytest.fixture()
def served(tmp_path, tiny_bundle) -> str:
    """The tiny text router at a served path, and the new one (every model renamed) aside."""
    path = str(tmp_path / "served")
    gh.text_router(tiny_bundle, path)
    prices = dict(zip(NEW, tiny_bundle.prices.values(), strict=True))
    gh.text_router(dataclasses.replace(tiny_bundle, models=NEW, prices=prices),
                   str(tmp_path / "next"))
    return path


def replace_in_place(path: str) -> None:
    """The new artifact swapped into the served path in one rename (what --overwrite does)."""
    os.replace(path, path + ".old")
    os.replace(os.path.join(os.path.dirname(path), "next"), path)


def models_file(tmp_path, url: str, pool) -> str:
    return gh.models_file(tmp_path, url, {m: {} for m in pool})


class Load(load_helpers.ClientLoad):
    """Client threads asking for chat completions as fast as they can, recording in order the
    model that answered each (x-proteus-model) or its failure."""

    def __init__(self, url: str, threads: int = 4):
        super().__init__(url, threads)
        self.models = self.answers

    def post(self, client: httpx.Client, i: int) -> httpx.Response:
        body = gh.chat(f"question {i} about quantum chromodynamics", model="proteus-0.7")
        return client.post("/v1/chat/completions", content=body,
                           headers={"content-type": "application/json"})

    def answer(self, got: httpx.Response) -> str:
        return got.headers["x-proteus-model"]


def test_reload_under_load_drops_nothing(served, upstream, tmp_path):
    models = models_file(tmp_path, upstream.url, OLD)
    router = serving.Router.load(served)
    settings = gateway.GatewaySettings(route=server.ServerSettings(max_batch=8))
    app = gateway.create_gateway(router, config.load_models(models, OLD), None, settings,
                                 models_file=models)
    with runner.server_thread(app) as running, Load(running.url) as load:
        load.wait_for(50)
        replace_in_place(served)
        assert not app.reload_artifact()  # the models file has no upstream for the new pool
        models_file(tmp_path, upstream.url, NEW)
        before = len(load.models)
        assert app.reload_artifact()  # blocking: loads, verifies, compiles, swaps
        after = len(load.models)
        load.wait_for(after + 50)
        got = httpx.post(running.url + "/v1/route", json={"query": "hi", "tau": 0.6}).json()
        assert set(got["p_hat"]) == set(NEW)  # the mounted router service swapped too
    assert load.failures == []
    assert set(load.models[:before]) <= set(OLD)
    # after the swap, only the requests in flight (one per client) may still finish on the old
    # pool, wherever their answers land among the others' (a slow one lands late)
    late = load.models[after:]
    assert set(late) <= set(OLD) | set(NEW)
    assert sum(m in OLD for m in late) <= len(load.threads)
    assert app.router.models == NEW and set(app.prices) >= set(NEW)
    metrics = app.metrics.exposition().decode()
    assert 'proteus_gateway_artifact_reloads_total{result="ok"} 1.0' in metrics
    assert 'proteus_gateway_artifact_reloads_total{result="error"} 1.0' in metrics


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_launcher_reloads_on_sighup_under_load(served, upstream, tmp_path):
    models = models_file(tmp_path, upstream.url, OLD)
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    # to a file, not a pipe: an access-log line per request would fill an unread pipe and block it
    log = open(tmp_path / "gateway.log", "w")  # noqa: SIM115 (closed with the process below)
    proc = subprocess.Popen([sys.executable, "-m", "launch.gateway", f"--artifact={served}",
                             f"--models_file={models}", "--usage_db=:memory:", f"--port={port}",
                             "--log_level=warning"],
                            stdout=log, stderr=subprocess.STDOUT)
    try:  # the launcher compiles every batch size up to 256 at start and at the reload: minutes
        load_helpers.wait_healthy(proc, url, 300, "launch.gateway",  # on a loaded machine
                                  lambda: (tmp_path / "gateway.log").read_text())
        with Load(url, threads=2) as load:
            load.wait_for(30)
            replace_in_place(served)
            models_file(tmp_path, upstream.url, NEW)
            proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 300
            while not load.models or load.models[-1] not in NEW:
                assert time.monotonic() < deadline, "not reloaded"
                time.sleep(0.05)
            load.wait_for(len(load.models) + 30)
        assert load.failures == []
        assert load.models[0] in OLD and load.models[-1] in NEW
        listed = httpx.get(url + "/v1/models").json()["router"]["models"]
        assert [m["name"] for m in listed] == list(NEW)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
