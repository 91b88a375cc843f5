"""The one request model: every front door turns what it is sent into the same validated `Item`.

Front doors: the HTTP router (`POST /v1/route`, `proteus.serving.server`), the command line's
JSONL (`proteus.serving.route_cli`), the gateway (`proteus.gateway.completions`: τ from the model
name, a header or the key; the prompt text; the task header) and the online service
(`proteus.online.http`); the Python API (`Router.decide`) routes whole arrays with the same checks
(`proteus.serving.inputs`), without the size limits a network door needs.

  parse_json(body, limits)      bytes -> a JSON value: size (413), malformed (400), depth (400)
  make_item(router, tau, ...)   one request's τ, query or features, and task -> `Item`
  parse_item(obj, ...)          a {"query" | "features", "tau", "task"?} object -> `make_item`
  parse_body(body, ...)         one such object, or {"requests": [...]} whose items fail alone

τ is checked once, where it is resolved to its operating point (`Router.resolve`: `check_tau`,
then the τ -> point rule; "refuse" raises `InfeasibleTauError`); the task by the router's
`proteus.tasks.TaskVocabulary` (one rule for unknown names); text by `check_text` and
`max_query_chars`; features by `check_features`. A refusal is a `RequestError` with the HTTP
status, an OpenAI-style `code` (invalid_json, body_too_large, invalid_tau, infeasible_tau,
invalid_task, invalid_query, query_too_long, invalid_features, invalid_request, batch_too_large)
and a message that says what to fix, prefixed with "requests[i]: " inside a batch.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any, NamedTuple

import numpy as np

from proteus.operating import InfeasibleTauError, OperatingPoint
from proteus.serving import Router, check_task_name, check_text
from proteus.tasks import UNKNOWN

ITEM_KEYS = frozenset({"query", "features", "tau", "task"})


class Item(NamedTuple):
    """One validated request: its features [D] float32 or its text, its operating point (whose
    `tau` is the request's checked τ), and its task id."""

    features: np.ndarray | None
    text: str | None
    point: OperatingPoint
    where: str = ""  # "requests[i]: " inside a batch, prefixed to this item's error messages
    task_id: int = UNKNOWN  # id in the router's `tasks` (`proteus.tasks`)


@dataclasses.dataclass(frozen=True)
class Limits:
    """Request size limits of every network front door."""

    max_query_chars: int = 8192  # longer text queries get 413 (the gateway routes on the last
    # this-many characters of a prompt instead)
    max_body_bytes: int = 4 << 20  # larger request bodies get 413
    max_batch_items: int = 1024  # queries per batch request; more get 413
    max_json_depth: int = 16  # deeper JSON nesting gets 400 (a valid request nests 4 levels)


class RequestError(Exception):
    """A request the server rejects: HTTP `status`, a `detail` message, an OpenAI-style `code`."""

    def __init__(self, status: int, detail: str, code: str = "invalid_request"):
        super().__init__(detail)
        self.status, self.detail, self.code = status, detail, code

    def to_json(self) -> dict[str, Any]:
        """The per-item error of a batch answer."""
        return {"error": {"status": self.status, "code": self.code, "message": self.detail}}


def parse_json(body: bytes, limits: Limits) -> Any:
    """A request body as a JSON value, within `limits`.

    Raises:
      RequestError: 413 over max_body_bytes, 400 malformed or nested deeper than max_json_depth.
    """
    if len(body) > limits.max_body_bytes:
        raise RequestError(413, f"request body of {len(body)} bytes exceeds the limit of "
                                f"{limits.max_body_bytes}", "body_too_large")
    try:
        payload = json.loads(body)
    except RecursionError:  # the C decoder recurses once per nesting level
        payload = _TOO_DEEP
    except (ValueError, UnicodeDecodeError) as err:
        raise RequestError(400, f"malformed JSON: {err}", "invalid_json") from None
    if payload is _TOO_DEEP or nested_deeper(payload, limits.max_json_depth):
        raise RequestError(400, f"JSON nested deeper than {limits.max_json_depth} levels",
                           "invalid_json")
    return payload


_TOO_DEEP = object()


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


def make_item(router: Router, tau: Any, *, query: Any = None, features: Any = None,
              task: Any = None, limits: Limits = Limits(), where: str = "") -> Item:
    """One request -> `Item` (give `query` or `features`); RequestError naming what is wrong."""
    try:
        point = router.resolve(tau)
    except InfeasibleTauError as err:
        raise RequestError(422, f"{where}{err}", "infeasible_tau") from None
    except ValueError as err:
        raise RequestError(422, f"{where}{err}", "invalid_tau") from None
    try:
        task_id = int(router.task_ids(check_task_name(task), 1)[0])
    except ValueError as err:
        raise RequestError(422, f"{where}{err}", "invalid_task") from None
    if query is None:
        try:
            return Item(router.check_features(features, one_row=True), None, point, where,
                        task_id)
        except ValueError as err:
            raise RequestError(422, f"{where}{err}", "invalid_features") from None
    try:
        check_text(query, "'query'")
    except ValueError as err:
        raise RequestError(422, f"{where}{err}", "invalid_query") from None
    if len(query) > limits.max_query_chars:
        raise RequestError(413, f"{where}query of {len(query)} characters exceeds the limit of "
                                f"{limits.max_query_chars}", "query_too_long")
    try:
        router.require_text()
    except ValueError as err:
        raise RequestError(422, f"{where}{err}", "invalid_query") from None
    return Item(None, query, point, where, task_id)


def parse_item(obj: Any, router: Router, limits: Limits, where: str) -> Item:
    """One {"query"|"features", "tau", "task"?} object -> `Item`; RequestError naming what is
    wrong."""
    if not isinstance(obj, dict):
        raise RequestError(422, f"{where}expected a JSON object with 'tau' and one of 'query' or "
                                f"'features', got {type(obj).__name__}")
    unknown = sorted(set(obj) - ITEM_KEYS)
    if unknown:
        raise RequestError(422, f"{where}unknown field(s) {unknown}; expected 'tau', one of "
                                "'query' or 'features', and optionally 'task'")
    if "tau" not in obj:
        raise RequestError(422, f"{where}missing 'tau' (the accuracy target, a number in [0, 1])",
                           "invalid_tau")
    if ("query" in obj) == ("features" in obj):
        raise RequestError(422, f"{where}give exactly one of 'query' (text) or 'features'")
    return make_item(router, obj["tau"], query=obj.get("query"), features=obj.get("features"),
                     task=obj.get("task"), limits=limits, where=where)


def parse_body(body: bytes, router: Router, limits: Limits
               ) -> tuple[list[Item | RequestError], bool]:
    """Validate a POST /v1/route body.

    Returns:
      (one `Item` per request, or the `RequestError` of a bad item of a batch: it fails alone,
      is_batch).

    Raises:
      RequestError: the body as a whole (malformed, too large or deep, not a request or a
        batch), or the one request of a body that is not a batch.
    """
    payload = parse_json(body, limits)
    if isinstance(payload, dict) and "requests" in payload:
        reqs = payload["requests"]
        if set(payload) != {"requests"} or not isinstance(reqs, list) or not reqs:
            raise RequestError(422, "a batch request is {\"requests\": [non-empty list of "
                                    "{\"query\"|\"features\", \"tau\"} objects]} and nothing else")
        if len(reqs) > limits.max_batch_items:
            raise RequestError(413, f"{len(reqs)} requests in one batch exceed the limit of "
                                    f"{limits.max_batch_items}", "batch_too_large")
        return [_item_or_error(r, router, limits, f"requests[{i}]: ")
                for i, r in enumerate(reqs)], True
    return [parse_item(payload, router, limits, "")], False


def _item_or_error(obj: Any, router: Router, limits: Limits, where: str) -> Item | RequestError:
    try:
        return parse_item(obj, router, limits, where)
    except RequestError as err:
        return err
