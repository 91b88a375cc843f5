"""POST /v1/chat/completions and /v1/completions: the request's τ, prompt text and task as the
shared request model's `Item` (`proteus.serving.protocol.make_item`), batched routing, and the
request's state on its way (`Routed`).

τ comes from the model name (`proteus-0.9`), else the `x-proteus-tau` header, else the key's
default (`proteus` names no τ); it must lie in the tenant's range, and is then checked and
resolved once, with every other front door's rule (`make_item`). The router chooses from the
prompt text: chat messages' text contents joined by newlines (text parts of multi-part
content), or the completion prompt(s); only the last `max_query_chars` characters are encoded.
The prompt's task, for a router with a task prior, comes from the `x-proteus-task` header.

What a request may cost and what it is charged: `proteus.gateway.pricing` and
`proteus.gateway.budget`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import math
import os
import time
from collections.abc import Callable
from typing import Any

from proteus.gateway.asgi import header_text
from proteus.gateway.budget import Hold
from proteus.gateway.config import Tenant
from proteus.gateway.errors import GatewayError
from proteus.operating import OperatingPoint
from proteus.serving import Router, RoutingError
from proteus.serving.batching import MicroBatcher, QueueFullError
from proteus.serving.protocol import Item, Limits, RequestError, make_item
from proteus.serving.reload import route_pairs

MODEL_PREFIX = "proteus"
TAU_HEADER = b"x-proteus-tau"
TASK_HEADER = b"x-proteus-task"  # the prompt's task, for a router with a task prior


def _bad(message: str, code: str, status: int = 400) -> GatewayError:
    return GatewayError(status, message, "invalid_request_error", code)


def tau_of(model: Any, header: bytes | None, tenant: Tenant) -> float:
    """The request's τ: `proteus-<τ>`, else the header, else the tenant's default; 400 unless a
    number in the tenant's range (its validity as a τ is `make_item`'s check)."""
    if not isinstance(model, str) or not (model == MODEL_PREFIX
                                          or model.startswith(MODEL_PREFIX + "-")):
        raise _bad(f"the model {model!r:.80} is not served here: use 'proteus' or 'proteus-<τ>' "
                   "(e.g. 'proteus-0.9'); GET /v1/models lists them", "model_not_found", 404)
    raw, source = (model[len(MODEL_PREFIX) + 1:], "model name") if model != MODEL_PREFIX else (
        (header.decode("latin-1"), "x-proteus-tau header") if header else (None, ""))
    if raw is None:
        return tenant.default_tau
    try:
        tau = float(raw)
    except ValueError:
        tau = math.nan
    if not math.isfinite(tau):
        raise _bad(f"τ {raw!r:.40} from the {source} is not a number in [0, 1]", "invalid_tau")
    if not tenant.tau_min <= tau <= tenant.tau_max:
        raise _bad(f"τ={tau:g} is outside tenant {tenant.name!r}'s allowed range "
                   f"[{tenant.tau_min:g}, {tenant.tau_max:g}]", "tau_out_of_range")
    return tau


def request_item(router: Router, tau: float, text: str, task: bytes | None,
                 limits: Limits) -> Item:
    """The routed part of a completion request as the shared request model's `Item`: its τ,
    its prompt's last `max_query_chars` characters and its task (the x-proteus-task header)."""
    try:
        return make_item(router, tau, query=text[-limits.max_query_chars:],
                         task=None if task is None else task.decode("latin-1"), limits=limits)
    except RequestError as err:
        code = {"invalid_query": "unroutable_prompt"}.get(err.code, err.code)
        where = "x-proteus-task header: " if err.code == "invalid_task" else ""
        raise _bad(where + err.detail, code, err.status) from None


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


@dataclasses.dataclass
class Routed:
    """One request on its way: who, at which τ, the decision and the clock."""

    request_id: str
    start: float
    tenant: Tenant | None = None
    tau: float | None = None
    point: OperatingPoint | None = None  # where τ landed (feasible or not)
    decision: dict[str, Any] | None = None  # `Router.records` form
    estimate_usd: float = 0.0  # the router's ĉ of the chosen model
    hold: Hold | None = None  # the budget's reservation, open until settled or released
    status: int = 0  # the answer's HTTP status (the access log)
    served_by: str | None = None  # the model that answered (a fallback, maybe)
    charged_usd: float = 0.0  # what the tenant was charged
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

    def access_line(self, endpoint: str) -> str:
        """The access log's line: tenant, τ, model, status, latency, cost, request id."""
        model = self.served_by or (self.decision["model"] if self.decision else "-")
        tenant = self.tenant.name if self.tenant else "-"
        tau = f"{self.tau:g}" if self.tau is not None else "-"
        ms = (time.perf_counter() - self.start) * 1e3
        return (f"{endpoint} tenant={tenant} tau={tau} model={model} status={self.status} "
                f"latency_ms={ms:.1f} cost_usd={self.charged_usd:.6f} "
                f"request_id={self.request_id}")

    def headers(self) -> list[tuple[bytes, bytes]]:
        """x-proteus-request-id, and once τ is resolved x-proteus-tau and x-proteus-feasible
        (with x-proteus-infeasible-reason when false)."""
        out = [(b"x-proteus-request-id", self.request_id.encode())]
        if self.tau is not None:
            out.append((b"x-proteus-tau", f"{self.tau:g}".encode()))
        if self.point is not None:
            out.append((b"x-proteus-feasible", b"true" if self.point.feasible else b"false"))
            if not self.point.feasible:
                out.append((b"x-proteus-infeasible-reason", header_text(self.point.reason)))
        if self.decision is not None and self.decision.get("rerouted_from"):
            out.append((b"x-proteus-rerouted-from", self.decision["rerouted_from"].encode()))
        return out


class RoutingQueue:
    """Text + τ -> decision dict (`Router.records`), batched across concurrent requests by
    `proteus.serving.batching.MicroBatcher` and routed by `proteus.serving.dispatch.route_items`
    (the HTTP router's path: one compiled call per batch, and a prompt that cannot be encoded
    fails alone), each item by the router that checked it (`proteus.serving.reload`), or, with
    the online controller on, by `proteus.gateway.online.OnlineGateway` (each request in its
    tenant's stream, under the gateway's request id). The batch runs on the event loop when the
    router encodes cheaply (`Router.cheap_to_encode`: no thread hand-offs, which on busy cores
    cost more than the routing) and nothing is committed to disk, else in a worker thread (a
    model encoder such as sentence-transformers, or the online store's commit, must not block
    the loop).
    """

    def __init__(self, router: Router, max_batch: int = 256, max_queue: int = 8192,
                 inline: bool | None = None, on_batch: Callable[[int], None] | None = None,
                 online: Any = None):
        self.router, self.on_batch = router, on_batch  # the router of calls that name none
        self.online = online
        if inline is None:
            inline = router.cheap_to_encode and online is None
        self.batcher = MicroBatcher(self._route_batch, max_batch, 0.0, max_queue, inline=inline)

    def _route_batch(self, entries: list[tuple[Router, Item, str, str]]
                     ) -> list[dict[str, Any] | Exception]:
        if self.on_batch is not None:
            self.on_batch(len(entries))
        if self.online is None:
            return route_pairs([(router, item) for router, item, _, _ in entries])
        return self.online.route([e[1] for e in entries], [e[2] for e in entries],
                                 [e[3] for e in entries])

    async def decide(self, item: Item, router: Router | None = None, tenant: str = "",
                     request_id: str = "") -> dict[str, Any]:
        """Route one checked request (`request_item`) with the router that checked it (across
        a reload, the old one: `proteus.serving.reload`), or, when online, in `tenant`'s stream,
        recorded under `request_id`."""
        try:
            return (await self.batcher.submit([(router or self.router, item, tenant,
                                                request_id)]))[0]
        except QueueFullError:
            raise GatewayError(503, "the routing queue is full; retry shortly", "server_error",
                               "overloaded") from None
        except RequestError as err:  # this prompt could not be encoded (e.g. invalid Unicode)
            raise _bad(err.detail, "unroutable_prompt", err.status) from None
        except RoutingError as err:  # a non-finite decision: a broken artifact
            raise GatewayError(500, f"routing failed: {err}", "server_error",
                               "routing_failed") from None


_ID_PREFIX = "req-" + os.urandom(6).hex() + "-"  # random per process; a counter within it
_ids = itertools.count(1)


def new_request_id() -> str:
    """A unique request id without a syscall per request."""
    return f"{_ID_PREFIX}{next(_ids)}"
