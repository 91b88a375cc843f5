"""The gateway's raw-ASGI plumbing: reading a request within the router service's limits, sending
answers and OpenAI-style errors, passing SSE streams through, and cross-origin requests.

A POST body passes the same guards, with the same limits, as `launch.serve`'s
(`proteus.serving.http_guards` and `proteus.serving.protocol.parse_json`): `application/json`
(415), a Content-Length within `max_body_bytes` (413) checked before reading and counted again
while reading, the whole body within `read_timeout_s` (408), then JSON nested at most
`max_json_depth` deep (400). Request headers must arrive within `header_timeout_s` or the
connection is closed (`proteus.gateway.runner`). Every refusal is `{"error": {...}}`
(`GatewayError`) and closes the connection when the body may be unread.

Cross-origin: a request with an `Origin` header is refused (403, `cross_origin_refused`) unless
the origin is in `allowed_origins`, whatever the keys: a web page must not spend a gateway's
money, open mode on loopback included. An allowed origin gets CORS headers, and its preflight
(OPTIONS) is answered.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any

from proteus.gateway.errors import GatewayError
from proteus.serving import http_guards
from proteus.serving.protocol import Limits, RequestError, parse_json

Headers = list[tuple[bytes, bytes]]
JSON = b"application/json"
CORS_HEADERS = b"authorization, content-type, x-proteus-tau, x-proteus-task"
EXPOSED = (b"x-proteus-request-id, x-proteus-model, x-proteus-tau, x-proteus-feasible, "
           b"x-proteus-infeasible-reason, x-proteus-overhead-ms, x-proteus-fallback-from, "
           b"x-proteus-rerouted-from")


def header(scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


def from_request_error(err: RequestError) -> GatewayError:
    """The OpenAI-style form of a request refused by the shared request model."""
    return GatewayError(err.status, err.detail, "invalid_request_error", err.code)


async def read_body(scope, receive, limits: Limits, read_timeout_s: float) -> bytes:
    """The body after the content type, size and time guards of the module docstring.

    Raises:
      GatewayError: 415, 413, 408, or 499 when the client left mid-body.
    """
    try:
        if not http_guards.is_json(header(scope, b"content-type")):
            got = (header(scope, b"content-type") or b"none").decode("latin-1")[:80]
            raise RequestError(415, f"Content-Type must be application/json, got {got!r}",
                               "unsupported_media_type")
        http_guards.check_length(header(scope, b"content-length"), limits.max_body_bytes)
        return await http_guards.read_body(http_guards.asgi_chunks(receive),
                                           limits.max_body_bytes, read_timeout_s)
    except RequestError as err:
        error = from_request_error(err)
        error.headers["connection"] = "close"
        raise error from None
    except http_guards.ClientGoneError:
        raise GatewayError(499, "the client closed the request before its body was complete",
                           "invalid_request_error", "client_closed_request") from None


async def read_json(scope, receive, limits: Limits, read_timeout_s: float) -> tuple[Any, int]:
    """(the parsed JSON body, its size in bytes): `read_body`, then JSON within the size and
    depth limits (GatewayError 400 otherwise)."""
    body = await read_body(scope, receive, limits, read_timeout_s)
    try:
        return parse_json(body, limits), len(body)
    except RequestError as err:
        raise from_request_error(err) from None


def origin_refusal(scope, allowed: Collection[str]) -> GatewayError | None:
    """The 403 of a cross-origin request whose Origin is not allowed, else None."""
    origin = header(scope, b"origin")
    if origin is None or origin.decode("latin-1") in allowed:
        return None
    return GatewayError(403, f"cross-origin requests from {origin.decode('latin-1')[:100]!r} are "
                             "refused (allowed_origins lists the web origins that may call this "
                             "gateway)", "invalid_request_error", "cross_origin_refused")


def cors_headers(scope) -> Headers:
    """The CORS answer headers for an (allowed) Origin of `scope`, or []."""
    origin = header(scope, b"origin")
    if origin is None:
        return []
    return [(b"access-control-allow-origin", origin), (b"vary", b"origin"),
            (b"access-control-expose-headers", EXPOSED)]


async def preflight(scope, send) -> None:
    """204 to an allowed origin's OPTIONS preflight."""
    await send_bytes(send, 204, b"", None, [
        *cors_headers(scope), (b"access-control-allow-methods", b"GET, POST, OPTIONS"),
        (b"access-control-allow-headers", CORS_HEADERS), (b"access-control-max-age", b"600")])


async def send_bytes(send, status: int, body: bytes, content_type: bytes | None = JSON,
                     headers: Headers | None = None) -> None:
    headers = list(headers or [])
    if content_type is not None:
        headers.append((b"content-type", content_type))
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def send_error(send, err: GatewayError, headers: Headers) -> None:
    extra = [(k.encode(), v.encode()) for k, v in err.headers.items()]
    await send_bytes(send, err.status, err.body(), JSON, headers + extra)


async def relay(send, stream, headers: Headers, client_gone: Callable[[], bool]) -> None:
    """Pass an SSE stream through chunk by chunk (no buffering: tokens reach the client live).

    The ASGI server drops what is sent to a client that has left, so `client_gone` is asked
    after each chunk: a stream nobody reads is closed upstream instead of read to its end.
    """
    headers += [(b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    try:
        async for chunk in stream:
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            if client_gone():
                return
    finally:  # closes the upstream response (also when the client went away)
        await stream.aclose()
    await send({"type": "http.response.body", "body": b""})


def client_closed(when: str) -> GatewayError:
    """The 499 of a request whose client left (nginx's code; nobody reads the answer)."""
    return GatewayError(499, f"the client closed the request {when}", "invalid_request_error",
                        "client_closed_request")


def header_text(text: str, limit: int = 300) -> bytes:
    """`text` as an HTTP header value: ASCII ("τ" spelled "tau"), one line, at most `limit`."""
    text = text.replace("τ", "tau").replace("\r", " ").replace("\n", " ")
    return text.encode("ascii", "replace")[:limit]
