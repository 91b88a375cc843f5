"""Reloading the router service onto a new artifact under load: no request fails, requests parsed
before the swap finish on the old router, requests after it go to the new one (issue 30 item 2).

In process (`RouteService.reload` while client threads keep routing) and through the launcher
(`python -m launch.serve`, SIGHUP, the artifact replaced in place as `launch.onboard
--overwrite` does).
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
from proteus.serving import server
from proteus.training import export
from tests import load_helpers

pytest_plugins = ["tests.serving_fixtures"]
OLD, NEW = ("small", "medium", "large"), ("small", "medium", "xlarge")  # NEW: a swapped pool


@pytest.fixture()
def artifact(tmp_path, tiny_bundle) -> str:
    """The tiny router at a served path, and the new one (a renamed model) written aside."""
    path = str(tmp_path / "served")
    export.write_artifact(tiny_bundle, path, verify=False)
    renamed = dataclasses.replace(tiny_bundle, models=NEW,
                                  prices={"small": (1e-7, 2e-7), "xlarge": (1e-5, 3e-5)})
    export.write_artifact(renamed, str(tmp_path / "next"), verify=False)
    return path


def replace_in_place(path: str) -> None:
    """The new artifact swapped into the served path in one rename (what --overwrite does)."""
    aside = path + ".old"
    os.replace(path, aside)
    os.replace(os.path.join(os.path.dirname(path), "next"), path)


class Load(load_helpers.ClientLoad):
    """Client threads routing one query per request as fast as they can, recording each
    answer's model pool (or its failure) in order."""

    def __init__(self, url: str, threads: int = 6):
        super().__init__(url, threads)
        self.pools = self.answers

    def post(self, client: httpx.Client, i: int) -> httpx.Response:
        return client.post("/v1/route", json={"features": [0.1 * i, -0.2, 0.3, 0.05], "tau": 0.7})

    def answer(self, got: httpx.Response) -> tuple[str, ...]:
        return tuple(got.json()["p_hat"])


def test_reload_under_load_drops_nothing(artifact):
    # max_batch: a reload compiles every batch bucket up to it (warmup); small keeps this fast
    app = server.create_app(serving.Router.load(artifact), server.ServerSettings(max_batch=8))
    with server.ServerThread(app) as running, Load(running.url) as load:
        load.wait_for(100)
        replace_in_place(artifact)
        before = len(load.pools)
        assert app.service.reload()  # blocking: loads, verifies, compiles, swaps
        after = len(load.pools)
        load.wait_for(after + 100)
    assert load.failures == []
    assert set(load.pools[:before]) == {OLD}
    # after the swap, only the requests in flight (one per client) may still finish on the old
    # pool, wherever their answers land among the others' (a slow one lands late)
    late = load.pools[after:]
    assert set(late) <= {OLD, NEW}
    assert sum(pool == OLD for pool in late) <= len(load.threads)
    assert app.service.reloads == {"ok": 1, "error": 0}


def test_a_broken_artifact_is_not_reloaded(artifact, tmp_path):
    app = server.create_app(serving.Router.load(artifact))
    assert not app.service.reload(str(tmp_path / "missing"))
    assert app.service.router.models == OLD and app.service.reloads["error"] == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_launcher_reloads_on_sighup_under_load(artifact):
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, "-m", "launch.serve", f"--artifact={artifact}",
                             f"--port={port}", "--log_level=warning", "--max_batch=8"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        load_helpers.wait_healthy(proc, url, 120, "launch.serve",
                                  lambda: proc.stdout.read().decode())
        with Load(url, threads=4) as load:
            load.wait_for(50)
            replace_in_place(artifact)
            proc.send_signal(signal.SIGHUP)
            deadline = time.monotonic() + 60
            while not load.pools or load.pools[-1] != NEW:
                assert time.monotonic() < deadline, "not reloaded"
                time.sleep(0.05)
            load.wait_for(len(load.pools) + 50)
        assert load.failures == []
        assert load.pools[0] == OLD and load.pools[-1] == NEW
        assert httpx.get(url + "/v1/models").json()["models"][2]["name"] == "xlarge"
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
