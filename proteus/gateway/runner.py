"""Running any ASGI app of the gateway (the gateway, the fake upstream) with uvicorn.

`proteus.serving.server`'s defaults are built around its `RouteApp` (they read its settings); these
take any ASGI app: uvicorn with httptools and uvloop when installed, no websockets, no access log.
The background thread for tests is `proteus.serving.server.ServerThread` with these settings.
"""

from __future__ import annotations

import uvicorn

from proteus.serving.server import ServerThread, freeze_startup_heap


def uvicorn_config(app, host: str = "127.0.0.1", port: int = 0,
                   log_level: str = "warning") -> uvicorn.Config:
    """uvicorn settings for a gateway app (lifespan on: it starts pools and queues)."""
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                          ws="none", lifespan="on", timeout_graceful_shutdown=5)


def serve(app, host: str = "127.0.0.1", port: int = 8080, log_level: str = "info") -> None:
    """Serve until interrupted (Ctrl-C / SIGTERM shut down gracefully)."""
    freeze_startup_heap()  # a full GC pass over jax's objects would stall every request
    uvicorn.Server(uvicorn_config(app, host, port, log_level)).run()


def server_thread(app, host: str = "127.0.0.1") -> ServerThread:
    """`proteus.serving.server.ServerThread` for any gateway app, with these uvicorn settings.

        with server_thread(app) as running:
            httpx.get(running.url + "/v1/models")
    """
    return ServerThread(app, host, uvicorn_config)
