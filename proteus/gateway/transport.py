"""A lean HTTP/1.1 keep-alive transport for `httpx.AsyncClient`: asyncio + httptools' C parser.

httpx's default transport (httpcore on anyio) costs ~1 ms of CPU per request on these cores and
scans every pooled connection, with a poll(2) each, on every request, so a proxy at 50-500
concurrent requests spends most of its time there. This transport keeps httpx's API (requests,
responses, timeouts, exceptions) and replaces the wire: idle connections per origin in a deque
(O(1) to take and return), the request head and body in one write, responses parsed by
`httptools.HttpResponseParser` (chunked bodies included) and delivered as they arrive.

Limits (it serves OpenAI-style upstreams, not the web): HTTP/1.1 only, no proxies from the
environment, no backpressure on a body the client reads slower than the upstream sends. A reused
connection that the upstream closed before answering is retried once on a new one (the request
was never read), as aiohttp does.
"""

from __future__ import annotations

import asyncio
import collections
import ssl
from collections.abc import AsyncIterator

import httptools
import httpx


class _Connection(asyncio.Protocol):
    """One upstream connection: parser callbacks fill `chunks`; `wait` sleeps until news."""

    def __init__(self):
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.closed = False
        self.error: BaseException | None = None
        self._waiter: asyncio.Future | None = None
        self.reset()

    def reset(self) -> None:
        self.status, self.headers, self.head_done, self.complete = 0, [], False, False
        self.keep_alive = False
        self.chunks: collections.deque[bytes] = collections.deque()

    # asyncio.Protocol
    def connection_made(self, transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as err:
            self.error = err
            self.close()
        self._wake()

    def connection_lost(self, exc: BaseException | None) -> None:
        self.closed = True
        if not self.complete and self.error is None:
            self.error = exc or ConnectionResetError("the upstream closed the connection")
        self._wake()

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status, self.head_done = self.parser.get_status_code(), True

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)

    def on_message_complete(self) -> None:
        self.complete, self.keep_alive = True, self.parser.should_keep_alive()

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def wait(self, timeout: float | None) -> None:
        """Until the next callback; TimeoutError after `timeout` seconds."""
        loop = asyncio.get_running_loop()
        self._waiter = waiter = loop.create_future()
        timer = None if timeout is None else loop.call_later(
            timeout, lambda: waiter.done() or waiter.set_exception(TimeoutError()))
        try:
            await waiter
        finally:
            if timer is not None:
                timer.cancel()
            self._waiter = None

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class _Body(httpx.AsyncByteStream):
    """A response body as it arrives; the connection goes back to the pool once it is read."""

    def __init__(self, conn: _Connection, pool: FastTransport, origin: tuple, request, timeout):
        self._conn, self._pool, self._origin = conn, pool, origin
        self._request, self._timeout = request, timeout

    async def __aiter__(self) -> AsyncIterator[bytes]:
        conn = self._conn
        while True:
            while conn.chunks:
                yield conn.chunks.popleft()
            if conn.complete:
                return
            if conn.error is not None:
                raise httpx.ReadError(f"upstream connection broke: {conn.error!r}",
                                      request=self._request)
            try:
                await conn.wait(self._timeout)
            except TimeoutError:
                raise httpx.ReadTimeout("upstream read timed out", request=self._request) from None

    async def aclose(self) -> None:
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if conn.complete and conn.keep_alive and not conn.closed and not conn.chunks:
            self._pool.release(self._origin, conn)
        else:
            conn.close()


class FastTransport(httpx.AsyncBaseTransport):
    """`httpx.AsyncClient(transport=FastTransport())`: see the module docstring."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None, max_idle: int = 1024):
        self._ssl = ssl_context
        self._max_idle = max_idle
        self._idle: dict[tuple, collections.deque[_Connection]] = collections.defaultdict(
            collections.deque)

    def release(self, origin: tuple, conn: _Connection) -> None:
        idle = self._idle[origin]
        if len(idle) >= self._max_idle:
            return conn.close()
        conn.reset()
        idle.append(conn)

    def _take_idle(self, origin: tuple) -> _Connection | None:
        idle = self._idle[origin]
        while idle:
            conn = idle.pop()  # the most recently used: least likely to have timed out
            if not conn.closed:
                return conn
        return None

    async def _connect(self, origin: tuple, timeout: float | None, request) -> _Connection:
        scheme, host, port = origin
        tls = None
        if scheme == "https":
            self._ssl = self._ssl or ssl.create_default_context()
            tls = self._ssl
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(loop.create_connection(
                _Connection, host, port, ssl=tls, server_hostname=host if tls else None), timeout)
        except TimeoutError:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} timed out",
                                       request=request) from None
        except OSError as err:
            raise httpx.ConnectError(f"cannot connect to {host}:{port}: {err}",
                                     request=request) from None
        return conn

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        origin = (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))
        timeouts = request.extensions.get("timeout", {})
        head = [b"%s %s HTTP/1.1\r\n" % (request.method.encode(), url.raw_path)]
        head += [b"%s: %s\r\n" % (k, v) for k, v in request.headers.raw]
        data = b"".join(head) + b"\r\n" + await request.aread()
        for attempt in range(2):
            conn = self._take_idle(origin)
            reused = conn is not None
            conn = conn or await self._connect(origin, timeouts.get("connect"), request)
            conn.transport.write(data)
            try:
                while not conn.head_done and conn.error is None:
                    await conn.wait(timeouts.get("read"))
            except TimeoutError:
                conn.close()
                raise httpx.ReadTimeout("upstream read timed out", request=request) from None
            except asyncio.CancelledError:  # abandoned (the client left): the upstream must see
                conn.close()  # the connection close, or it keeps working on an answer nobody reads
                raise
            if conn.head_done:
                break
            conn.close()
            if not (reused and attempt == 0):  # a fresh connection failed: report it
                raise httpx.ReadError(f"upstream connection broke: {conn.error!r}",
                                      request=request)
        return httpx.Response(conn.status, headers=conn.headers, request=request,
                              stream=_Body(conn, self, origin, request, timeouts.get("read")),
                              extensions={"http_version": b"HTTP/1.1"})

    async def aclose(self) -> None:
        for idle in self._idle.values():
            while idle:
                idle.pop().close()
