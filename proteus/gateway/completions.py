"""POST /v1/chat/completions and /v1/completions: τ, route, budget, forward, account.

τ comes from the model name (`proteus-0.9`), else the `x-proteus-tau` header, else the key's
default (`proteus` names no τ); it must lie in the tenant's range. The router chooses from the
prompt text: chat messages' text contents joined by newlines (text parts of multi-part content),
or the completion prompt(s); only the last `max_route_chars` characters are encoded.

Cost: the router's ĉ of the chosen model is the estimate a budget is checked against before
forwarding; the spend recorded afterwards is the upstream's `usage` tokens x the artifact's prices
for the model that answered when both are there (streams report usage only when the client asks
for it with `stream_options.include_usage`), else that estimate.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import json
import math
import os
import time
from collections.abc import Callable
from typing import Any

from proteus.gateway.config import Tenant
from proteus.gateway.errors import GatewayError
from proteus.gateway.proxy import Reply
from proteus.operating import InfeasibleTauError
from proteus.serving import Router
from proteus.serving.batching import MicroBatcher, QueueFullError
from proteus.serving.dispatch import route_items
from proteus.serving.protocol import Item, RequestError

MODEL_PREFIX = "proteus"
TAU_HEADER = b"x-proteus-tau"
TASK_HEADER = b"x-proteus-task"  # the prompt's task, for a router with a task prior


def _bad(message: str, code: str, status: int = 400) -> GatewayError:
    return GatewayError(status, message, "invalid_request_error", code)


def tau_of(model: Any, header: bytes | None, tenant: Tenant) -> float:
    """The request's τ: `proteus-<τ>`, else the header, else the tenant's default (checked)."""
    if not isinstance(model, str) or not (model == MODEL_PREFIX
                                          or model.startswith(MODEL_PREFIX + "-")):
        raise _bad(f"the model {model!r} is not served here: use 'proteus' or 'proteus-<τ>' "
                   "(e.g. 'proteus-0.9'); GET /v1/models lists them", "model_not_found", 404)
    raw, source = (model[len(MODEL_PREFIX) + 1:], "model name") if model != MODEL_PREFIX else (
        (header.decode("latin-1"), "x-proteus-tau header") if header else (None, ""))
    if raw is None:
        return tenant.default_tau
    try:
        tau = float(raw)
    except ValueError:
        tau = math.nan
    if not 0.0 <= tau <= 1.0:  # also NaN
        raise _bad(f"τ {raw!r} from the {source} is not a number in [0, 1]", "invalid_tau")
    if not tenant.tau_min <= tau <= tenant.tau_max:
        raise _bad(f"τ={tau:g} is outside tenant {tenant.name!r}'s allowed range "
                   f"[{tenant.tau_min:g}, {tenant.tau_max:g}]", "tau_out_of_range")
    return tau


def prompt_text(payload: dict[str, Any], chat: bool) -> str:
    """The text the router sees (see the module docstring); 400 when there is none."""
    parts: list[str] = []
    if chat:
        messages = payload.get("messages")
        if not isinstance(messages, list) or not messages:
            raise _bad("'messages' must be a non-empty list", "invalid_messages")
        for message in messages:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, str):
                parts.append(content)
            elif isinstance(content, list):
                parts += [p["text"] for p in content if isinstance(p, dict)
                          and p.get("type") == "text" and isinstance(p.get("text"), str)]
    else:
        prompt = payload.get("prompt")
        parts = [prompt] if isinstance(prompt, str) else (
            [p for p in prompt if isinstance(p, str)] if isinstance(prompt, list) else [])
    text = "\n".join(parts)
    if not text.strip():
        raise _bad("the request has no prompt text to route on", "empty_prompt")
    return text


def parse_payload(body: bytes) -> dict[str, Any]:
    """The JSON request object; 400 when malformed."""
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as err:
        raise _bad(f"malformed JSON body: {err}", "invalid_json") from None
    if not isinstance(payload, dict):
        raise _bad("the body must be a JSON object", "invalid_json")
    return payload


def usage_cost(usage: dict[str, Any] | None, price: dict[str, float] | None) -> float | None:
    """USD from OpenAI `usage` tokens and a {usd_per_input_token, usd_per_output_token} price."""
    if not usage or not price:
        return None
    try:
        return (float(usage.get("prompt_tokens") or 0) * price["usd_per_input_token"]
                + float(usage.get("completion_tokens") or 0) * price["usd_per_output_token"])
    except (TypeError, ValueError, KeyError):
        return None


@dataclasses.dataclass
class Routed:
    """One request on its way: who, at which τ, the decision and the clock."""

    request_id: str
    start: float
    tenant: Tenant | None = None
    tau: float | None = None
    decision: dict[str, Any] | None = None  # `Router.records` form
    estimate_usd: float = 0.0
    _client: asyncio.Future | None = None  # a pending receive(): done once the client has left

    def watch_client(self, receive) -> None:
        """Once the body is read, the ASGI server's next message is the disconnect (uvicorn
        answers it only when the client leaves or the response is complete), so one pending
        receive() tells whether the client is still there (as Starlette's streaming does)."""
        self._client = asyncio.ensure_future(receive())

    def client_gone(self) -> bool:
        client = self._client
        return client is not None and client.done() and not client.cancelled()

    @contextlib.contextmanager
    def cancel_if_client_leaves(self):
        """Within the block, the client leaving cancels the task running it (a callback, not a
        second task: nothing is added to a request's path while the client stays)."""
        task, armed = asyncio.current_task(), [True]

        def cancel(_) -> None:
            if armed[0]:  # a callback already scheduled when the block ends must not fire
                task.cancel()

        if self._client is not None:
            self._client.add_done_callback(cancel)
        try:
            yield
        finally:
            armed[0] = False
            if self._client is not None:
                self._client.remove_done_callback(cancel)

    def uncancel_if_client_left(self) -> bool:
        """After a CancelledError inside `cancel_if_client_leaves`: True (and the cancellation
        taken back) when the client leaving caused it."""
        if not self.client_gone():
            return False
        asyncio.current_task().uncancel()
        return True

    def stop_watching(self) -> None:
        if self._client is not None and not self._client.done():
            self._client.cancel()

    def headers(self) -> list[tuple[bytes, bytes]]:
        out = [(b"x-proteus-request-id", self.request_id.encode())]
        if self.tau is not None:
            out.append((b"x-proteus-tau", f"{self.tau:g}".encode()))
        return out


class RoutingQueue:
    """Text + τ -> decision dict (`Router.records`), batched across concurrent requests by
    `proteus.serving.batching.MicroBatcher` and routed by `proteus.serving.dispatch.route_items`
    (the HTTP router's path: one compiled call per batch, and a prompt that cannot be encoded
    fails alone). The batch runs on the event loop when the router encodes cheaply
    (`Router.cheap_to_encode`: no thread hand-offs, which on busy cores cost more than the
    routing), else in a worker thread (a model encoder such as sentence-transformers must not
    block the loop).
    """

    def __init__(self, router: Router, max_batch: int = 256, max_queue: int = 8192,
                 inline: bool | None = None, on_batch: Callable[[int], None] | None = None):
        self.router, self.on_batch = router, on_batch
        self.batcher = MicroBatcher(self._route_batch, max_batch, 0.0, max_queue,
                                    inline=router.cheap_to_encode if inline is None else inline)

    def _route_batch(self, items: list[Item]) -> list[dict[str, Any] | Exception]:
        if self.on_batch is not None:
            self.on_batch(len(items))
        return route_items(self.router, items)

    async def decide(self, text: str, tau: float, task: str | None = None) -> dict[str, Any]:
        """Route one prompt of task `task` (None: not given); its τ and task are checked here,
        so a refused one never joins a batch."""
        try:
            point = self.router.resolve(tau)
        except InfeasibleTauError as err:
            raise _bad(str(err), "infeasible_tau", 422) from None
        try:
            tasks = self.router.check_tasks(task, 1)
        except ValueError as err:
            raise _bad(f"x-proteus-task header: {err}", "invalid_task", 422) from None
        item = Item(None, text, point, "", -1 if tasks is None else int(tasks[0]))
        try:
            return (await self.batcher.submit([item]))[0]
        except QueueFullError:
            raise GatewayError(503, "the routing queue is full; retry shortly", "server_error",
                               "overloaded") from None
        except RequestError as err:  # this prompt could not be encoded (e.g. invalid Unicode)
            raise _bad(err.detail, "unroutable_prompt", err.status) from None


_ID_PREFIX = "req-" + os.urandom(6).hex() + "-"  # random per process; a counter within it
_ids = itertools.count(1)


def new_request_id() -> str:
    """A unique request id without a syscall per request."""
    return f"{_ID_PREFIX}{next(_ids)}"


def reply_cost(reply: Reply, routed: Routed, prices: dict[str, Any]) -> tuple[float, dict]:
    """(USD spent, usage block or {}) for an answered request (see the module docstring)."""
    usage = reply.usage() or {}
    name = reply.served_by.name
    cost = usage_cost(usage, prices.get(name))
    if cost is None:
        c_hat = routed.decision["c_hat"]
        cost = c_hat.get(name, routed.estimate_usd)
    return cost, usage


def elapsed_ms(start: float) -> float:
    return (time.perf_counter() - start) * 1e3
