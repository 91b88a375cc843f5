"""The online controller inside the gateway (`GatewaySettings.online`, `launch.gateway --online`).

With it on, every completion is routed through `proteus.online.service.OnlineService`: its
(tenant, τ bucket) stream is served at the controller's operating point, a model the tenant's
drift test excluded is routed around (`proteus.online.drift`), and `POST /v1/feedback` feeds the
controller and the drift test. Without it the gateway only measures feedback
(`proteus.gateway.feedback`).

State: the online store's tables (`proteus.online.store`: decisions, controllers, model health)
live in the gateway's usage database (`--usage_db`, SQLite in WAL mode, next to the usage table),
with `synchronous=FULL`: a routing decision is committed before its request is forwarded, and a
feedback before it is acknowledged, so a killed gateway loses nothing it acknowledged
(tests/test_gateway_online.py kills one with SIGKILL and restarts it). Each commit is an fsync,
so routing batches run in a worker thread, never on the event loop.

Visible: `GET /v1/controllers` (the caller's streams and model tests; every tenant's in open
mode), Prometheus gauges refreshed at each scrape (`proteus_online_*`, `proteus.gateway.metrics`),
a WARNING log line per exclusion or readmission, and the response header
`x-proteus-rerouted-from` when the router's choice was routed around.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any

from proteus.gateway.metrics import GatewayMetrics
from proteus.online import http as online_http
from proteus.online.service import OnlineService, OnlineSettings, tenant_of
from proteus.online.store import Store
from proteus.serving import Router
from proteus.serving.protocol import Item, Limits

log = logging.getLogger(__name__)


class OnlineGateway:
    """The gateway's `OnlineService`, its store in the usage database, and its metrics."""

    def __init__(self, router: Router, settings: OnlineSettings, db_path: str,
                 metrics: GatewayMetrics):
        if db_path == ":memory:":
            log.warning("the online controllers' state is not kept (--usage_db=:memory:): a "
                        "restart starts every stream at its static point")
        self.store = Store(db_path, time.time)
        self.service = OnlineService(router, self.store, settings)
        self.metrics = metrics
        self.service.listeners.append(self._count_event)

    def close(self) -> None:
        self.store.close()

    def route(self, items: Sequence[Item], tenants: Sequence[str],
              request_ids: Sequence[str]) -> list[dict[str, Any] | Exception]:
        """One routing batch (a worker thread: it commits): a decision dict or an exception per
        item (`OnlineService.route_items`)."""
        out = self.service.route_items(items, tenants, request_ids)
        for tenant, decision in zip(tenants, out, strict=True):
            if isinstance(decision, dict) and decision.get("rerouted_from"):
                self.metrics.online_rerouted.labels(tenant, decision["rerouted_from"]).inc()
        return out

    def feedback(self, raw: bytes, tenant: str, max_batch: int,
                 limits: Limits) -> tuple[int, dict[str, Any]]:
        """POST /v1/feedback for `tenant` (a worker thread: it commits): (status, JSON body);
        accepted scores are counted in the gateway's feedback metrics, per τ bucket."""
        status, body = online_http.feedback_response(self.service, raw, max_batch, tenant,
                                                     limits)
        for res in body.get("results", [body]):
            if res.get("status") == "accepted":
                tau = float(res["stream"].rpartition("|")[2])
                label = f"{tau:g}"
                self.metrics.feedback.labels(tenant, label).inc()
                self.metrics.feedback_tau.labels(tenant, label).set(tau)
                self.metrics.feedback_score.labels(tenant, label).inc(res["score"])
        return status, body

    def controllers(self, tenant: str | None) -> dict[str, Any]:
        """GET /v1/controllers: `tenant`'s streams and model tests (None: all of them)."""
        return self.service.controllers(tenant)

    def refresh_metrics(self) -> None:
        """Set the online gauges from the service's state (at each scrape of /metrics)."""
        state = self.service.controllers(counts=False)
        m = self.metrics
        for key, c in state["controllers"].items():
            labels = (tenant_of(key), f"{c['tau']:g}")
            m.online_position.labels(*labels).set(c["position"])
            m.online_offset.labels(*labels).set(c["offset"])
            m.online_operating_tau.labels(*labels).set(c["operating_tau"])
            if c["acc_est"] is not None:
                m.online_accuracy.labels(*labels).set(c["acc_est"])
        for key, h in state["models"].items():
            tenant, _, model = key.rpartition("|")
            m.online_excluded.labels(tenant, model).set(float(h["excluded"]))
            if h["shortfall"] is not None:
                m.online_shortfall.labels(tenant, model).set(h["shortfall"])

    def _count_event(self, event: dict[str, Any]) -> None:
        self.metrics.online_events.labels(event["tenant"], event["model"], event["event"]).inc()
