"""Gateway files, keys, rate limits and usage: small pieces checked by hand (no router, no HTTP)."""

import contextlib
import datetime
import hashlib
import json
import math
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from proteus.gateway import budget, completions, config, keys, pricing, usage
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
    ({"key_sha256": DIGEST, "default_tau": 0.8, "infeasible_tau": "ignore"},
     r"infeasible_tau must be one of \['best_effort', 'refuse'\]"),
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


def _reserve(budgets, tenant, usd):
    return budgets.reserve(tenant, pricing.Reservation(usd, "a test"))


def test_budgets_hold_settle_persist_and_roll(tmp_path):
    day = ["2026-01-31"]
    path = str(tmp_path / "u.sqlite3")
    tenant = config.Tenant("a", 0.8, budget_usd_per_day=1.0, budget_usd_per_month=1.5)
    store = usage.UsageStore(path, clock=lambda: day[0])
    budgets = budget.Budgets(store)
    first = _reserve(budgets, tenant, 0.75)
    with pytest.raises(GatewayError, match="holds \\$0.750000 .* this day") as err:
        _reserve(budgets, tenant, 0.5)  # 0 spent + 0.75 held + 0.5 > 1
    assert err.value.status == 402 and budgets.held("a") == 0.75
    second = _reserve(budgets, tenant, 0.25)  # exactly the budget is allowed
    budgets.settle(first, "small", 0.6, prompt_tokens=10)  # charged less than held
    budgets.release(second, "small")  # failed: nothing charged
    assert budgets.spent("a") == (0.6, 0.6) and budgets.held("a") == 0.0
    with pytest.raises(RuntimeError, match="closed twice"):
        budgets.release(second, "small")
    store.close()
    store = usage.UsageStore(path, clock=lambda: day[0])  # a restart keeps the spend
    budgets = budget.Budgets(store)
    got = usage.report(store, tenant, *budgets.spent("a"), budgets.held("a"))
    assert got["spend_usd"] == {"day": 0.6, "month": 0.6} and got["reserved_usd"] == 0.0
    assert got["month_by_model"]["small"]["prompt_tokens"] == 10
    assert got["month_by_model"]["small"]["requests"] == 2  # one charged, one failed
    assert got["month_by_model"]["small"]["errors"] == 1
    day[0] = "2026-02-01"  # a new day and month
    budgets.settle(_reserve(budgets, tenant, 1.0), "small", 1.0)
    day[0] = "2026-02-03"
    with pytest.raises(GatewayError, match="this month"):
        _reserve(budgets, tenant, 0.6)
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
    budgets = budget.Budgets(store)
    tenant = config.Tenant("a", 0.8, budget_usd_per_day=10.0)
    budgets.settle(_reserve(budgets, tenant, 0.5), "small", 0.5)
    slow = store._db = _SlowWrites(store._db)
    flusher = threading.Thread(target=store.flush)  # the app's flush, in its worker thread
    flusher.start()
    assert slow.started.wait(10)
    t0 = time.perf_counter()
    budgets.settle(_reserve(budgets, tenant, 0.25), "large", 0.25)  # the request path
    assert time.perf_counter() - t0 < 1.0 and flusher.is_alive()
    slow.release.set()
    flusher.join()
    got = usage.report(store, tenant, *budgets.spent("a"), 0.0)  # committed and pending rows
    assert got["spend_usd"]["day"] == 0.75
    assert {m: v["requests"] for m, v in got["month_by_model"].items()} == {"large": 1,
                                                                           "small": 1}
    store.close()


def test_usage_kept_through_a_locked_shutdown(tmp_path):
    """A database locked past the shutdown's retries: the rows go to <db>.unsaved.json, and
    the next start writes them (and deletes the file)."""
    path = str(tmp_path / "u.sqlite3")
    store = usage.UsageStore(path, clock=lambda: "2026-01-31", busy_timeout_s=0.01)
    store.record("a", "small", 0.5, prompt_tokens=7)
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as other:
        other.execute("BEGIN EXCLUSIVE")
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            store.flush()
        assert store.pending_rows() == 1  # not lost: pending again
        store.close(timeout_s=0.2)
        other.execute("COMMIT")
    assert os.path.exists(path + usage.UNSAVED_SUFFIX)
    store = usage.UsageStore(path, clock=lambda: "2026-01-31")
    assert budget.Budgets(store).spent("a") == (0.5, 0.5)  # pending again, counted
    store.flush()
    assert not os.path.exists(path + usage.UNSAVED_SUFFIX)
    store.close()
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT requests, prompt_tokens FROM usage").fetchall() == [(1, 7)]


@pytest.mark.parametrize("content", [b"this is not a database" * 100, None])
def test_an_unusable_usage_database_is_refused_naming_it(tmp_path, content):
    path = tmp_path / "usage.sqlite3"
    if content is None:
        path = tmp_path / "no" / "such" / "dir" / "usage.sqlite3"
    else:
        path.write_bytes(content)
    with pytest.raises(usage.UsageDatabaseError, match=str(path)):
        usage.UsageStore(str(path))


def test_reservation_and_usage_checks_by_hand():
    price = {"usd_per_input_token": 1e-6, "usd_per_output_token": 2e-6}
    dear = {"usd_per_input_token": 1e-5, "usd_per_output_token": 2e-5}
    assert pricing.output_bound({"max_tokens": 100}, True, 4096) == (100, 1, None)
    assert pricing.output_bound({"max_completion_tokens": 50, "n": 2}, True, 4096) == (50, 2, None)
    assert pricing.output_bound({}, True, 4096) == (4096, 1, "max_completion_tokens")
    assert pricing.output_bound({"prompt": ["a", "b"], "best_of": 3}, False, 64) == (
        64, 6, "max_tokens")  # 2 prompts x best_of 3
    for bad in ({"max_tokens": 0}, {"max_tokens": True}, {"n": 1000}, {"max_tokens": 1.5}):
        with pytest.raises(GatewayError) as err:
            pricing.output_bound(bad, True, 4096)
        assert err.value.status == 400
    one = pricing.reservation(200, 100, 2, [("m", price)], c_hat=9.0)
    assert one.usd == pytest.approx(200 * 1e-6 + 100 * 2 * 2e-6) and "'m'" in one.why
    both = pricing.reservation(200, 100, 1, [("m", price), ("fb", dear)], c_hat=9.0)
    assert both.usd == pytest.approx(200 * 1e-5 + 100 * 2e-5)  # the dearer fallback
    assert pricing.reservation(200, 100, 1, [("m", None)], c_hat=0.3).usd == 0.3  # no price
    assert pricing.checked_usage({"prompt_tokens": 3, "completion_tokens": 5.0}, 10) == (3, 5)
    assert pricing.checked_usage({"prompt_tokens": 3}, 10) == (3, 0)
    assert pricing.checked_usage(None, 10) is None
    for bad in ({"prompt_tokens": -1}, {"prompt_tokens": 11}, {"completion_tokens": math.nan},
                {"prompt_tokens": "3"}, {"prompt_tokens": True}, {}, [3], {"prompt_tokens": 0.5}):
        with pytest.raises(pricing.BadUsage):
            pricing.checked_usage(bad, 10)
    assert pricing.token_cost(3, 5, price) == pytest.approx(13e-6)


def test_prompt_text():
    chat = {"messages": [{"role": "system", "content": "be brief"},
                         {"role": "user", "content": [{"type": "text", "text": "hi"},
                                                      {"type": "image_url", "image_url": {}}]}]}
    assert completions.prompt_text(chat, chat=True) == "be brief\nhi"
    assert completions.prompt_text({"prompt": ["a", "b"]}, chat=False) == "a\nb"



def test_read_table_toml_or_json_by_extension(tmp_path):
    assert config.read_table(write(tmp_path, "t.toml", "[a]\nb = 1\n")) == {"a": {"b": 1}}
    assert config.read_table(write(tmp_path, "t.json", {"a": [1, 2]})) == {"a": [1, 2]}
    assert config.read_table(write(tmp_path, "t.conf", '{"x": 1}')) == {"x": 1}  # not .toml: JSON
    with pytest.raises(config.ConfigError, match=r"t\.toml\.json: cannot read"):
        config.read_table(write(tmp_path, "t.toml.json", "[a]\nb = 1\n"))  # TOML read as JSON
    with pytest.raises(config.ConfigError, match=r"bad\.toml: cannot read"):
        config.read_table(write(tmp_path, "bad.toml", "[a\n"))
    with pytest.raises(config.ConfigError, match=r"missing\.toml: cannot read"):
        config.read_table(str(tmp_path / "missing.toml"))
    with pytest.raises(config.ConfigError, match="expected a table/object at the top level"):
        config.read_table(write(tmp_path, "list.json", [1, 2]))


def test_tau_of_model_name_then_header_then_default():
    acme = config.Tenant("acme", default_tau=0.8, tau_min=0.6, tau_max=0.95)
    assert completions.tau_of("proteus", None, acme) == 0.8  # names no τ: the default
    assert completions.tau_of("proteus", b"0.7", acme) == 0.7  # the header
    assert completions.tau_of("proteus-0.9", b"0.7", acme) == 0.9  # the model name wins
    assert completions.tau_of("proteus-0.95", None, acme) == 0.95  # the range is inclusive
    for model, header, code, status, message in [
        ("gpt-4o", None, "model_not_found", 404, "the model 'gpt-4o' is not served here"),
        ("proteusx", None, "model_not_found", 404, "not served here"),
        (None, None, "model_not_found", 404, "the model None is not served here"),
        ("proteus-abc", None, "invalid_tau", 400, "τ 'abc' from the model name is not a number"),
        ("proteus", b"nan", "invalid_tau", 400, "τ 'nan' from the x-proteus-tau header"),
        ("proteus-inf", None, "invalid_tau", 400, "τ 'inf' from the model name"),
        ("proteus-0.5", None, "tau_out_of_range", 400,
         r"τ=0\.5 is outside tenant 'acme''s allowed range \[0\.6, 0\.95\]"),
        ("proteus", b"1", "tau_out_of_range", 400, r"τ=1 is outside"),
    ]:
        with pytest.raises(GatewayError, match=message) as err:
            completions.tau_of(model, header, acme)
        assert (err.value.status, err.value.code) == (status, code)


def test_request_ids_share_a_process_prefix_and_count_up():
    first, second = completions.new_request_id(), completions.new_request_id()
    pattern = re.compile(r"^req-[0-9a-f]{12}-(\d+)$")  # "req-" + 6 random bytes in hex + "-" + n
    a, b = pattern.match(first), pattern.match(second)
    assert a and b and first[:17] == second[:17]
    assert int(b.group(1)) == int(a.group(1)) + 1


def test_utc_day_and_its_month_prefix():
    leap_night = datetime.datetime(2024, 2, 29, 23, 59, 59, tzinfo=datetime.UTC)
    assert usage.utc_day(leap_night) == "2024-02-29"
    assert usage.utc_day(leap_night)[:7] == "2024-02"
    before = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    today = usage.utc_day()
    after = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d")
    assert today in (before, after)  # None: now, in UTC


def test_utc_day_of_a_time_in_another_zone_is_its_utc_day():
    # 01:00 on 1 March at UTC+2 is 23:00 on 29 February in UTC (this formatted the local day)
    plus_two = datetime.timezone(datetime.timedelta(hours=2))
    assert usage.utc_day(datetime.datetime(2024, 3, 1, 1, 0, tzinfo=plus_two)) == "2024-02-29"
    assert usage.utc_day(datetime.datetime(2024, 3, 1, 1, 0)) == "2024-03-01"  # naive: UTC


def test_launcher_hash_key_and_open_refusal():
    run = lambda *flags: subprocess.run([sys.executable, "-m", "launch.gateway", *flags],
                                        capture_output=True, text=True, timeout=120)
    assert run("--hash_key=sk-a").stdout.strip() == f'key_sha256 = "{DIGEST}"'
    refused = run("--artifact=x", "--models_file=y", "--host=0.0.0.0")
    assert refused.returncode != 0 and "without a keys file" in refused.stderr
