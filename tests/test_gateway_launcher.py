"""`python -m launch.gateway` and `gateway_from_files`: files, keys, host refusal, a routed
request, a SIGHUP reload, a clean shutdown that writes the usage."""

import signal
import socket
import sqlite3
import subprocess
import sys
import time

import httpx
import pytest

from proteus.gateway import app as gateway
from proteus.gateway import config, fake, keys, runner
from tests import gateway_helpers as gh

pytest_plugins = ["tests.serving_fixtures"]
HARD = "explain quantum chromodynamics in detail"


@pytest.fixture(scope="module")
def router(tiny_bundle, tmp_path_factory):
    return gh.text_router(tiny_bundle, str(tmp_path_factory.mktemp("launcher") / "artifact"))


@pytest.fixture(scope="module")
def upstream():
    with runner.server_thread(fake.FakeUpstream()) as running:
        yield running


def files(router, upstream_url: str, tmp_path) -> tuple[str, str]:
    entries = {m: {"upstream_model": f"up-{m}"} for m in router.models}
    return (gh.models_file(tmp_path, upstream_url, entries),
            gh.keys_file(tmp_path / "keys.toml", {"team": {"tau_range": [0.5, 1.0]}}))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(check, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_open_mode_refuses_public_hosts():
    gateway.check_host("127.0.0.1", None)
    gateway.check_host("0.0.0.0", {"x": config.Tenant("t", 0.8)})
    for host in ("0.0.0.0", "10.1.2.3", "example.com"):
        with pytest.raises(ValueError, match="without a keys file"):
            gateway.check_host(host, None)


def test_launcher_serves(router, upstream, tmp_path):
    """End to end: one routed request; then "team"'s key is revoked in the file and SIGHUP
    reloads it (issue 26 item 6: the landed process died of SIGHUP); the shutdown writes the
    usage."""
    models, keys_path = files(router, upstream.url, tmp_path)
    port = _closed_port()
    cmd = [sys.executable, "-m", "launch.gateway", f"--artifact={router.path}",
           f"--models_file={models}", f"--keys_file={keys_path}",
           f"--usage_db={tmp_path / 'u.sqlite3'}", f"--port={port}", "--log_level=warning",
           "--watch_keys_s=0"]  # reloaded on SIGHUP only
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/v1/chat/completions"
    ask = {"model": "proteus-0.5", "messages": [{"role": "user", "content": HARD}]}
    post = lambda key: httpx.post(url, json=ask, headers={"authorization": f"Bearer {key}"})
    try:
        deadline = time.monotonic() + 300  # it compiles every batch size: slow on a busy CPU
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "launch.gateway did not start"
            time.sleep(0.1)
        reply = post(gh.key("team"))
        chosen = router.route(HARD, 0.5)[0]["model"]
        assert reply.json()["choices"][0]["message"]["content"].startswith(f"up-{chosen}")
        text = open(keys_path).read()
        with open(keys_path, "w") as f:
            f.write(text.replace(keys.hash_key(gh.key("team")), keys.hash_key("sk-rotated")))
        proc.send_signal(signal.SIGHUP)
        _wait_for(lambda: post(gh.key("team")).status_code == 401, timeout=10)
        assert proc.poll() is None  # still serving
        assert post("sk-rotated").status_code == 200
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal
    with sqlite3.connect(tmp_path / "u.sqlite3") as db:  # the shutdown flushed the usage
        count = db.execute("SELECT SUM(requests) FROM usage WHERE tenant = 'team'").fetchone()
    assert count[0] >= 2  # the first key (until its revocation was read), the rotated one


def test_gateway_from_files(router, tiny_artifact, tmp_path):
    models, keys_path = files(router, "http://127.0.0.1:9", tmp_path)
    settings = gateway.GatewaySettings(usage_db=":memory:")
    app = gateway.gateway_from_files(router.path, models, keys_path, "0.0.0.0",
                                     settings=settings)
    assert app.router.models == router.models and set(app.proxy.upstreams) == set(router.models)
    assert app.keys_file == keys_path  # reloaded from there
    with pytest.raises(ValueError, match="without a keys file"):  # checked before any loading
        gateway.gateway_from_files("no/such/artifact", models, None, "0.0.0.0")
    with pytest.raises(ValueError, match="precomputed features"):
        gateway.gateway_from_files(tiny_artifact, models, None, settings=settings)
