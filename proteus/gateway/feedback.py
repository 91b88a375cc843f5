"""Realised accuracy against τ: feedback on the gateway's completions (`POST /v1/feedback`).

The gateway remembers each completion it answered (HTTP 200) by the id of its
x-proteus-request-id header, with its tenant and τ bucket (τ rounded up to `bucket`, as the
online controllers' streams: `proteus.online.service.bucket_tau`); the oldest are forgotten
beyond `capacity`. A client that learns how good an answer was posts its score, with the body
schema, parsing, validation and HTTP statuses of the online router's endpoint
(`proteus.online.http.feedback_response`, reused, not copied): one item
`{"request_id", "score" in [0, 1], "cost"?}` or a batch `{"feedback": [items]}`; 200 accepted,
409 duplicate (the first score stands), 404 unknown (never answered, forgotten, or another
tenant's: a key can only score its own requests), 422 invalid. `cost` is accepted for the
schema's sake and not used: the gateway meters spend itself.

Metrics (`proteus.gateway.metrics`), per tenant and τ bucket (label `tau`, e.g. "0.9"):
  proteus_gateway_feedback_total           scores received
  proteus_gateway_feedback_score_total     their sum
  proteus_gateway_feedback_tau             the bucket's τ (a gauge, to plot against)
so realised accuracy is rate(..._feedback_score_total) / rate(..._feedback_total), one line per
series, next to the τ it was asked for.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Sequence
from typing import Any

from proteus.gateway.metrics import GatewayMetrics
from proteus.online.service import bucket_tau, check_item, result


class FeedbackLedger:
    """Answered request ids -> (tenant, τ bucket, score or None); thread-safe, bounded."""

    def __init__(self, metrics: GatewayMetrics, bucket: float = 0.01, capacity: int = 200_000):
        if not 0.0 < bucket <= 1.0 or capacity < 1:
            raise ValueError(f"need 0 < bucket <= 1 and capacity >= 1, got {bucket}, {capacity}")
        self.metrics, self.bucket, self.capacity = metrics, bucket, capacity
        self._answered: collections.OrderedDict[str, list] = collections.OrderedDict()
        self._lock = threading.Lock()

    def record(self, request_id: str, tenant: str, tau: float) -> None:
        """Remember an answered completion (forgetting the oldest beyond `capacity`)."""
        with self._lock:
            self._answered[request_id] = [tenant, bucket_tau(tau, self.bucket), None]
            while len(self._answered) > self.capacity:
                self._answered.popitem(last=False)

    def feedback(self, items: Sequence[Any], tenant: str) -> list[dict[str, Any]]:
        """Apply `tenant`'s feedback items; one result dict per item (`check_item` statuses)."""
        results = []
        with self._lock:
            for item in map(check_item, items):
                results.append(item if "status" in item else self._one(item, tenant))
        return results

    def _one(self, item: dict[str, Any], tenant: str) -> dict[str, Any]:
        rid, score = item["request_id"], item["score"]
        entry = self._answered.get(rid)
        if entry is None or entry[0] != tenant:  # no oracle of other tenants' ids
            return result(rid, "unknown", "no answered completion of this key with "
                                   "this request_id (or it is older than the gateway keeps)")
        if entry[2] is not None:
            return result(rid, "duplicate", f"already scored {entry[2]:g}; the first "
                                   "score stands")
        entry[2] = score
        label = f"{entry[1]:g}"
        self.metrics.feedback.labels(tenant, label).inc()
        self.metrics.feedback_score.labels(tenant, label).inc(score)
        self.metrics.feedback_tau.labels(tenant, label).set(entry[1])
        return result(rid, "accepted", "", tau=entry[1])
