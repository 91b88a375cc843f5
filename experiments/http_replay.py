"""The replay through HTTP: a scenario driven against a running gateway with its online controller
on (`python -m launch.replay --via=http`; `experiments.replay` is the in-process replay).

Two loopback servers in this process: the gateway (`proteus.gateway.app`, one API key whose
tenant is named as the in-process replay's, online settings of the replay) and
`ReplayUpstream`, a fake OpenAI-compatible upstream that answers from the data set's outcomes:
each request carries its stream index (`metadata.replay_index`, passed through by the gateway),
and the upstream answers, for the model the gateway chose, that model's realised score and cost
on that question after the scenario's drift (`proteus_replay` in the completion). The client
(`drive`) sends the stream in blocks of `block` concurrent chat completions (the question's
text as the prompt, model `proteus-<τ>`, its task in x-proteus-task for a router with a task
prior, the key's bearer token), reads the chosen model from x-proteus-model, and posts the
scores (and costs) of a fraction of the answers `delay` requests later to POST /v1/feedback:
the in-process replay's `FeedbackSchedule`, so the same feedback arrives in the same order.

The prompts are encoded by the gateway's router with the artifact's encoder, memoised with the
split's own features (`memo_encoder`: the vectors that encoder gives those texts, so decisions
are those of the real encoder; MiniLM takes 0.2-1.7 s a prompt on the shared 2-core machine,
which would make a 20,000-request replay hours long). `encode=True` encodes every prompt.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np

from experiments import replay as rp
from proteus.gateway import app as gateway
from proteus.gateway import fake, runner
from proteus.gateway.config import Tenant, Upstream
from proteus.gateway.keys import hash_key
from proteus.online import controller as ctl
from proteus.online.service import OnlineSettings
from proteus.serving import Router
from proteus.serving.server import ServerSettings

TASK_HEADER = "x-proteus-task"


class MemoEncoder:
    """An encoder answering known texts from a table ({text: [D] float32}), others with `inner`."""

    def __init__(self, inner: Any, table: dict[str, np.ndarray]):
        self.inner, self.table = inner, table
        self.id, self.dim = inner.id, inner.dim

    def encode(self, texts: list[str]) -> np.ndarray:
        missing = [t for t in texts if t not in self.table]
        if missing:
            self.table.update(zip(missing, self.inner.encode(missing), strict=True))
        return np.stack([self.table[t] for t in texts]).astype(np.float32)

    def to_config(self) -> dict[str, Any]:
        return self.inner.to_config()


def memo_encoder(router: Router, texts: np.ndarray, features: np.ndarray) -> None:
    """Memoise `router`'s encoder with the split's features of its texts (module docstring)."""
    router._encoder = MemoEncoder(router._encoder, dict(zip(texts.tolist(), features,
                                                            strict=True)))


class ReplayUpstream:
    """ASGI app: a chat completion whose `metadata.replay_index` is i, for model m (by name),
    answers scores[i, m] and costs[i, m] in `proteus_replay` (and a small `usage`)."""

    def __init__(self, stream: rp.Stream, models: tuple[str, ...]):
        self.stream, self.index = stream, {m: k for k, m in enumerate(models)}

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            return await fake.answer_lifespan(receive, send)
        body = json.loads(await fake.whole_body(receive))
        i, m = int(body["metadata"]["replay_index"]), self.index[body["model"]]
        outcome = {"index": i, "score": float(self.stream.scores[i, m]),
                   "cost": float(self.stream.costs[i, m])}
        answer = json.dumps({
            "id": f"replay-{i}", "object": "chat.completion", "created": 0, "model": body["model"],
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": f"answer {i}"}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            "proteus_replay": outcome}).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(answer)).encode())]})
        await send({"type": "http.response.body", "body": answer})


# Loopback servers of a benchmark: the live defaults (10 s for headers and bodies, idle keep-alive
# connections closed after 5 s, when the client's pool also lets them go) let a CPU-starved
# replay lose a request to a connection closed under it (httpx.ReadError).
REPLAY_HTTP = ServerSettings(read_timeout_s=600.0, header_timeout_s=600.0,
                             keep_alive_timeout_s=600)
# The start-up warnings a live gateway owes its operator (state in ':memory:' not kept, a tenant
# may ask for τ the router cannot serve feasibly) say nothing about a replay; the drift events stay.
STARTUP_LOGGERS = ("proteus.gateway.online", "proteus.gateway.app")


@contextlib.contextmanager
def quiet_startup() -> Iterator[None]:
    """STARTUP_LOGGERS at ERROR inside the block."""
    loggers = [logging.getLogger(name) for name in STARTUP_LOGGERS]
    levels = [one.level for one in loggers]
    for one in loggers:
        one.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for one, level in zip(loggers, levels, strict=True):
            one.setLevel(level)


# The replay's tenant through the gateway: the in-process replay routes as the online service's
# default tenant, and a stream's envelope draws hash its name (`service.request_unit`), so the
# gateway's tenant has that name too (open mode's tenant is "open": the two replays drew apart
# as soon as a stream was served on its envelope).
REPLAY_TENANT = OnlineSettings.default_tenant


def make_gateway(router: Router, upstream_url: str, cfg: rp.ReplayConfig,
                 controller: ctl.ControllerConfig, usage_db: str, key: str) -> gateway.GatewayApp:
    """The gateway of a replay: one API key (`key`) of tenant `REPLAY_TENANT` (no budgets or
    limits), every model at `upstream_url`, online on."""
    upstreams = {m: Upstream(m, upstream_url + "/v1", m, 60.0, None) for m in router.models}
    settings = gateway.GatewaySettings(
        usage_db=usage_db, online=rp.online_settings(cfg, controller, ttl=10 * 86400.0),
        route=REPLAY_HTTP)
    keys = {hash_key(key): Tenant(REPLAY_TENANT, cfg.tau)}
    with quiet_startup():
        return gateway.create_gateway(router, upstreams, keys, settings)


async def drive(url: str, texts: list[str], tasks: list[str | None] | None,
                cfg: rp.ReplayConfig, models: tuple[str, ...], auth: dict[str, str]
                ) -> dict[str, np.ndarray]:
    """Send the stream (module docstring) with the `auth` headers on every request; returns per
    request the chosen model [N] int32, its score and cost [N] from the upstream, and the
    stream's knob τ' is not visible over HTTP."""
    n, schedule = cfg.n, rp.FeedbackSchedule(cfg)
    model, score, cost = np.zeros(n, np.int32), np.zeros(n), np.zeros(n)
    ids: list[str] = [""] * n
    index = {m: k for k, m in enumerate(models)}
    limits = httpx.Limits(max_connections=cfg.block, max_keepalive_connections=cfg.block)
    async with httpx.AsyncClient(base_url=url, timeout=120.0, limits=limits,
                                 headers=auth) as client:

        async def one(i: int) -> None:
            headers = {} if tasks is None or tasks[i] is None else {TASK_HEADER: tasks[i]}
            body = {"model": f"proteus-{cfg.tau:g}", "metadata": {"replay_index": str(i)},
                    "messages": [{"role": "user", "content": texts[i]}]}
            reply = await client.post("/v1/chat/completions", json=body, headers=headers)
            reply.raise_for_status()
            outcome = reply.json()["proteus_replay"]
            model[i] = index[reply.headers["x-proteus-model"]]
            score[i], cost[i] = outcome["score"], outcome["cost"]
            ids[i] = reply.headers["x-proteus-request-id"]

        for start in range(0, n, cfg.block):
            ready = schedule.ready(start)
            if ready:
                items = [{"request_id": ids[i], "score": score[i], "cost": cost[i]}
                         for i in ready]
                got = await client.post("/v1/feedback", json={"feedback": items})
                got.raise_for_status()
                if got.json()["counts"]["accepted"] != len(items):
                    raise RuntimeError(f"feedback not accepted: {got.json()['counts']}")
            stop = min(n, start + cfg.block)
            await asyncio.gather(*[one(i) for i in range(start, stop)])
            for i in range(start, stop):
                schedule.served(i)
    return {"model": model, "score": score, "cost": cost}


def run_http(router: Router, test_texts: np.ndarray, stream: rp.Stream, cfg: rp.ReplayConfig,
             controller: ctl.ControllerConfig, tasks: list[str | None] | None,
             usage_db: str = ":memory:") -> dict:
    """The online router's results over HTTP (the `run_online` form, τ' as NaN: the client does
    not see it) and the gateway's controllers at the end."""
    with runner.server_thread(ReplayUpstream(stream, router.models),
                              settings=REPLAY_HTTP) as upstream:
        key = secrets.token_urlsafe(24)
        auth = {"Authorization": f"Bearer {key}"}
        app = make_gateway(router, upstream.url, cfg, controller, usage_db, key)
        with runner.server_thread(app) as running:
            texts = test_texts[stream.rows].tolist()
            out = asyncio.run(drive(running.url, texts, tasks, cfg, router.models, auth))
            state = httpx.get(running.url + "/v1/controllers", timeout=60, headers=auth).json()
    idx = np.arange(cfg.n)
    if not (np.array_equal(out["score"], stream.scores[idx, out["model"]])
            and np.array_equal(out["cost"], stream.costs[idx, out["model"]].astype(np.float64))):
        raise RuntimeError("the upstream's outcomes are not the stream's")
    # the upstream's outcomes, as the in-process replay holds them (float32)
    return {"model": out["model"], "score": stream.scores[idx, out["model"]],
            "cost": stream.costs[idx, out["model"]], "operating_tau": np.full(cfg.n, np.nan),
            "controllers": state["controllers"], "models": state["models"], "events": []}
