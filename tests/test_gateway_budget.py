"""Money at the gateway (issue 26 items 1-3): budgets under concurrency, untrusted upstream usage,
usage kept while SQLite is busy. The gateway runs in-process (httpx over ASGI); the fake upstream
on loopback answers after 0.2 s, so concurrent requests really overlap, and bills like a real one
(`fake.FakeUpstream(usage_from_request=True)`: the output runs to its max_tokens)."""

import asyncio
import contextlib
import sqlite3
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from proteus.gateway import app as gateway
from proteus.gateway import config, fake, runner
from tests import gateway_helpers as gh

pytest_plugins = ["tests.serving_fixtures"]


@pytest.fixture(scope="module")
def router(tiny_bundle, tmp_path_factory):
    return gh.text_router(tiny_bundle, str(tmp_path_factory.mktemp("budget") / "artifact"))


@pytest.fixture(scope="module")
def upstream():
    with runner.server_thread(fake.FakeUpstream(latency_s=0.2, usage_from_request=True)) as up:
        yield up


def make_app(router, upstream, tmp_path, upstream_model="up", **settings):
    entries = {m: {"upstream_model": upstream_model} for m in router.models}
    upstreams = config.load_models(gh.models_file(tmp_path, upstream.url, entries), router.models)
    tenants = config.load_keys(gh.keys_file(tmp_path / "keys.toml", {
        "capped": {"tau_range": [0.5, 0.84], "budget_usd_per_day": 1.0}}))
    settings = gateway.GatewaySettings(usage_db=str(tmp_path / "usage.sqlite3"), **settings)
    return gateway.create_gateway(router, upstreams, tenants, settings)


def price(router, text=gh.HELLO, tau=0.8) -> dict:
    return router.manifest["prices"][router.route(text, tau)[0]["model"]]


def metric(body: str, name: str) -> float:
    return sum(s.value for f in text_string_to_metric_families(body) for s in f.samples
               if s.name == name)


def test_sixty_concurrent_requests_stay_within_a_one_dollar_day(router, upstream, tmp_path):
    """The probe: 60 concurrent requests of a $1/day tenant all got 200 and spent $18. Each of
    these costs ~$0.05 (its output runs to max_tokens): the day's spend must stay <= $1.00, the
    requests that do not fit get 402 before anything is forwarded, and the budget is used."""
    p = price(router)
    max_tokens = int(0.05 / p["usd_per_output_token"])
    body = gh.chat(max_tokens=max_tokens)
    app = make_app(router, upstream, tmp_path)
    calls = len(upstream.app.calls)

    async def burst():
        async with gh.in_process(app) as c:
            answers = await asyncio.gather(*[c.post("/v1/chat/completions", content=body,
                                                    headers={**gh.auth("capped"), **JSON})
                                             for _ in range(60)])
            usage = (await c.get("/v1/usage", headers=gh.auth("capped"))).json()
        return answers, usage

    answers, usage = asyncio.run(burst())
    codes = [a.status_code for a in answers]
    ok = codes.count(200)
    assert set(codes) == {200, 402}, codes
    assert all(a.json()["error"]["code"] == "budget_exceeded" for a in answers if a.status_code
               == 402)
    assert len(upstream.app.calls) - calls == ok  # a 402 never reached the upstream
    spend = usage["spend_usd"]["day"]
    print(f"60 concurrent requests at ~$0.05: {ok} answered, day's spend ${spend:.4f}")
    assert spend <= 1.0
    hold = len(body) * p["usd_per_input_token"] + max_tokens * p["usd_per_output_token"]
    assert spend > 1.0 - 2 * hold  # refused only what could not fit
    assert gh.db_requests(str(tmp_path / "usage.sqlite3"), "capped")[1] == pytest.approx(spend)


def test_a_request_that_cannot_fit_is_refused_up_front(router, upstream, tmp_path):
    """Its worst case (the prompt's bytes, max_tokens, at the model's price) exceeds the whole
    budget: 402 before routing's answer goes anywhere, nothing spent."""
    p = price(router)
    body = gh.chat(max_tokens=int(2.0 / p["usd_per_output_token"]))
    app, calls = make_app(router, upstream, tmp_path), len(upstream.app.calls)

    async def one():
        async with gh.in_process(app) as c:
            got = await c.post("/v1/chat/completions", content=body,
                               headers={**gh.auth("capped"), **JSON})
            return got, (await c.get("/v1/usage", headers=gh.auth("capped"))).json()

    got, usage = asyncio.run(one())
    assert got.status_code == 402 and got.json()["error"]["code"] == "budget_exceeded"
    assert "max_tokens" in got.json()["error"]["message"]
    assert len(upstream.app.calls) == calls and usage["spend_usd"]["day"] == 0.0


JSON = {"content-type": "application/json"}
BAD_USAGE = {
    "negative": b'{"choices": [], "usage": {"prompt_tokens": -1000000000, '
                b'"completion_tokens": -1}}',
    "nan": b'{"choices": [], "usage": {"prompt_tokens": NaN, "completion_tokens": 1}}',
    "infinite": b'{"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": Infinity}}',
    "huge": b'{"choices": [], "usage": {"prompt_tokens": 10000000000000, "completion_tokens": 1}}',
    "fractional": b'{"choices": [], "usage": {"prompt_tokens": 2.5, "completion_tokens": 1}}',
    "string": b'{"choices": [], "usage": {"prompt_tokens": "12", "completion_tokens": 1}}',
    "not_a_table": b'{"choices": [], "usage": [1, 2]}',
}


@pytest.mark.parametrize("kind", sorted(BAD_USAGE))
def test_bad_upstream_usage_is_charged_the_reservation(router, upstream, tmp_path, kind):
    """The probe: negative token counts drove a tenant's spend to -$9,999.91 (for good); NaN or
    Infinity reset the client's connection or charged nothing. The answer still reaches the
    client; the charge is the request's reservation, and the bad usage is counted."""
    upstream.app.raw["bad-usage"] = BAD_USAGE[kind]
    p = price(router)
    body = gh.chat(max_tokens=100)
    app = make_app(router, upstream, tmp_path, upstream_model="bad-usage")

    async def one():
        async with gh.in_process(app) as c:
            got = await c.post("/v1/chat/completions", content=body,
                               headers={**gh.auth("capped"), **JSON})
            usage = (await c.get("/v1/usage", headers=gh.auth("capped"))).json()
            return got, usage, (await c.get("/metrics")).text

    got, usage, metrics = asyncio.run(one())
    assert got.status_code == 200 and got.content == BAD_USAGE[kind]
    hold = len(body) * p["usd_per_input_token"] + 100 * p["usd_per_output_token"]
    assert usage["spend_usd"]["day"] == pytest.approx(hold, rel=1e-9)
    assert metric(metrics, "proteus_gateway_bad_usage_total") == 1


@pytest.mark.parametrize("raw", [b"<html>upstream proxy error</html>", b"[1, 2]", b""])
def test_a_malformed_upstream_answer_is_a_502(router, upstream, tmp_path, raw):
    """The probe: a non-JSON 200 from the upstream was passed through as 200. It is a 502 in
    OpenAI's error shape (not retried on a fallback: the upstream answered, and may have billed:
    it is charged the reservation)."""
    upstream.app.raw["garbage"] = raw
    app = make_app(router, upstream, tmp_path, upstream_model="garbage")

    async def one():
        async with gh.in_process(app) as c:
            got = await c.post("/v1/chat/completions", content=gh.chat(max_tokens=10),
                               headers={**gh.auth("capped"), **JSON})
            return got, (await c.get("/v1/usage", headers=gh.auth("capped"))).json()

    got, usage = asyncio.run(one())
    assert got.status_code == 502, got.text
    assert got.json()["error"]["code"] == "upstream_malformed_response"
    assert got.json()["error"]["type"] == "upstream_error"
    assert usage["spend_usd"]["day"] > 0


def test_usage_is_kept_while_the_database_is_locked(router, upstream, tmp_path):
    """The probe: with the database locked by another process for ~11 s, 4 of 50 requests' usage
    rows were never written. Here another connection holds SQLite's write lock for 1.5 s while
    50 requests are answered and the flush (every 0.05 s) keeps failing; every request is in
    the database once the lock is gone."""
    db_path = str(tmp_path / "usage.sqlite3")
    app = make_app(router, upstream, tmp_path, flush_every_s=0.05)
    # so the test need not hold the lock past sqlite3's default 5 s wait
    app.usage._db.execute("PRAGMA busy_timeout = 50")

    async def scenario():
        async with gh.in_process(app) as c:
            with contextlib.closing(sqlite3.connect(db_path, isolation_level=None)) as other:
                other.execute("BEGIN EXCLUSIVE")
                t0 = time.perf_counter()
                answers = await asyncio.gather(*[
                    c.post("/v1/chat/completions", content=gh.chat(max_tokens=1),
                           headers={**gh.auth("capped"), **JSON}) for _ in range(50)])
                await asyncio.sleep(max(0.0, 1.5 - (time.perf_counter() - t0)))
                other.execute("COMMIT")
            await asyncio.sleep(0.3)  # a few flushes after the lock is gone
            return [a.status_code for a in answers]

    assert asyncio.run(scenario()) == [200] * 50
    assert gh.db_requests(db_path, "capped")[0] == 50
