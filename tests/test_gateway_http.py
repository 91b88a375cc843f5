"""HTTP at the gateway (issue 26 items 4-6): parity with `launch.serve`'s limits and timeouts,
errors in OpenAI's shape, cross-origin refusal, infeasible τ marked or refused, keys reloaded
without a restart. In-process (httpx over ASGI) except where a real socket is the point."""

import asyncio
import json
import logging
import socket
import time
from types import SimpleNamespace

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from proteus import serving
from proteus.gateway import app as gateway
from proteus.gateway import asgi, completions, config, errors, fake, runner
from proteus.gateway import settings as gateway_settings
from proteus.gateway.errors import GatewayError
from proteus.serving import server
from proteus.serving.protocol import Limits, RequestError
from tests import gateway_helpers as gh

pytest_plugins = ["tests.serving_fixtures"]
JSON = {"content-type": "application/json"}
TENANTS = {"lenient": {"tau_range": [0.5, 1.0]},
           "strict": {"tau_range": [0.5, 1.0], "infeasible_tau": "refuse"},
           "narrow": {"tau_range": [0.5, 0.8]}}


@pytest.fixture(scope="module")
def router(tiny_bundle, tmp_path_factory):
    return gh.text_router(tiny_bundle, str(tmp_path_factory.mktemp("http") / "artifact"))


@pytest.fixture(scope="module")
def upstream():
    with runner.server_thread(fake.FakeUpstream(latency_s=0.3)) as running:
        yield running


def make_app(router, upstream, tmp_path, tenants=None, **settings):
    entries = {m: {"upstream_model": f"up-{m}"} for m in router.models}
    upstreams = config.load_models(gh.models_file(tmp_path, upstream.url, entries), router.models)
    keys_file = None if tenants is None else gh.keys_file(tmp_path / "keys.toml", tenants)
    keys = None if keys_file is None else config.load_keys(keys_file)
    return gateway.create_gateway(router, upstreams, keys, gateway.GatewaySettings(**settings),
                                  keys_file=keys_file)


def run(app, requests):
    """Send [(method, path, kwargs)] in order to `app` in-process; their responses."""
    async def go():
        async with gh.in_process(app) as c:
            return [await c.request(method, path, **kw) for method, path, kw in requests]
    return asyncio.run(go())


def metric(text: str, name: str, **labels) -> float:
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == name and labels.items() <= s.labels.items())


# ------------------------------------------------------------------ item 4: HTTP parity


def test_json_only_within_limits_in_openai_shape(router, upstream, tmp_path):
    """The probe: the gateway took text/plain bodies, and 100k nested '[' got a plain-text 500."""
    app = make_app(router, upstream, tmp_path, route=server.ServerSettings(max_body_bytes=10_000))
    calls = len(upstream.app.calls)
    got = run(app, [
        ("POST", "/v1/chat/completions", {"content": gh.chat(), "headers": {
            "content-type": "text/plain"}}),
        ("POST", "/v1/chat/completions", {"content": b"[" * 100_000, "headers": JSON}),
        ("POST", "/v1/chat/completions", {"content": b"[" * 5000 + b"]" * 5000, "headers": JSON}),
        ("POST", "/v1/chat/completions", {"content": b"[1, 2]", "headers": JSON}),
        ("POST", "/v1/feedback", {"content": b"{}", "headers": {"content-type": "text/plain"}}),
    ])
    assert [(g.status_code, g.json()["error"]["code"]) for g in got] == [
        (415, "unsupported_media_type"), (413, "body_too_large"), (400, "invalid_json"),
        (400, "invalid_json"), (415, "unsupported_media_type")]
    assert "nested deeper than 16" in got[2].json()["error"]["message"]
    assert len(upstream.app.calls) == calls  # none was forwarded


@pytest.mark.filterwarnings("ignore:invalid value encountered in cast")
def test_a_routing_failure_is_an_openai_500(router, upstream, tmp_path):
    """The probe: a routing error was a plain-text 500. A router returning NaN (a broken
    artifact) and one that raises both answer `{"error": {...}}`."""
    broken = serving.Router.load(router.path, warmup=0)
    real = broken._fn
    app = make_app(broken, upstream, tmp_path)

    async def both():
        async with gh.in_process(app) as c:
            broken._fn = lambda *args: np.array(real(*args)) * np.nan
            nan = await c.post("/v1/chat/completions", content=gh.chat(), headers=JSON)
            broken._fn = lambda *args: 1 / 0
            return nan, await c.post("/v1/chat/completions", content=gh.chat(), headers=JSON)

    nan, raised = asyncio.run(both())
    assert nan.status_code == 500 and nan.json()["error"]["code"] == "routing_failed"
    assert raised.status_code == 500 and raised.json()["error"]["code"] in (
        "routing_failed", "internal_error")
    assert "ZeroDivisionError" in raised.json()["error"]["message"]


def test_cross_origin_requests_are_refused_even_in_open_mode(router, upstream, tmp_path):
    """The probe: in open mode a browser POST with `Origin: http://evil.example` was forwarded.
    Refused unless the origin is allowed; an allowed one gets CORS headers and a preflight."""
    app = make_app(router, upstream, tmp_path, allowed_origins=("https://app.example",))
    calls = len(upstream.app.calls)
    evil = {**JSON, "origin": "http://evil.example"}
    good = {**JSON, "origin": "https://app.example"}
    got = run(app, [("POST", "/v1/chat/completions", {"content": gh.chat(), "headers": evil}),
                    ("POST", "/v1/route", {"json": {"query": "x", "tau": 0.6}, "headers": evil}),
                    ("GET", "/v1/models", {"headers": evil}),
                    ("OPTIONS", "/v1/chat/completions", {"headers": {
                        "origin": "https://app.example",
                        "access-control-request-method": "POST"}}),
                    ("POST", "/v1/chat/completions", {"content": gh.chat(), "headers": good})])
    assert [g.status_code for g in got] == [403, 403, 403, 204, 200]
    assert got[0].json()["error"]["code"] == "cross_origin_refused"
    assert "authorization" in got[3].headers["access-control-allow-headers"]
    assert got[4].headers["access-control-allow-origin"] == "https://app.example"
    assert len(upstream.app.calls) == calls + 1  # only the allowed origin's


def test_slow_headers_and_truncated_bodies_are_closed(router, upstream, tmp_path):
    """The probe: 500 slowloris connections were still open after 27 s, and a body cut short of
    its Content-Length got no 408. Same timeouts as `launch.serve` (0.5 s here)."""
    limits = server.ServerSettings(header_timeout_s=0.5, read_timeout_s=0.5)
    app = make_app(router, upstream, tmp_path, route=limits)
    with runner.server_thread(app) as running:
        host, port = running.url.removeprefix("http://").split(":")
        slow = [socket.create_connection((host, int(port)), timeout=5) for _ in range(20)]
        for sock in slow:
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n")  # never ends
        t0 = time.perf_counter()
        assert all(sock.recv(1) == b"" for sock in slow)  # closed by the server
        assert time.perf_counter() - t0 < 3.0
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: "
                         b"application/json\r\ncontent-length: 500\r\n\r\n" + gh.chat()[:20])
            answer = sock.recv(4096)
        assert answer.startswith(b"HTTP/1.1 408")
        assert b"request_timeout" in answer or b"not received within" in answer
        assert httpx.get(running.url + "/healthz").status_code == 200  # still serving
    for sock in slow:
        sock.close()


def test_an_unusable_usage_database_fails_at_start_naming_it(router, upstream, tmp_path):
    bad = tmp_path / "usage.sqlite3"
    bad.write_bytes(b"definitely not SQLite " * 200)
    with pytest.raises(ValueError, match=str(bad)):
        make_app(router, upstream, tmp_path, usage_db=str(bad))


# ------------------------------------------------------------------ item 5: infeasible τ


def test_infeasible_tau_is_marked_counted_or_refused(router, upstream, tmp_path, caplog):
    """The probe: `proteus-0.9` on a router whose feasible range ends at 0.84 got 200 from the
    top model with nothing saying so, and /v1/models listed proteus-0.95."""
    hi = router.policy.tau_range[1]
    assert 0.8 < hi < 0.85
    with caplog.at_level(logging.WARNING, logger="proteus.gateway.app"):
        app = make_app(router, upstream, tmp_path, tenants=TENANTS)
    warned = [r.getMessage() for r in caplog.records]
    assert any("'lenient' may ask for τ up to 1" in w and "0.8418" in w for w in warned)
    assert any("'strict'" in w and "refused" in w for w in warned)
    assert not any("'narrow'" in w for w in warned)  # its range fits
    calls = len(upstream.app.calls)
    body = gh.chat(model="proteus-0.9")
    got = run(app, [
        ("POST", "/v1/chat/completions", {"content": body, "headers": {**JSON, **gh.auth(
            "lenient")}}),
        ("POST", "/v1/chat/completions", {"content": body, "headers": {**JSON, **gh.auth(
            "strict")}}),
        ("POST", "/v1/chat/completions", {"content": gh.chat(model="proteus-0.8"),
                                          "headers": {**JSON, **gh.auth("strict")}}),
        ("GET", "/v1/models", {"headers": gh.auth("lenient")}),
        ("GET", "/metrics", {})])
    best_effort, refused, feasible, models, metrics = got
    assert best_effort.status_code == 200
    assert best_effort.headers["x-proteus-feasible"] == "false"
    assert "infeasible" in best_effort.headers["x-proteus-infeasible-reason"]
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "infeasible_tau"
    assert refused.headers["x-proteus-feasible"] == "false"
    assert feasible.status_code == 200 and feasible.headers["x-proteus-feasible"] == "true"
    assert len(upstream.app.calls) == calls + 2  # the refused one was not forwarded
    names = [m["id"] for m in models.json()["data"]]
    assert names == ["proteus", "proteus-0.5", "proteus-0.6", "proteus-0.7", "proteus-0.8"]
    assert models.json()["router"]["feasible_tau"]["max"] == pytest.approx(hi)
    assert metric(metrics.text, "proteus_gateway_infeasible_total", tenant="lenient") == 1
    assert metric(metrics.text, "proteus_gateway_infeasible_total", tenant="strict") == 1


# ------------------------------------------------------------------ item 6: reload


def test_keys_reload_on_change_without_dropping_requests(router, upstream, tmp_path):
    """The probe: revoking a key needed a restart. The keys file is watched (0.1 s here): a
    request in flight while its key is revoked is answered; the next one with that key is 401;
    a key added is served; a changed budget applies at once; a broken file changes nothing."""
    app = make_app(router, upstream, tmp_path, tenants={"old": {}, "kept": {}},
                   watch_keys_s=0.1)
    path = tmp_path / "keys.toml"

    async def scenario():
        async with gh.in_process(app) as c:
            ask = lambda name: c.post("/v1/chat/completions", content=gh.chat(),
                                      headers={**JSON, **gh.auth(name)})
            in_flight = asyncio.ensure_future(ask("old"))  # the upstream takes 0.3 s
            await asyncio.sleep(0.05)
            gh.keys_file(path, {"kept": {"budget_usd_per_day": 0.0}, "new": {}})
            for _ in range(50):
                if "new" in app.keyring.tenants:
                    break
                await asyncio.sleep(0.05)
            answered = await in_flight
            after = [await ask(name) for name in ("old", "new", "kept")]
            path.write_text("[tenants.broken\n")  # a bad edit: the keys in force stay
            await asyncio.sleep(0.5)
            return answered, after, await ask("new"), (await c.get("/metrics")).text

    answered, (old, new, kept), still, metrics = asyncio.run(scenario())
    assert answered.status_code == 200
    assert old.status_code == 401 and new.status_code == 200
    assert kept.status_code == 402  # its budget is now $0
    assert still.status_code == 200
    assert metric(metrics, "proteus_gateway_key_reloads_total", result="ok") == 1
    assert metric(metrics, "proteus_gateway_key_reloads_total", result="error") == 1


def test_open_mode_and_json_errors_stay_json(router, upstream, tmp_path):
    """Every gateway error is OpenAI's `{"error": {...}}`, with a request id header."""
    app = make_app(router, upstream, tmp_path)
    got = run(app, [("POST", "/v1/chat/completions", {"content": json.dumps(
        {"model": "proteus-0.7"}).encode(), "headers": JSON})])[0]
    assert got.status_code == 400 and got.json()["error"]["code"] == "invalid_messages"
    assert got.headers["x-proteus-request-id"].startswith("req-")


# ------------------------------------------------------------------ the pieces, by hand


def test_a_request_error_keeps_its_status_message_and_code():
    err = asgi.from_request_error(RequestError(413, "request body too big", "body_too_large"))
    assert (err.status, err.message, err.type, err.code) == (
        413, "request body too big", "invalid_request_error", "body_too_large")
    assert err.headers == {}


def test_origin_refusal_only_for_an_origin_not_allowed():
    allowed = {"https://app.example"}
    assert asgi.origin_refusal({"headers": []}, allowed) is None  # not a browser: no Origin
    assert asgi.origin_refusal({"headers": [(b"origin", b"https://app.example")]},
                               allowed) is None
    err = asgi.origin_refusal({"headers": [(b"origin", b"http://evil.example")]}, allowed)
    assert (err.status, err.type, err.code) == (403, "invalid_request_error",
                                                "cross_origin_refused")
    assert err.message.startswith("cross-origin requests from 'http://evil.example' are refused")
    long = asgi.origin_refusal({"headers": [(b"origin", b"h" * 150)]}, allowed)
    assert f"from {'h' * 100!r} are refused" in long.message  # the origin cut to 100 characters


def test_cors_headers_echo_the_origin():
    assert asgi.cors_headers({"headers": [(b"content-type", b"application/json")]}) == []
    assert asgi.cors_headers({"headers": [(b"origin", b"https://app.example")]}) == [
        (b"access-control-allow-origin", b"https://app.example"), (b"vary", b"origin"),
        (b"access-control-expose-headers", asgi.EXPOSED)]
    assert b"x-proteus-request-id" in asgi.EXPOSED


def test_client_closed_is_nginx_499():
    err = asgi.client_closed("while its answer streamed")
    assert (err.status, err.message, err.type, err.code) == (
        499, "the client closed the request while its answer streamed", "invalid_request_error",
        "client_closed_request")


def test_header_text_is_one_ascii_line_within_the_limit():
    # "τ" -> "tau", CR and LF -> spaces, "é" -> "?" (ASCII "replace")
    assert asgi.header_text("τ=0.9\r\nnot é") == b"tau=0.9  not ?"
    assert asgi.header_text("τ=0.95 is infeasible", limit=6) == b"tau=0."
    assert asgi.header_text("x" * 400) == b"x" * 300  # the default limit


def test_error_body_is_openai_shaped_bytes():
    assert errors.error_body("slow down", "rate_limit_error", "rate_limited") == (
        b'{"error": {"message": "slow down", "type": "rate_limit_error", "param": null, '
        b'"code": "rate_limited"}}')
    assert json.loads(errors.error_body("upstream 502", "server_error", None)) == {
        "error": {"message": "upstream 502", "type": "server_error", "param": None,
                  "code": None}}


def test_request_item_routes_on_the_prompt_tail(router):
    limits = Limits(max_query_chars=5)
    item = completions.request_item(router, 0.7, "hello world", None, limits)
    assert item.text == "world"  # the last 5 characters
    assert item.features is None and item.point.tau == pytest.approx(0.7)
    assert item.task_id == -1  # no task: UNKNOWN
    with pytest.raises(GatewayError, match="non-empty string") as err:  # the tail is blank
        completions.request_item(router, 0.7, "hello     ", None, limits)
    assert (err.value.status, err.value.code) == (422, "unroutable_prompt")
    with pytest.raises(GatewayError, match="^x-proteus-task header: .*without a task prior"
                       ) as err:
        completions.request_item(router, 0.7, "hello", b"math", limits)
    assert (err.value.status, err.value.code) == (422, "invalid_task")


def test_tau_warnings_name_tenants_reaching_past_the_feasible_range():
    def tenant(name, tau_max, infeasible="best_effort"):
        return config.Tenant(name, 0.7, tau_max=tau_max, infeasible_tau=infeasible)

    feasible_to = SimpleNamespace(policy=SimpleNamespace(tau_range=(0.5, 0.84)))
    tenants = {"k1": tenant("b", 0.95), "k2": tenant("b", 0.95),  # two keys, one tenant: once
               "k3": tenant("a", 0.9, "refuse"), "k4": tenant("c", 0.84)}  # c: 0.84 is not past
    assert gateway_settings.tau_warnings(tenants, feasible_to) == [
        "tenant 'a' may ask for τ up to 0.9, but the router serves τ <= 0.8400 feasibly; "
        "higher τ will be refused (422)",
        "tenant 'b' may ask for τ up to 0.95, but the router serves τ <= 0.8400 feasibly; "
        "higher τ will be answered best effort, marked x-proteus-feasible: false"]
    nothing = SimpleNamespace(policy=SimpleNamespace(tau_range=(None, None)))
    assert gateway_settings.tau_warnings({"k4": tenant("c", 0.5)}, nothing) == [
        "tenant 'c' may ask for τ up to 0.5, but the router serves no τ feasibly; higher τ "
        "will be answered best effort, marked x-proteus-feasible: false"]
