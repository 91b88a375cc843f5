"""HTTP endpoints of the online controllers, to mount on any FastAPI app.

    add_online_routes(app, service)    POST /v1/feedback, GET /v1/controllers
    create_app(service)                a standalone app: those two, POST /v1/route (with request
                                       ids, through the controllers) and GET /healthz

POST /v1/feedback takes one item `{"request_id": str, "score": f in [0, 1], "cost": f?}` or a
batch `{"feedback": [items]}`.
  One item: the HTTP status says the outcome: 200 accepted, 409 duplicate (the first feedback
  stands), 410 late (stored, not applied), 404 unknown id, 422 invalid; the body is the result.
  A batch: 200 with `{"results": [one per item, in order], "counts": {outcome: n}}`; items are
  independent (an unknown id does not fail the others) and all are committed together.
  A malformed body is 400, a batch over `max_batch` items 413.
Everything acknowledged (2xx, and the 409/410 answers) is committed to SQLite first.

The endpoints read the body on the event loop and run the service in the thread pool, so the
fsync of a commit does not block the event loop.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from proteus.online.service import OUTCOMES, OnlineService
from proteus.serving import check_task_name

FEEDBACK_PATH = "/v1/feedback"
CONTROLLERS_PATH = "/v1/controllers"
STATUS = {"accepted": 200, "duplicate": 409, "late": 410, "unknown": 404, "invalid": 422}
TENANT_HEADER = "x-proteus-tenant"


class BodyError(ValueError):
    """A request body the endpoint cannot read: HTTP `status` with a message."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise BodyError(400, f"body is not valid JSON: {err}") from None


def feedback_response(service: OnlineService, raw: bytes, max_batch: int) -> tuple[int, dict]:
    """A POST /v1/feedback body -> (HTTP status, JSON body)."""
    body = _json(raw)
    if isinstance(body, dict) and "feedback" in body:
        items = body["feedback"]
        if not isinstance(items, list) or not items:
            raise BodyError(400, "'feedback' must be a non-empty list of items")
        if len(items) > max_batch:
            raise BodyError(413, f"{len(items)} feedback items exceed the limit of {max_batch}")
        results = service.feedback(items)
        counts = {o: sum(r["status"] == o for r in results) for o in OUTCOMES}
        return 200, {"results": results, "counts": counts}
    if not isinstance(body, dict):
        raise BodyError(400, "body must be a feedback object or {\"feedback\": [objects]}")
    result = service.feedback([body])[0]
    return STATUS[result["status"]], result


def add_online_routes(app: FastAPI, service: OnlineService, max_batch: int = 10_000) -> None:
    """Mount POST /v1/feedback and GET /v1/controllers for `service` on `app`."""

    @app.post(FEEDBACK_PATH)
    async def post_feedback(request: Request) -> JSONResponse:
        """Record realised scores (and costs) of routed requests; see the module docstring."""
        raw = await request.body()
        try:
            status, body = await run_in_threadpool(feedback_response, service, raw, max_batch)
        except BodyError as err:
            status, body = err.status, {"detail": err.detail}
        return JSONResponse(body, status_code=status)

    @app.get(CONTROLLERS_PATH)
    def get_controllers() -> JSONResponse:
        """Every (tenant, τ bucket) controller: target, offset, τ', estimates, budget dual."""
        return JSONResponse(service.controllers())


def route_response(service: OnlineService, raw: bytes, tenant: str | None) -> dict:
    """A POST /v1/route body ({"query" | "features", "tau", "tenant"?, "task"?} or
    {"requests": [...]}) -> the decision(s), each with its request_id."""
    body = _json(raw)
    batch = isinstance(body, dict) and "requests" in body
    items = body["requests"] if batch else [body]
    if not isinstance(items, list) or not items or not all(isinstance(i, dict) for i in items):
        raise BodyError(400, "body must be a route object or {\"requests\": [objects]}")
    out = []
    for i, item in enumerate(items):  # one call per item keeps the error naming the item
        where = f"request {i}: " if batch else ""
        if ("query" in item) == ("features" in item) or "tau" not in item:
            raise BodyError(422, f"{where}give 'tau' and exactly one of 'query' or 'features'")
        try:
            queries = [item["query"]] if "query" in item else [item["features"]]
            out += service.route(queries, item["tau"], item.get("tenant") or tenant,
                                 check_task_name(item.get("task")))
        except ValueError as err:
            raise BodyError(422, f"{where}{err}") from None
    return {"decisions": out} if batch else out[0]


def create_app(service: OnlineService, max_batch: int = 10_000) -> FastAPI:
    """A small standalone app: POST /v1/route with request ids, the feedback endpoints, health."""
    app = FastAPI(title="PROTEUS online router")

    @app.post("/v1/route")
    async def post_route(request: Request) -> JSONResponse:
        """Route at τ through the stream's controller; the tenant comes from the body or the
        X-Proteus-Tenant header."""
        raw, tenant = await request.body(), request.headers.get(TENANT_HEADER)
        try:
            body = await run_in_threadpool(route_response, service, raw, tenant)
        except BodyError as err:
            return JSONResponse({"detail": err.detail}, status_code=err.status)
        return JSONResponse(body)

    @app.get("/healthz")
    def healthz() -> dict:
        return {"ok": True, "decisions": service.store.counts()}

    add_online_routes(app, service, max_batch)
    return app
