"""Serve an exported router over HTTP (FastAPI + uvicorn) on this machine.

    python -m launch.serve --artifact=artifacts/quickstart --port=8000
    curl -s localhost:8000/v1/route -d '{"features": [...], "tau": 0.9}'

Endpoints and error codes: see `proteus.server`. Listens on 127.0.0.1 unless --host says otherwise.
"""

from absl import app, flags

from proteus import operating, server, serving

_ARTIFACT = flags.DEFINE_string("artifact", None, "Artifact directory (from launch.export).")
_HOST = flags.DEFINE_string("host", "127.0.0.1", "Interface to listen on.")
_PORT = flags.DEFINE_integer("port", 8000, "TCP port.")
_FALLBACK = flags.DEFINE_enum("fallback", None, list(operating.FALLBACKS),
                              "Infeasible τ: best_effort (200, flagged) or refuse (422); "
                              "default: the artifact's.")
_MAX_QUERY_CHARS = flags.DEFINE_integer("max_query_chars", server.ServerSettings.max_query_chars,
                                        "Longer text queries get 413.")
_MAX_BATCH_ITEMS = flags.DEFINE_integer("max_batch_items", server.ServerSettings.max_batch_items,
                                        "Most queries in one batch request.")
_MAX_BATCH = flags.DEFINE_integer("max_batch", server.ServerSettings.max_batch,
                                  "Most rows routed per internal call.")
_MAX_WAIT_MS = flags.DEFINE_float("max_wait_ms", server.ServerSettings.max_wait_ms,
                                  "How long an idle queue waits for more requests.")
_LOG_LEVEL = flags.DEFINE_string("log_level", "info", "uvicorn log level.")


def main(argv):
    del argv
    router = serving.Router.load(_ARTIFACT.value, fallback=_FALLBACK.value,
                                 warmup=_MAX_BATCH.value)
    settings = server.ServerSettings(max_query_chars=_MAX_QUERY_CHARS.value,
                                     max_batch_items=_MAX_BATCH_ITEMS.value,
                                     max_batch=_MAX_BATCH.value, max_wait_ms=_MAX_WAIT_MS.value)
    server.serve(server.create_app(router, settings), _HOST.value, _PORT.value, _LOG_LEVEL.value)


if __name__ == "__main__":
    flags.mark_flags_as_required(["artifact"])
    app.run(main)
