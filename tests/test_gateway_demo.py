"""The first hour with the gateway (issue 28 item 3): `launch.gateway --demo` answered through the
`openai` client, the models-file template, one access-log line per request and one warning per
upstream failure."""

import asyncio
import contextlib
import hashlib
import os
import re
import socket
import subprocess
import sys
import time
import tomllib

import pytest

from proteus.gateway import app as gateway
from proteus.gateway import demo, fake, runner
from proteus.gateway.config import Tenant, load_keys, load_models
from tests import gateway_helpers as gh

pytest_plugins = ["tests.serving_fixtures"]


@pytest.fixture(scope="module")
def router(tiny_bundle, tmp_path_factory):
    return gh.text_router(tiny_bundle, str(tmp_path_factory.mktemp("demo") / "artifact"))


def test_the_models_template_loads_as_written(router, tmp_path):
    path = str(tmp_path / "models.toml")
    demo.write_models_template(path, router.models)
    upstreams = load_models(path, router.models, environ={})  # no API-key variable needed
    assert set(upstreams) == set(router.models)
    assert {u.upstream_model for u in upstreams.values()} == set(router.models)
    with pytest.raises(FileExistsError):  # never overwritten
        demo.write_models_template(path, router.models)


def test_the_template_command(router, tmp_path):
    path = tmp_path / "models.toml"
    cmd = [sys.executable, "-m", "launch.gateway", f"--artifact={router.path}",
           f"--write_models_template={path}"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "wrote" in done.stdout and path.exists()
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert again.returncode != 0 and "exists" in again.stderr


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_demo_answers_the_openai_client(router, tmp_path):
    """One command: a fake upstream, generated files, a printed key; the openai client gets an
    answer routed by the artifact, on loopback only."""
    openai = pytest.importorskip("openai")
    port = _port()
    cmd = [sys.executable, "-m", "launch.gateway", f"--artifact={router.path}", "--demo",
           f"--demo_dir={tmp_path / 'demo'}", f"--port={port}", "--log_level=warning"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    refused = subprocess.run([*cmd, "--host=0.0.0.0"], capture_output=True, text=True,
                             timeout=300, env=env)
    assert refused.returncode != 0 and "loopback" in refused.stderr
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    try:
        lines = []
        deadline = time.monotonic() + 120
        while not any(line.startswith("API key") for line in lines):
            assert time.monotonic() < deadline and proc.poll() is None, proc.stderr.read()
            lines.append(proc.stdout.readline())
        key = re.search(r"(sk-proteus-\S+)", "".join(lines)).group(1)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key,
                               max_retries=20)
        reply = client.chat.completions.create(
            model="proteus-0.5", messages=[{"role": "user", "content": "Which gas do plants "
                                                                        "absorb?"}])
        assert reply.choices[0].message.content.endswith("says hi from upstream")
        assert reply.model in router.models  # the fake upstream answers as the routed model
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-wrong",
                          max_retries=0).models.list()
        assert (tmp_path / "demo" / "keys.toml").exists()
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=30)
        if proc.poll() is None:
            proc.kill()


def test_access_log_and_upstream_failure_lines(router, tmp_path, caplog):
    """One INFO line per completion request (tenant, τ, model, status, latency, cost) and one
    WARNING per failed upstream call (before, a 502 from a dead upstream left no line)."""
    asks = {"0.1": "what is 2 + 2?", "0.84": "explain quantum chromodynamics in detail"}
    routed = {tau: router.route(text, float(tau))[0]["model"] for tau, text in asks.items()}
    bad = routed["0.1"]  # its upstream is dead: nothing listens there
    dead = f"http://127.0.0.1:{_port()}"
    with runner.server_thread(fake.FakeUpstream(record=False)) as upstream:
        entries = {m: {} for m in router.models}
        entries[bad] = {"base_url": dead + "/v1"}
        upstreams = load_models(gh.models_file(tmp_path, upstream.url, entries), router.models)
        app = gateway.create_gateway(router, upstreams, None, gateway.GatewaySettings())

        async def run():
            async with gh.in_process(app) as client:
                statuses = {}
                for tau, text in asks.items():
                    got = await client.post("/v1/chat/completions",
                                            content=gh.chat(text, f"proteus-{tau}"),
                                            headers={"content-type": "application/json"})
                    statuses[tau] = (got.status_code, got.headers.get("x-proteus-model"))
                return statuses

        with caplog.at_level("INFO", logger="proteus.gateway"):
            statuses = asyncio.run(run())
    access = [r.getMessage() for r in caplog.records if r.name == "proteus.gateway.access"]
    assert len(access) == len(asks)
    for line, (tau, (status, _)) in zip(access, statuses.items(), strict=True):
        assert status == (502 if routed[tau] == bad else 200)
        assert line.startswith(f"chat tenant=open tau={tau} model={routed[tau]} "
                               f"status={status} latency_ms="), line
        assert re.search(r"cost_usd=\d+\.\d{6} request_id=req-", line)
    warnings = [r.getMessage() for r in caplog.records if r.name == "proteus.gateway.proxy"]
    assert len(warnings) == sum(m == bad for m in routed.values())
    assert all(f"upstream {bad!r} failed (502 upstream_unreachable)" in w for w in warnings)


def test_models_template_parses_to_every_model_at_the_base_url():
    text = demo.models_template(["small", "gpt-4.1"], base_url="http://127.0.0.1:7/v1")
    assert text.startswith("# Upstreams of the router's models (2 models)")
    assert 'base_url = "http://127.0.0.1:7/v1"' in text.splitlines()
    # the dotted name stays one quoted key; the commented-out fields do not parse
    assert tomllib.loads(text) == {
        "defaults": {"base_url": "http://127.0.0.1:7/v1", "timeout_s": 60},
        "models": {"small": {"upstream_model": "small"},
                   "gpt-4.1": {"upstream_model": "gpt-4.1"}}}


def test_write_demo_files_one_fresh_key_for_tenant_demo(tmp_path):
    workdir = tmp_path / "new" / "demo"  # made if missing
    files = demo.write_demo_files(str(workdir), ["small", "large"], "http://127.0.0.1:9/v1",
                                  default_tau=0.85)
    assert files.models_file == str(workdir / "models.toml")
    assert files.usage_db == str(workdir / "usage.sqlite3")
    assert tomllib.loads((workdir / "models.toml").read_text())["defaults"]["base_url"] == (
        "http://127.0.0.1:9/v1")
    digest = hashlib.sha256(files.key.encode()).hexdigest()
    assert (workdir / "keys.toml").read_text() == (
        f'[tenants.demo]\nkey_sha256 = "{digest}"\ndefault_tau = 0.85\ntau_range = [0.0, 1.0]\n')
    assert load_keys(files.keys_file) == {digest: Tenant("demo", 0.85, 0.0, 1.0)}
    again = demo.write_demo_files(str(workdir), ["small"], "http://127.0.0.1:9/v1", 0.85)
    assert again.key != files.key and files.key.startswith("sk-proteus-")


def test_banner_lines():
    files = demo.DemoFiles("m.toml", "k.toml", "u.db", "sk-proteus-abc")
    lines = demo.banner("http://127.0.0.1:8080", "http://127.0.0.1:9000", files, 0.85).split("\n")
    assert len(lines) == 8
    assert lines[:4] == [
        "PROTEUS gateway demo on http://127.0.0.1:8080 (loopback only); fake upstream on "
        "http://127.0.0.1:9000",
        "API key (tenant 'demo'): sk-proteus-abc",
        "files: m.toml, k.toml, u.db",
        "try:"]
    assert lines[4] == ("  curl -s http://127.0.0.1:8080/v1/chat/completions "
                        "-H 'Authorization: Bearer sk-proteus-abc' \\")
    assert lines[5].endswith('-d \'{"model": "proteus-0.85", "messages": [{"role": "user", '
                             '"content": "Which gas do plants absorb?"}]}\'')
    assert "base_url='http://127.0.0.1:8080/v1', api_key='sk-proteus-abc'" in lines[6]
    assert "model='proteus-0.85'" in lines[6]
    assert lines[7] == "Ctrl-C stops it."
