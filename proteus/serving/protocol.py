"""The JSON request protocol shared by the HTTP server and the command line.

A request object is {"query": str, "tau": float} or {"features": [D floats], "tau": float}, with
an optional "task" (a name of the artifact's `tasks`, or null) for a router with a task prior; a
batch is {"requests": [such objects]}. Parsing checks everything a client can get wrong and
raises `RequestError` with the HTTP status and a message that says what to fix (400 malformed
or too deeply nested JSON, 413 over a limit, 422 anything else, including a τ refused by the
"refuse" fallback). τ, features and text are checked by the same functions as the Python API
(`proteus.operating.check_tau`, `proteus.serving.check_features`,
`proteus.serving.check_text`). Valid objects become `Item`s, which
`proteus.serving.dispatch.route_items` routes in one call. This module only parses.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, NamedTuple

import numpy as np

from proteus.operating import OperatingPoint
from proteus.serving import Router, check_task_name, check_text

ITEM_KEYS = frozenset({"query", "features", "tau", "task"})


class Item(NamedTuple):
    """One parsed request object: its features [D] float32 or its text, and its operating point."""

    features: np.ndarray | None
    text: str | None
    point: OperatingPoint
    where: str = ""  # "requests[i]: " inside a batch, prefixed to this item's error messages
    task: int = -1  # index in the router's `tasks` (−1: none given, or a router without tasks)


@dataclasses.dataclass(frozen=True)
class Limits:
    """Request size limits."""

    max_query_chars: int = 8192  # longer text queries get 413
    max_body_bytes: int = 4 << 20  # larger request bodies get 413
    max_batch_items: int = 1024  # queries per batch request; more get 413
    max_json_depth: int = 16  # deeper JSON nesting gets 400 (a valid request nests 4 levels)


class RequestError(Exception):
    """A request the server rejects: HTTP `status` with a `detail` message."""

    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


def parse_body(body: bytes, router: Router, limits: Limits) -> tuple[list[Item], bool]:
    """Validate a POST /v1/route body.

    Returns:
      (items, is_batch).

    Raises:
      RequestError: with the status and message the client gets.
    """
    if len(body) > limits.max_body_bytes:
        raise RequestError(413, f"request body of {len(body)} bytes exceeds the limit of "
                                f"{limits.max_body_bytes}")
    try:
        payload = json.loads(body)
    except RecursionError:  # the C decoder recurses once per nesting level
        payload = None
    except (ValueError, UnicodeDecodeError) as err:
        raise RequestError(400, f"malformed JSON: {err}") from None
    if payload is None or nested_deeper(payload, limits.max_json_depth):
        raise RequestError(400, f"JSON nested deeper than {limits.max_json_depth} levels")
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


def nested_deeper(obj: Any, limit: int) -> bool:
    """True if JSON value `obj` nests lists/objects more than `limit` levels deep.

    Iterative (no recursion to exhaust); only containers are pushed, so a [B, D] batch costs one
    type check per number.
    """
    stack = [(obj, 1)] if isinstance(obj, dict | list) else []
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))
    return False


def parse_item(obj: Any, router: Router, limits: Limits, where: str) -> Item:
    """One {"query"|"features", "tau"} object -> `Item`; RequestError naming what is wrong."""
    if not isinstance(obj, dict):
        raise RequestError(422, f"{where}expected a JSON object with 'tau' and one of 'query' or "
                                f"'features', got {type(obj).__name__}")
    unknown = sorted(set(obj) - ITEM_KEYS)
    if unknown:
        raise RequestError(422, f"{where}unknown field(s) {unknown}; expected 'tau', one of "
                                "'query' or 'features', and optionally 'task'")
    if "tau" not in obj:
        raise RequestError(422, f"{where}missing 'tau' (the accuracy target, a number in [0, 1])")
    if ("query" in obj) == ("features" in obj):
        raise RequestError(422, f"{where}give exactly one of 'query' (text) or 'features'")
    try:
        point = router.resolve(obj["tau"])  # `check_tau`, as the Python API
        tasks = router.check_tasks(check_task_name(obj.get("task")), 1)
        task = -1 if tasks is None else int(tasks[0])
        if "query" in obj:
            return Item(None, _check_text(obj["query"], router, limits), point, where, task)
        return Item(router.check_features(obj["features"], one_row=True), None, point, where,
                    task)
    except ValueError as err:  # InfeasibleTauError included: refused under "refuse"
        raise RequestError(422, f"{where}{err}") from None


def _check_text(query: Any, router: Router, limits: Limits) -> str:
    check_text(query, "'query'")
    if len(query) > limits.max_query_chars:
        raise RequestError(413, f"query of {len(query)} characters exceeds the limit of "
                                f"{limits.max_query_chars}")
    router.require_text()
    return query
