"""Running any ASGI app of the gateway (the gateway, the online service, the fake upstream) with
uvicorn.

`proteus.serving.server`'s defaults are built around its `RouteApp` (they read its settings); these
take any ASGI app and the `ServerSettings` whose timeouts its server applies: a connection whose
request headers do not arrive within `header_timeout_s` is closed (slow-header clients would
otherwise hold it open forever; `proteus.serving.http_guards.with_header_timeout`), an idle
keep-alive connection after `keep_alive_timeout_s`. uvicorn with httptools and uvloop when
installed, no websockets, no access log. The background thread for tests is
`proteus.serving.server.ServerThread` with these settings.
"""

from __future__ import annotations

import uvicorn

from proteus.serving import server
from proteus.serving.server import ServerSettings, ServerThread, freeze_startup_heap


def uvicorn_config(app, host: str = "127.0.0.1", port: int = 0, log_level: str = "warning",
                   settings: ServerSettings | None = None) -> uvicorn.Config:
    """uvicorn settings for a gateway app (lifespan on: it starts pools and queues); `settings`
    default to the app's own `http_settings` (the gateway's), else `ServerSettings()`."""
    return server.uvicorn_config(
        app, host, port, log_level, settings or getattr(app, "http_settings", None)
        or ServerSettings())


def serve(app, host: str = "127.0.0.1", port: int = 8080, log_level: str = "info",
          settings: ServerSettings | None = None) -> None:
    """Serve until interrupted (Ctrl-C / SIGTERM shut down gracefully)."""
    freeze_startup_heap()  # a full GC pass over jax's objects would stall every request
    uvicorn.Server(uvicorn_config(app, host, port, log_level, settings)).run()


def server_thread(app, host: str = "127.0.0.1",
                  settings: ServerSettings | None = None) -> ServerThread:
    """`proteus.serving.server.ServerThread` for any gateway app, with these uvicorn settings.

        with server_thread(app) as running:
            httpx.get(running.url + "/v1/models")
    """
    return ServerThread(app, host, lambda a, h: uvicorn_config(a, h, settings=settings))
