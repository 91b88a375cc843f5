"""The gateway's ASGI app: OpenAI-compatible endpoints in front of the router and the upstreams.

  POST /v1/chat/completions, /v1/completions   routed and forwarded (`proteus.gateway.completions`)
  GET  /v1/models    `proteus` and `proteus-<τ>` names (OpenAI list), plus the router's pool
  GET  /v1/usage     the caller's spend, budgets and τ range
  GET  /metrics      Prometheus text (`proteus.gateway.metrics`)
  POST /v1/feedback  realised scores of answered completions, by x-proteus-request-id
                     (`proteus.gateway.feedback`): realised accuracy against τ in /metrics
  POST /v1/route, GET /healthz, /openapi.json    the plain router service (`serving.server`),
                     mounted as is (with a key check on /v1/route when keys are configured)

The gateway's endpoints are raw ASGI, not FastAPI routes: per-request framework work would be
most of the gateway's own overhead (see `proteus.serving.server`). Responses carry
x-proteus-request-id, and for routed requests x-proteus-model (the model that answered),
x-proteus-tau and x-proteus-overhead-ms: the gateway's own time, i.e. everything but the upstream
call (as LiteLLM's overhead header: time the event loop spends on other requests while this one
awaits its upstream counts as upstream time, so under saturation compare end-to-end latencies too).
A request may name its prompt's task in an x-proteus-task header, for a router trained with a task
prior (GET /v1/models lists them under router.tasks); a task the router does not know gets 422.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ipaddress
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from proteus.gateway import completions as cmp
from proteus.gateway.config import Tenant, Upstream, load_keys, load_models
from proteus.gateway.errors import GatewayError
from proteus.gateway.feedback import FeedbackLedger
from proteus.gateway.keys import KeyRing, RateLimiter
from proteus.gateway.metrics import GatewayMetrics
from proteus.gateway.proxy import Proxy, Reply
from proteus.gateway.usage import UsageStore
from proteus.online import http as online_http
from proteus.serving import Router, server

JSON = b"application/json"
COMPLETION_PATHS = {"/v1/chat/completions": "/chat/completions",
                    "/v1/completions": "/completions"}
log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class GatewaySettings:
    """What the `launch.gateway` flags set."""

    usage_db: str = ":memory:"  # SQLite file for usage and spend (":memory:": not kept)
    open_default_tau: float = 0.8  # τ for requests naming none when there is no keys file
    listed_taus: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95)  # in GET /v1/models
    max_body_bytes: int = 4 << 20  # larger request bodies get 413
    max_route_chars: int = 8192  # the router encodes the prompt's last this-many characters
    max_connections: int = 1024  # idle upstream connections kept (per pool)
    fast_transport: bool = True  # `proteus.gateway.transport`; False: httpx's default transport
    flush_every_s: float = 1.0  # usage -> SQLite interval
    feedback_bucket: float = 0.01  # τ bucket width of the realised-accuracy series
    feedback_capacity: int = 200_000  # answered request ids kept for feedback (oldest dropped)
    max_feedback_batch: int = 10_000  # items per POST /v1/feedback
    # The mounted /v1/route service, and the completions' routing batches (max_batch, max_queue,
    # inline_routing: on the event loop for cheap encoders unless set).
    route: server.ServerSettings = server.ServerSettings()


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or "localhost") only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_host(host: str, keys: dict[str, Tenant] | None) -> None:
    """Refuse to serve without API keys anywhere but loopback (ValueError)."""
    if keys is None and not is_loopback(host):
        raise ValueError(f"refusing to listen on {host!r} without a keys file: an open gateway "
                         "spends its upstreams' money for anyone who reaches it; pass "
                         "--keys_file or listen on 127.0.0.1")


class GatewayApp:
    """ASGI app; `create_gateway` builds it. Attributes are public for tests and benchmarks."""

    def __init__(self, router: Router, upstreams: dict[str, Upstream],
                 keys: dict[str, Tenant] | None, settings: GatewaySettings):
        self.router, self.settings = router, settings
        self.keyring = KeyRing(keys, Tenant("open", settings.open_default_tau))
        self.limiter = RateLimiter()
        self.usage = UsageStore(settings.usage_db)
        self.metrics = GatewayMetrics()
        self.ledger = FeedbackLedger(self.metrics, settings.feedback_bucket,
                                     settings.feedback_capacity)
        self.proxy = Proxy(upstreams, settings.max_connections, settings.fast_transport)
        self.routing = cmp.RoutingQueue(router, settings.route.max_batch,
                                        settings.route.max_queue, settings.route.inline_routing,
                                        self.metrics.batch_size.observe)
        self.route_app = server.create_app(router, settings.route)
        self.prices: dict[str, Any] = router.manifest["prices"]
        self._exit = contextlib.AsyncExitStack()

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            return await self._lifespan(receive, send)
        path, method = scope["path"], scope["method"] if scope["type"] == "http" else ""
        if method == "POST" and path in COMPLETION_PATHS:
            return await self._completion(scope, receive, send)
        if method == "GET" and path in ("/v1/models", "/v1/usage", "/metrics"):
            return await self._get(path, scope, send)
        if method == "POST" and path == online_http.FEEDBACK_PATH:
            return await self._feedback(scope, receive, send)
        if path == server.ROUTE_PATH and not self.keyring.open:
            try:
                self.keyring.authenticate(_header(scope, b"authorization"))
            except GatewayError as err:
                return await _send_error(send, err, [])
        await self.route_app(scope, receive, send)

    # ------------------------------------------------------------------ lifespan

    async def _lifespan(self, receive, send) -> None:
        await receive()  # lifespan.startup
        try:
            await self.startup()
        except Exception as err:  # noqa: BLE001 (reported to the server, which exits)
            log.exception("gateway startup failed")
            await send({"type": "lifespan.startup.failed", "message": str(err)})
            return
        await send({"type": "lifespan.startup.complete"})
        await receive()  # lifespan.shutdown
        await self.shutdown()
        await send({"type": "lifespan.shutdown.complete"})

    async def startup(self) -> None:
        """Start the routing queue, the /v1/route service, the upstream pool, the usage flush."""
        self.routing.batcher.start()
        self._exit.push_async_callback(self.routing.batcher.stop)
        fastapi = self.route_app.fastapi  # its lifespan starts its own batcher
        await self._exit.enter_async_context(fastapi.router.lifespan_context(fastapi))
        await self.proxy.start()
        self._exit.push_async_callback(self.proxy.close)
        flusher = asyncio.get_running_loop().create_task(self._flush_loop())
        self._exit.callback(self.usage.close)  # runs last: the final flush
        self._exit.callback(flusher.cancel)

    async def shutdown(self) -> None:
        await self._exit.aclose()

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.flush_every_s)
            try:
                await asyncio.to_thread(self.usage.flush)
            except Exception:  # noqa: BLE001 (keep counting in memory; retried next time)
                log.exception("writing usage to %s failed", self.settings.usage_db)

    # ------------------------------------------------------------------ GET endpoints

    async def _get(self, path: str, scope, send) -> None:
        if path == "/metrics":
            return await _send(send, 200, self.metrics.exposition(),
                               self.metrics.content_type.encode())
        try:
            tenant = self.keyring.authenticate(_header(scope, b"authorization"))
        except GatewayError as err:
            return await _send_error(send, err, [])
        if path == "/v1/models":
            body = self.models_list(tenant)
        else:  # flushes and reads SQLite: off the event loop, which must never wait on disk
            body = await asyncio.to_thread(self.usage.report, tenant)
        await _send(send, 200, json.dumps(body).encode())

    async def _feedback(self, scope, receive, send) -> None:
        """POST /v1/feedback: the caller's realised scores (`proteus.gateway.feedback`)."""
        try:
            tenant = self.keyring.authenticate(_header(scope, b"authorization"))
            raw = await _read_body(receive, self.settings.max_body_bytes)
        except GatewayError as err:
            return await _send_error(send, err, [])
        try:  # in-memory and short: no thread hop
            status, body = online_http.feedback_response(
                self.ledger.scoped(tenant.name), raw, self.settings.max_feedback_batch)
        except online_http.BodyError as err:
            status, body = err.status, {"detail": err.detail}
        await _send(send, status, json.dumps(body).encode())

    def models_list(self, tenant: Tenant) -> dict[str, Any]:
        """OpenAI's model list: `proteus` and `proteus-<τ>` for listed τ in the tenant's range."""
        taus = [t for t in self.settings.listed_taus if tenant.tau_min <= t <= tenant.tau_max]
        names = ["proteus"] + [f"proteus-{t:g}" for t in taus]
        return {"object": "list",
                "data": [{"id": n, "object": "model", "created": 0, "owned_by": "proteus"}
                         for n in names],
                "router": self.router.info()}

    # ------------------------------------------------------------------ completions

    async def _completion(self, scope, receive, send) -> None:
        routed = cmp.Routed(cmp.new_request_id(), time.perf_counter())
        try:
            await self._answer(scope, receive, send, routed)
        finally:
            routed.stop_watching()

    async def _answer(self, scope, receive, send, routed: cmp.Routed) -> None:
        chat = scope["path"] == "/v1/chat/completions"
        endpoint = "chat" if chat else "completions"
        try:
            reply, fallback_from, t_forward, t_back = await self._route_and_forward(
                scope, receive, routed, chat)
        except GatewayError as err:
            self._count_error(routed, endpoint, err)
            return await _send_error(send, err, routed.headers())
        served = reply.served_by.name
        if reply.status == 200:  # before the answer leaves: its feedback may come right back
            self.ledger.record(routed.request_id, routed.tenant.name, routed.tau)
        headers = [*routed.headers(), (b"x-proteus-model", served.encode()),
                   (b"content-type", reply.content_type)]
        if fallback_from:
            headers.append((b"x-proteus-fallback-from", fallback_from.encode()))
            self.metrics.fallbacks.labels(fallback_from, served).inc()
        overhead = (t_forward - routed.start) + (time.perf_counter() - t_back)
        headers.append((b"x-proteus-overhead-ms", f"{overhead * 1e3:.3f}".encode()))
        self.metrics.overhead.observe(overhead)
        self.metrics.upstream.labels(served).observe(reply.upstream_s)
        try:
            if reply.stream is None:
                await _send(send, reply.status, reply.body, None, headers)
            else:
                await _relay(send, reply, headers, routed.client_gone)
        finally:  # a client that left mid-stream still pays for what was generated
            self._account(routed, reply, endpoint)

    async def _route_and_forward(self, scope, receive, routed: cmp.Routed,
                                 chat: bool) -> tuple[Reply, str | None, float, float]:
        """Authenticate, limit, parse, route, check the budget, forward; raises GatewayError."""
        tenant = routed.tenant = self.keyring.authenticate(_header(scope, b"authorization"))
        self.limiter.acquire(tenant)
        payload = cmp.parse_payload(await _read_body(receive, self.settings.max_body_bytes))
        routed.watch_client(receive)
        routed.tau = cmp.tau_of(payload.get("model"), _header(scope, cmp.TAU_HEADER), tenant)
        text = cmp.prompt_text(payload, chat)[-self.settings.max_route_chars:]
        t_route = time.perf_counter()
        task = _header(scope, cmp.TASK_HEADER)
        decision = routed.decision = await self.routing.decide(
            text, routed.tau, None if task is None else task.decode("latin-1"))
        self.metrics.routing.observe(time.perf_counter() - t_route)
        self.metrics.decisions.labels(decision["model"], tenant.name).inc()
        self.metrics.tau.labels(tenant.name).observe(routed.tau)
        routed.estimate_usd = decision["c_hat"][decision["model"]]
        self.usage.check_budget(tenant, routed.estimate_usd)
        if routed.client_gone():  # e.g. it gave up while the request queued: spend nothing
            raise client_closed("before it was forwarded")
        t_forward = time.perf_counter()
        reply, fallback_from = await self._forward_while_client_waits(
            routed, COMPLETION_PATHS[scope["path"]], payload)
        return reply, fallback_from, t_forward, time.perf_counter()

    async def _forward_while_client_waits(self, routed: cmp.Routed, path: str,
                                          payload: dict[str, Any]) -> tuple[Reply, str | None]:
        """`proxy.forward`, abandoned when the client leaves before the upstream has answered
        (its connection is closed, which stops a generation): 499, and the tenant is charged the
        routed estimate, since the upstream may have started working."""
        model = routed.decision["model"]
        with routed.cancel_if_client_leaves():
            try:
                return await self.proxy.forward(model, path, payload, routed.request_id)
            except asyncio.CancelledError:
                if not routed.uncancel_if_client_left():
                    raise  # a real cancellation (shutdown), not the client leaving
        self.usage.record(routed.tenant.name, model, routed.estimate_usd, error=True)
        self.metrics.spend.labels(routed.tenant.name, model).inc(routed.estimate_usd)
        raise client_closed("while its upstream was answering")

    def _account(self, routed: cmp.Routed, reply: Reply, endpoint: str) -> None:
        """Record spend and tokens (after a stream has ended, when its usage is known)."""
        model, tenant = reply.served_by.name, routed.tenant.name
        if reply.status != 200:  # a passed-through upstream 4xx: nothing was generated
            self.metrics.requests.labels(endpoint, str(reply.status)).inc()
            self.metrics.errors.labels("upstream_client_error").inc()
            return self.usage.record(tenant, model, 0.0, error=True)
        cost, usage = cmp.reply_cost(reply, routed, self.prices)
        self.usage.record(tenant, model, cost, prompt_tokens=int(usage.get("prompt_tokens") or 0),
                          completion_tokens=int(usage.get("completion_tokens") or 0))
        self.metrics.spend.labels(tenant, model).inc(cost)
        self.metrics.requests.labels(endpoint, "200").inc()

    def _count_error(self, routed: cmp.Routed, endpoint: str, err: GatewayError) -> None:
        self.metrics.requests.labels(endpoint, str(err.status)).inc()
        self.metrics.errors.labels(err.code or err.type).inc()
        if routed.tenant is not None and err.status >= 500:  # upstream failures count as usage
            model = routed.decision["model"] if routed.decision else "-"
            self.usage.record(routed.tenant.name, model, 0.0, error=True)


def create_gateway(router: Router, upstreams: dict[str, Upstream],
                   keys: dict[str, Tenant] | None = None,
                   settings: GatewaySettings | None = None) -> GatewayApp:
    """The gateway for `router` (serve with `proteus.gateway.runner`, or any ASGI server).

    Args:
      upstreams: `proteus.gateway.config.load_models` of a models file.
      keys: `load_keys` of a keys file; None runs open (one tenant "open", no auth or budgets).
    """
    return GatewayApp(router, upstreams, keys, settings or GatewaySettings())


# ------------------------------------------------------------------ ASGI helpers


def gateway_from_files(artifact: str, models_file: str, keys_file: str | None = None,
                       host: str = "127.0.0.1", fallback: str | None = None,
                       settings: GatewaySettings | None = None) -> GatewayApp:
    """The gateway of `launch.gateway`: load and check the keys (None: open, loopback only),
    the artifact (it must take text) and the models file, in that order.

    Raises:
      ValueError: `ConfigError`, `ArtifactError` or the host refusal, naming what is wrong.
    """
    settings = settings or GatewaySettings()
    tenants = load_keys(keys_file) if keys_file else None
    check_host(host, tenants)
    router = Router.load(artifact, fallback=fallback, warmup=settings.route.max_batch)
    router.require_text()
    return create_gateway(router, load_models(models_file, router.models), tenants, settings)


def _header(scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


async def _read_body(receive, limit: int) -> bytes:
    chunks, size = [], 0
    while True:
        message = await receive()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise GatewayError(413, f"request body exceeds the limit of {limit} bytes",
                               "invalid_request_error", "body_too_large")
        chunks.append(chunk)
        if message["type"] == "http.disconnect" or not message.get("more_body"):
            return b"".join(chunks)


async def _send(send, status: int, body: bytes, content_type: bytes | None = JSON,
                headers: list[tuple[bytes, bytes]] | None = None) -> None:
    headers = list(headers or [])
    if content_type is not None:
        headers.append((b"content-type", content_type))
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _send_error(send, err: GatewayError, headers: list[tuple[bytes, bytes]]) -> None:
    extra = [(k.encode(), v.encode()) for k, v in err.headers.items()]
    await _send(send, err.status, err.body(), JSON, headers + extra)


async def _relay(send, reply: Reply, headers: list[tuple[bytes, bytes]],
                 client_gone: Callable[[], bool]) -> None:
    """Pass an SSE stream through chunk by chunk (no buffering: tokens reach the client live).

    The ASGI server drops what is sent to a client that has left, so `client_gone` is asked
    after each chunk: a stream nobody reads is closed upstream instead of read to its end.
    """
    headers += [(b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    try:
        async for chunk in reply.stream:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            if client_gone():
                return
    finally:  # closes the upstream response (also when the client went away)
        await reply.stream.aclose()
    await send({"type": "http.response.body", "body": b""})


def client_closed(when: str) -> GatewayError:
    """The 499 of a request whose client left (nginx's code; nobody reads the answer)."""
    return GatewayError(499, f"the client closed the request {when}", "invalid_request_error",
                        "client_closed_request")
