"""Gateway files, keys, rate limits and usage: small pieces checked by hand (no router, no HTTP)."""

import hashlib
import json
import subprocess
import sys
import threading
import time

import pytest

from proteus.gateway import completions, config, keys, usage
from proteus.gateway.errors import GatewayError

MODELS = ("small", "large")
DIGEST = hashlib.sha256(b"sk-a").hexdigest()


def write(tmp_path, name: str, data) -> str:
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


def test_models_file_defaults_and_env(tmp_path):
    path = write(tmp_path, "m.toml", """
[defaults]
base_url = "http://127.0.0.1:9/v1/"
api_key_env = "GW_TEST_KEY"
[models.small]
[models.large]
upstream_model = "big-1"
timeout_s = 3
fallback = "small"
""")
    ups = config.load_models(path, MODELS, environ={"GW_TEST_KEY": "secret"})
    assert ups["small"].base_url == "http://127.0.0.1:9/v1"
    assert ups["small"].upstream_model == "small"
    assert ups["large"].upstream_model == "big-1" and ups["large"].timeout_s == 3.0
    assert ups["large"].fallback == "small" and ups["large"].api_key == "secret"
    assert "secret" not in repr(ups["large"])


@pytest.mark.parametrize("models, environ, message", [
    ({"small": {"base_url": "http://x"}}, {}, r"no entry for the artifact's models \['large'\]"),
    ({"small": {"base_url": "ftp://x"}, "large": {"base_url": "http://x"}}, {},
     r'\[models."small"\]: base_url must be an http'),
    ({"small": {"base_url": "http://x", "timeout": 3}, "large": {"base_url": "http://x"}}, {},
     r'\[models."small"\]: unknown fields \[\'timeout\'\]'),
    ({"small": {"base_url": "http://x", "api_key_env": "NOPE"}, "large": {"base_url": "http://x"}},
     {}, r"'NOPE' \(api_key_env\) is unset"),
    ({"small": {"base_url": "http://x", "fallback": "tiny"}, "large": {"base_url": "http://x"}},
     {}, r"fallback 'tiny' must name another entry"),
    ({"small": {"base_url": "http://x"}, "large": {"base_url": "http://x"},
      "typo": {"base_url": "http://x"}}, {}, r'\[models."typo"\] is neither'),
])
def test_models_file_errors_name_file_and_entry(tmp_path, models, environ, message):
    path = write(tmp_path, "models.json", {"models": models})
    with pytest.raises(config.ConfigError, match=message) as err:
        config.load_models(path, MODELS, environ=environ)
    assert str(err.value).startswith(path)


def test_keys_file(tmp_path):
    path = write(tmp_path, "k.json", {"tenants": {
        "a": {"key_sha256": [DIGEST.upper()], "default_tau": 0.8, "tau_range": [0.6, 0.9],
              "budget_usd_per_day": 2, "requests_per_minute": 60}}})
    tenant = config.load_keys(path)[DIGEST]
    assert (tenant.name, tenant.tau_min, tenant.tau_max, tenant.budget_usd_per_day,
            tenant.budget_usd_per_month) == ("a", 0.6, 0.9, 2.0, None)


@pytest.mark.parametrize("entry, message", [
    ({"key_sha256": "sk-a", "default_tau": 0.8}, "not a 64-character hex SHA-256"),
    ({"key_sha256": DIGEST}, "default_tau is required"),
    ({"key_sha256": DIGEST, "default_tau": 0.5, "tau_range": [0.6, 0.9]}, "default_tau"),
    ({"key_sha256": DIGEST, "default_tau": 0.8, "budget_usd_per_day": -1}, "budget_usd_per_day"),
    ({"key_sha256": DIGEST, "default_tau": 0.8, "rpm": 1}, r"unknown fields \['rpm'\]"),
])
def test_keys_file_errors(tmp_path, entry, message):
    path = write(tmp_path, "keys.json", {"tenants": {"team": entry}})
    with pytest.raises(config.ConfigError, match=message) as err:
        config.load_keys(path)
    assert str(err.value).startswith(f'{path}: [tenants."team"]')


def test_keys_file_duplicate_digest_and_bad_toml(tmp_path):
    entry = {"key_sha256": DIGEST, "default_tau": 0.8}
    path = write(tmp_path, "keys.json", {"tenants": {"a": entry, "b": entry}})
    with pytest.raises(config.ConfigError, match="also listed for tenant 'a'"):
        config.load_keys(path)
    with pytest.raises(config.ConfigError, match="cannot read"):
        config.load_keys(write(tmp_path, "keys.toml", "[tenants.a\n"))


def test_keyring_and_hash():
    assert keys.hash_key("sk-a") == DIGEST and keys.new_key().startswith(keys.KEY_PREFIX)
    tenant = config.Tenant("a", 0.8)
    ring = keys.KeyRing({DIGEST: tenant}, config.Tenant("open", 0.8))
    assert ring.authenticate(b"Bearer sk-a") is tenant
    for header, code in ((None, "missing_api_key"), (b"Bearer sk-b", "invalid_api_key"),
                         (b"Basic sk-a", "invalid_api_key")):
        with pytest.raises(GatewayError) as err:
            ring.authenticate(header)
        assert (err.value.status, err.value.code) == (401, code)
    assert keys.KeyRing(None, tenant).authenticate(None) is tenant


def test_rate_limiter_refills():
    now = [0.0]
    limiter = keys.RateLimiter(clock=lambda: now[0])
    tenant = config.Tenant("a", 0.8, requests_per_minute=2)
    limiter.acquire(tenant)
    limiter.acquire(tenant)
    with pytest.raises(GatewayError) as err:
        limiter.acquire(tenant)
    assert err.value.status == 429 and err.value.headers["retry-after"] == "30"
    now[0] = 30.0  # one request's worth refilled (2 per 60 s)
    limiter.acquire(tenant)
    limiter.acquire(config.Tenant("b", 0.8))  # no limit


def test_usage_budgets_persist_and_roll(tmp_path):
    day = ["2026-01-31"]
    path = str(tmp_path / "u.sqlite3")
    tenant = config.Tenant("a", 0.8, budget_usd_per_day=1.0, budget_usd_per_month=1.5)
    store = usage.UsageStore(path, clock=lambda: day[0])
    store.check_budget(tenant, 1.0)  # exactly the budget is allowed
    store.record("a", "small", 0.75, prompt_tokens=10)
    with pytest.raises(GatewayError, match="this day") as err:
        store.check_budget(tenant, 0.5)
    assert err.value.status == 402
    store.close()
    store = usage.UsageStore(path, clock=lambda: day[0])  # a restart keeps the spend
    report = store.report(tenant)
    assert report["spend_usd"] == {"day": 0.75, "month": 0.75}
    assert report["month_by_model"]["small"]["prompt_tokens"] == 10
    day[0] = "2026-02-01"  # a new day and month
    store.check_budget(tenant, 1.0)
    day[0] = "2026-02-02"
    store.record("a", "small", 1.0)
    day[0] = "2026-02-03"
    with pytest.raises(GatewayError, match="this month"):
        store.check_budget(tenant, 0.6)
    store.close()


class _SlowWrites:
    """A sqlite3 connection whose writes hang until released (a WAL checkpoint, a slow disk)."""

    def __init__(self, db):
        self.db, self.started, self.release = db, threading.Event(), threading.Event()

    def executemany(self, *args):
        self.started.set()
        self.release.wait(10)
        return self.db.executemany(*args)

    def __getattr__(self, name):
        return getattr(self.db, name)

    def __enter__(self):
        return self.db.__enter__()

    def __exit__(self, *exc):
        return self.db.__exit__(*exc)


def test_usage_record_never_waits_on_the_database(tmp_path):
    store = usage.UsageStore(str(tmp_path / "u.sqlite3"), clock=lambda: "2026-01-31")
    tenant = config.Tenant("a", 0.8)
    store.record("a", "small", 0.5)
    slow = store._db = _SlowWrites(store._db)
    flusher = threading.Thread(target=store.flush)  # the app's flush, in its worker thread
    flusher.start()
    assert slow.started.wait(10)
    t0 = time.perf_counter()
    store.record("a", "large", 0.25)  # the request path: counters in memory only
    store.check_budget(tenant, 0.1)
    assert time.perf_counter() - t0 < 1.0 and flusher.is_alive()
    slow.release.set()
    flusher.join()
    report = store.report(tenant)  # flushes first: every counted request is in it
    assert report["spend_usd"]["day"] == 0.75
    assert {m: v["requests"] for m, v in report["month_by_model"].items()} == {"small": 1,
                                                                              "large": 1}
    store.close()


def test_prompt_text_and_usage_cost():
    chat = {"messages": [{"role": "system", "content": "be brief"},
                         {"role": "user", "content": [{"type": "text", "text": "hi"},
                                                      {"type": "image_url", "image_url": {}}]}]}
    assert completions.prompt_text(chat, chat=True) == "be brief\nhi"
    assert completions.prompt_text({"prompt": ["a", "b"]}, chat=False) == "a\nb"
    price = {"usd_per_input_token": 1e-6, "usd_per_output_token": 2e-6}
    assert completions.usage_cost({"prompt_tokens": 3, "completion_tokens": 5}, price) == \
        pytest.approx(13e-6)
    assert completions.usage_cost(None, price) is None


def test_launcher_hash_key_and_open_refusal():
    run = lambda *flags: subprocess.run([sys.executable, "-m", "launch.gateway", *flags],
                                        capture_output=True, text=True, timeout=120)
    assert run("--hash_key=sk-a").stdout.strip() == f'key_sha256 = "{DIGEST}"'
    refused = run("--artifact=x", "--models_file=y", "--host=0.0.0.0")
    assert refused.returncode != 0 and "without a keys file" in refused.stderr
