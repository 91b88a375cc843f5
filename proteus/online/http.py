"""HTTP endpoints of the online controllers, with the gateway's auth, tenant binding and limits.

    add_online_routes(app, service, access)   POST /v1/feedback, GET /v1/controllers
    create_app(service, keys=...)             a standalone app: those two, POST /v1/route (with
                                              request ids, through the controllers), GET /healthz

Who a request is for (`Access`): with keys (`proteus.gateway.config.load_keys`, the gateway's keys
file: hashed API keys -> tenants) the tenant of its `Authorization: Bearer` key (401 without a
valid one); without keys (open: serve on loopback only) the `X-Proteus-Tenant` header, else
"default". A request routes into its tenant's streams, and feedback is bound to it too: a
request id of another tenant is "unknown" (404), as one never issued. GET /v1/controllers shows
the caller's streams and its models' drift tests (all of them in open mode).

Limits (`proteus.serving.server.ServerSettings`, as the gateway and `launch.serve`):
`application/json` (415), Content-Length and body within `max_body_bytes` (413), the body within
`read_timeout_s` (408), JSON nesting at most `max_json_depth` (400); a route batch at most
`max_batch_items`. Serve it with `proteus.gateway.runner` and the same settings (which closes
a connection whose headers do not arrive within `header_timeout_s`). A route body follows the
shared request model (`proteus.serving.protocol`: `{"query" | "features", "tau", "task"?}` or
`{"requests": [...]}`, where a bad item fails alone).

POST /v1/feedback takes one item `{"request_id": str, "score": f in [0, 1], "cost": f?}` or a
batch `{"feedback": [items]}`.
  One item: the HTTP status says the outcome: 200 accepted, 409 duplicate (the first feedback
  stands), 410 late (stored, not applied), 404 unknown id (or another tenant's), 422 invalid;
  the body is the result.
  A batch: 200 with `{"results": [one per item, in order], "counts": {outcome: n}}`; items are
  independent (an unknown id does not fail the others) and all are committed together.
  A malformed body is 400, a batch over `max_batch` items 413.
Everything acknowledged (2xx, and the 409/410 answers) is committed to SQLite first. Errors are
`{"detail": message, "error": {"message", "type", "code", "param"}}`.

The endpoints read the body on the event loop and run the service in the thread pool, so the
fsync of a commit does not block the event loop.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from proteus.gateway.config import Tenant
from proteus.gateway.errors import GatewayError
from proteus.gateway.keys import KeyRing
from proteus.online.service import OUTCOMES, OnlineService
from proteus.serving import http_guards
from proteus.serving.protocol import RequestError, parse_body, parse_json
from proteus.serving.server import ServerSettings

FEEDBACK_PATH = "/v1/feedback"
CONTROLLERS_PATH = "/v1/controllers"
STATUS = {"accepted": 200, "duplicate": 409, "late": 410, "unknown": 404, "invalid": 422}
TENANT_HEADER = "x-proteus-tenant"
DEFAULT_LIMITS = ServerSettings()


class BodyError(ValueError):
    """A request body the endpoint cannot read: HTTP `status` with a message."""

    def __init__(self, status: int, detail: str, code: str = "invalid_request"):
        super().__init__(detail)
        self.status, self.detail, self.code = status, detail, code


class Access:
    """Authentication, tenant and limits of the online endpoints (see the module docstring)."""

    def __init__(self, keys: dict[str, Tenant] | None = None,
                 settings: ServerSettings = DEFAULT_LIMITS, default_tenant: str = "default"):
        self.keys = KeyRing(keys, Tenant(default_tenant, 0.0))
        self.settings, self.default_tenant = settings, default_tenant

    def tenant(self, request: Request) -> str:
        """The caller's tenant; BodyError 401 when keys are configured and its key is not."""
        if self.keys.open:
            return request.headers.get(TENANT_HEADER) or self.default_tenant
        try:
            return self.keys.authenticate(request.headers.get("authorization", "").encode(
                "latin-1")).name
        except GatewayError as err:
            raise BodyError(401, err.message, err.code) from None

    async def body(self, request: Request) -> bytes:
        """The body after the content type, size and time guards (BodyError 415/413/408)."""
        limit, headers = self.settings.max_body_bytes, dict(request.headers.raw)
        try:
            if not http_guards.is_json(headers.get(b"content-type")):
                raise RequestError(415, "Content-Type must be application/json",
                                   "unsupported_media_type")
            http_guards.check_length(headers.get(b"content-length"), limit)
            return await http_guards.read_body(request.stream(), limit,
                                               self.settings.read_timeout_s)
        except RequestError as err:
            raise BodyError(err.status, err.detail, err.code) from None


def error_response(err: BodyError) -> JSONResponse:
    error = {"message": err.detail, "type": "invalid_request_error", "param": None,
             "code": err.code}
    return JSONResponse({"detail": err.detail, "error": error}, status_code=err.status)


def _json(raw: bytes, settings: ServerSettings) -> Any:
    try:
        return parse_json(raw, settings)
    except RequestError as err:
        raise BodyError(err.status, err.detail, err.code) from None


def feedback_response(service: Any, raw: bytes, max_batch: int, tenant: str | None = None,
                      settings: ServerSettings = DEFAULT_LIMITS) -> tuple[int, dict]:
    """A POST /v1/feedback body -> (HTTP status, JSON body); `service.feedback(items, tenant)`
    scores only `tenant`'s requests (an `OnlineService`, or the gateway's ledger)."""
    body = _json(raw, settings)
    if isinstance(body, dict) and "feedback" in body:
        items = body["feedback"]
        if not isinstance(items, list) or not items:
            raise BodyError(400, "'feedback' must be a non-empty list of items")
        if len(items) > max_batch:
            raise BodyError(413, f"{len(items)} feedback items exceed the limit of {max_batch}",
                            "batch_too_large")
        results = service.feedback(items, tenant)
        counts = {o: sum(r["status"] == o for r in results) for o in OUTCOMES}
        return 200, {"results": results, "counts": counts}
    if not isinstance(body, dict):
        raise BodyError(400, "body must be a feedback object or {\"feedback\": [objects]}")
    result = service.feedback([body], tenant)[0]
    return STATUS[result["status"]], result


def add_online_routes(app: FastAPI, service: OnlineService, access: Access | None = None,
                      max_batch: int = 10_000) -> None:
    """Mount POST /v1/feedback and GET /v1/controllers for `service` on `app` (`access`: keys
    and limits; None: open, default limits)."""
    access = access or Access()

    @app.post(FEEDBACK_PATH)
    async def post_feedback(request: Request) -> JSONResponse:
        """Record realised scores (and costs) of the caller's routed requests; see the module
        docstring."""
        try:
            tenant = access.tenant(request)
            raw = await access.body(request)
            status, body = await run_in_threadpool(feedback_response, service, raw, max_batch,
                                                   tenant, access.settings)
        except BodyError as err:
            return error_response(err)
        return JSONResponse(body, status_code=status)

    @app.get(CONTROLLERS_PATH)
    def get_controllers(request: Request) -> JSONResponse:
        """The caller's (tenant, τ bucket) controllers (target, offset, τ', estimates, duals)
        and its models' drift tests."""
        try:
            tenant = None if access.keys.open else access.tenant(request)
        except BodyError as err:
            return error_response(err)
        return JSONResponse(service.controllers(tenant))


def route_response(service: OnlineService, raw: bytes, tenant: str | None,
                   settings: ServerSettings = DEFAULT_LIMITS) -> dict:
    """A POST /v1/route body (the shared request model) -> the decision(s) of `tenant`'s
    streams, each with its request_id; in a batch, a bad item is its error entry."""
    try:
        parsed, batch = parse_body(raw, service.router, settings)
    except RequestError as err:
        raise BodyError(err.status, err.detail, err.code) from None
    items = [p for p in parsed if not isinstance(p, RequestError)]
    routed = iter(service.route_items(items, tenant) if items else [])
    out = [p if isinstance(p, RequestError) else next(routed) for p in parsed]
    if not batch and isinstance(out[0], Exception):
        err = out[0]
        raise (BodyError(err.status, err.detail, err.code) if isinstance(err, RequestError)
               else BodyError(500, str(err), "routing_failed"))
    return {"decisions": [_entry(d) for d in out]} if batch else out[0]


def _entry(decision: dict | Exception) -> dict:
    """One entry of a batch answer: the decision, or its error (`RequestError.to_json`)."""
    if isinstance(decision, RequestError):
        return decision.to_json()
    if isinstance(decision, Exception):  # a non-finite decision
        return RequestError(500, str(decision), "routing_failed").to_json()
    return decision


def create_app(service: OnlineService, max_batch: int = 10_000,
               keys: dict[str, Tenant] | None = None,
               settings: ServerSettings = DEFAULT_LIMITS) -> FastAPI:
    """A small standalone app: POST /v1/route with request ids, the feedback endpoints, health.

    keys: `proteus.gateway.config.load_keys` of a keys file; None: open (loopback only).
    """
    app = FastAPI(title="PROTEUS online router")
    access = Access(keys, settings, service.settings.default_tenant)

    @app.post("/v1/route")
    async def post_route(request: Request) -> JSONResponse:
        """Route at τ through the caller's streams (see the module docstring)."""
        try:
            tenant = access.tenant(request)
            raw = await access.body(request)
            body = await run_in_threadpool(route_response, service, raw, tenant, settings)
        except BodyError as err:
            return error_response(err)
        return JSONResponse(body)

    @app.get("/healthz")
    def healthz() -> dict:
        return {"ok": True, "decisions": service.store.counts()}

    add_online_routes(app, service, access, max_batch)
    return app
