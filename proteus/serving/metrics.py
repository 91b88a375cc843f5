"""Prometheus metrics of the router service (`launch.serve`), in a registry of its own per app.

Names and labels (scrape `GET /metrics`; like the gateway's, `proteus.gateway.metrics`):
  proteus_router_requests_total{status}       answered POST /v1/route requests, by HTTP status
  proteus_router_decisions_total{model}       routing decisions, by chosen model
  proteus_router_tau                          histogram of the τ of routed queries
  proteus_router_routing_seconds              histogram: request body in -> answer out (parsing,
                                              queueing, encoding and routing; not the network)
  proteus_router_errors_total{status, code}   failed requests, and failed items of batch requests
                                              (code: `RequestError.code`, e.g. invalid_tau)
  proteus_router_infeasible_total{action}     queries at a τ the router cannot serve feasibly:
                                              best_effort (routed to the most accurate point,
                                              flagged) or refused (422, the refuse fallback)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from proteus.serving.protocol import RequestError

TAU_BUCKETS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 0.99, 1.0)
FAST_BUCKETS = (1e-4, 2.5e-4, 5e-4, 1e-3, 2e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)
INFEASIBLE_CODE = "infeasible_tau"  # `protocol`'s code of a τ refused by the refuse fallback


class RouterMetrics:
    """The router service's collectors; `observe` records one answered request, `exposition()`
    is the /metrics body."""

    content_type = CONTENT_TYPE_LATEST

    def __init__(self):
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.requests = Counter("proteus_router_requests", "Answered POST /v1/route requests",
                                ["status"], registry=r)
        self.decisions = Counter("proteus_router_decisions", "Routing decisions by chosen model",
                                 ["model"], registry=r)
        self.tau = Histogram("proteus_router_tau", "Accuracy target τ of routed queries",
                             buckets=TAU_BUCKETS, registry=r)
        self.routing = Histogram("proteus_router_routing_seconds",
                                 "Request body in to answer out (parse, queue, encode, route)",
                                 buckets=FAST_BUCKETS, registry=r)
        self.errors = Counter("proteus_router_errors", "Failed requests and failed batch items",
                              ["status", "code"], registry=r)
        self.infeasible = Counter("proteus_router_infeasible",
                                  "Queries at a τ the router cannot serve feasibly", ["action"],
                                  registry=r)

    def observe(self, status: int, outcomes: Sequence[Any], seconds: float | None = None) -> None:
        """One answered request: its HTTP `status`, the `outcomes` of its items (a decision dict,
        or the exception an item or the whole request failed with) and its service time."""
        self.requests.labels(str(status)).inc()
        if seconds is not None:
            self.routing.observe(seconds)
        for outcome in outcomes:
            if isinstance(outcome, dict):
                self.decisions.labels(outcome["model"]).inc()
                self.tau.observe(outcome["tau"])
                if not outcome["feasible"]:
                    self.infeasible.labels("best_effort").inc()
            elif isinstance(outcome, RequestError):
                self.errors.labels(str(outcome.status), outcome.code).inc()
                if outcome.code == INFEASIBLE_CODE:
                    self.infeasible.labels("refused").inc()
            else:  # an exception of the routing itself: a 500 (see `server._internal`)
                self.errors.labels("500", "routing_failed").inc()

    def exposition(self) -> bytes:
        """The Prometheus text format of every collector."""
        return generate_latest(self.registry)
