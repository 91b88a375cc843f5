"""The gateway's two configuration files, TOML or JSON (by extension), checked on load.

Models file: where each of the artifact's models is served (every model must be listed)::

    [defaults]                       # optional; applies to every model below
    base_url = "http://127.0.0.1:9000/v1"
    api_key_env = "UPSTREAM_API_KEY" # environment variable holding the upstream's key (optional)
    timeout_s = 60

    [models."gpt-4-1106-preview"]    # the artifact's model name
    upstream_model = "gpt-4o"        # the name the upstream knows it by (default: the same)
    fallback = "claude-v2"           # tried once when this upstream times out or fails (5xx/429)

Keys file: API keys (only their SHA-256 hex digests) -> tenants::

    [tenants.team-a]
    key_sha256 = ["9f86d081..."]     # `python -m launch.gateway --hash_key=KEY`, or sha256sum
    default_tau = 0.8                # τ when the request names none
    tau_range = [0.6, 0.95]          # requests outside it get 400
    budget_usd_per_day = 5.0         # optional; routed spend per UTC day
    budget_usd_per_month = 100.0     # optional; per UTC calendar month
    requests_per_minute = 600        # optional
    infeasible_tau = "refuse"        # optional; "best_effort" (default): a τ the router cannot
                                     # serve feasibly is answered by its most accurate point and
                                     # marked (x-proteus-feasible: false); "refuse": 422

Every error names the file and the entry, and says what to fix.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from typing import Any

SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")
MODEL_FIELDS = {"base_url", "upstream_model", "api_key_env", "timeout_s", "fallback"}
TENANT_FIELDS = {"key_sha256", "default_tau", "tau_range", "budget_usd_per_day",
                 "budget_usd_per_month", "requests_per_minute", "infeasible_tau"}
INFEASIBLE = ("best_effort", "refuse")  # a tenant's answer to an infeasible τ


class ConfigError(ValueError):
    """A models or keys file that cannot be used; the message names the file and entry."""


@dataclasses.dataclass(frozen=True)
class Upstream:
    """Where one model is served."""

    name: str  # the artifact's model name
    base_url: str  # OpenAI-compatible base, e.g. https://api.openai.com/v1 (no trailing /)
    upstream_model: str  # the `model` field sent upstream
    timeout_s: float
    fallback: str | None  # another entry's name, tried once when this one fails
    api_key: str | None = dataclasses.field(default=None, repr=False)  # read from api_key_env


@dataclasses.dataclass(frozen=True)
class Tenant:
    """What one API key may do."""

    name: str
    default_tau: float
    tau_min: float = 0.0
    tau_max: float = 1.0
    budget_usd_per_day: float | None = None
    budget_usd_per_month: float | None = None
    requests_per_minute: float | None = None
    infeasible_tau: str = "best_effort"  # or "refuse" (see the module docstring)


def read_table(path: str) -> dict[str, Any]:
    """A TOML (.toml) or JSON (anything else) file as a dict; ConfigError when unreadable."""
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f) if path.endswith(".toml") else json.load(f)
    except (OSError, ValueError) as err:  # TOMLDecodeError and JSONDecodeError are ValueErrors
        raise ConfigError(f"{path}: cannot read: {err}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a table/object at the top level")
    return data


def _section(data: Mapping[str, Any], key: str, path: str, required: bool) -> dict[str, Any]:
    section = data.get(key, {} if not required else None)
    if not isinstance(section, dict) or (required and not section):
        raise ConfigError(f"{path}: needs a non-empty [{key}] table")
    return section


def _number(value: Any, where: str, lo: float = 0.0, hi: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not lo <= value <= hi:
        raise ConfigError(f"{where}: expected a number in [{lo}, {hi}], got {value!r}")
    return float(value)


def load_models(path: str, router_models: Sequence[str],
                environ: Mapping[str, str] = os.environ) -> dict[str, Upstream]:
    """Read a models file; every router model must have an entry (extra entries only as fallbacks).

    Raises:
      ConfigError: naming the file and entry (unknown field, missing base_url, bad timeout,
        unknown fallback, unset API-key variable, a router model with no entry).
    """
    data = read_table(path)
    unknown = set(data) - {"defaults", "models"}
    if unknown:
        raise ConfigError(f"{path}: unknown top-level keys {sorted(unknown)} "
                          "(expected [defaults] and [models.<name>])")
    defaults = _section(data, "defaults", path, required=False)
    entries = _section(data, "models", path, required=True)
    upstreams = {}
    for name, entry in entries.items():
        where = f"{path}: [models.{json.dumps(name)}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a table")
        fields = {**defaults, **entry}
        if set(fields) - MODEL_FIELDS:
            raise ConfigError(f"{where}: unknown fields {sorted(set(fields) - MODEL_FIELDS)} "
                              f"(allowed: {sorted(MODEL_FIELDS)})")
        base_url = fields.get("base_url")
        if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"{where}: base_url must be an http(s) URL, got {base_url!r}")
        env = fields.get("api_key_env")
        if env is not None and not environ.get(env):
            raise ConfigError(f"{where}: the environment variable {env!r} (api_key_env) is unset")
        upstreams[name] = Upstream(
            name=name, base_url=base_url.rstrip("/"),
            upstream_model=str(fields.get("upstream_model", name)),
            timeout_s=_number(fields.get("timeout_s", 60.0), f"{where}: timeout_s", 1e-3),
            fallback=fields.get("fallback"), api_key=environ.get(env) if env else None)
    _check_models(path, upstreams, router_models)
    return upstreams


def _check_models(path: str, upstreams: dict[str, Upstream], router_models: Sequence[str]):
    missing = [m for m in router_models if m not in upstreams]
    if missing:
        raise ConfigError(f"{path}: no entry for the artifact's models {missing}; every model the "
                          "router can choose needs [models.<name>] with a base_url")
    fallbacks = {u.fallback for u in upstreams.values()} - {None}
    for u in upstreams.values():
        if u.fallback is not None and (u.fallback not in upstreams or u.fallback == u.name):
            raise ConfigError(f"{path}: [models.{json.dumps(u.name)}]: fallback {u.fallback!r} "
                              "must name another entry of this file")
        if u.name not in router_models and u.name not in fallbacks:
            raise ConfigError(f"{path}: [models.{json.dumps(u.name)}] is neither one of the "
                              f"artifact's models {list(router_models)} nor anyone's fallback")


def load_keys(path: str) -> dict[str, Tenant]:
    """Read a keys file -> {sha256 hex of an API key: its Tenant}.

    Raises:
      ConfigError: naming the file and tenant (bad digest, a digest listed twice, τ outside
        [0, 1] or a default outside the tenant's range, negative budget or rate).
    """
    data = read_table(path)
    if set(data) - {"tenants"}:
        raise ConfigError(f"{path}: unknown top-level keys {sorted(set(data) - {'tenants'})} "
                          "(expected [tenants.<name>])")
    by_hash: dict[str, Tenant] = {}
    for name, entry in _section(data, "tenants", path, required=True).items():
        where = f"{path}: [tenants.{json.dumps(name)}]"
        if not isinstance(entry, dict):
            raise ConfigError(f"{where}: expected a table")
        if set(entry) - TENANT_FIELDS:
            raise ConfigError(f"{where}: unknown fields {sorted(set(entry) - TENANT_FIELDS)} "
                              f"(allowed: {sorted(TENANT_FIELDS)})")
        tenant = _tenant(name, entry, where)
        hashes = entry.get("key_sha256")
        hashes = [hashes] if isinstance(hashes, str) else hashes
        if not isinstance(hashes, list) or not hashes:
            raise ConfigError(f"{where}: key_sha256 must be a digest or a non-empty list of them")
        for digest in hashes:
            if not isinstance(digest, str) or not SHA256_HEX.match(digest.lower()):
                raise ConfigError(f"{where}: key_sha256 entry {digest!r} is not a 64-character "
                                  "hex SHA-256 digest (store hashes, never keys)")
            if digest.lower() in by_hash:
                raise ConfigError(f"{where}: key digest {digest[:12]}... is also listed for "
                                  f"tenant {by_hash[digest.lower()].name!r}")
            by_hash[digest.lower()] = tenant
    return by_hash


def _tenant(name: str, entry: dict[str, Any], where: str) -> Tenant:
    tau_range = entry.get("tau_range", [0.0, 1.0])
    if not isinstance(tau_range, list) or len(tau_range) != 2:
        raise ConfigError(f"{where}: tau_range must be [min, max], got {tau_range!r}")
    lo = _number(tau_range[0], f"{where}: tau_range[0]", 0.0, 1.0)
    hi = _number(tau_range[1], f"{where}: tau_range[1]", lo, 1.0)
    if "default_tau" not in entry:
        raise ConfigError(f"{where}: default_tau is required")
    default = _number(entry["default_tau"], f"{where}: default_tau (inside tau_range)", lo, hi)
    optional = {k: (None if entry.get(k) is None else _number(entry[k], f"{where}: {k}"))
                for k in ("budget_usd_per_day", "budget_usd_per_month", "requests_per_minute")}
    infeasible = entry.get("infeasible_tau", "best_effort")
    if infeasible not in INFEASIBLE:
        raise ConfigError(f"{where}: infeasible_tau must be one of {list(INFEASIBLE)}, got "
                          f"{infeasible!r}")
    return Tenant(name=name, default_tau=default, tau_min=lo, tau_max=hi,
                  infeasible_tau=infeasible, **optional)
