"""The gateway's ASGI app: OpenAI-compatible endpoints in front of the router and the upstreams.

  POST /v1/chat/completions, /v1/completions   routed and forwarded (`proteus.gateway.handler`)
  GET  /v1/models    `proteus` and the `proteus-<τ>` names the tenant may use and the router can
                     serve feasibly (OpenAI list), plus the router's pool and feasible τ range
  GET  /v1/usage     the caller's spend, holds, budgets and τ range
  GET  /metrics      Prometheus text (`proteus.gateway.metrics`)
  POST /v1/feedback  realised scores of answered completions, by x-proteus-request-id
                     (`proteus.gateway.feedback`): realised accuracy against τ in /metrics; with
                     the online controller on (`online`), they steer the routing too
                     (`proteus.gateway.online`)
  GET  /v1/controllers  the online controllers and model drift tests of the caller's tenant
                     (404 when the online controller is off)
  POST /v1/route, GET /healthz, /openapi.json    the plain router service (`serving.server`),
                     mounted as is (with a key check on /v1/route when keys are configured)

The gateway's endpoints are raw ASGI, not FastAPI routes: per-request framework work would be
most of the gateway's own overhead (see `proteus.serving.server`). Responses carry
x-proteus-request-id, and for routed requests x-proteus-model (the model that answered),
x-proteus-tau, x-proteus-feasible (false: the router cannot serve this τ feasibly and answered
at its most accurate point; x-proteus-infeasible-reason says why) and x-proteus-overhead-ms: the
gateway's own time, i.e. everything but the upstream call (as LiteLLM's overhead header: time the
event loop spends on other requests while this one awaits its upstream counts as upstream time,
so under saturation compare end-to-end latencies too). A request may name its prompt's task in an
x-proteus-task header, for a router trained with a task prior (GET /v1/models lists them under
router.tasks); a task the router does not know gets 422.

Every request passes the HTTP guards of `proteus.gateway.asgi` (limits, timeouts, cross-origin
refusal). Keys and budgets are reloaded without a restart (`reload_keys`): on SIGHUP, and when the
keys file changes (checked every `watch_keys_s`). So is the router (`reload_artifact`, on SIGHUP
too; `proteus.serving.reload`): the artifact is loaded again from its path (replaced in place,
e.g. by `launch.onboard --overwrite`, or a re-pointed symlink) with the models file, which must
name an upstream for each of its models; requests in flight finish on the old router.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
from typing import Any

from proteus.gateway import asgi
from proteus.gateway import completions as cmp
from proteus.gateway.budget import Budgets
from proteus.gateway.config import ConfigError, Tenant, Upstream, load_keys, load_models
from proteus.gateway.errors import GatewayError
from proteus.gateway.feedback import FeedbackLedger
from proteus.gateway.handler import COMPLETION_PATHS, CompletionHandler
from proteus.gateway.keys import KeyRing, RateLimiter
from proteus.gateway.metrics import GatewayMetrics
from proteus.gateway.online import OnlineGateway
from proteus.gateway.proxy import Proxy
from proteus.gateway.settings import GatewaySettings, check_host, tau_warnings
from proteus.gateway.usage import UsageStore, report
from proteus.online import http as online_http
from proteus.serving import Router, server
from proteus.serving.reload import Reloader, on_sighup

log = logging.getLogger(__name__)


class GatewayApp:
    """ASGI app; `create_gateway` builds it. Attributes are public for tests and benchmarks."""

    def __init__(self, router: Router, upstreams: dict[str, Upstream],
                 keys: dict[str, Tenant] | None, settings: GatewaySettings,
                 keys_file: str | None = None, models_file: str | None = None):
        self.router, self.settings, self.keys_file = router, settings, keys_file
        self.models_file = models_file
        self.keyring = KeyRing(keys, Tenant("open", settings.open_default_tau))
        self.limiter = RateLimiter()
        self.usage = UsageStore(settings.usage_db, busy_timeout_s=settings.usage_busy_timeout_s)
        self.budgets = Budgets(self.usage)
        self.metrics = GatewayMetrics()
        self.ledger = FeedbackLedger(self.metrics, settings.feedback_bucket,
                                     settings.feedback_capacity)
        self.proxy = Proxy(upstreams, settings.max_connections, settings.fast_transport)
        self.online = (None if settings.online is None else
                       OnlineGateway(router, settings.online, settings.usage_db, self.metrics))
        self.routing = cmp.RoutingQueue(router, settings.route.max_batch,
                                        settings.route.max_queue, settings.route.inline_routing,
                                        self.metrics.batch_size.observe, self.online)
        self.route_app = server.create_app(router, settings.route)
        self.prices: dict[str, Any] = router.manifest["prices"]
        self.completions = CompletionHandler(self)
        self._keys_stamp = _stamp(keys_file)
        self.reloader = Reloader(lambda: self.router, self._swap, settings.route.max_batch,
                                 check=self._upstreams_of)
        self._exit = contextlib.AsyncExitStack()
        for line in tau_warnings(self.keyring.tenants, router):
            log.warning(line)

    @property
    def http_settings(self) -> server.ServerSettings:
        """The limits and timeouts its server applies (`proteus.gateway.runner`)."""
        return self.settings.route

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            return await self._lifespan(receive, send)
        refusal = asgi.origin_refusal(scope, self.settings.allowed_origins)
        if refusal is not None:
            self.metrics.errors.labels(refusal.code).inc()
            return await asgi.send_error(send, refusal, [])
        if asgi.header(scope, b"origin") is not None:  # an allowed origin: CORS headers
            if scope["method"] == "OPTIONS":
                return await asgi.preflight(scope, send)
            send = _adding_headers(send, asgi.cors_headers(scope))
        path, method = scope["path"], scope["method"]
        if method == "POST" and path in COMPLETION_PATHS:
            return await self.completions(scope, receive, send)
        if method == "GET" and path in ("/v1/models", "/v1/usage", "/metrics"):
            return await self._get(path, scope, send)
        if method == "POST" and path == online_http.FEEDBACK_PATH:
            return await self._feedback(scope, receive, send)
        if method == "GET" and path == online_http.CONTROLLERS_PATH:
            return await self._controllers(scope, send)
        if path == server.ROUTE_PATH and not self.keyring.open:
            try:
                self.keyring.authenticate(asgi.header(scope, b"authorization"))
            except GatewayError as err:
                return await asgi.send_error(send, err, [])
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
        """Start the routing queue, the /v1/route service, the upstream pool, the usage flush,
        the keys watch and the SIGHUP reload (keys, then the artifact in a worker thread)."""
        # registered first, so it runs last: the final write (retried while the database is busy)
        self._exit.callback(self.usage.close, self.settings.usage_close_timeout_s)
        if self.online is not None:  # closed after the routing queue has stopped
            self._exit.callback(self.online.close)
        self.routing.batcher.start()
        self._exit.push_async_callback(self.routing.batcher.stop)
        fastapi = self.route_app.fastapi  # its lifespan starts its own batcher
        await self._exit.enter_async_context(fastapi.router.lifespan_context(fastapi))
        await self.proxy.start()
        self._exit.push_async_callback(self.proxy.close)
        loop = asyncio.get_running_loop()
        for task in (self._flush_loop(), self._watch_loop()):
            self._exit.callback(loop.create_task(task).cancel)
        self._exit.callback(on_sighup(self._on_sighup, in_thread=False))

    async def shutdown(self) -> None:
        await self._exit.aclose()

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.flush_every_s)
            try:
                await asyncio.to_thread(self.usage.flush)
            except Exception as err:  # noqa: BLE001 (the rows stay pending; retried next time)
                self.metrics.flush_failures.inc()
                log.warning("writing usage to %s failed (%s); %d rows kept for the next try",
                            self.settings.usage_db, err, self.usage.pending_rows())
            self.metrics.usage_pending.set(self.usage.pending_rows())

    async def _watch_loop(self) -> None:
        if not self.keys_file or self.settings.watch_keys_s <= 0:
            return
        while True:
            await asyncio.sleep(self.settings.watch_keys_s)
            if _stamp(self.keys_file) != self._keys_stamp:
                self.reload_keys()

    def _on_sighup(self) -> None:
        if self.keys_file:
            self.reload_keys()
        asyncio.get_running_loop().run_in_executor(None, self.reload_artifact)

    def reload_artifact(self, path: str | None = None) -> bool:
        """Load and verify the artifact at `path` (default: the current one's), read the models
        file again (None: the upstreams in use must cover the new pool), and serve them; requests
        in flight finish on the old router (`proteus.serving.reload`). Blocking: call it off the
        event loop. An artifact or models file that does not load changes nothing (logged,
        counted in proteus_gateway_artifact_reloads_total{result="error"}). Returns success.
        With the online controller on it is refused: the streams' state was measured on the old
        pool's operating points (restart instead; the state is kept in the usage database)."""
        if self.online is not None:
            log.error("artifact not reloaded: the online controller is on, and its streams were "
                      "measured on the current artifact; restart the gateway to serve a new one")
            self.metrics.artifact_reloads.labels("error").inc()
            return False
        ok = self.reloader(path)
        self.metrics.artifact_reloads.labels("ok" if ok else "error").inc()
        return ok

    def _upstreams_of(self, router: Router) -> dict[str, Upstream]:
        """The upstreams of `router`'s pool (the reload's check; raises naming what is wrong)."""
        router.require_text()
        if self.models_file:
            return load_models(self.models_file, router.models)
        missing = [m for m in router.models if m not in self.proxy.upstreams]
        if missing:
            raise ConfigError(f"no upstream for {missing}: give the gateway a models file")
        return {}

    def _swap(self, router: Router, upstreams: dict[str, Upstream]) -> None:
        """Serve `router`: upstreams and prices first (a model no longer routed keeps its own
        for the requests already routed to it), then the router of new requests."""
        self.proxy.upstreams = {**self.proxy.upstreams, **upstreams}
        self.prices = {**self.prices, **router.manifest["prices"]}
        self.route_app.service.swap(router)
        self.router = router
        for line in tau_warnings(self.keyring.tenants, router):
            log.warning(line)

    def reload_keys(self) -> bool:
        """Re-read the keys file: its keys, tenants, τ ranges, rates and budgets apply to the
        requests that authenticate from now on (requests in flight finish as they started; a
        changed budget counts today's spend so far). A file that does not load changes nothing
        (logged, counted in proteus_gateway_key_reloads_total{result="error"})."""
        self._keys_stamp = _stamp(self.keys_file)
        try:
            tenants = load_keys(self.keys_file)
        except ConfigError as err:
            self.metrics.reloads.labels("error").inc()
            log.error("keys not reloaded, the current ones stay in force: %s", err)
            return False
        self.keyring.replace(tenants)
        self.metrics.reloads.labels("ok").inc()
        log.info("reloaded %s: %d keys of %d tenants", self.keys_file, len(tenants),
                 len(self.keyring.tenants))
        for line in tau_warnings(tenants, self.router):
            log.warning(line)
        return True

    # ------------------------------------------------------------------ GET endpoints

    async def _get(self, path: str, scope, send) -> None:
        if path == "/metrics":
            if self.online is not None:
                self.online.refresh_metrics()
            return await asgi.send_bytes(send, 200, self.metrics.exposition(),
                                         self.metrics.content_type.encode())
        try:
            tenant = self.keyring.authenticate(asgi.header(scope, b"authorization"))
        except GatewayError as err:
            return await asgi.send_error(send, err, [])
        if path == "/v1/models":
            body = self.models_list(tenant)
        else:  # reads SQLite: off the event loop, which must never wait on disk
            day, month = self.budgets.spent(tenant.name)
            body = await asyncio.to_thread(report, self.usage, tenant, day, month,
                                           self.budgets.held(tenant.name))
        await asgi.send_bytes(send, 200, json.dumps(body).encode())

    async def _feedback(self, scope, receive, send) -> None:
        """POST /v1/feedback: the caller's realised scores (`proteus.gateway.feedback`)."""
        limits = self.settings.route
        try:
            tenant = self.keyring.authenticate(asgi.header(scope, b"authorization"))
            raw = await asgi.read_body(scope, receive, limits, limits.read_timeout_s)
            if self.online is not None:  # commits (an fsync): off the event loop
                status, body = await asyncio.to_thread(
                    self.online.feedback, raw, tenant.name, self.settings.max_feedback_batch,
                    limits)
            else:
                status, body = online_http.feedback_response(  # in memory: no thread hop
                    self.ledger, raw, self.settings.max_feedback_batch, tenant.name, limits)
        except GatewayError as err:
            return await asgi.send_error(send, err, [])
        except online_http.BodyError as err:
            return await asgi.send_error(send, GatewayError(err.status, err.detail,
                                                            code=err.code), [])
        await asgi.send_bytes(send, status, json.dumps(body).encode())

    async def _controllers(self, scope, send) -> None:
        """GET /v1/controllers: the caller's streams and model tests (all tenants' when open)."""
        try:
            tenant = self.keyring.authenticate(asgi.header(scope, b"authorization"))
            if self.online is None:
                raise GatewayError(404, "the online controller is off: start the gateway with "
                                        "--online to steer by feedback", "invalid_request_error",
                                   "online_off")
        except GatewayError as err:
            return await asgi.send_error(send, err, [])
        body = await asyncio.to_thread(  # counts rows in SQLite: off the event loop
            self.online.controllers, None if self.keyring.open else tenant.name)
        await asgi.send_bytes(send, 200, json.dumps(body).encode())

    def models_list(self, tenant: Tenant) -> dict[str, Any]:
        """OpenAI's model list: `proteus`, and `proteus-<τ>` for each listed τ in the tenant's
        range that the router serves feasibly."""
        hi = self.router.policy.tau_range[1]
        taus = [t for t in self.settings.listed_taus
                if tenant.tau_min <= t <= tenant.tau_max and hi is not None and t <= hi]
        names = ["proteus"] + [f"proteus-{t:g}" for t in taus]
        return {"object": "list",
                "data": [{"id": n, "object": "model", "created": 0, "owned_by": "proteus"}
                         for n in names],
                "router": self.router.info()}


def _stamp(path: str | None) -> tuple[int, int] | None:
    """(mtime ns, size) of a file, None when absent: what the keys watch compares."""
    try:
        st = os.stat(path) if path else None
    except OSError:
        return None
    return None if st is None else (st.st_mtime_ns, st.st_size)


def _adding_headers(send, extra: list[tuple[bytes, bytes]]):
    async def wrapped(message) -> None:
        if message["type"] == "http.response.start":
            message = {**message, "headers": [*message.get("headers", []), *extra]}
        await send(message)
    return wrapped


def create_gateway(router: Router, upstreams: dict[str, Upstream],
                   keys: dict[str, Tenant] | None = None,
                   settings: GatewaySettings | None = None,
                   keys_file: str | None = None, models_file: str | None = None) -> GatewayApp:
    """The gateway for `router` (serve with `proteus.gateway.runner`, or any ASGI server).

    Args:
      upstreams: `proteus.gateway.config.load_models` of a models file.
      keys: `load_keys` of a keys file; None runs open (one tenant "open", no auth or budgets).
      keys_file: the file `keys` came from, reloaded on SIGHUP and when it changes.
      models_file: the file `upstreams` came from, read again when the artifact is reloaded.

    Raises:
      UsageDatabaseError: the usage database cannot be opened (a ValueError naming its path).
    """
    return GatewayApp(router, upstreams, keys, settings or GatewaySettings(), keys_file,
                      models_file)


def gateway_from_files(artifact: str, models_file: str, keys_file: str | None = None,
                       host: str = "127.0.0.1", fallback: str | None = None,
                       settings: GatewaySettings | None = None) -> GatewayApp:
    """The gateway of `launch.gateway`: load and check the keys (None: open, loopback only),
    the artifact (it must take text), the models file and the usage database, in that order.

    Raises:
      ValueError: `ConfigError`, `ArtifactError`, `UsageDatabaseError` or the host refusal,
        naming what is wrong.
    """
    settings = settings or GatewaySettings()
    tenants = load_keys(keys_file) if keys_file else None
    check_host(host, tenants)
    router = Router.load(artifact, fallback=fallback, warmup=settings.route.max_batch)
    router.require_text()
    return create_gateway(router, load_models(models_file, router.models), tenants, settings,
                          keys_file, models_file)
