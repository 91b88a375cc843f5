"""The JSON request protocol shared by the HTTP server and the command line.

A request object is {"query": str, "tau": float} or {"features": [D floats], "tau": float}; a
batch is {"requests": [such objects]}. Parsing checks everything a client can get wrong and
raises `RequestError` with the HTTP status and a message that says what to fix (400 malformed
JSON, 413 over a limit, 422 anything else, including a τ refused by the "refuse" fallback).
Valid objects become items (features | None, text | None, OperatingPoint) that `route_items`
routes in one call.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import numpy as np

from proteus.operating import OperatingPoint
from proteus.serving import Router

ITEM_KEYS = frozenset({"query", "features", "tau"})


@dataclasses.dataclass(frozen=True)
class Limits:
    """Request size limits."""

    max_query_chars: int = 8192  # longer text queries get 413
    max_body_bytes: int = 4 << 20  # larger request bodies get 413
    max_batch_items: int = 1024  # queries per batch request; more get 413


class RequestError(Exception):
    """A request the server rejects: HTTP `status` with a `detail` message."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


def parse_body(body: bytes, router: Router, limits: Limits):
    """Validate a POST /v1/route body.

    Returns:
      (items, is_batch): items are (features [D] float32 | None, text | None, OperatingPoint).

    Raises:
      RequestError: with the status and message the client gets.
    """
    if len(body) > limits.max_body_bytes:
        raise RequestError(413, f"request body of {len(body)} bytes exceeds the limit of "
                                f"{limits.max_body_bytes}")
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise RequestError(400, f"malformed JSON: {err}") from None
    if isinstance(payload, dict) and "requests" in payload:
        reqs = payload["requests"]
        if set(payload) != {"requests"} or not isinstance(reqs, list) or not reqs:
            raise RequestError(422, "a batch request is {\"requests\": [non-empty list of "
                                    "{\"query\"|\"features\", \"tau\"} objects]} and nothing else")
        if len(reqs) > limits.max_batch_items:
            raise RequestError(413, f"{len(reqs)} requests in one batch exceed the limit of "
                                    f"{limits.max_batch_items}")
        return [parse_item(r, router, limits, f"requests[{i}]: ")
                for i, r in enumerate(reqs)], True
    return [parse_item(payload, router, limits, "")], False


def parse_item(obj: Any, router: Router, limits: Limits, where: str):
    """One {"query"|"features", "tau"} object -> (features | None, text | None, OperatingPoint)."""
    if not isinstance(obj, dict):
        raise RequestError(422, f"{where}expected a JSON object with 'tau' and one of 'query' or "
                                f"'features', got {type(obj).__name__}")
    unknown = sorted(set(obj) - ITEM_KEYS)
    if unknown:
        raise RequestError(422, f"{where}unknown field(s) {unknown}; expected 'tau' and one of "
                                "'query' or 'features'")
    if "tau" not in obj:
        raise RequestError(422, f"{where}missing 'tau' (the accuracy target, a number in [0, 1])")
    if ("query" in obj) == ("features" in obj):
        raise RequestError(422, f"{where}give exactly one of 'query' (text) or 'features'")
    try:
        point = router.resolve(obj["tau"])
        if "query" in obj:
            return None, _check_text(obj["query"], router, limits), point
        features = np.asarray(obj["features"])
        if features.ndim != 1 or features.dtype.kind not in "iuf":
            raise ValueError(f"'features' must be a list of {router.feature_dim} numbers")
        return router.check_features(features)[0], None, point
    except ValueError as err:  # InfeasibleTauError included: refused under "refuse"
        raise RequestError(422, f"{where}{err}") from None


def _check_text(query: Any, router: Router, limits: Limits) -> str:
    if not isinstance(query, str) or not query.strip():
        raise ValueError(f"'query' must be a non-empty string, got {query!r:.80}")
    if len(query) > limits.max_query_chars:
        raise RequestError(413, f"query of {len(query)} characters exceeds the limit of "
                                f"{limits.max_query_chars}")
    router.require_text()
    return query


def route_items(router: Router, items: list) -> list[dict[str, Any]]:
    """Route parsed items in one call: [B] (features | None, text | None, point) -> [B] dicts."""
    x = np.empty((len(items), router.feature_dim), np.float32)
    text_rows = [i for i, item in enumerate(items) if item[1] is not None]
    if text_rows:
        x[text_rows] = router.encode([items[i][1] for i in text_rows])
    for i, (features, _, _) in enumerate(items):
        if features is not None:
            x[i] = features
    points: list[OperatingPoint] = [item[2] for item in items]
    return router.records(router.run_points(x, points, np.arange(len(items))))
