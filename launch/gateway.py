"""Serve the OpenAI-compatible gateway: route each request by τ and forward it upstream.

    python -m launch.gateway --artifact=artifacts/rb --models_file=models.toml \
        --keys_file=keys.toml --usage_db=usage.sqlite3 --port=8080
    python -m launch.gateway --artifact=artifacts/rb --demo     # a local trial: fake upstream,
                                                               # generated files, a printed key
    python -m launch.gateway --artifact=artifacts/rb --write_models_template=models.toml
    python -m launch.gateway ... --online     # steer each (tenant, τ) stream by its feedback
    python -m launch.gateway --new_key          # a fresh API key and the digest to store
    python -m launch.gateway --hash_key=sk-...  # the digest of an existing key

File formats: `proteus.gateway.config`; endpoints: `proteus.gateway.app`; the online controller:
`proteus.gateway.online` and docs/online.md. Without --keys_file the gateway runs open (no keys,
budgets or rate limits) and refuses any host but loopback. The keys file is reloaded on SIGHUP
(`kill -HUP <pid>`) and when it changes (every --watch_keys_s), without dropping requests; a file
that does not load keeps the keys in force. SIGHUP also reloads the artifact from --artifact
(replaced in place, e.g. by `launch.onboard --overwrite`, or a re-pointed symlink) with
--models_file, which must name an upstream for every model of it; requests in flight finish on
the old router and nothing is dropped (docs/onboard.md; not with --online: restart instead). One
access-log line per completion request (tenant, τ, model, status, latency, cost; --noaccess_log:
none) and one warning per failed upstream call. Budgets, limits and the rest: docs/gateway.md
and docs/security.md.
"""

import dataclasses
import logging
import os
import sys
import tempfile

from absl import app, flags

from proteus import operating
from proteus.serving import Router, extras, http_guards

with extras.serve_extra("launch.gateway", launcher=True):  # one line naming the serve extra
    from proteus.gateway import app as gateway
    from proteus.gateway import demo, fake, keys, runner
    from proteus.gateway.config import load_keys, load_models
    from proteus.online import drift
    from proteus.online.service import OnlineSettings

_ARTIFACT = flags.DEFINE_string("artifact", None, "Artifact directory (a text encoder).")
_MODELS_FILE = flags.DEFINE_string("models_file", None, "Upstreams per model (TOML or JSON).")
_KEYS_FILE = flags.DEFINE_string("keys_file", None, "Hashed API keys -> tenants; none: open.")
_USAGE_DB = flags.DEFINE_string("usage_db", "gateway_usage.sqlite3",
                                "SQLite file for usage and spend, and the online controllers' "
                                "state with --online (':memory:' keeps none).")
_HOST = flags.DEFINE_string("host", "127.0.0.1", "Interface to listen on.")
_PORT = flags.DEFINE_integer("port", 8080, "TCP port.",
                              lower_bound=0, upper_bound=65535)
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
_ACCESS_LOG = flags.DEFINE_bool("access_log", True, "One log line per completion request.")
_ONLINE = flags.DEFINE_bool("online", False, "Steer each (tenant, τ bucket) stream by its "
                            "feedback (POST /v1/feedback) and route around a model that falls "
                            "below its predictions; state in --usage_db (docs/online.md).")
_DRIFT = flags.DEFINE_bool("drift", True, "With --online: the per-model drift test.")
_DRIFT_ARL = flags.DEFINE_float("drift_arl", drift.DriftConfig.arl, "With --online: feedbacks "
                                "of a model between false exclusions, at least.")
_PROBE_EVERY = flags.DEFINE_integer("probe_every", drift.DriftConfig.probe_every, "With "
                                    "--online: 1 in this many requests of an excluded model "
                                    "still goes to it (its readmission test's evidence).")
_DRIFT_MIX = flags.DEFINE_bool("drift_mix", drift.DriftConfig.mix, "With --online: while a "
                               "model is routed around, serve a stream off its point on the "
                               "held-out envelope of the router's points without it.")
_FEEDBACK_TTL = flags.DEFINE_float("feedback_ttl_s", 86400.0, "With --online: feedback later "
                                   "than this after its request is stored, not applied.")
_DEMO = flags.DEFINE_bool("demo", False, "A local trial on loopback: a fake upstream answers "
                          "every model; models and keys files are generated (in --demo_dir) "
                          "and the key is printed.")
_DEMO_DIR = flags.DEFINE_string("demo_dir", None, "Where --demo writes its files (default: a "
                                "new temporary directory).")
_TEMPLATE = flags.DEFINE_string("write_models_template", None, "Write a models file for "
                                "--artifact's models to this path (never overwritten) and exit.")
_HASH_KEY = flags.DEFINE_string("hash_key", None, "Print this key's SHA-256 digest and exit.")
_NEW_KEY = flags.DEFINE_bool("new_key", False, "Print a fresh key and its digest and exit.")


def settings() -> gateway.GatewaySettings:
    online = None
    if _ONLINE.value:
        online = OnlineSettings(feedback_ttl=_FEEDBACK_TTL.value, drift=drift.DriftConfig(
            enabled=_DRIFT.value, arl=_DRIFT_ARL.value, probe_every=_PROBE_EVERY.value,
            mix=_DRIFT_MIX.value))
    return gateway.GatewaySettings(usage_db=_USAGE_DB.value, open_default_tau=_DEFAULT_TAU.value,
                                   allowed_origins=tuple(_ORIGINS.value),
                                   max_output_tokens=_MAX_OUTPUT.value,
                                   watch_keys_s=_WATCH_KEYS.value, online=online)


def run_demo(config: gateway.GatewaySettings) -> None:
    """--demo: the fake upstream in a thread, generated files, the gateway on loopback."""
    if not http_guards.is_loopback(_HOST.value):
        sys.exit("launch.gateway: --demo listens on loopback only (drop --host)")
    try:
        router = Router.load(_ARTIFACT.value, _FALLBACK.value, config.route.max_batch)
        router.require_text()
    except ValueError as err:
        sys.exit(f"launch.gateway: {err}")
    workdir = _DEMO_DIR.value or tempfile.mkdtemp(prefix="proteus-demo-")
    hi = router.policy.tau_range[1]
    tau = 0.8 if hi is None or hi >= 0.8 else int(hi * 100) / 100  # a feasible τ to try
    with runner.server_thread(fake.FakeUpstream(record=False)) as upstream:
        files = demo.write_demo_files(workdir, router.models, upstream.url + "/v1", tau)
        if _USAGE_DB.value == _USAGE_DB.default:  # the demo's files stay together
            config = dataclasses.replace(config, usage_db=files.usage_db)
        app_ = gateway.create_gateway(router, load_models(files.models_file, router.models),
                                      load_keys(files.keys_file), config, files.keys_file)
        print(demo.banner(f"http://127.0.0.1:{_PORT.value}", upstream.url, files, tau),
              flush=True)
        runner.serve(app_, "127.0.0.1", _PORT.value, _LOG_LEVEL.value)


def main(argv):
    del argv
    if _HASH_KEY.value or _NEW_KEY.value:
        key = _HASH_KEY.value or keys.new_key()
        print(f"key_sha256 = \"{keys.hash_key(key)}\"" if _HASH_KEY.value else
              f"key: {key}\nkey_sha256 = \"{keys.hash_key(key)}\"")
        return
    if not _ARTIFACT.value:
        sys.exit("--artifact is required")
    if _TEMPLATE.value:
        try:
            demo.write_models_template(_TEMPLATE.value, Router.load(_ARTIFACT.value,
                                                                    warmup=0).models)
        except FileExistsError:
            sys.exit(f"launch.gateway: {_TEMPLATE.value} exists; not overwritten")
        except (ValueError, OSError) as err:  # the artifact (ArtifactError) or the template's path
            sys.exit(f"launch.gateway: {err}")
        print(f"wrote {os.path.abspath(_TEMPLATE.value)}: edit base_url / api_key_env per model")
        return
    # httpx logs every upstream request at INFO, which absl enables: one line per proxied call.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if not _ACCESS_LOG.value:
        logging.getLogger("proteus.gateway.access").setLevel(logging.WARNING)
    if _DEMO.value:
        return run_demo(settings())
    if not _MODELS_FILE.value:
        sys.exit("--models_file is required (or --demo; --write_models_template writes one)")
    # ConfigError, ArtifactError, UsageDatabaseError and check_host's refusal are ValueErrors
    # with a message naming the file, entry or setting
    try:
        app_ = gateway.gateway_from_files(_ARTIFACT.value, _MODELS_FILE.value, _KEYS_FILE.value,
                                          _HOST.value, _FALLBACK.value, settings())
    except ValueError as err:
        sys.exit(f"launch.gateway: {err}")
    runner.serve(app_, _HOST.value, _PORT.value, _LOG_LEVEL.value)


if __name__ == "__main__":
    app.run(main)
