"""The gateway's settings (what `launch.gateway`'s flags set) and the checks made on them at start.

`GatewaySettings` gathers the gateway's limits, intervals and switches; `check_host` refuses an
open gateway (no keys file) anywhere but loopback; `tau_warnings` names the tenants whose τ range
reaches past what the router serves feasibly (logged at start and at each reload).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from proteus.gateway.config import Tenant
from proteus.online.service import OnlineSettings
from proteus.serving import Router, server
from proteus.serving.http_guards import is_loopback


@dataclasses.dataclass(frozen=True)
class GatewaySettings:
    """What the `launch.gateway` flags set."""

    usage_db: str = ":memory:"  # SQLite file for usage and spend (":memory:": not kept)
    open_default_tau: float = 0.8  # τ for requests naming none when there is no keys file
    listed_taus: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.95)  # in GET /v1/models
    max_connections: int = 1024  # idle upstream connections kept (per pool)
    fast_transport: bool = True  # `proteus.gateway.transport`; False: httpx's default transport
    flush_every_s: float = 1.0  # usage -> SQLite interval (a failed write is retried then)
    usage_busy_timeout_s: float = 5.0  # one write waits this long for another process's lock
    usage_close_timeout_s: float = 30.0  # shutdown retries the last write this long
    feedback_bucket: float = 0.01  # τ bucket width of the realised-accuracy series
    feedback_capacity: int = 200_000  # answered request ids kept for feedback (oldest dropped)
    max_feedback_batch: int = 10_000  # items per POST /v1/feedback
    max_output_tokens: int = 4096  # output bound of a request stating no max_tokens (added to it)
    max_usage_tokens: int = 10_000_000  # upstream usage counts beyond this are not trusted
    allowed_origins: tuple[str, ...] = ()  # web origins that may call the gateway (CORS)
    watch_keys_s: float = 2.0  # reload the keys file this often when it changed (0: SIGHUP only)
    # The online controller (None: off, feedback is only measured): each (tenant, τ bucket)
    # stream routed at its controller's point, models routed around on drift; its state in
    # `usage_db` (`proteus.gateway.online`).
    online: OnlineSettings | None = None
    # HTTP limits and timeouts of every endpoint (max_body_bytes, max_json_depth,
    # read_timeout_s, header_timeout_s, keep_alive_timeout_s; the router encodes a prompt's last
    # max_query_chars characters), the mounted /v1/route service, and the completions' routing
    # batches (max_batch, max_queue, inline_routing: on the event loop for cheap encoders).
    route: server.ServerSettings = server.ServerSettings()


def check_host(host: str, keys: dict[str, Tenant] | None) -> None:
    """Refuse to serve without API keys anywhere but loopback (ValueError)."""
    if keys is None and not is_loopback(host):
        raise ValueError(f"refusing to listen on {host!r} without a keys file: an open gateway "
                         "spends its upstreams' money for anyone who reaches it; pass "
                         "--keys_file or listen on 127.0.0.1")


def tau_warnings(tenants: Mapping[str, Tenant], router: Router) -> list[str]:
    """One line per tenant whose τ range reaches past the router's feasible range (logged at
    start and at each reload)."""
    hi = router.policy.tau_range[1]
    out = []
    for tenant in sorted({t.name: t for t in tenants.values()}.values(), key=lambda t: t.name):
        if hi is None or tenant.tau_max > hi:
            action = ("refused (422)" if tenant.infeasible_tau == "refuse" else
                      "answered best effort, marked x-proteus-feasible: false")
            feasible = "no τ" if hi is None else f"τ <= {hi:.4f}"
            out.append(f"tenant {tenant.name!r} may ask for τ up to {tenant.tau_max:g}, but the "
                       f"router serves {feasible} feasibly; higher τ will be {action}")
    return out
