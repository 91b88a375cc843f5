"""HTTP reliability and security: each test reproduces a failure found by probing the server.

Per-item errors in a micro-batch, JSON depth, content type, bearer tokens, exposure warning, body
limits, read and header timeouts, fair scheduling under large batches, non-finite decisions, and
one validation of τ and features for the Python API, the CLI and HTTP. All on loopback, on the
tiny hand-built artifacts (no training run).
"""

import asyncio
import io
import json
import logging
import socket
import sys
import time
import types

import httpx
import numpy as np
import pytest

from proteus.serving import batching, dispatch, http_guards, protocol, route_cli, server
from proteus.serving import router as serving

pytest_plugins = ["tests.serving_fixtures"]

JSON = {"content-type": "application/json"}
TOKEN = "test-token-0123456789abcdef"


@pytest.fixture(scope="module")
def text_router(tiny_text_artifact) -> serving.Router:
    return serving.Router.load(tiny_text_artifact, warmup=0)


@pytest.fixture(scope="module")
def tiny_router(tiny_artifact) -> serving.Router:
    return serving.Router.load(tiny_artifact, warmup=0)


def _body(obj) -> bytes:
    """JSON with \\u escapes, as a client sends a lone surrogate (httpx's json= cannot)."""
    return json.dumps(obj).encode()


def _serve(router, **settings) -> server.ServerThread:
    return server.ServerThread(server.create_app(router, server.ServerSettings(**settings)))


# ------------------------------------------------------------------ per-item errors (item 5)


def test_a_bad_text_fails_alone_in_a_burst(text_router):
    # the probe: "\ud800 x" raised UnicodeEncodeError inside the micro-batch: 54 of 99 got 500
    queries = ["\ud800 x" if i % 5 == 0 else f"question {i} about algebra" for i in range(60)]

    async def burst(url):
        async with httpx.AsyncClient(base_url=url, timeout=30) as c:
            return await asyncio.gather(*[
                c.post("/v1/route", content=_body({"query": q, "tau": 0.6}), headers=JSON)
                for q in queries])

    with _serve(text_router, max_wait_ms=5.0, max_batch=8) as running:  # 4 buckets to compile
        answers = asyncio.run(burst(running.url))
        batch = {"requests": [{"query": "fine", "tau": 0.6}, {"query": "\ud800 x", "tau": 0.6}]}
        mixed = httpx.post(running.url + "/v1/route", content=_body(batch), headers=JSON)
        stats = running.server.config.app.service.batcher.stats
    codes = [a.status_code for a in answers]
    assert codes == [422 if i % 5 == 0 else 200 for i in range(60)]
    assert all("not valid Unicode" in a.json()["detail"] for a in answers[::5])
    want = text_router.route(queries[1], 0.6)[0]
    assert answers[1].json()["model"] == want["model"]
    assert answers[1].json()["mu"] == pytest.approx(want["mu"], rel=1e-5)
    assert mixed.status_code == 200 and "model" in mixed.json()["decisions"][0]
    error = mixed.json()["decisions"][1]["error"]
    assert error["status"] == 422 and error["message"].startswith("requests[1]: ")
    assert stats["largest_batch"] > 1  # the burst was batched


def test_an_encoder_failure_fails_only_its_item(text_router, monkeypatch):
    real, want = text_router._encoder, text_router.route("fine", 0.6)[0]

    class Fragile:  # the encoder, failing on one text
        dim = real.dim

        @staticmethod
        def encode(texts):
            if any("boom" in t for t in texts):
                raise RuntimeError("encoder exploded")
            return real.encode(texts)

    monkeypatch.setattr(text_router, "_encoder", Fragile())
    point = text_router.resolve(0.6)
    items = [protocol.Item(None, "fine", point),
             protocol.Item(None, "boom", point, "requests[1]: "),
             protocol.Item(np.zeros(4, np.float32), None, point)]
    results = dispatch.route_items(text_router, items)
    assert isinstance(results[1], protocol.RequestError) and results[1].status == 422
    assert results[1].detail.startswith("requests[1]: ") and "encoder exploded" in results[1].detail
    assert results[0]["model"] == want["model"] and results[0]["mu"] == pytest.approx(want["mu"])
    assert results[2]["model_index"] == text_router.decide(np.zeros(4), 0.6).model[0]


def test_micro_batcher_item_errors_fail_alone():
    def fn(items):
        return [ValueError(f"bad {i}") if i < 0 else i * 10 for i in items]

    async def scenario():
        batcher = batching.MicroBatcher(fn, max_batch=8, max_wait_s=0.01, max_queue=64)
        batcher.start()
        got = await asyncio.gather(*[batcher.submit([i]) for i in (1, -2, 3)],
                                   batcher.submit([4, -5, 6]), return_exceptions=True)
        await batcher.stop()
        return got

    got = asyncio.run(scenario())
    assert got[0] == [10] and got[2] == [30]
    assert isinstance(got[1], ValueError) and str(got[1]) == "bad -2"
    assert isinstance(got[3], ValueError) and str(got[3]) == "bad -5"


def test_non_finite_decisions_are_a_clear_500(tiny_artifact):
    # the probe: NaN μ was answered 200 with invalid JSON ("mu": NaN)
    router = serving.Router.load(tiny_artifact, warmup=0)
    real = router._fn

    def nan_row_0(*args):
        out = np.array(real(*args))
        out[0, 1] = np.nan
        return out

    router._fn = nan_row_0
    with _serve(router) as running, httpx.Client(base_url=running.url) as c:
        got = c.post("/v1/route", json={"features": [0.0] * 4, "tau": 0.6})
    assert got.status_code == 500 and "non-finite" in json.loads(got.content)["detail"]
    assert "NaN" not in got.text


# ------------------------------------------------------------------ JSON, content type (item 8)


@pytest.mark.parametrize("fast_path", [True, False])
def test_deep_json_and_content_types(tiny_router, fast_path):
    ok = json.dumps({"features": [0.0] * 4, "tau": 0.6}).encode()
    deep = b"[" * 100_000 + b"]" * 100_000  # the probe: 500 RecursionError
    nested = json.dumps({"requests": [{"features": [[[[[[[[[[[[[[[[[0.0]]]]]]]]]]]]]]]]],
                                       "tau": 0.6}]}).encode()
    with _serve(tiny_router, fast_path=fast_path) as running, \
            httpx.Client(base_url=running.url) as c:
        for body in (deep, nested):
            got = c.post("/v1/route", content=body, headers=JSON)
            assert got.status_code == 400 and "nested deeper than 16" in got.json()["detail"]
        for ctype in ("text/plain", "application/x-www-form-urlencoded", None):
            headers = {"content-type": ctype} if ctype else {}
            got = c.post("/v1/route", content=ok, headers=headers)
            assert got.status_code == 415, ctype
            assert "Content-Type must be application/json" in got.json()["detail"]
        got = c.post("/v1/route", content=ok,
                     headers={"content-type": "Application/JSON; charset=utf-8"})
        assert got.status_code == 200


# ------------------------------------------------------------------ authentication (item 8)


@pytest.mark.parametrize("fast_path", [True, False])
def test_bearer_tokens(tiny_router, fast_path):
    body = {"features": [0.0] * 4, "tau": 0.6}
    with _serve(tiny_router, auth_tokens=(TOKEN, "another-token-0123456789"),
                fast_path=fast_path) as running, httpx.Client(base_url=running.url) as c:
        for headers in ({}, {"authorization": "Bearer wrong-token-0123456789abc"},
                        {"authorization": TOKEN}):
            got = c.post("/v1/route", json=body, headers=headers)
            assert got.status_code == 401, headers
            assert got.json()["error"]["code"] == "invalid_api_key"
            assert got.headers["www-authenticate"].startswith("Bearer")
        assert c.get("/v1/models").status_code == 401
        assert c.get("/openapi.json").status_code == 401
        assert c.get("/healthz").status_code == 200  # liveness probes need no token
        for token in (TOKEN, "another-token-0123456789"):
            got = c.post("/v1/route", json=body, headers={"authorization": f"Bearer {token}"})
            assert got.status_code == 200
        assert c.get("/v1/models", headers={"authorization": f"bearer {TOKEN}"}).status_code == 200


def test_token_sources(tmp_path):
    text = f"# ops tokens\n{TOKEN}\n\nenv-token-0123456789abcd, env-token-2-0123456789\n"
    assert http_guards.parse_tokens(text, "f") == (
        TOKEN, "env-token-0123456789abcd", "env-token-2-0123456789")
    with pytest.raises(ValueError, match="tokens.txt: bearer tokens must be at least 16"):
        http_guards.parse_tokens("short\n", "tokens.txt")
    with pytest.raises(ValueError, match="without spaces"):
        http_guards.parse_tokens("a token with spaces in it\n", "tokens.txt")
    assert TOKEN not in repr(server.ServerSettings(auth_tokens=(TOKEN,)))
    # what launch.serve passes to the server: the token file's and the environment's tokens
    path = tmp_path / "tokens"
    path.write_text(f"{TOKEN}\n")
    env = {http_guards.AUTH_ENV: "env-token-0123456789abcd"}
    assert http_guards.auth_tokens(str(path), env) == ("env-token-0123456789abcd", TOKEN)
    (tmp_path / "empty").write_text("# none\n")
    with pytest.raises(ValueError, match="no bearer tokens"):
        http_guards.auth_tokens(str(tmp_path / "empty"), {})


def test_exposed_without_tokens_warns(tiny_router, caplog):
    app = server.create_app(tiny_router)
    with caplog.at_level(logging.WARNING, logger="proteus.serving.server"):
        assert "WITHOUT authentication" in server.warn_if_exposed(app, "0.0.0.0")
    assert "--auth_tokens_file" in caplog.text
    for host in ("127.0.0.1", "::1", "localhost"):
        assert server.warn_if_exposed(app, host) is None
    with_tokens = server.create_app(tiny_router, server.ServerSettings(auth_tokens=(TOKEN,)))
    assert server.warn_if_exposed(with_tokens, "0.0.0.0") is None
    assert http_guards.exposure_warning("router.example.com", auth=False) is not None


# ------------------------------------------------------------------ body limits and timeouts


def _raw(url: str, data: bytes, wait_s: float = 10.0) -> tuple[bytes, float]:
    """Send raw bytes on a new connection; (everything received until closed, seconds taken)."""
    host, port = url.removeprefix("http://").split(":")
    start = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=wait_s) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received, time.monotonic() - start


def test_body_limits_before_parsing(tiny_router):
    with _serve(tiny_router, max_body_bytes=1000) as running:
        # a declared length over the limit is refused before any body is read
        head = (b"POST /v1/route HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 1000000000\r\n\r\n")
        got, took = _raw(running.url, head)
        assert got.startswith(b"HTTP/1.1 413") and b"exceeds the limit of 1000" in got
        assert took < 5
        # no declared length (chunked): counted while streaming
        chunks = (b"[" * 100 for _ in range(50))
        got = httpx.post(running.url + "/v1/route", content=chunks, headers=JSON)
        assert got.status_code == 413 and "exceeds the limit of 1000" in got.json()["detail"]


def test_half_sent_body_and_slow_headers_are_closed(tiny_router):
    with _serve(tiny_router, read_timeout_s=0.3, header_timeout_s=0.5) as running:
        half = (b"POST /v1/route HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                b"Content-Length: 100\r\n\r\n{\"tau\": 0.")
        got, took = _raw(running.url, half)
        assert got.startswith(b"HTTP/1.1 408") and b"not received within 0.3 s" in got
        assert took < 5
        got, took = _raw(running.url, b"POST /v1/route HTTP/1.1\r\nHost: x\r\n")
        assert got == b"" and took < 5  # closed without an answer
        ok = httpx.post(running.url + "/v1/route", json={"features": [0.0] * 4, "tau": 0.6})
        assert ok.status_code == 200  # the timeouts do not touch prompt requests


# ------------------------------------------------------------------ fair scheduling


def test_batcher_serves_singles_between_big_requests():
    seen = []

    def fn(items):
        seen.append(list(items))
        return items

    async def scenario():
        batcher = batching.MicroBatcher(fn, max_batch=64, max_wait_s=0.0, max_queue=4096,
                                        small_request=16, reserve=1024)
        batcher.start()
        big = [asyncio.create_task(batcher.submit([("big", j, i) for i in range(1024)]))
               for j in range(3)]
        await asyncio.sleep(0)
        single = asyncio.create_task(batcher.submit([("single", 0, 0)]))
        with pytest.raises(batching.QueueFullError, match="limit 3072 for a request of 1024"):
            await batcher.submit([("big", 9, i) for i in range(1024)])
        await asyncio.gather(single, *big)
        await batcher.stop()

    asyncio.run(scenario())
    first = next(b for b, items in enumerate(seen) if ("single", 0, 0) in items)
    assert first <= 1  # the next batch, not after 3 x 1024 items (48 batches)
    assert sum(len(b) for b in seen) == 3 * 1024 + 1


def test_big_batches_do_not_starve_single_requests(tiny_artifact):
    # the probe: clients sending 1,024-item batches gave single requests 503s and a 3.6 s p99.
    # Routing is slowed to 20 ms a call so that the queue backs up as on a busy server.
    router = serving.Router.load(tiny_artifact, warmup=256)  # no compiles while measuring
    fast_run = router.run

    def slow_run(features, operating_tau, fixed=None, tasks=None):
        time.sleep(0.02)
        return fast_run(features, operating_tau, fixed, tasks)

    router.run = slow_run
    x = np.random.default_rng(0).normal(size=(1024, 4)).round(3).tolist()
    big_body = {"requests": [{"features": row, "tau": 0.6} for row in x]}

    async def load(url):
        async with httpx.AsyncClient(base_url=url, timeout=60) as c:
            stop = asyncio.Event()

            async def big_client():  # until the single requests are done (at most 20 s)
                codes, deadline = [], time.monotonic() + 20
                while not stop.is_set() and time.monotonic() < deadline:
                    codes.append((await c.post("/v1/route", json=big_body)).status_code)
                return codes

            async def single_client():
                await asyncio.sleep(0.5)  # let the big requests fill the queue
                latencies = []
                for i in range(20):
                    start = time.monotonic()
                    got = await c.post("/v1/route", json={"features": x[i], "tau": 0.6})
                    latencies.append((got.status_code, time.monotonic() - start))
                stop.set()
                return latencies

            *bigs, singles = await asyncio.gather(*[big_client() for _ in range(6)],
                                                  single_client())
            return bigs, singles

    with _serve(router, max_batch_items=1024, max_queue=4096, max_batch=256) as running:
        bigs, singles = asyncio.run(load(running.url))
    codes, latencies = [code for code, _ in singles], sorted(t for _, t in singles)
    assert codes == [200] * 20, codes  # no 503 for single requests
    assert {code for c in bigs for code in c} <= {200, 503}
    assert sum(c.count(200) for c in bigs) > 0
    # Measured on 2 loaded shared cores: round robin median 0.1-0.27 s, max <= 1.3 s; FIFO (the
    # old batcher) max 3.5-3.8 s. The thresholds are loose; the ordering itself is checked
    # exactly by test_batcher_serves_singles_between_big_requests.
    assert latencies[len(latencies) // 2] < 0.75, latencies
    assert latencies[-1] < 3.0, latencies


# ------------------------------------------------------------------ one validation (item 4)


@pytest.mark.parametrize("tau", ["0.9", True, None, 1 + 0j, float("nan"), 1.5])
def test_tau_is_checked_alike_everywhere(tiny_router, tau):
    with pytest.raises(ValueError, match=r"tau must be a number in \[0, 1\]"):
        tiny_router.route(np.zeros(4), tau)  # the probe: "0.9" and True were accepted
    with pytest.raises(ValueError, match=r"tau must be a number in \[0, 1\]"):
        tiny_router.route(np.zeros((2, 4)), [0.5, tau])
    if isinstance(tau, complex):
        return  # JSON has no complex numbers
    body = json.dumps({"features": [0.0] * 4, "tau": tau}).encode()
    with pytest.raises(protocol.RequestError, match=r"tau must be a number in \[0, 1\]"):
        protocol.parse_body(body, tiny_router, protocol.Limits())
    out = io.StringIO()
    route_cli.route_jsonl(tiny_router, [json.dumps({"features": [0.0] * 4, "tau": tau})], out,
                          tau=None)
    assert "tau must be a number in [0, 1]" in json.loads(out.getvalue())["error"]


@pytest.mark.parametrize("features, kind", [
    (np.zeros(4, np.complex64), "complex numbers"), ([True, False, True, True], "booleans"),
    (np.asarray(["0.1", "0.2", "0.3", "0.4"]), "strings"), ([0.0, 0.0, True, 1.0], "booleans"),
])
def test_features_are_checked_alike_everywhere(tiny_router, features, kind):
    with pytest.raises(ValueError, match=f"list of 4 numbers per query, got {kind}"):
        tiny_router.route(features, 0.6)  # the probe: complex features were accepted
    if isinstance(features, np.ndarray) and features.dtype.kind == "c":
        return  # JSON has no complex numbers
    payload = features.tolist() if isinstance(features, np.ndarray) else features
    body = json.dumps({"features": payload, "tau": 0.6}).encode()
    with pytest.raises(protocol.RequestError, match=f"list of 4 numbers per query, got {kind}"):
        protocol.parse_body(body, tiny_router, protocol.Limits())


# ------------------------------------------------------------------ the guards, one by one


def test_unauthorized_is_an_openai_style_401_that_closes():
    status, body, headers = http_guards.unauthorized()
    assert status == 401
    got = json.loads(body)
    assert got["error"]["code"] == "invalid_api_key"
    assert got["error"]["type"] == "invalid_request_error" and got["error"]["param"] is None
    assert got["detail"] == got["error"]["message"]
    assert "Authorization: Bearer <token>" in got["detail"]
    assert headers == [(b"www-authenticate", b'Bearer realm="proteus"'),
                       (b"connection", b"close")]


def test_is_json_with_or_without_parameters():
    assert http_guards.is_json(b"application/json")
    assert http_guards.is_json(b"Application/JSON ; charset=utf-8")
    assert not http_guards.is_json(None)
    assert not http_guards.is_json(b"text/plain")
    assert not http_guards.is_json(b"application/json-patch+json")
    assert not http_guards.is_json(b"application/x-www-form-urlencoded")


def test_check_length_before_reading():
    assert http_guards.check_length(None, 100) is None  # chunked: counted while read instead
    assert http_guards.check_length(b"100", 100) is None  # at the limit is fine
    with pytest.raises(protocol.RequestError,
                       match="request body of 101 bytes exceeds the limit of 100") as err:
        http_guards.check_length(b" 101 ", 100)
    assert (err.value.status, err.value.code) == (413, "body_too_large")
    for bad in (b"12a", b"-5", b""):
        with pytest.raises(protocol.RequestError, match="invalid Content-Length") as err:
            http_guards.check_length(bad, 100)
        assert err.value.status == 400


def test_is_loopback_only_for_this_machine():
    for host in ("localhost", "127.0.0.1", "127.8.0.1", "::1"):
        assert http_guards.is_loopback(host), host
    for host in ("0.0.0.0", "::", "192.168.1.2", "router.example.com", "localhost.example"):
        assert not http_guards.is_loopback(host), host


class _Loop:
    """Records `call_later` timers instead of running them."""

    def __init__(self):
        self.timers = []

    def call_later(self, delay, callback):
        self.timers.append((delay, callback))


class _Transport:
    def __init__(self):
        self.closes = 0

    def is_closing(self):
        return self.closes > 0

    def close(self):
        self.closes += 1


class _Protocol:
    """The part of a uvicorn HTTP protocol the header timer uses: `loop`, `transport`, `cycle`
    (None until a request's headers complete), and the two hooks it extends."""

    def __init__(self):
        self.loop, self.transport, self.cycle, self.events = _Loop(), None, None, []

    def connection_made(self, transport):
        self.transport = transport
        self.events.append("connected")

    def on_response_complete(self):
        self.events.append("answered")


def test_with_header_timeout_closes_only_connections_idle_without_headers():
    cls = http_guards.with_header_timeout(_Protocol, 2.5)
    assert cls.__name__ == "HeaderTimeout_Protocol" and issubclass(cls, _Protocol)
    # no request line within 2.5 s of connecting: closed, once
    slow = cls()
    slow.connection_made(_Transport())
    (delay, expire), = slow.loop.timers
    assert (delay, slow.events) == (2.5, ["connected"])
    expire()
    expire()
    assert slow.transport.closes == 1
    # headers came (a new cycle), its body is read and routed past the timer: left alone
    conn = cls()
    conn.connection_made(_Transport())
    conn.cycle = types.SimpleNamespace(response_complete=False)
    conn.loop.timers[0][1]()
    assert conn.transport.closes == 0
    # answered: the timer is armed again; no next request by then: closed
    conn.cycle.response_complete = True
    conn.on_response_complete()
    assert conn.events == ["connected", "answered"] and len(conn.loop.timers) == 2
    conn.loop.timers[1][1]()
    assert conn.transport.closes == 1
    # a next request whose headers completed before the timer fired: left alone
    busy = cls()
    busy.connection_made(_Transport())
    busy.cycle = types.SimpleNamespace(response_complete=True)
    busy.on_response_complete()
    busy.cycle = types.SimpleNamespace(response_complete=False)
    for _, expire in busy.loop.timers:
        expire()
    assert busy.transport.closes == 0
    # armed on a cycle not yet answered (still the current one): left alone too
    unanswered = cls()
    unanswered.connection_made(_Transport())
    unanswered.cycle = types.SimpleNamespace(response_complete=False)
    unanswered.on_response_complete()
    unanswered.loop.timers[1][1]()
    assert unanswered.transport.closes == 0


def test_http_protocol_class_httptools_else_h11(monkeypatch):
    from uvicorn.protocols.http.h11_impl import H11Protocol  # noqa: PLC0415
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol  # noqa: PLC0415

    assert http_guards.http_protocol_class() is HttpToolsProtocol  # httptools is installed here
    monkeypatch.setitem(sys.modules, "uvicorn.protocols.http.httptools_impl", None)  # not here
    assert http_guards.http_protocol_class() is H11Protocol


def test_uvicorn_config_takes_the_apps_timeouts():
    settings = server.ServerSettings(header_timeout_s=2.5, keep_alive_timeout_s=7)
    app = types.SimpleNamespace(service=types.SimpleNamespace(settings=settings))
    config = server.uvicorn_config(app, host="127.0.0.2", port=8123)
    assert (config.app, config.host, config.port) == (app, "127.0.0.2", 8123)
    assert (config.ws, config.lifespan, config.access_log) == ("none", "on", False)
    assert (config.timeout_keep_alive, config.timeout_graceful_shutdown) == (7, 5)
    assert config.http.__bases__ == (http_guards.http_protocol_class(),)
    assert config.http.__name__ == "HeaderTimeout" + config.http.__bases__[0].__name__
    conn = _Protocol()  # the header timer of this class waits header_timeout_s
    conn.transport = _Transport()
    config.http._arm_header_timer(conn)
    assert conn.loop.timers[0][0] == 2.5
