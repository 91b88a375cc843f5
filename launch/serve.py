"""Serve an exported router over HTTP (FastAPI + uvicorn) on this machine.

    python -m launch.serve --artifact=artifacts/quickstart --port=8000
    curl -s localhost:8000/v1/route -H 'Content-Type: application/json' \
        -d '{"features": [...], "tau": 0.9}'

Endpoints and error codes: see `proteus.server`. Listens on 127.0.0.1 unless --host says otherwise.
On a shared network, require bearer tokens: --auth_tokens_file (one token per line) and/or the
environment variable PROTEUS_AUTH_TOKENS (comma-separated); clients send
`Authorization: Bearer <token>`. Serving a non-loopback address without tokens logs a warning.
"""

import os

from absl import app, flags

from proteus import http_guards, operating, server, serving

AUTH_ENV = http_guards.AUTH_ENV
_DEFAULTS = server.ServerSettings

_ARTIFACT = flags.DEFINE_string("artifact", None, "Artifact directory (from launch.export).")
_HOST = flags.DEFINE_string("host", "127.0.0.1", "Interface to listen on.")
_PORT = flags.DEFINE_integer("port", 8000, "TCP port.")
_FALLBACK = flags.DEFINE_enum("fallback", None, list(operating.FALLBACKS),
                              "Infeasible τ: best_effort (200, flagged) or refuse (422); "
                              "default: the artifact's.")
_AUTH_TOKENS_FILE = flags.DEFINE_string(
    "auth_tokens_file", None, f"File of bearer tokens (one per line, '#' comments); with "
    f"${AUTH_ENV}, every endpoint but /healthz requires one.")
_MAX_QUERY_CHARS = flags.DEFINE_integer("max_query_chars", _DEFAULTS.max_query_chars,
                                        "Longer text queries get 413.")
_MAX_BODY_BYTES = flags.DEFINE_integer("max_body_bytes", _DEFAULTS.max_body_bytes,
                                       "Larger request bodies get 413 (checked before parsing).")
_MAX_BATCH_ITEMS = flags.DEFINE_integer("max_batch_items", _DEFAULTS.max_batch_items,
                                        "Most queries in one batch request.")
_MAX_BATCH = flags.DEFINE_integer("max_batch", _DEFAULTS.max_batch,
                                  "Most rows routed per internal call.")
_MAX_QUEUE = flags.DEFINE_integer("max_queue", _DEFAULTS.max_queue,
                                  "Most queued rows (503 beyond; large requests: 3/4 of it).")
_MAX_WAIT_MS = flags.DEFINE_float("max_wait_ms", _DEFAULTS.max_wait_ms,
                                  "How long an idle queue waits for more requests.")
_READ_TIMEOUT = flags.DEFINE_float("read_timeout_s", _DEFAULTS.read_timeout_s,
                                   "A request body must arrive within this (else 408).")
_HEADER_TIMEOUT = flags.DEFINE_float("header_timeout_s", _DEFAULTS.header_timeout_s,
                                     "Request headers must arrive within this (else closed).")
_KEEP_ALIVE = flags.DEFINE_integer("timeout_keep_alive", _DEFAULTS.keep_alive_timeout_s,
                                   "Idle keep-alive connections are closed after this (s).")
_LOG_LEVEL = flags.DEFINE_string("log_level", "info", "uvicorn log level.")


def main(argv):
    del argv
    router = serving.Router.load(_ARTIFACT.value, fallback=_FALLBACK.value,
                                 warmup=_MAX_BATCH.value)
    settings = server.ServerSettings(
        max_query_chars=_MAX_QUERY_CHARS.value, max_body_bytes=_MAX_BODY_BYTES.value,
        max_batch_items=_MAX_BATCH_ITEMS.value, max_batch=_MAX_BATCH.value,
        max_queue=_MAX_QUEUE.value, max_wait_ms=_MAX_WAIT_MS.value,
        auth_tokens=http_guards.auth_tokens(_AUTH_TOKENS_FILE.value, os.environ),
        read_timeout_s=_READ_TIMEOUT.value, header_timeout_s=_HEADER_TIMEOUT.value,
        keep_alive_timeout_s=_KEEP_ALIVE.value)
    server.serve(server.create_app(router, settings), _HOST.value, _PORT.value, _LOG_LEVEL.value)


if __name__ == "__main__":
    flags.mark_flags_as_required(["artifact"])
    app.run(main)
