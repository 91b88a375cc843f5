"""API keys -> tenants, and per-tenant request-rate limits.

Keys are never stored: the keys file holds SHA-256 hex digests and a request's bearer token is
hashed and looked up (a dict lookup on a digest, so no timing leak about which prefix matched).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Mapping

from proteus.gateway.config import Tenant
from proteus.gateway.errors import GatewayError

KEY_PREFIX = "sk-proteus-"


def hash_key(key: str) -> str:
    """The SHA-256 hex digest a keys file stores for `key` (same as `printf %s KEY | sha256sum`)."""
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    """A fresh random API key (256 bits)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


class KeyRing:
    """Bearer token -> Tenant. With no keys (`open`), every request is the `open_tenant`."""

    def __init__(self, by_hash: Mapping[str, Tenant] | None, open_tenant: Tenant):
        self.open = by_hash is None
        self.open_tenant = open_tenant
        self.replace(by_hash or {})

    def replace(self, by_hash: Mapping[str, Tenant]) -> None:
        """New keys and tenants for the requests that authenticate from now on (a reload):
        one assignment each, so a request sees the old ring or the new one, never a mix."""
        self._by_hash = dict(by_hash)
        self.tenants = ({t.name: t for t in self._by_hash.values()} if not self.open
                        else {self.open_tenant.name: self.open_tenant})

    def authenticate(self, authorization: bytes | None) -> Tenant:
        """The tenant of an `Authorization: Bearer <key>` header value.

        Raises:
          GatewayError: 401 when keys are configured and the header is absent or unknown.
        """
        if self.open:
            return self.open_tenant
        if not authorization:
            raise GatewayError(401, "missing API key: send 'Authorization: Bearer <key>'",
                               "authentication_error", "missing_api_key")
        scheme, _, token = authorization.decode("latin-1").partition(" ")
        tenant = self._by_hash.get(hash_key(token.strip())) if scheme.lower() == "bearer" else None
        if tenant is None:
            raise GatewayError(401, "incorrect API key provided", "authentication_error",
                               "invalid_api_key")
        return tenant


class RateLimiter:
    """Token bucket per tenant: `requests_per_minute` sustained, bursts up to one minute's worth.

    In memory, per process: a restart refills every bucket (rates, unlike budgets, need no
    history).
    """

    def __init__(self, clock=time.monotonic):
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # tenant -> (tokens, last refill)

    def acquire(self, tenant: Tenant) -> None:
        """Take one request from `tenant`'s bucket.

        Raises:
          GatewayError: 429 (rate_limit_exceeded, with Retry-After) when the bucket is empty.
        """
        rate = tenant.requests_per_minute
        if rate is None:
            return
        now = self._clock()
        tokens, last = self._buckets.get(tenant.name, (rate, now))
        tokens = min(rate, tokens + (now - last) * rate / 60.0)
        if tokens < 1.0:
            self._buckets[tenant.name] = (tokens, now)
            wait = (1.0 - tokens) * 60.0 / rate if rate > 0 else 60.0
            raise GatewayError(429, f"rate limit of {rate:g} requests per minute exceeded for "
                                    f"tenant {tenant.name!r}; retry in {wait:.1f} s",
                               "rate_limit_error", "rate_limit_exceeded",
                               {"retry-after": str(max(1, round(wait)))})
        self._buckets[tenant.name] = (tokens - 1.0, now)
