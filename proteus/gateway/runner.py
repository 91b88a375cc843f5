"""Running any ASGI app of the gateway (the gateway, the fake upstream) with uvicorn.

`proteus.server`'s runners are built around its `RouteApp` (they read its settings); these take
any ASGI app: uvicorn with httptools and uvloop when installed, no websockets, no access log.
"""

from __future__ import annotations

import socket
import threading
import time

import uvicorn


def uvicorn_config(app, host: str = "127.0.0.1", port: int = 0,
                   log_level: str = "warning") -> uvicorn.Config:
    """uvicorn settings for a gateway app (lifespan on: it starts pools and queues)."""
    return uvicorn.Config(app, host=host, port=port, log_level=log_level, access_log=False,
                          ws="none", lifespan="on", timeout_graceful_shutdown=5)


def serve(app, host: str = "127.0.0.1", port: int = 8080, log_level: str = "info") -> None:
    """Serve until interrupted (Ctrl-C / SIGTERM shut down gracefully)."""
    uvicorn.Server(uvicorn_config(app, host, port, log_level)).run()


class ServerThread:
    """Serve an ASGI app on a free loopback port in a background thread (tests, benchmarks).

        with ServerThread(app) as running:
            httpx.get(running.url + "/v1/models")
    """

    def __init__(self, app, host: str = "127.0.0.1"):
        self.app = app
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, 0))
        self.url = f"http://{host}:{self._sock.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn_config(app, host))
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self._sock]},
                                        name="proteus-gateway-uvicorn", daemon=True)

    def __enter__(self) -> ServerThread:
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started and self._thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not self.server.started:
            self.__exit__()
            raise RuntimeError(f"the server at {self.url} did not start")
        return self

    def __exit__(self, *exc) -> None:
        self.server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(timeout=30)
        self._sock.close()
