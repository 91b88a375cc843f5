"""HTTP serving of a `proteus.serving.Router`: FastAPI app, request batching, uvicorn runner.

Endpoints:
  POST /v1/route   {"query": str | "features": [D floats], "tau": float} -> one decision, or
                   {"requests": [such objects]} -> {"decisions": [...]}
  GET  /v1/models  model pool, prices, feasible τ range, encoder
  GET  /healthz    liveness and batching counters
  GET  /openapi.json, /docs

Bad input gets a 4xx JSON `{"detail": message}` (see `proteus.protocol`; 503 when the queue is
full) and never reaches the router. Valid requests from all connections join one queue
(`proteus.batching`): a worker thread routes whatever has queued in one call, so throughput grows
with concurrency. POST /v1/route is answered by a small ASGI fast path in front of FastAPI that runs
the same `RouteService.handle` as the FastAPI route (which documents it in the OpenAPI schema):
FastAPI's per-request machinery costs ~4x the CPU of the whole decision.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import socket
import threading
from typing import Any

import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema

from proteus.batching import MicroBatcher, QueueFullError
from proteus.protocol import Limits, RequestError, parse_body, route_items
from proteus.serving import Router

ROUTE_PATH = "/v1/route"


@dataclasses.dataclass(frozen=True)
class ServerSettings(Limits):
    """Request limits (see `Limits`) and batching of the HTTP server (the `launch.serve` flags)."""

    max_batch: int = 256  # rows routed per internal call
    # An idle queue waits this long for company before routing. 0: route at once; requests that
    # arrive while a batch is being routed form the next batch anyway (and event-loop timers
    # round sub-millisecond waits up to 1 ms).
    max_wait_ms: float = 0.0
    max_queue: int = 8192  # queued rows beyond this get 503
    fast_path: bool = True  # answer POST /v1/route before FastAPI's routing (same handler)


class RouteService:
    """POST /v1/route: parse, queue into the batcher, answer (status, JSON bytes)."""

    def __init__(self, router: Router, settings: ServerSettings):
        self.router, self.settings = router, settings
        self.batcher = MicroBatcher(lambda items: route_items(router, items), settings.max_batch,
                                    settings.max_wait_ms / 1000.0, settings.max_queue)

    async def handle(self, body: bytes) -> tuple[int, bytes]:
        """A POST /v1/route body -> (HTTP status, JSON response body); never raises."""
        try:
            items, is_batch = parse_body(body, self.router, self.settings)
            results = await self.batcher.submit(items)
        except QueueFullError:
            return 503, _dumps({"detail": "server busy: the routing queue is full; retry shortly"})
        except RequestError as err:
            return err.status, _dumps({"detail": err.detail})
        except Exception as err:  # noqa: BLE001 (one bad batch must not take the server down)
            logging.getLogger(__name__).exception("routing failed")
            return 500, _dumps({"detail": f"internal error: {type(err).__name__}: {err}"})
        return 200, _dumps({"decisions": results} if is_batch else results[0])


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


# ------------------------------------------------------------------ schema (documentation)


class RouteRequest(BaseModel):
    query: str | None = Field(None, description="query text (artifacts with a text encoder)")
    features: list[float] | None = Field(None, description="the query's D features")
    tau: float = Field(..., ge=0.0, le=1.0, description="accuracy target τ")


class BatchRouteRequest(BaseModel):
    requests: list[RouteRequest]


class RouteDecisionModel(BaseModel):
    model: str
    model_index: int
    mu: float = Field(..., description="quality preference μ in [0, 1]")
    p_hat: dict[str, float] = Field(..., description="predicted correctness per model")
    c_hat: dict[str, float] = Field(..., description="predicted cost (USD) per model")
    lambda_: float = Field(..., alias="lambda", description="λ at the operating τ")
    tau: float
    operating_tau: float | None = Field(..., description="the τ' the policy was called with "
                                        "(null at a fixed-model operating point)")
    operating_point: int = Field(..., description="index of the operating point in the "
                                 "artifact's table (GET /v1/models)")
    feasible: bool
    certified: bool
    reason: str
    operating_model: str | None = Field(None, description="the model of a fixed-model point")


class BatchRouteResponse(BaseModel):
    decisions: list[RouteDecisionModel]


class ErrorResponse(BaseModel):
    detail: str


class ModelInfo(BaseModel):
    name: str
    index: int
    price: dict[str, float] | None
    mean_cost_usd: float


class ModelsResponse(BaseModel):
    models: list[ModelInfo]
    feasible_tau: dict[str, float | None]
    certified: bool
    fallback: str
    encoder: str
    feature_dim: int
    accepts_text: bool


class HealthResponse(BaseModel):
    status: str
    batches: int
    rows: int
    largest_batch: int


# ------------------------------------------------------------------ the app


class RouteApp:
    """The ASGI app: the POST /v1/route fast path in front of the FastAPI app.

    Attributes:
      fastapi: the FastAPI app (every endpoint, OpenAPI schema, lifespan).
      service: its `RouteService` (batching counters in `service.batcher.stats`).
    """

    def __init__(self, fastapi: FastAPI, service: RouteService):
        self.fastapi, self.service = fastapi, service

    async def __call__(self, scope, receive, send) -> None:
        if (self.service.settings.fast_path and scope["type"] == "http"
                and scope["path"] == ROUTE_PATH and scope["method"] == "POST"):
            status, body = await self._answer(receive)
            headers = [(b"content-type", b"application/json"),
                       (b"content-length", str(len(body)).encode())]
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        await self.fastapi(scope, receive, send)

    async def _answer(self, receive) -> tuple[int, bytes]:
        limit, chunks, size = self.service.settings.max_body_bytes, [], 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return 413, _dumps({"detail": f"request body exceeds the limit of {limit} bytes"})
            chunks.append(chunk)
            if message["type"] == "http.disconnect" or not message.get("more_body"):
                break
        return await self.service.handle(b"".join(chunks))


def create_app(router: Router, settings: ServerSettings | None = None) -> RouteApp:
    """The serving app for `router` (run it with uvicorn, `serve` or `ServerThread`)."""
    service = RouteService(router, settings or ServerSettings())

    @contextlib.asynccontextmanager
    async def lifespan(_):
        service.batcher.start()
        yield
        await service.batcher.stop()

    app = FastAPI(title="PROTEUS router", lifespan=lifespan,
                  description="SLA-aware LLM routing: the cheapest model mix whose mean accuracy "
                              "meets the requested target τ.")
    errors = {code: {"model": ErrorResponse} for code in (400, 413, 422, 503)}
    body_schema = {"anyOf": [{"$ref": "#/components/schemas/RouteRequest"},
                             {"$ref": "#/components/schemas/BatchRouteRequest"}]}

    @app.post(ROUTE_PATH, summary="Route one query or a batch",
              responses={200: {"model": RouteDecisionModel | BatchRouteResponse}, **errors},
              openapi_extra={"requestBody": {"required": True,
                                             "content": {"application/json": {"schema":
                                                                              body_schema}}}})
    async def route(request: Request) -> Response:
        status, body = await service.handle(await request.body())
        return Response(body, status, media_type="application/json")

    @app.get("/v1/models", response_model=ModelsResponse, summary="Model pool and τ range")
    async def models() -> dict[str, Any]:
        return router.info()

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


def uvicorn_config(app: RouteApp, host: str = "127.0.0.1", port: int = 0,
                   log_level: str = "warning") -> uvicorn.Config:
    """uvicorn settings: no websockets, no access log, uvloop/httptools when installed."""
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                          ws="none", lifespan="on", timeout_graceful_shutdown=5)


def serve(app: RouteApp, host: str = "127.0.0.1", port: int = 8000,
          log_level: str = "info") -> None:
    """Serve until interrupted (Ctrl-C / SIGTERM shut down gracefully)."""
    uvicorn.Server(uvicorn_config(app, host, port, log_level)).run()


class ServerThread:
    """Serve `app` on a loopback port in a background thread (tests and benchmarks).

        with ServerThread(create_app(router)) as server:
            httpx.get(server.url + "/healthz")
    """

    def __init__(self, app: RouteApp, host: str = "127.0.0.1"):
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, 0))
        self.url = f"http://{host}:{self._sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn_config(app, host))
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
