"""HTTP serving of a `proteus.serving.Router`: FastAPI app, request batching, uvicorn runner.

Endpoints:
  POST /v1/route   {"query": str | "features": [D floats], "tau": float[, "task": str]} -> one
                   decision (a "task" only for an artifact with a task prior), or
                   {"requests": [such objects]} -> {"decisions": [...]}
  GET  /v1/models  model pool, prices, feasible τ range, encoder
  GET  /healthz    liveness and batching counters (never needs a token)
  GET  /metrics    Prometheus text (`proteus.serving.metrics`; a token when the server has them)
  GET  /openapi.json, /docs

Bad input gets a 4xx JSON `{"detail": message}` (see `proteus.serving.protocol` and
`proteus.serving.http_guards`: 400 malformed or too deep JSON, 401 no valid bearer token when the
server has tokens, 408 body too slow, 413 over a limit, 415 not `application/json`, 422 invalid
content; 503 when the queue is full) and never reaches the router; a 500 says what failed and is
valid JSON (never a NaN). Valid requests from all connections join one queue
(`proteus.serving.batching`): a worker thread routes a fair share of every waiting request in one
call, so throughput grows with concurrency and a single query is not starved by large batches; one
failing item fails alone (in a {"requests": [...]} batch, its entry is
`{"error": {"status", "code", "message"}}` and the others are answered). POST /v1/route is
answered by a small ASGI fast path in front of FastAPI that runs the same
`RouteService.handle_http` as the FastAPI route (which documents it in the OpenAPI schema):
FastAPI's per-request machinery costs ~4x the CPU of the whole decision.

Reload: `RouteService.reload()` (on SIGHUP with `create_app(..., reload_on_sighup=True)`, what
`launch.serve` does) loads and verifies the artifact again from its path off the event loop, then
swaps it in: requests parsed from then on are routed by the new router, requests already parsed
finish on the old one, and nothing is dropped (`proteus.serving.reload`). An artifact that fails
to load changes nothing (logged).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import gc
import json
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from proteus.serving import Router, RoutingError, http_guards
from proteus.serving.batching import MicroBatcher, QueueFullError
from proteus.serving.extras import serve_extra
from proteus.serving.protocol import Limits, RequestError, parse_body
from proteus.serving.reload import Reloader, on_sighup, route_pairs

with serve_extra("proteus.serving.server"):  # without the serve extra: a message naming it
    import uvicorn
    from fastapi import FastAPI, Request, Response
    from fastapi.openapi.utils import get_openapi
    from pydantic.json_schema import models_json_schema
    from starlette.requests import ClientDisconnect

    from proteus.serving.metrics import RouterMetrics
    from proteus.serving.schema import (
        BatchRouteRequest,
        BatchRouteResponse,
        ErrorResponse,
        HealthResponse,
        ModelsResponse,
        RouteDecisionModel,
        RouteRequest,
    )

ROUTE_PATH = "/v1/route"
Headers = list[tuple[bytes, bytes]]


@dataclasses.dataclass(frozen=True)
class ServerSettings(Limits):
    """Request limits (see `Limits`), batching, security and timeouts of the HTTP server (the
    `launch.serve` flags)."""

    max_batch: int = 256  # rows routed per internal call
    # An idle queue waits this long for company before routing. 0: route at once; requests that
    # arrive while a batch is being routed form the next batch anyway (and event-loop timers
    # round sub-millisecond waits up to 1 ms).
    max_wait_ms: float = 0.0
    max_queue: int = 8192  # queued rows beyond this get 503 (requests > small_request: 3/4 of it)
    small_request: int = 16  # requests of at most this many items may use the whole queue
    inline_routing: bool | None = None  # route on the event loop; None: `cheap_to_encode`
    fast_path: bool = True  # answer POST /v1/route before FastAPI's routing (same handler)
    # Bearer tokens; empty: no authentication (then bind loopback only). Not in repr: no leaks.
    auth_tokens: tuple[str, ...] = dataclasses.field(default=(), repr=False)
    read_timeout_s: float = 10.0  # a request body must arrive within this (408)
    header_timeout_s: float = 10.0  # request headers must arrive within this (connection closed)
    keep_alive_timeout_s: int = 5  # idle keep-alive connections are closed after this
    # Bodies larger than this are parsed in a thread, so the event loop keeps answering others.
    parse_in_thread_bytes: int = 64 << 10


class RouteService:
    """POST /v1/route: check, parse, queue into the batcher, answer (status, JSON, headers)."""

    def __init__(self, router: Router, settings: ServerSettings):
        self.router, self.settings = router, settings
        self.metrics = RouterMetrics()
        inline = settings.inline_routing
        self.batcher = MicroBatcher(route_pairs, settings.max_batch,
                                    settings.max_wait_ms / 1000.0, settings.max_queue,
                                    small_request=settings.small_request,
                                    inline=router.cheap_to_encode if inline is None else inline)
        # reload(path=None) -> bool: load and verify the artifact at `path` (default: the current
        # router's, with its fallback), then `swap` it in; blocking (call it off the event loop);
        # an artifact that fails to load changes nothing
        self.reload = Reloader(lambda: self.router, lambda new, _: self.swap(new),
                               settings.max_batch)

    @property
    def reloads(self) -> dict[str, int]:
        """How many reloads succeeded ("ok") and failed ("error")."""
        return self.reload.counts

    def swap(self, router: Router) -> Router:
        """Serve `router` from now on; returns the old one. Requests parsed before the swap
        finish on the router they were parsed with (their queued items carry it)."""
        old, self.router = self.router, router
        return old

    async def handle_http(self, headers: dict[bytes, bytes],
                          chunks: AsyncIterator[bytes]) -> tuple[int, bytes, Headers]:
        """Content type, declared length, body read within limits and time, then `handle`.

        Args:
          headers: the request headers, lower-case names.
          chunks: the body as it arrives.
        """
        limit = self.settings.max_body_bytes
        try:
            if not http_guards.is_json(headers.get(b"content-type")):
                got = headers.get(b"content-type", b"none").decode("latin-1")[:80]
                raise RequestError(415, f"Content-Type must be application/json, got {got!r}")
            http_guards.check_length(headers.get(b"content-length"), limit)
            body = await http_guards.read_body(chunks, limit, self.settings.read_timeout_s)
        except (http_guards.ClientGoneError, ClientDisconnect):
            err = RequestError(400, "client disconnected", "client_disconnected")
        except RequestError as error:  # the body may be unread: close rather than resync
            err = error
        else:
            return (*await self.handle(body), [])
        self.metrics.observe(err.status, [err])
        return err.status, json_bytes({"detail": err.detail}), http_guards.CLOSE

    async def handle(self, body: bytes) -> tuple[int, bytes]:
        """A POST /v1/route body -> (HTTP status, JSON response body); never raises.

        A batch answers 200 with one entry per request: its decision, or for a request that
        failed alone `{"error": {"status", "code", "message"}}` (`RequestError.to_json`).
        Every answer is counted in `self.metrics`.
        """
        start = time.perf_counter()
        status, answer, outcomes = await self._answer(body)
        self.metrics.observe(status, outcomes, time.perf_counter() - start)
        return status, answer

    async def _answer(self, body: bytes) -> tuple[int, bytes, list[Any]]:
        """`handle`'s (status, body) and the outcome of each item (decision or exception)."""
        router = self.router  # this request's router to the end, even across a reload
        try:
            if len(body) > self.settings.parse_in_thread_bytes:
                # A body this large is a batch (one query is at most max_query_chars): when no
                # batch would be admitted, refuse it before paying for the parse.
                if not self.batcher.has_room(self.settings.small_request + 1):
                    raise QueueFullError
                parsed, is_batch = await asyncio.to_thread(parse_body, body, router,
                                                           self.settings)
            else:
                parsed, is_batch = parse_body(body, router, self.settings)
            items = [(router, p) for p in parsed if not isinstance(p, RequestError)]
            routed = iter(await self.batcher.submit(items, return_exceptions=is_batch)
                          if items else [])
            results = [p if isinstance(p, RequestError) else next(routed) for p in parsed]
        except QueueFullError:
            busy = "server busy: the routing queue is full; retry shortly"
            return 503, json_bytes({"detail": busy}), [RequestError(503, busy, "server_busy")]
        except RequestError as err:
            return err.status, json_bytes({"detail": err.detail}), [err]
        except Exception as err:  # noqa: BLE001 (one bad batch must not take the server down)
            return 500, json_bytes({"detail": _internal(err)}), [err]
        answer = results[0] if not is_batch else {"decisions": [_entry(r) for r in results]}
        status, payload = await self._encode(answer, len(results) if is_batch else 1)
        return status, payload, results if status == 200 else [RoutingError("non-finite")]

    async def _encode(self, answer: Any, n: int = 1) -> tuple[int, bytes]:
        try:
            if n > 64:  # a large answer is serialised off the event loop
                return 200, await asyncio.to_thread(json_bytes, answer)
            return 200, json_bytes(answer)
        except ValueError as err:  # NaN or inf: never sent as (invalid) JSON
            logging.getLogger(__name__).error("non-finite decision: %s", err)
            detail = "internal error: a decision held a non-finite number"
            return 500, json_bytes({"detail": detail})


def _internal(err: Exception) -> str:
    """The message of a 500 (logged with its traceback unless it is a `RoutingError`)."""
    if isinstance(err, RoutingError):
        logging.getLogger(__name__).error("routing failed: %s", err)
        return f"routing failed: {err}"
    logging.getLogger(__name__).error("routing failed", exc_info=err)
    return f"internal error: {type(err).__name__}: {err}"


def _entry(result: Any) -> dict[str, Any]:
    """One slot of a batch answer: a decision, or the error of the request that failed alone."""
    if isinstance(result, RequestError):
        return result.to_json()
    if isinstance(result, Exception):
        return RequestError(500, _internal(result), "routing_failed").to_json()
    return result


def json_bytes(obj: Any) -> bytes:
    """Compact, strict JSON (NaN and inf raise ValueError): every body this server sends."""
    return json.dumps(obj, separators=(",", ":"), allow_nan=False).encode()


# ------------------------------------------------------------------ the app


class RouteApp:
    """The ASGI app: token check, then the POST /v1/route fast path in front of the FastAPI app.

    Attributes:
      fastapi: the FastAPI app (every endpoint, OpenAPI schema, lifespan).
      service: its `RouteService` (batching counters in `service.batcher.stats`).
    """

    def __init__(self, fastapi: FastAPI, service: RouteService):
        self.fastapi, self.service = fastapi, service
        self.auth = http_guards.TokenAuth(service.settings.auth_tokens)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":  # lifespan
            await self.fastapi(scope, receive, send)
            return
        headers = dict(scope["headers"])  # ASGI header names are lower-case
        if (self.auth and scope["path"] not in http_guards.PUBLIC_PATHS
                and not self.auth.check(headers.get(b"authorization"))):
            await _send(send, *http_guards.unauthorized())
            return
        if (self.service.settings.fast_path and scope["path"] == ROUTE_PATH
                and scope["method"] == "POST"):
            await _send(send, *await self.service.handle_http(
                headers, http_guards.asgi_chunks(receive)))
            return
        await self.fastapi(scope, receive, send)


async def _send(send, status: int, body: bytes, headers: Headers) -> None:
    headers = [(b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode()), *headers]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def create_app(router: Router, settings: ServerSettings | None = None,
               reload_on_sighup: bool = False) -> RouteApp:
    """The serving app for `router` (run it with uvicorn, `serve` or `ServerThread`); with
    `reload_on_sighup` (in the main thread), SIGHUP reloads the artifact (`RouteService.reload`)."""
    service = RouteService(router, settings or ServerSettings())

    @contextlib.asynccontextmanager
    async def lifespan(_):
        service.batcher.start()
        # loading verifies and compiles: in a worker thread, never on the event loop
        remove = on_sighup(service.reload) if reload_on_sighup else (lambda: None)
        yield
        remove()
        await service.batcher.stop()

    app = FastAPI(title="PROTEUS router", lifespan=lifespan,
                  description="SLA-aware LLM routing: the cheapest model mix whose mean accuracy "
                              "meets the requested target τ.")
    errors = {code: {"model": ErrorResponse} for code in (400, 401, 408, 413, 415, 422, 500, 503)}
    body_schema = {"anyOf": [{"$ref": "#/components/schemas/RouteRequest"},
                             {"$ref": "#/components/schemas/BatchRouteRequest"}]}

    @app.post(ROUTE_PATH, summary="Route one query or a batch",
              responses={200: {"model": RouteDecisionModel | BatchRouteResponse}, **errors},
              openapi_extra={"requestBody": {"required": True,
                                             "content": {"application/json": {"schema":
                                                                              body_schema}}}})
    async def route(request: Request) -> Response:
        status, body, headers = await service.handle_http(dict(request.headers.raw),
                                                          request.stream())
        return Response(body, status, headers={k.decode(): v.decode() for k, v in headers},
                        media_type="application/json")

    @app.get("/v1/models", response_model=ModelsResponse, summary="Model pool and τ range")
    async def models() -> dict[str, Any]:
        return service.router.info()

    @app.get("/metrics", summary="Prometheus metrics (proteus.serving.metrics)")
    async def metrics() -> Response:
        return Response(service.metrics.exposition(), media_type=service.metrics.content_type)

    @app.get("/healthz", response_model=HealthResponse, summary="Liveness")
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", **service.batcher.stats}

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes,
                                 description=app.description)
            _, defs = models_json_schema([(RouteRequest, "validation"),
                                          (BatchRouteRequest, "validation")],
                                         ref_template="#/components/schemas/{model}")
            schema.setdefault("components", {}).setdefault("schemas", {}).update(defs["$defs"])
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi
    return RouteApp(app, service)


def uvicorn_config(app: Any, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning",
                   settings: ServerSettings | None = None) -> uvicorn.Config:
    """uvicorn settings: no websockets, no access log, uvloop/httptools when installed, the
    header and keep-alive timeouts of `settings` (default: a `RouteApp`'s own)."""
    settings = settings or app.service.settings
    protocol = http_guards.with_header_timeout(http_guards.http_protocol_class(),
                                               settings.header_timeout_s)
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                          ws="none", lifespan="on", timeout_graceful_shutdown=5, http=protocol,
                          timeout_keep_alive=settings.keep_alive_timeout_s)


def warn_if_exposed(app: RouteApp, host: str) -> str | None:
    """Log (and return) a warning when `host` is reachable from other machines without tokens."""
    message = http_guards.exposure_warning(host, bool(app.auth))
    if message:
        logging.getLogger(__name__).warning(message)
    return message


def freeze_startup_heap() -> int:
    """Exempt every object alive now (jax, the router, the encoder) from cyclic garbage collection.

    A full collection walks every tracked object: ~60 ms on this CPU once jax is imported, a
    stall that every request in flight pays (it set the servers' p99). Objects created before
    serving live as long as the process, so scanning them can free nothing. Returns how many
    objects were frozen.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def serve(app: RouteApp, host: str = "127.0.0.1", port: int = 8000,
          log_level: str = "info") -> None:
    """Serve until interrupted (Ctrl-C / SIGTERM shut down gracefully)."""
    warn_if_exposed(app, host)
    freeze_startup_heap()
    uvicorn.Server(uvicorn_config(app, host, port, log_level)).run()


class ServerThread:
    """Serve an ASGI app on a loopback port in a background thread (tests and benchmarks).

        with ServerThread(create_app(router)) as server:
            httpx.get(server.url + "/healthz")

    `config(app, host)` gives the uvicorn settings: by default `uvicorn_config` for a `RouteApp`
    (with the exposure warning); the gateway passes its own, for any ASGI app.
    """

    def __init__(self, app: Any, host: str = "127.0.0.1",
                 config: Callable[[Any, str], uvicorn.Config] | None = None):
        if config is None:
            warn_if_exposed(app, host)
            config = uvicorn_config
        self.app = app
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, 0))
        self.url = f"http://{host}:{self._sock.getsockname()[1]}"
        self.server = uvicorn.Server(config(app, host))
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self._sock]},
                                        name="proteus-uvicorn", daemon=True)

    def start(self, timeout: float = 30.0) -> ServerThread:
        self._thread.start()
        deadline = threading.Event()
        for _ in range(int(timeout / 0.01)):
            if self.server.started or not self._thread.is_alive():
                break
            deadline.wait(0.01)
        if not self.server.started:
            self.stop()
            raise RuntimeError(f"the server at {self.url} did not start")
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        self._sock.close()

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
