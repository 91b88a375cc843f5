"""HTTP hardening of the router server: bearer tokens, content type, body limits and timeouts.

What a request must pass before its body is parsed (`proteus.serving.server` applies these in
order):

  401  a bearer token, when the server has any (`TokenAuth`; every path but /healthz);
  415  `Content-Type: application/json` (a form or `text/plain` POST from a web page is refused,
       so a browser cannot drive a local server without a CORS preflight);
  413  a Content-Length within `max_body_bytes`, checked before reading, and the body counted
       again while it streams in (a missing or false Content-Length gains nothing);
  408  the whole body within `read_timeout_s` (a half-sent request is answered and closed).

A connection that does not complete its request headers within `header_timeout_s` is closed
(`with_header_timeout`); idle keep-alive connections are closed by uvicorn after
`timeout_keep_alive`. Error responses to refused requests carry `Connection: close`.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
from collections.abc import AsyncIterator, Mapping, Sequence

from proteus.serving.protocol import RequestError

PUBLIC_PATHS = frozenset({"/healthz"})  # liveness probes need no token
CLOSE = [(b"connection", b"close")]


class ClientGoneError(Exception):
    """The client disconnected before its request body was complete."""


def parse_tokens(text: str, source: str) -> tuple[str, ...]:
    """Bearer tokens from `text`: one per line or comma-separated; blank and '#' lines skipped.

    Raises:
      ValueError: naming `source` (a file or environment variable) when a token holds whitespace
        or non-ASCII characters, or is shorter than 16 characters (too easy to guess).
    """
    tokens = []
    for line in text.splitlines():
        if line.strip().startswith("#"):
            continue
        for token in line.split(","):
            token = token.strip()
            if not token:
                continue
            if len(token) < 16 or not token.isascii() or any(c.isspace() for c in token):
                raise ValueError(f"{source}: bearer tokens must be at least 16 ASCII characters "
                                 "without spaces (generate one with `python -c 'import secrets; "
                                 "print(secrets.token_urlsafe(32))'`)")
            tokens.append(token)
    return tuple(tokens)


AUTH_ENV = "PROTEUS_AUTH_TOKENS"  # comma-separated bearer tokens, read by the launchers


def auth_tokens(path: str | None, environ: Mapping[str, str]) -> tuple[str, ...]:
    """Bearer tokens from the file `path` (if given) and `environ[AUTH_ENV]`.

    Raises:
      ValueError: naming the file or variable with a bad token, or a given file without any.
    """
    tokens = parse_tokens(environ.get(AUTH_ENV, ""), f"${AUTH_ENV}")
    if path:
        with open(path) as f:
            tokens += parse_tokens(f.read(), path)
        if not tokens:
            raise ValueError(f"{path}: no bearer tokens in the file")
    return tokens


class TokenAuth:
    """Checks `Authorization: Bearer <token>` against the configured tokens in constant time."""

    def __init__(self, tokens: Sequence[str]):
        self._tokens = [t.encode() for t in tokens]

    def __bool__(self) -> bool:
        return bool(self._tokens)

    def check(self, header: bytes | None) -> bool:
        """True if `header` (the raw Authorization value) carries one of the tokens."""
        if not header or header[:7].lower() != b"bearer ":
            return False
        given = header[7:].strip()
        ok = False
        for token in self._tokens:  # no early exit: the time does not say which token matched
            ok |= hmac.compare_digest(given, token)
        return ok


def unauthorized() -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """The 401 answer: an OpenAI-style error object (plus the `detail` every error has)."""
    message = ("missing or invalid API key: send 'Authorization: Bearer <token>' with a token "
               "the server was started with")
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None,
                      "code": "invalid_api_key"}, "detail": message}
    headers = [(b"www-authenticate", b'Bearer realm="proteus"'), *CLOSE]
    return 401, json.dumps(body).encode(), headers


def is_json(content_type: bytes | None) -> bool:
    """True for `application/json`, with or without parameters (`; charset=utf-8`)."""
    if content_type is None:
        return False
    return content_type.split(b";", 1)[0].strip().lower() == b"application/json"


def check_length(content_length: bytes | None, limit: int) -> None:
    """RequestError 413 when the declared Content-Length is over `limit` (400 if not a number)."""
    if content_length is None:
        return
    if not content_length.strip().isdigit():
        raise RequestError(400, f"invalid Content-Length {content_length[:40]!r}")
    if int(content_length) > limit:
        raise RequestError(413, f"request body of {int(content_length)} bytes exceeds the limit "
                                f"of {limit}", "body_too_large")


async def read_body(chunks: AsyncIterator[bytes], limit: int, timeout_s: float) -> bytes:
    """The request body from its chunks, at most `limit` bytes and within `timeout_s` seconds.

    Raises:
      RequestError: 413 once the body grows past `limit` (nothing more is read), 408 when it is
        not complete in time.
      ClientGoneError: the client disconnected.
    """
    parts, size = [], 0
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise RequestError(413, f"request body exceeds the limit of {limit} bytes",
                                       "body_too_large")
                parts.append(chunk)
    except TimeoutError:
        raise RequestError(408, f"request body not received within {timeout_s:g} s",
                           "request_timeout") from None
    return b"".join(parts)


async def asgi_chunks(receive) -> AsyncIterator[bytes]:
    """The body chunks of an ASGI http request (raises ClientGoneError on disconnect)."""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGoneError
        yield message.get("body", b"")
        if not message.get("more_body"):
            return


def is_loopback(host: str) -> bool:
    """True if `host` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name: it may resolve to anything
        return False


def exposure_warning(host: str, auth: bool) -> str | None:
    """The warning to log when serving on a non-loopback address without tokens, else None."""
    if auth or is_loopback(host):
        return None
    return (f"serving on {host}, reachable from other machines, WITHOUT authentication: anyone "
            "who can reach the port can route queries. Set --auth_tokens_file or "
            "PROTEUS_AUTH_TOKENS, or bind 127.0.0.1 behind an authenticating proxy.")


def with_header_timeout(protocol_class: type, timeout_s: float) -> type:
    """A uvicorn HTTP protocol class that closes connections whose request headers do not
    complete within `timeout_s` (slow-header clients would otherwise hold them open forever).

    The timer is armed when the connection opens and after each response; it closes the
    connection if, by then, no new request has completed its headers (uvicorn creates a new
    `cycle` when it has) and the last one has been answered (so a request whose body is still
    being read, or routed, is left alone: `read_body` has its own timeout).
    """

    class HeaderTimeoutProtocol(protocol_class):
        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            self._arm_header_timer()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            self._arm_header_timer()

        def _arm_header_timer(self) -> None:
            cycle = self.cycle

            def expire() -> None:
                idle = cycle is None or cycle.response_complete
                if self.cycle is cycle and idle and not self.transport.is_closing():
                    self.transport.close()

            self.loop.call_later(timeout_s, expire)

    HeaderTimeoutProtocol.__name__ = f"HeaderTimeout{protocol_class.__name__}"
    return HeaderTimeoutProtocol


def http_protocol_class() -> type:
    """uvicorn's fastest available HTTP/1.1 protocol class (httptools, else h11)."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol  # noqa: PLC0415
        return HttpToolsProtocol
    except ImportError:  # httptools is an optional uvicorn extra
        from uvicorn.protocols.http.h11_impl import H11Protocol  # noqa: PLC0415
        return H11Protocol
