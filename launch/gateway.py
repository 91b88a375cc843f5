"""Serve the OpenAI-compatible gateway: route each request by τ and forward it upstream.

    python -m launch.gateway --artifact=artifacts/rb --models_file=models.toml \
        --keys_file=keys.toml --usage_db=usage.sqlite3 --port=8080
    python -m launch.gateway --new_key          # a fresh API key and the digest to store
    python -m launch.gateway --hash_key=sk-...  # the digest of an existing key

File formats: `proteus.gateway.config`; endpoints: `proteus.gateway.app`. Without --keys_file the
gateway runs open (no keys, budgets or rate limits) and refuses any host but loopback. The keys
file is reloaded on SIGHUP (`kill -HUP <pid>`) and when it changes (every --watch_keys_s), without
dropping requests; a file that does not load keeps the keys in force. SIGHUP also reloads the
artifact from --artifact (replaced in place, e.g. by `launch.onboard --overwrite`, or a re-pointed
symlink) with --models_file, which must name an upstream for every model of it; requests in flight
finish on the old router and nothing is dropped (docs/onboard.md). Budgets, limits and the rest:
docs/gateway.md and docs/security.md.
"""

import logging
import sys

from absl import app, flags

from proteus import operating
from proteus.serving import extras

with extras.serve_extra("launch.gateway", launcher=True):  # one line naming the serve extra
    from proteus.gateway import app as gateway
    from proteus.gateway import keys, runner

_ARTIFACT = flags.DEFINE_string("artifact", None, "Artifact directory (a text encoder).")
_MODELS_FILE = flags.DEFINE_string("models_file", None, "Upstreams per model (TOML or JSON).")
_KEYS_FILE = flags.DEFINE_string("keys_file", None, "Hashed API keys -> tenants; none: open.")
_USAGE_DB = flags.DEFINE_string("usage_db", "gateway_usage.sqlite3",
                                "SQLite file for usage and spend (':memory:' keeps none).")
_HOST = flags.DEFINE_string("host", "127.0.0.1", "Interface to listen on.")
_PORT = flags.DEFINE_integer("port", 8080, "TCP port.")
_DEFAULT_TAU = flags.DEFINE_float("default_tau", 0.8, "τ of requests naming none (open mode).")
_FALLBACK = flags.DEFINE_enum("fallback", None, list(operating.FALLBACKS),
                              "Infeasible τ: best_effort or refuse (422); default: the artifact's.")
_ORIGINS = flags.DEFINE_list("allowed_origins", [], "Web origins (e.g. https://app.example) "
                             "that may call the gateway from a browser; others get 403.")
_MAX_OUTPUT = flags.DEFINE_integer("max_output_tokens", 4096, "Output bound of a request that "
                                   "states no max_tokens (reserved, and added to the request).")
_WATCH_KEYS = flags.DEFINE_float("watch_keys_s", 2.0, "Reload the keys file this often when it "
                                 "changed (0: on SIGHUP only).")
_LOG_LEVEL = flags.DEFINE_string("log_level", "info", "uvicorn log level.")
_HASH_KEY = flags.DEFINE_string("hash_key", None, "Print this key's SHA-256 digest and exit.")
_NEW_KEY = flags.DEFINE_bool("new_key", False, "Print a fresh key and its digest and exit.")


def main(argv):
    del argv
    if _HASH_KEY.value or _NEW_KEY.value:
        key = _HASH_KEY.value or keys.new_key()
        print(f"key_sha256 = \"{keys.hash_key(key)}\"" if _HASH_KEY.value else
              f"key: {key}\nkey_sha256 = \"{keys.hash_key(key)}\"")
        return
    for flag in (_ARTIFACT, _MODELS_FILE):
        if not flag.value:
            sys.exit(f"--{flag.name} is required")
    # httpx logs every upstream request at INFO, which absl enables: one line per proxied call.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    settings = gateway.GatewaySettings(usage_db=_USAGE_DB.value,
                                       open_default_tau=_DEFAULT_TAU.value,
                                       allowed_origins=tuple(_ORIGINS.value),
                                       max_output_tokens=_MAX_OUTPUT.value,
                                       watch_keys_s=_WATCH_KEYS.value)
    # ConfigError, ArtifactError, UsageDatabaseError and check_host's refusal are ValueErrors
    # with a message naming the file, entry or setting
    try:
        app_ = gateway.gateway_from_files(_ARTIFACT.value, _MODELS_FILE.value, _KEYS_FILE.value,
                                          _HOST.value, _FALLBACK.value, settings)
    except ValueError as err:
        sys.exit(f"launch.gateway: {err}")
    runner.serve(app_, _HOST.value, _PORT.value, _LOG_LEVEL.value)


if __name__ == "__main__":
    app.run(main)
