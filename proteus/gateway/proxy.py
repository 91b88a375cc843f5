"""Forwarding to the chosen model's upstream with `httpx`: plain and SSE-streamed responses.

Requests go out through one `httpx.AsyncClient` on the lean `FastTransport` (see
`proteus.gateway.transport`), or with `fast=False` on httpx's own (httpcore) transport, sharded
into `shards` small pools because httpcore scans every pooled connection, with a poll(2) each, on
every request. The body goes upstream as the client sent it except `model`, which becomes the
upstream's name for the chosen model; the client's own credentials never leave the gateway (the
upstream gets its key from `api_key_env`).

Failures become OpenAI-style `GatewayError`s: a timeout 504 (`upstream_timeout`), a refused or
broken connection 502 (`upstream_unreachable`), an upstream 5xx 502 (`upstream_error`, with the
upstream's message); these and an upstream 429 are retried once on the model's `fallback` when it
has one. Other upstream 4xx answers (the client's request was wrong) pass through unchanged.
A 200 that is not what was asked for (a body that is not a JSON object; for a stream, anything
but `text/event-stream`) is `MalformedReply`, a 502 (`upstream_malformed_response`) that is not
retried: the upstream did answer, and may have billed for it.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx

from proteus.gateway.config import Upstream
from proteus.gateway.errors import GatewayError, error_body
from proteus.gateway.transport import FastTransport

TAIL_BYTES = 4096  # end of a stream kept to find its `usage` chunk
log = logging.getLogger(__name__)


@dataclasses.dataclass
class Reply:
    """An upstream's successful (or passed-through 4xx) answer."""

    status: int
    content_type: bytes
    served_by: Upstream  # the primary, or its fallback
    upstream_s: float  # until the response headers (streams) or the whole body
    body: bytes = b""  # non-streaming answers
    data: Any = None  # a 200 body, parsed (a JSON object)
    stream: AsyncIterator[bytes] | None = None  # SSE bytes as they arrive
    tail: bytearray = dataclasses.field(default_factory=bytearray)  # a stream's last bytes

    def usage(self) -> Any:
        """The answer's `usage` value as the upstream sent it (unchecked: see
        `proteus.gateway.pricing.checked_usage`), None without one; a stream's once consumed.

        Raises:
          ValueError: a stream's usage event is not valid JSON.
        """
        if self.stream is None:
            return self.data.get("usage") if isinstance(self.data, dict) else None
        for event in reversed(bytes(self.tail).split(b"\n\n")):
            if event.startswith(b"data: {") and b'"usage"' in event:
                data = json.loads(event[len(b"data: "):])
                if data.get("usage") is not None:
                    return data["usage"]
        return None


class MalformedReply(GatewayError):
    """A 200 from an upstream that is not a usable answer (see the module docstring)."""

    def __init__(self, upstream: Upstream, what: str):
        super().__init__(502, f"upstream {upstream.name!r} answered 200 with {what}",
                         "upstream_error", "upstream_malformed_response")
        self.served_by = upstream


class Proxy:
    """Sends requests to upstreams; `start` and `close` from the app's lifespan."""

    def __init__(self, upstreams: dict[str, Upstream], max_connections: int = 1024,
                 fast: bool = True, shards: int = 16):
        self.upstreams = upstreams
        self._max_connections, self._fast, self._shards = max_connections, fast, shards
        self._clients: list[httpx.AsyncClient] = []
        self._next = 0

    async def start(self) -> None:
        if self._fast:
            self._clients = [httpx.AsyncClient(transport=FastTransport(
                max_idle=self._max_connections))]
            return
        per_shard = max(1, self._max_connections // self._shards)
        limits = httpx.Limits(max_connections=per_shard, max_keepalive_connections=per_shard)
        # trust_env=False: proxies from the environment must not capture loopback upstreams.
        self._clients = [httpx.AsyncClient(limits=limits, trust_env=False)
                         for _ in range(self._shards)]

    async def close(self) -> None:
        for client in self._clients:
            await client.aclose()

    def _client(self) -> httpx.AsyncClient:
        self._next = (self._next + 1) % len(self._clients)
        return self._clients[self._next]

    async def forward(self, model: str, path: str, payload: dict[str, Any],
                      request_id: str) -> tuple[Reply, str | None]:
        """POST `payload` to `model`'s upstream at `path` (e.g. "/chat/completions").

        Returns:
          (reply, the failed primary's name when the fallback answered, else None).

        Raises:
          GatewayError: the upstream (and its fallback) failed; see the module docstring.
        """
        primary = self.upstreams[model]
        try:
            return await self._send(primary, path, payload, request_id), None
        except _Retryable as failure:
            # one WARNING line per failed upstream call (a 502/504 is otherwise silent)
            log.warning("request %s: upstream %r failed (%d %s): %s%s", request_id, primary.name,
                        failure.error.status, failure.error.code, failure.error.message,
                        f"; trying its fallback {primary.fallback!r}" if primary.fallback
                        else "")
            if primary.fallback is None:
                raise failure.error from None
            fallback = self.upstreams[primary.fallback]
            try:
                return await self._send(fallback, path, payload, request_id), primary.name
            except _Retryable as second:
                log.warning("request %s: fallback upstream %r failed too (%d %s): %s",
                            request_id, fallback.name, second.error.status, second.error.code,
                            second.error.message)
                second.error.message += f" (fallback after {primary.name!r}: {failure.error})"
                raise second.error from None

    async def _send(self, upstream: Upstream, path: str, payload: dict[str, Any],
                    request_id: str) -> Reply:
        body = json.dumps({**payload, "model": upstream.upstream_model}).encode()
        headers = {"content-type": "application/json", "accept-encoding": "identity",
                   "x-proteus-request-id": request_id}
        if upstream.api_key:
            headers["authorization"] = f"Bearer {upstream.api_key}"
        client = self._client()
        request = client.build_request("POST", upstream.base_url + path, content=body,
                                       headers=headers, timeout=httpx.Timeout(upstream.timeout_s))
        start = time.perf_counter()
        try:
            response = await client.send(request, stream=True)
        except httpx.TimeoutException:
            raise _Retryable(504, f"upstream {upstream.name!r} did not answer within "
                                  f"{upstream.timeout_s:g} s", "upstream_timeout") from None
        except httpx.HTTPError as err:
            raise _Retryable(502, f"upstream {upstream.name!r} unreachable: "
                                  f"{type(err).__name__}: {err}", "upstream_unreachable") from None
        content_type = response.headers.get("content-type", "application/json").encode()
        streaming = payload.get("stream") is True and response.status_code == 200
        if streaming and not content_type.startswith(b"text/event-stream"):
            await response.aclose()
            raise MalformedReply(upstream, f"{content_type[:60]!r} to a streaming request")
        if streaming:
            reply = Reply(200, content_type, upstream, time.perf_counter() - start)
            reply.stream = _relay(response, reply.tail, upstream.name)
            return reply
        try:
            data = await response.aread()
        except httpx.HTTPError as err:
            raise _Retryable(502, f"upstream {upstream.name!r} broke off its answer: {err}",
                             "upstream_unreachable") from None
        finally:
            await response.aclose()
        _check_status(response.status_code, data, upstream)
        reply = Reply(response.status_code, content_type, upstream, time.perf_counter() - start,
                      body=data)
        if reply.status == 200:
            reply.data = _json_object(data, upstream)
        return reply


def _json_object(data: bytes, upstream: Upstream) -> dict[str, Any]:
    """A 200 body as a JSON object; `MalformedReply` when it is not one."""
    try:
        parsed = json.loads(data)
    except (ValueError, RecursionError):
        parsed = None
    if not isinstance(parsed, dict):
        raise MalformedReply(upstream, f"a body that is not a JSON object: {data[:80]!r}")
    return parsed


class _Retryable(Exception):
    """An upstream failure worth one try on the fallback."""

    def __init__(self, status: int, message: str, code: str):
        super().__init__(message)
        self.error = GatewayError(status, message, "upstream_error", code)


def _check_status(status: int, data: bytes, upstream: Upstream) -> None:
    """Raise `_Retryable` for 5xx and 429; other statuses are passed through."""
    if status < 500 and status != 429:
        return
    try:
        message = json.loads(data)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = data[:200].decode(errors="replace")
    if status == 429:
        raise _Retryable(429, f"upstream {upstream.name!r} is rate limiting: {message}",
                         "upstream_rate_limited")
    raise _Retryable(502, f"upstream {upstream.name!r} answered {status}: {message}",
                     "upstream_error")


async def _relay(response: httpx.Response, tail: bytearray, name: str) -> AsyncIterator[bytes]:
    """The upstream's SSE bytes as they arrive; keeps the last `TAIL_BYTES` in `tail`.

    A stream that breaks off ends with an SSE error event, so the client sees why.
    """
    try:
        async for chunk in response.aiter_bytes():
            tail += chunk
            del tail[:-TAIL_BYTES]
            yield chunk
    except httpx.HTTPError as err:
        yield (b"data: " + error_body(f"upstream {name!r} broke off the stream: "
                                      f"{type(err).__name__}", "upstream_error",
                                      "upstream_stream_broken") + b"\n\n")
    finally:
        await response.aclose()
