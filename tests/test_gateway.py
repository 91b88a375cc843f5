"""The gateway end to end: an `openai` client -> gateway -> fake upstreams, all on loopback."""

import asyncio
import json
import socket
import time

import httpx
import numpy as np
import openai
import pytest
from prometheus_client.parser import text_string_to_metric_families

from proteus import serving
from proteus.gateway import app as gateway
from proteus.gateway import config, fake, keys, runner
from proteus.gateway import transport as transport_lib
from proteus.serving import server
from tests import gateway_helpers as gh

pytest_plugins = ["tests.serving_fixtures"]

KEYS = {name: f"sk-test-{name}" for name in ("team", "capped", "limited", "broke")}
HELLO = "hello there"
HARD = "explain quantum chromodynamics in detail"


@pytest.fixture(scope="module")
def router(tiny_bundle, tmp_path_factory) -> serving.Router:
    """`tests.gateway_helpers.text_router`: low τ buys the cheapest predicted model, high τ the
    likeliest to be right (its untrained ĉ are ~1 USD, 200x c_ref, hence the large λ)."""
    return gh.text_router(tiny_bundle, str(tmp_path_factory.mktemp("gateway") / "artifact"))


@pytest.fixture(scope="module")
def upstream():
    with runner.server_thread(fake.FakeUpstream(slow_s=2.0)) as running:
        yield running


models_file = gh.models_file


def keys_file(tmp_path) -> str:
    tenant = lambda name, **kw: {"key_sha256": keys.hash_key(KEYS[name]), "default_tau": 0.9,
                                 "tau_range": [0.5, 1.0], **kw}
    path = tmp_path / "keys.toml"
    path.write_text("\n".join(
        [f"[tenants.{name}]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in t.items())
         for name, t in [("team", tenant("team", requests_per_minute=1000)),
                         ("capped", tenant("capped", budget_usd_per_day=1.0)),
                         ("limited", tenant("limited", requests_per_minute=2)),
                         ("broke", tenant("broke", budget_usd_per_month=0.0))]]))
    return str(path)


@pytest.fixture(scope="module")
def gw(router, upstream, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gw")
    entries = {m: {"upstream_model": f"up-{m}"} for m in router.models}
    upstreams = config.load_models(models_file(tmp, upstream.url, entries), router.models)
    app = gateway.create_gateway(router, upstreams, config.load_keys(keys_file(tmp)),
                                 gateway.GatewaySettings(usage_db=str(tmp / "usage.sqlite3")))
    with runner.server_thread(app) as running:
        yield running


def client(gw, name: str = "team") -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key=KEYS.get(name, name), max_retries=0)


def test_tau_picks_the_model(gw, router, upstream):
    """Non-streaming chat: the answer comes from the upstream of the router's choice at τ."""
    chosen = {tau: router.route(HARD, tau)[0]["model"] for tau in (0.5, 0.9)}
    assert len(set(chosen.values())) == 2  # the test is only meaningful if τ changes the model
    for tau, model in chosen.items():
        raw = client(gw).chat.completions.with_raw_response.create(
            model=f"proteus-{tau}", messages=[{"role": "system", "content": "be brief"},
                                              {"role": "user", "content": HARD}])
        reply = raw.parse()
        assert reply.choices[0].message.content == f"up-{model} says hi from upstream"
        assert raw.headers["x-proteus-model"] == model
        assert float(raw.headers["x-proteus-tau"]) == tau
        assert raw.headers["x-proteus-request-id"].startswith("req-")
        assert 0 < float(raw.headers["x-proteus-overhead-ms"]) < 1000
    last = upstream.app.calls[-1]  # the body went upstream unchanged but for the model name
    assert last["body"]["messages"][1]["content"] == HARD and last["model"] == f"up-{model}"
    assert last["authorization"] == ""  # the client's key stays at the gateway


def test_tau_from_header_and_default(gw, router):
    c = client(gw)
    raw = c.chat.completions.with_raw_response.create(
        model="proteus", messages=[{"role": "user", "content": HARD}],
        extra_headers={"x-proteus-tau": "0.5"})
    assert raw.headers["x-proteus-tau"] == "0.5"
    assert raw.headers["x-proteus-model"] == router.route(HARD, 0.5)[0]["model"]
    raw = c.completions.with_raw_response.create(model="proteus", prompt=[HARD])
    assert raw.headers["x-proteus-tau"] == "0.9"  # the key's default
    assert raw.parse().choices[0].text.startswith(f"up-{router.route(HARD, 0.9)[0]['model']}")


def test_streaming_passthrough(gw, router):
    stream = client(gw).chat.completions.create(
        model="proteus-0.9", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": [{"type": "text", "text": HARD}]}])
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == f"up-{router.route(HARD, 0.9)[0]['model']} says hi from upstream"
    assert chunks[-1].usage.completion_tokens == 3


def test_models_and_route_mount(gw, router):
    names = [m.id for m in client(gw).models.list()]
    assert names == ["proteus", "proteus-0.5", "proteus-0.6", "proteus-0.7", "proteus-0.8"]
    auth = {"authorization": f"Bearer {KEYS['team']}"}
    got = httpx.post(gw.url + "/v1/route", json={"query": HELLO, "tau": 0.7}, headers=auth)
    assert got.json() == json.loads(json.dumps(router.route(HELLO, 0.7)[0]))
    assert httpx.post(gw.url + "/v1/route", json={"query": HELLO, "tau": 0.7}).status_code == 401
    assert httpx.get(gw.url + "/healthz").json()["status"] == "ok"


def test_refusals_are_openai_errors(gw):
    with pytest.raises(openai.AuthenticationError) as err:
        client(gw, "sk-wrong").chat.completions.create(
            model="proteus", messages=[{"role": "user", "content": HELLO}])
    assert err.value.body["code"] == "invalid_api_key"
    with pytest.raises(openai.APIStatusError) as err:
        client(gw, "broke").chat.completions.create(
            model="proteus", messages=[{"role": "user", "content": HELLO}])
    assert err.value.status_code == 402 and err.value.body["code"] == "budget_exceeded"
    limited = client(gw, "limited")
    for _ in range(2):
        limited.chat.completions.create(model="proteus", messages=[{"role": "user",
                                                                    "content": HELLO}])
    with pytest.raises(openai.RateLimitError) as err:
        limited.chat.completions.create(model="proteus", messages=[{"role": "user",
                                                                    "content": HELLO}])
    assert err.value.response.headers["retry-after"] and "per minute" in err.value.message
    bad = [({"model": "gpt-4"}, 404, "model_not_found"),
           ({"model": "proteus-0.2"}, 400, "tau_out_of_range"),
           ({"model": "proteus-x"}, 400, "invalid_tau"),
           ({"model": "proteus", "messages": [{"role": "user", "content": " "}]}, 400,
            "empty_prompt")]
    for extra, status, code in bad:
        body = {"messages": [{"role": "user", "content": HELLO}], **extra}
        got = httpx.post(gw.url + "/v1/chat/completions", json=body,
                         headers={"authorization": f"Bearer {KEYS['team']}"})
        assert got.status_code == status and got.json()["error"]["code"] == code, got.text


def test_a_task_header_reaches_the_router(gw, router, monkeypatch):
    """x-proteus-task goes to `Router.task_ids`: this router has no task prior, so naming a
    task is a 422 that says so; without the header the request routes as before."""
    body = {"model": "proteus-0.9", "messages": [{"role": "user", "content": HELLO}]}
    headers = {"authorization": f"Bearer {KEYS['team']}", "x-proteus-task": "physics"}
    got = httpx.post(gw.url + "/v1/chat/completions", json=body, headers=headers)
    assert got.status_code == 422 and got.json()["error"]["code"] == "invalid_task"
    assert "trained without a task prior" in got.json()["error"]["message"]
    seen = []
    monkeypatch.setattr(router, "task_ids",
                        lambda task, n: seen.append(task) or np.full(n, -1, np.int32))
    del headers["x-proteus-task"]
    assert httpx.post(gw.url + "/v1/chat/completions", json=body,
                      headers=headers).status_code == 200
    assert seen == [None]


def test_an_unencodable_prompt_fails_alone(gw):
    """A lone surrogate is legal in JSON but not Unicode: that request gets 422, the requests
    batched with it are answered."""
    auth = {"authorization": f"Bearer {KEYS['team']}", "content-type": "application/json"}
    good = json.dumps({"model": "proteus-0.9", "messages": [{"role": "user", "content": HELLO}]})
    bad = good.replace(HELLO, "\\ud800 " + HELLO)  # the JSON escape, as a client would send it

    async def burst():
        async with httpx.AsyncClient(base_url=gw.url, timeout=30) as c:
            return await asyncio.gather(*[c.post("/v1/chat/completions", headers=auth,
                                                 content=bad if i % 4 == 0 else good)
                                          for i in range(12)])

    answers = asyncio.run(burst())
    assert [a.status_code for a in answers] == [422 if i % 4 == 0 else 200 for i in range(12)]
    assert answers[0].json()["error"]["code"] == "unroutable_prompt"
    assert "not valid Unicode" in answers[0].json()["error"]["message"]


def test_budget_holds_then_refuses(gw, router):
    """A stream without usage is charged ĉ, at most its reservation (mostly its output bound:
    max_tokens at the model's price); a request is forwarded while the day's spend plus its
    reservation fit the $1 budget, then 402 (`tests/test_gateway_budget.py`: the same under
    concurrency)."""
    decision = router.route(HELLO, 0.9)[0]
    c_hat, price = decision["c_hat"][decision["model"]], router.manifest["prices"][
        decision["model"]]
    max_tokens = int(0.3 / price["usd_per_output_token"])  # a reservation of ~$0.30 < ĉ
    assert max_tokens * price["usd_per_output_token"] < c_hat < 1.0
    capped, spent = client(gw, "capped"), []
    for _ in range(5):
        try:
            list(capped.chat.completions.create(model="proteus", stream=True,
                                                max_tokens=max_tokens,
                                                messages=[{"role": "user", "content": HELLO}]))
        except openai.APIStatusError as err:
            assert err.status_code == 402 and err.body["code"] == "budget_exceeded"
            break
        usage = httpx.get(gw.url + "/v1/usage",
                          headers={"authorization": f"Bearer {KEYS['capped']}"}).json()
        spent.append(usage["spend_usd"]["day"])
    assert len(spent) == 3 and spent[-1] <= usage["budget_usd"]["day"] == 1.0
    assert spent[0] == pytest.approx(max_tokens * price["usd_per_output_token"], rel=0.01)
    assert spent == pytest.approx([spent[0], 2 * spent[0], 3 * spent[0]])
    assert usage["reserved_usd"] == 0.0  # nothing in flight


def test_usage_prices_tokens(gw, router):
    before = httpx.get(gw.url + "/v1/usage", headers={"authorization": f"Bearer {KEYS['team']}"})
    client(gw).chat.completions.create(model="proteus-0.5",
                                       messages=[{"role": "user", "content": HARD}])
    after = httpx.get(gw.url + "/v1/usage", headers={"authorization": f"Bearer {KEYS['team']}"})
    model = router.route(HARD, 0.5)[0]["model"]
    price = router.manifest["prices"][model]
    want = 10 * price["usd_per_input_token"] + 3 * price["usd_per_output_token"]  # fake usage
    spent = after.json()["spend_usd"]["day"] - before.json()["spend_usd"]["day"]
    assert spent == pytest.approx(want, rel=1e-6)
    assert after.json()["month_by_model"][model]["prompt_tokens"] >= 10


def test_metrics_after_a_burst(gw, router):
    def sample(name, **labels):
        text = httpx.get(gw.url + "/metrics").text
        return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
                   if s.name == name and labels.items() <= s.labels.items())

    model = router.route(HELLO, 0.7)[0]["model"]
    before = sample("proteus_gateway_decisions_total", model=model, tenant="team")
    before_ok = sample("proteus_gateway_requests_total", endpoint="chat", status="200")
    before_401 = sample("proteus_gateway_errors_total", code="invalid_api_key")
    c = client(gw)
    for _ in range(7):
        c.chat.completions.create(model="proteus-0.7", messages=[{"role": "user",
                                                                  "content": HELLO}])
    for _ in range(3):
        httpx.post(gw.url + "/v1/chat/completions", json={"model": "proteus"})
    assert sample("proteus_gateway_decisions_total", model=model, tenant="team") == before + 7
    assert sample("proteus_gateway_requests_total", endpoint="chat", status="200") == before_ok + 7
    assert sample("proteus_gateway_errors_total", code="missing_api_key") >= 3
    assert sample("proteus_gateway_errors_total", code="invalid_api_key") == before_401
    assert sample("proteus_gateway_tau_count", tenant="team") >= 7
    assert sample("proteus_gateway_overhead_seconds_count") >= 7
    assert sample("proteus_gateway_routing_batch_size_sum") >= 7
    assert sample("proteus_gateway_spend_usd_total", tenant="team") > 0


def test_feedback_realised_accuracy_per_tau(gw):
    """Completions at two τ, scores posted back by request id: /metrics holds their count and
    sum per (tenant, τ bucket); the statuses are the online router's (`proteus.online.http`)."""
    def ask(tau, name="team"):
        raw = client(gw, name).chat.completions.with_raw_response.create(
            model=f"proteus-{tau}", messages=[{"role": "user", "content": HELLO}])
        return raw.headers["x-proteus-request-id"]

    def post(body, name="team"):
        return httpx.post(gw.url + "/v1/feedback", json=body,
                          headers={"authorization": f"Bearer {KEYS[name]}"})

    a1, a2, a3, b1, b2 = ask(0.55), ask(0.55), ask(0.55), ask(0.85), ask(0.85)
    r = post({"request_id": a1, "score": 1})
    assert r.status_code == 200 and r.json()["status"] == "accepted" and r.json()["tau"] == 0.55
    r = post({"feedback": [{"request_id": a2, "score": 0.5}, {"request_id": a3, "score": 0},
                           {"request_id": b1, "score": 1.0, "cost": 0.1},
                           {"request_id": a1, "score": 0.2}, {"request_id": "req-nope", "score": 1},
                           {"request_id": b2, "score": 2}]})
    assert r.status_code == 200
    assert [x["status"] for x in r.json()["results"]] == [
        "accepted", "accepted", "accepted", "duplicate", "unknown", "invalid"]
    assert r.json()["counts"] == {"accepted": 3, "duplicate": 1, "late": 0, "unknown": 1,
                                  "invalid": 1}
    assert post({"request_id": a1, "score": 0}).status_code == 409
    assert post({"request_id": b2, "score": 1}, "capped").status_code == 404  # not its request
    assert post([1, 2]).status_code == 400
    assert httpx.post(gw.url + "/v1/feedback", json={"request_id": b2, "score": 1}
                      ).status_code == 401
    families = text_string_to_metric_families(httpx.get(gw.url + "/metrics").text)
    got = {(s.name, s.labels["tau"]): s.value for f in families for s in f.samples
           if s.name.startswith("proteus_gateway_feedback") and s.labels["tenant"] == "team"
           and not s.name.endswith("_created")}
    assert got == {("proteus_gateway_feedback_total", "0.55"): 3.0,  # a1, a2, a3
                   ("proteus_gateway_feedback_score_total", "0.55"): 1.5,  # 1 + 0.5 + 0
                   ("proteus_gateway_feedback_tau", "0.55"): 0.55,
                   ("proteus_gateway_feedback_total", "0.85"): 1.0,  # b1 (b2 was invalid)
                   ("proteus_gateway_feedback_score_total", "0.85"): 1.0,
                   ("proteus_gateway_feedback_tau", "0.85"): 0.85}


def test_upstream_failures_fallback_and_timeout(router, upstream, tmp_path):
    """Every model's upstream answers 500 -> the fallback serves; a slow one -> 504 (open mode)."""
    entries = {m: {"upstream_model": "fail-500", "fallback": "backup"} for m in router.models}
    entries["backup"] = {"upstream_model": "up-backup"}
    entries[router.route(HARD, 0.5)[0]["model"]] = {"upstream_model": "slow", "timeout_s": 0.2}
    upstreams = config.load_models(models_file(tmp_path, upstream.url, entries), router.models)
    threaded = server.ServerSettings(inline_routing=False)  # the batched path, in a thread
    settings = gateway.GatewaySettings(route=threaded)
    with runner.server_thread(gateway.create_gateway(router, upstreams, None, settings)) as running:
        c = openai.OpenAI(base_url=running.url + "/v1", api_key="anything", max_retries=0)
        raw = c.chat.completions.with_raw_response.create(
            model="proteus-0.9", messages=[{"role": "user", "content": HARD}])
        assert raw.headers["x-proteus-model"] == "backup"
        assert raw.headers["x-proteus-fallback-from"] == router.route(HARD, 0.9)[0]["model"]
        assert raw.parse().choices[0].message.content.startswith("up-backup")
        with pytest.raises(openai.APIStatusError) as err:
            c.chat.completions.create(model="proteus-0.5",
                                      messages=[{"role": "user", "content": HARD}])
        assert err.value.status_code == 504 and err.value.body["code"] == "upstream_timeout"


def _leave_early(url: str, body: dict, after: float | None = None) -> None:
    """POST `body` on a raw socket and hang up, `after` seconds or on the first response bytes."""
    host, port = url.removeprefix("http://").split(":")
    data = json.dumps(body).encode()
    with socket.create_connection((host, int(port))) as sock:
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: "
                     b"application/json\r\ncontent-length: %d\r\n\r\n%s" % (len(data), data))
        if after is None:
            sock.recv(1)
        else:
            time.sleep(after)


def _metric(url: str, name: str, **labels) -> float:
    text = httpx.get(url + "/metrics").text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == name and labels.items() <= s.labels.items())


def _wait_for(check, timeout: float = 5.0) -> float:
    """Seconds until check() holds (fails after `timeout`)."""
    start = time.perf_counter()
    while not check():
        assert time.perf_counter() - start < timeout, "timed out"
        time.sleep(0.02)
    return time.perf_counter() - start


def test_a_client_that_leaves_stops_the_work(router, upstream, tmp_path):
    """Open mode. (1) The client hangs up while its request waits to be routed: nothing goes
    upstream, 499, nothing spent. (2) It hangs up while a 2 s upstream works: the gateway gives up
    at once (499; charged the routed estimate) and closes the upstream connection. (3) It hangs
    up after the first streamed chunk: the upstream connection is closed before the stream ends,
    not read to its end."""
    ask = {"model": "proteus-0.9", "messages": [{"role": "user", "content": HARD}]}
    model = router.route(HARD, 0.9)[0]["model"]
    entries = {m: {"upstream_model": "drip" if m == model else "slow"} for m in router.models}
    upstreams = config.load_models(models_file(tmp_path, upstream.url, entries), router.models)
    app = gateway.create_gateway(router, upstreams, None, gateway.GatewaySettings())
    decide = app.routing.decide

    async def slow_decide(item, *who):
        await asyncio.sleep(0.5)
        return await decide(item, *who)

    closed = lambda: _metric(running.url, "proteus_gateway_requests_total", status="499")
    with runner.server_thread(app) as running:
        app.routing.decide, calls = slow_decide, len(upstream.app.calls)
        _leave_early(running.url, ask, after=0.1)
        _wait_for(lambda: closed() == 1)
        assert len(upstream.app.calls) == calls  # never forwarded
        assert _metric(running.url, "proteus_gateway_spend_usd_total") == 0
        app.routing.decide = decide
        _leave_early(running.url, {**ask, "model": "proteus-0.5"}, after=0.3)
        assert upstream.app.calls[-1]["model"] == "slow"
        assert _wait_for(lambda: closed() == 2) < 1.0  # not after the upstream's 2 s
        slow_call = upstream.app.calls[-1]
        _wait_for(lambda: slow_call.get("closed_early"))  # the upstream saw the gateway leave
        assert _metric(running.url, "proteus_gateway_errors_total",
                       code="client_closed_request") == 2
        assert _metric(running.url, "proteus_gateway_spend_usd_total") > 0
        _leave_early(running.url, {**ask, "stream": True})  # hangs up on the first bytes
        call = upstream.app.calls[-1]
        assert call["model"] == "drip"
        _wait_for(lambda: call.get("closed_early"))
        # the client did not leave for lack of an upstream: a reader gets all the pieces
        streamed = httpx.post(running.url + "/v1/chat/completions", json={**ask, "stream": True})
        assert streamed.text.count("data: ") == 5 and "closed_early" not in upstream.app.calls[-1]


def test_fast_transport_reuses_connections(upstream):
    """The lean httpx transport: keep-alive reuse, chunked SSE bodies, httpx's exceptions."""
    async def run():
        transport = transport_lib.FastTransport()
        async with httpx.AsyncClient(transport=transport, base_url=upstream.url) as c:
            body = {"model": "m", "messages": [{"role": "user", "content": HELLO}]}
            for _ in range(3):
                got = await c.post("/v1/chat/completions", json=body)
                assert got.json()["choices"][0]["message"]["content"] == "m says hi from upstream"
            assert [len(idle) for idle in transport._idle.values()] == [1]  # one connection
            async with c.stream("POST", "/v1/chat/completions",
                                json={**body, "stream": True}) as streamed:
                text = b"".join([chunk async for chunk in streamed.aiter_bytes()])
            assert text.count(b"data: ") == 5 and text.endswith(b"data: [DONE]\n\n")
            with pytest.raises(httpx.ConnectError):
                await c.post(f"http://127.0.0.1:{_closed_port()}/v1/completions", json=body)
            with pytest.raises(httpx.ReadTimeout):
                await c.post("/v1/completions", json={"model": "slow", "prompt": "x"},
                             timeout=0.1)

    asyncio.run(run())


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
