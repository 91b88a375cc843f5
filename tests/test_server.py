"""The HTTP server: a real uvicorn server on a loopback port, spoken to over HTTP."""

import asyncio
import dataclasses
import gc
import json
import socket
import threading

import httpx
import numpy as np
import pytest

from proteus import serving
from proteus.serving import batching, reload, server

pytest_plugins = ["tests.serving_fixtures"]

SETTINGS = server.ServerSettings(max_query_chars=200, max_body_bytes=1 << 16, max_batch_items=8)


@pytest.fixture(scope="module")
def client(text_router):
    with server.ServerThread(server.create_app(text_router, SETTINGS)) as running:
        with httpx.Client(base_url=running.url, timeout=30) as c:
            c.app_service = running.server.config.app.service
            yield c


def _close(a: dict, b: dict) -> bool:
    """Decisions equal up to float32 rounding (batches of other sizes run other kernels)."""
    floats = {k for k, v in a.items() if isinstance(v, float | dict)}
    return ({k: a[k] for k in a.keys() - floats} == {k: b[k] for k in b.keys() - floats}
            and all(a[k] == pytest.approx(b[k], rel=1e-5) for k in floats))


def _features(router: serving.Router, n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, router.feature_dim)).astype(np.float32)


def test_health_models_and_schema(client, text_router):
    assert client.get("/healthz").json()["status"] == "ok"
    models = client.get("/v1/models").json()
    assert models == json.loads(json.dumps(text_router.info()))
    assert models["accepts_text"] and models["feature_dim"] == 64
    schema = client.get("/openapi.json").json()
    assert {"/v1/route", "/v1/models", "/healthz"} <= set(schema["paths"])
    body = schema["paths"]["/v1/route"]["post"]["requestBody"]["content"]["application/json"]
    assert "RouteRequest" in json.dumps(body)
    assert {"RouteRequest", "BatchRouteRequest", "RouteDecisionModel"} <= set(
        schema["components"]["schemas"])


def test_route_matches_the_router(client, text_router):
    x = _features(text_router, 3)
    for row in x:
        got = client.post("/v1/route", json={"features": row.tolist(), "tau": 0.3})
        assert got.status_code == 200
        assert got.json() == text_router.route(row, 0.3)[0]
    text = "gsm8k question, hard: algebra, chemistry, law"
    got = client.post("/v1/route", json={"query": text, "tau": 0.3}).json()
    assert got == text_router.route(text, 0.3)[0]
    batch = {"requests": [{"features": x[0].tolist(), "tau": 0.3}, {"query": text, "tau": 0.6}]}
    decisions = client.post("/v1/route", json=batch).json()["decisions"]
    assert _close(decisions[0], text_router.route(x[0], 0.3)[0])
    assert _close(decisions[1], text_router.route(text, 0.6)[0])


JSON = {"content-type": "application/json"}


def _bad_requests(dim: int) -> list[tuple[bytes, int, str]]:
    ok = [0.0] * dim
    dump = lambda obj: json.dumps(obj).encode()
    return [
        (b"{not json", 400, "malformed JSON"),
        (b'{"features": [0.0], "tau": NaN}', 422, "tau must be a number in [0, 1]"),
        (dump({"features": ok, "tau": 1.5}), 422, "tau must be a number in [0, 1]"),
        (dump({"features": ok, "tau": "0.9"}), 422, "tau must be a number"),
        (dump({"features": ok}), 422, "missing 'tau'"),
        (dump({"query": "x", "features": ok, "tau": 0.5}), 422, "exactly one of"),
        (dump({"query": "   ", "tau": 0.5}), 422, "non-empty string"),
        (dump({"query": "x" * 201, "tau": 0.5}), 413, "exceeds the limit of 200"),
        (dump({"features": ok[:-1], "tau": 0.5}), 422, f"{dim} values per query"),
        (dump({"features": ["a"] * dim, "tau": 0.5}), 422, f"list of {dim} numbers"),
        (dump({"features": ok, "tau": 0.5, "extra": 1}), 422, "unknown field(s) ['extra']"),
        (dump([1, 2]), 422, "expected a JSON object"),
        (dump({"requests": []}), 422, "non-empty list"),
        (dump({"requests": [{"features": ok, "tau": 0.5}] * 9}), 413, "limit of 8"),
        (b"x" * (1 << 17), 413, "exceeds the limit"),
    ]


def test_bad_requests_get_clear_4xx(client, text_router):
    for body, status, message in _bad_requests(text_router.feature_dim):
        got = client.post("/v1/route", content=body, headers=JSON)
        assert got.status_code == status, (body[:60], got.text)
        assert message in got.json()["detail"], (body[:60], got.text)
    assert client.get("/healthz").status_code == 200  # still serving


def test_one_bad_item_of_a_batch_fails_alone(client, text_router):
    """Issue 26 item 10: one empty query made every item of a {"requests": [...]} batch 422.
    Each bad item gets its own error entry (the status it would have got alone); the others
    are answered."""
    ok, text = [0.0] * text_router.feature_dim, "which gas do plants absorb?"
    batch = {"requests": [{"features": ok, "tau": 0.5}, {"query": "   ", "tau": 0.5},
                          {"features": ok, "tau": 1.5}, {"query": "x" * 201, "tau": 0.5},
                          {"tau": 0.5}, {"query": text, "tau": 0.6}]}
    got = client.post("/v1/route", json=batch)
    assert got.status_code == 200, got.text
    d = got.json()["decisions"]
    assert _close(d[0], text_router.route(np.asarray(ok), 0.5)[0])
    assert _close(d[5], text_router.route(text, 0.6)[0])
    errors = [(e["error"]["status"], e["error"]["code"]) for e in d[1:5]]
    assert errors == [(422, "invalid_query"), (422, "invalid_tau"), (413, "query_too_long"),
                      (422, "invalid_request")]
    assert [e["error"]["message"][:12] for e in d[1:5]] == [f"requests[{i}]:" for i in
                                                            range(1, 5)]


def test_infeasible_tau_best_effort_is_flagged(client, text_router):
    top = text_router.policy.tau_range[1]
    got = client.post("/v1/route", json={"features": [0.0] * 64, "tau": min(1.0, top + 0.01)})
    assert got.status_code == 200 and got.json()["feasible"] is False
    assert "infeasible" in got.json()["reason"]


def test_refuse_policy_and_fastapi_route(tiny_artifact):
    router = serving.Router.load(tiny_artifact, fallback="refuse", warmup=0)
    app = server.create_app(router, server.ServerSettings(fast_path=False))
    with server.ServerThread(app) as running, httpx.Client(base_url=running.url) as c:
        got = c.post("/v1/route", json={"features": [0.0] * 4, "tau": 0.9})
        assert got.status_code == 422 and "infeasible and refused" in got.json()["detail"]
        got = c.post("/v1/route", json={"query": "hello", "tau": 0.6})
        assert got.status_code == 422 and "precomputed features" in got.json()["detail"]
        assert c.post("/v1/route", content=b"{", headers=JSON).status_code == 400
        ok = c.post("/v1/route", json={"features": [0.0] * 4, "tau": 0.6}).json()
        assert ok == router.route(np.zeros(4), 0.6)[0]
        assert c.get("/v1/models").json()["fallback"] == "refuse"


def test_fast_path_and_fastapi_route_agree(text_router, client):
    bodies = [body for body, _, _ in _bad_requests(64)[:6]]
    bodies.append(json.dumps({"features": [0.1] * 64, "tau": 0.4}).encode())
    app = server.create_app(text_router, dataclasses.replace(SETTINGS, fast_path=False))
    with server.ServerThread(app) as running, httpx.Client(base_url=running.url) as slow:
        for body in bodies:
            a = client.post("/v1/route", content=body, headers=JSON)
            b = slow.post("/v1/route", content=body, headers=JSON)
            assert (a.status_code, a.json()) == (b.status_code, b.json())


def test_concurrent_requests_are_batched(client, text_router):
    x = _features(text_router, 50, seed=1)
    stats = client.app_service.batcher.stats
    before = dict(stats)

    async def many():
        async with httpx.AsyncClient(base_url=str(client.base_url), timeout=30) as c:
            return await asyncio.gather(*[
                c.post("/v1/route", json={"features": row.tolist(), "tau": 0.3}) for row in x])

    answers = asyncio.run(many())
    assert [a.status_code for a in answers] == [200] * 50
    want = text_router.decide(x, 0.3).model
    assert [a.json()["model_index"] for a in answers] == want.tolist()
    assert stats["rows"] - before["rows"] == 50
    assert stats["batches"] - before["batches"] < 50  # requests shared batches
    assert stats["largest_batch"] > 1


def test_server_shuts_down_cleanly(tiny_artifact):
    router = serving.Router.load(tiny_artifact, warmup=0)
    threads = set(threading.enumerate())
    running = server.ServerThread(server.create_app(router)).start()
    port = int(running.url.rsplit(":", 1)[1])
    assert httpx.get(running.url + "/healthz").status_code == 200
    running.stop()
    assert set(threading.enumerate()) <= threads
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass


@pytest.mark.parametrize("inline", [False, True])
def test_micro_batcher(inline):
    seen, threads = [], set()

    def fn(items):
        seen.append(list(items))
        threads.add(threading.get_ident())
        if "boom" in items:
            raise RuntimeError("boom")
        return [i * 10 for i in items]

    async def scenario():
        batcher = batching.MicroBatcher(fn, max_batch=2, max_wait_s=0.01, max_queue=6,
                                        inline=inline)
        batcher.start()
        results = await asyncio.gather(*[batcher.submit([i]) for i in range(5)])
        assert await batcher.submit([7, 8, 9]) == [70, 80, 90]
        with pytest.raises(RuntimeError, match="boom"):
            await batcher.submit(["boom"])
        with pytest.raises(batching.QueueFullError):
            await batcher.submit(list(range(7)))
        await batcher.stop()
        return results, batcher.stats

    results, stats = asyncio.run(scenario())
    assert results == [[0], [10], [20], [30], [40]]
    assert seen[:3] == [[0, 1], [2, 3], [4]]  # 5 waiting items in batches of at most 2
    assert seen[3:] == [[7, 8], [9], ["boom"]]
    assert stats == {"batches": 6, "rows": 9, "largest_batch": 2}
    # inline: fn ran on the event loop's thread (this one); else on one worker thread
    assert (threads == {threading.get_ident()}) if inline else (
        len(threads) == 1 and threading.get_ident() not in threads)


def test_internal_errors_become_500(tiny_artifact, monkeypatch):
    router = serving.Router.load(tiny_artifact, warmup=0)

    def broken(*_):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(reload, "route_items", broken)  # what the batcher calls

    async def scenario():
        service = server.RouteService(router, server.ServerSettings())
        service.batcher.start()
        try:
            return await service.handle(json.dumps({"features": [0.0] * 4, "tau": 0.6}).encode())
        finally:
            await service.batcher.stop()

    status, body = asyncio.run(scenario())
    assert status == 500 and "disk on fire" in json.loads(body)["detail"]


def test_freeze_startup_heap_exempts_live_objects():
    try:
        frozen = server.freeze_startup_heap()
        assert frozen > 1000  # jax and numpy alone hold far more
        gc.collect()  # a full pass leaves the frozen alone (only objects freed since leave it)
        assert gc.get_freeze_count() > 0.9 * frozen
    finally:
        gc.unfreeze()
    assert gc.get_freeze_count() == 0


def test_cheap_encoders_route_on_the_event_loop(tiny_artifact, text_router):
    tiny_router = serving.Router.load(tiny_artifact, warmup=0)
    assert tiny_router.cheap_to_encode and text_router.cheap_to_encode  # precomputed, hashing
    assert server.create_app(tiny_router).service.batcher.inline
    threaded = server.ServerSettings(inline_routing=False)
    assert not server.create_app(tiny_router, threaded).service.batcher.inline
