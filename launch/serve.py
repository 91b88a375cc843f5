"""Serve an exported router over HTTP on this machine (endpoints: `proteus.serving.server`).

    python -m launch.serve --artifact=artifacts/quickstart --port=8000

Listens on 127.0.0.1 unless --host says otherwise; elsewhere require bearer tokens (README).
SIGHUP reloads the artifact from --artifact (replaced in place or a re-pointed symlink) without
dropping a request (`proteus.serving.server.RouteService.reload`; docs/onboard.md).
Prometheus metrics at GET /metrics (`proteus.serving.metrics`). Needs the serve extra
(`pip install -e '.[serve]'`); without it, one line says so.
"""

import os
import sys

from absl import app, flags

from experiments import logs
from proteus import operating
from proteus.serving import extras
from proteus.serving import router as serving

with extras.serve_extra("launch.serve", launcher=True):
    from proteus.serving import http_guards, server

_DEFAULTS = server.ServerSettings

_ARTIFACT = flags.DEFINE_string("artifact", None, "Artifact directory (from launch.export).")
_HOST = flags.DEFINE_string("host", "127.0.0.1", "Interface to listen on.")
_PORT = flags.DEFINE_integer("port", 8000, "TCP port.",
                              lower_bound=0, upper_bound=65535)
_FALLBACK = flags.DEFINE_enum("fallback", None, list(operating.FALLBACKS),
                              "Infeasible τ: best_effort (200, flagged) or refuse (422); "
                              "default: the artifact's.")
_AUTH_TOKENS_FILE = flags.DEFINE_string(
    "auth_tokens_file", None, f"File of bearer tokens (one per line, '#' comments); with "
    f"${http_guards.AUTH_ENV}, every endpoint but /healthz requires one.")
# ServerSettings fields a user sets (their defaults are the dataclass's): name -> help.
_SETTING_HELP = {
    "max_query_chars": "Longer text queries get 413.",
    "max_body_bytes": "Larger request bodies get 413 (checked before parsing).",
    "max_batch_items": "Most queries in one batch request.",
    "max_batch": "Most rows routed per internal call.",
    "max_queue": "Most queued rows (503 beyond; large requests: 3/4 of it).",
    "max_wait_ms": "How long an idle queue waits for more requests.",
    "read_timeout_s": "A request body must arrive within this (else 408).",
    "header_timeout_s": "Request headers must arrive within this (else closed).",
    "keep_alive_timeout_s": "Idle keep-alive connections are closed after this (s).",
}
_SETTINGS = {name: (flags.DEFINE_float if isinstance(getattr(_DEFAULTS, name), float)
                    else flags.DEFINE_integer)(name, getattr(_DEFAULTS, name), text)
             for name, text in _SETTING_HELP.items()}
_LOG_LEVEL = flags.DEFINE_string("log_level", "info", "uvicorn log level.")


def main(argv):
    del argv
    logs.job_logging()  # warnings only: no library noise before uvicorn's own lines
    try:  # ArtifactError and the settings' and tokens' refusals are ValueErrors naming the cause
        settings = server.ServerSettings(
            auth_tokens=http_guards.auth_tokens(_AUTH_TOKENS_FILE.value, os.environ),
            **{name: flag.value for name, flag in _SETTINGS.items()})
        router = serving.Router.load(_ARTIFACT.value, fallback=_FALLBACK.value,
                                     warmup=settings.max_batch)
    except (ValueError, OSError) as err:
        sys.exit(f"launch.serve: {err}")
    server.serve(server.create_app(router, settings, reload_on_sighup=True), _HOST.value,
                 _PORT.value, _LOG_LEVEL.value)


if __name__ == "__main__":
    flags.mark_flags_as_required(["artifact"])
    app.run(main)
