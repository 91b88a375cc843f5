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

With the online controller on (`proteus.gateway.online`; gauges set at each scrape):
  proteus_online_position{tenant, tau}                   the stream's knob position (accuracy
                                                         units, `proteus.online.adapter`)
  proteus_online_offset{tenant, tau}                     ... minus its static point's position
  proteus_online_operating_tau{tenant, tau}              the operating τ' it is served at
  proteus_online_accuracy_estimate{tenant, tau}          â: recent realised accuracy
  proteus_online_model_excluded{tenant, model}           1 while the model is routed around
  proteus_online_model_shortfall{tenant, model}          predicted − realised accuracy of the
                                                         model's recent feedback (p̂ − s)
  proteus_online_model_events_total{tenant, model, event}  exclusions and readmissions
  proteus_online_rerouted_total{tenant, model}           requests routed around the model
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

        self._online(r)

    def _online(self, r: CollectorRegistry) -> None:
        stream, model = ["tenant", "tau"], ["tenant", "model"]
        self.online_position = Gauge("proteus_online_position", "Knob position of the stream "
                                     "(accuracy units)", stream, registry=r)
        self.online_offset = Gauge("proteus_online_offset", "Knob position minus the static "
                                   "point's", stream, registry=r)
        self.online_operating_tau = Gauge("proteus_online_operating_tau",
                                          "Operating tau' the stream is served at", stream,
                                          registry=r)
        self.online_accuracy = Gauge("proteus_online_accuracy_estimate",
                                     "Recent realised accuracy of the stream", stream, registry=r)
        self.online_excluded = Gauge("proteus_online_model_excluded",
                                     "1 while the model is routed around", model, registry=r)
        self.online_shortfall = Gauge("proteus_online_model_shortfall",
                                      "Predicted minus realised accuracy of the model's recent "
                                      "feedback", model, registry=r)
        self.online_events = Counter("proteus_online_model_events",
                                     "Exclusions and readmissions of a model", [*model, "event"],
                                     registry=r)
        self.online_rerouted = Counter("proteus_online_rerouted", "Requests routed around the "
                                       "model", model, registry=r)

    def exposition(self) -> bytes:
        """The Prometheus text format of every collector."""
        return generate_latest(self.registry)
