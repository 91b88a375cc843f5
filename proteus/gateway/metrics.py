"""Prometheus metrics of the gateway (`prometheus-client`), in a registry of its own per app.

Names and labels (scrape `GET /metrics`):
  proteus_gateway_requests_total{endpoint, status}       answered completion requests
  proteus_gateway_decisions_total{model, tenant}         routing decisions (model = chosen one)
  proteus_gateway_tau{tenant}                            histogram of requested τ
  proteus_gateway_routing_seconds                        histogram: prompt -> decision
  proteus_gateway_routing_batch_size                     histogram: prompts routed per call
  proteus_gateway_upstream_seconds{model}                histogram: upstream call (to headers)
  proteus_gateway_overhead_seconds                       histogram: the x-proteus-overhead-ms
  proteus_gateway_errors_total{code}                     error answers by OpenAI-style code
  proteus_gateway_fallbacks_total{model, fallback}       upstream failures served by a fallback
  proteus_gateway_spend_usd_total{tenant, model}         routed spend (see `proteus.gateway.app`)
  proteus_gateway_feedback_total{tenant, tau}            realised scores received, per τ bucket
  proteus_gateway_feedback_score_total{tenant, tau}      their sum (see `proteus.gateway.feedback`)
  proteus_gateway_feedback_tau{tenant, tau}              gauge: the τ bucket's value
  proteus_gateway_infeasible_total{tenant}               requests at a τ the router cannot serve
                                                         feasibly (answered best effort, or 422)
  proteus_gateway_bad_usage_total{model}                 upstream answers whose usage could not
                                                         be trusted (charged the reservation)
  proteus_gateway_budget_overrun_usd_total{tenant}       charges beyond their reservation
  proteus_gateway_reserved_usd{tenant}                   gauge: held for requests in flight
  proteus_gateway_usage_pending_rows                     gauge: usage rows not yet in SQLite
  proteus_gateway_usage_flush_failures_total             SQLite writes that failed (retried)
  proteus_gateway_key_reloads_total{result}              keys-file reloads ("ok" or "error")
  proteus_gateway_artifact_reloads_total{result}         artifact reloads ("ok" or "error")
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

TAU_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.99, 1.0)
FAST_BUCKETS = (1e-4, 2.5e-4, 5e-4, 1e-3, 2e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
UPSTREAM_BUCKETS = (1e-3, 5e-3, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class GatewayMetrics:
    """The gateway's collectors; `exposition()` is the /metrics body."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self):
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("proteus_gateway_requests", "Answered requests",
                                ["endpoint", "status"], registry=r)
        self.decisions = Counter("proteus_gateway_decisions", "Routing decisions",
                                 ["model", "tenant"], registry=r)
        self.tau = Histogram("proteus_gateway_tau", "Requested accuracy target τ", ["tenant"],
                             buckets=TAU_BUCKETS, registry=r)
        self.routing = Histogram("proteus_gateway_routing_seconds", "Prompt to routing decision",
                                 buckets=FAST_BUCKETS, registry=r)
        self.batch_size = Histogram("proteus_gateway_routing_batch_size",
                                    "Prompts routed together in one call",
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256), registry=r)
        self.upstream = Histogram("proteus_gateway_upstream_seconds",
                                  "Upstream call until its response headers (streams) or body",
                                  ["model"], buckets=UPSTREAM_BUCKETS, registry=r)
        self.overhead = Histogram("proteus_gateway_overhead_seconds",
                                  "Gateway time excluding the upstream call", buckets=FAST_BUCKETS,
                                  registry=r)
        self.errors = Counter("proteus_gateway_errors", "Error answers by code", ["code"],
                              registry=r)
        self.fallbacks = Counter("proteus_gateway_fallbacks", "Requests served by a fallback",
                                 ["model", "fallback"], registry=r)
        self.spend = Counter("proteus_gateway_spend_usd", "Routed spend in USD",
                             ["tenant", "model"], registry=r)
        self.feedback = Counter("proteus_gateway_feedback", "Realised scores received",
                                ["tenant", "tau"], registry=r)
        self.feedback_score = Counter("proteus_gateway_feedback_score",
                                      "Sum of realised scores (over feedback_total: accuracy)",
                                      ["tenant", "tau"], registry=r)
        self.feedback_tau = Gauge("proteus_gateway_feedback_tau", "The τ bucket's target",
                                  ["tenant", "tau"], registry=r)

        self.infeasible = Counter("proteus_gateway_infeasible", "Requests at an infeasible τ",
                                  ["tenant"], registry=r)
        self.bad_usage = Counter("proteus_gateway_bad_usage", "Upstream usage not trusted",
                                 ["model"], registry=r)
        self.overrun = Counter("proteus_gateway_budget_overrun_usd",
                               "Charges beyond their reservation (USD)", ["tenant"], registry=r)
        self.reserved = Gauge("proteus_gateway_reserved_usd", "USD held for requests in flight",
                              ["tenant"], registry=r)
        self.usage_pending = Gauge("proteus_gateway_usage_pending_rows",
                                   "Usage rows not yet committed to SQLite", registry=r)
        self.flush_failures = Counter("proteus_gateway_usage_flush_failures",
                                      "Usage writes to SQLite that failed (retried)", registry=r)
        self.reloads = Counter("proteus_gateway_key_reloads", "Keys-file reloads", ["result"],
                               registry=r)
        self.artifact_reloads = Counter("proteus_gateway_artifact_reloads", "Artifact reloads",
                                        ["result"], registry=r)

    def exposition(self) -> bytes:
        """The Prometheus text format of every collector."""
        return generate_latest(self.registry)
