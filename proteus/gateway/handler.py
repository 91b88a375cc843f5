"""One completion request, start to end: authenticate, limit, read, route, reserve, forward,
answer, settle.

  1. the key's tenant (401) and its rate (429);
  2. the body within the HTTP limits (`proteus.gateway.asgi.read_json`: 415/413/408/400);
  3. τ, prompt and task as the shared request model's `Item` (`completions.request_item`; an
     infeasible τ is marked, or refused with 422 for a tenant with `infeasible_tau = "refuse"`);
  4. the routing decision (batched with concurrent requests);
  5. the reservation held against the tenant's budgets (402 when it cannot fit: nothing is
     forwarded; `proteus.gateway.budget`);
  6. the upstream call (the client leaving abandons it: 499, charged ĉ at most the hold);
  7. the answer passed through, then the charge settled from the validated usage
     (`proteus.gateway.pricing`); a failure before any answer releases the hold.

Any other failure is a 500 in OpenAI's error shape (`internal_error`), and the hold is released.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from proteus.gateway import asgi, pricing
from proteus.gateway import completions as cmp
from proteus.gateway.errors import GatewayError
from proteus.gateway.proxy import MalformedReply, Reply

if TYPE_CHECKING:
    from proteus.gateway.app import GatewayApp

COMPLETION_PATHS = {"/v1/chat/completions": "/chat/completions",
                    "/v1/completions": "/completions"}
log = logging.getLogger(__name__)
# One INFO line per completion request (`Routed.access_line`); silence it with this logger's level.
access_log = logging.getLogger("proteus.gateway.access")


class CompletionHandler:
    """POST /v1/chat/completions and /v1/completions of a `GatewayApp`."""

    def __init__(self, app: GatewayApp):
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        routed = cmp.Routed(cmp.new_request_id(), time.perf_counter())
        endpoint = "chat" if scope["path"] == "/v1/chat/completions" else "completions"
        try:
            await self._answer(scope, receive, send, routed, endpoint)
        finally:
            routed.stop_watching()
            if routed.hold is not None and routed.hold.open:  # failed before any answer
                self.app.budgets.release(routed.hold, routed.decision["model"])
                self._gauge(routed.hold.tenant)
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(routed.access_line(endpoint))

    async def _answer(self, scope, receive, send, routed: cmp.Routed, endpoint: str) -> None:
        try:
            reply, fallback_from, t_forward, t_back = await self._route_and_forward(
                scope, receive, routed, endpoint == "chat")
        except GatewayError as err:
            routed.status = err.status
            self._count_error(routed, endpoint, err)
            return await asgi.send_error(send, err, routed.headers())
        except Exception as err:  # noqa: BLE001 (never a plain-text 500, never a lost hold)
            log.exception("request %s failed", routed.request_id)
            error = GatewayError(500, f"internal error: {type(err).__name__}: {err}",
                                 "server_error", "internal_error")
            routed.status = 500
            self._count_error(routed, endpoint, error)
            return await asgi.send_error(send, error, routed.headers())
        app, served = self.app, reply.served_by.name
        routed.status, routed.served_by = reply.status, served
        if reply.status == 200 and app.online is None:  # before the answer leaves: its
            # feedback may come right back (online, the decision was committed when routed)
            app.ledger.record(routed.request_id, routed.tenant.name, routed.tau)
        headers = [*routed.headers(), (b"x-proteus-model", served.encode()),
                   (b"content-type", reply.content_type)]
        if fallback_from:
            headers.append((b"x-proteus-fallback-from", fallback_from.encode()))
            app.metrics.fallbacks.labels(fallback_from, served).inc()
        overhead = (t_forward - routed.start) + (time.perf_counter() - t_back)
        headers.append((b"x-proteus-overhead-ms", f"{overhead * 1e3:.3f}".encode()))
        app.metrics.overhead.observe(overhead)
        app.metrics.upstream.labels(served).observe(reply.upstream_s)
        try:
            if reply.stream is None:
                await asgi.send_bytes(send, reply.status, reply.body, None, headers)
            else:
                await asgi.relay(send, reply.stream, headers, routed.client_gone)
        finally:  # a client that left mid-stream still pays for what was generated
            self._settle(routed, reply, endpoint)

    async def _route_and_forward(self, scope, receive, routed: cmp.Routed,
                                 chat: bool) -> tuple[Reply, str | None, float, float]:
        """Steps 1-6 of the module docstring; raises GatewayError."""
        app, limits = self.app, self.app.settings.route
        tenant = routed.tenant = app.keyring.authenticate(asgi.header(scope, b"authorization"))
        app.limiter.acquire(tenant)
        payload, size = await asgi.read_json(scope, receive, limits, limits.read_timeout_s)
        if not isinstance(payload, dict):
            raise GatewayError(400, "the body must be a JSON object", "invalid_request_error",
                               "invalid_json")
        routed.watch_client(receive)
        tau = cmp.tau_of(payload.get("model"), asgi.header(scope, cmp.TAU_HEADER), tenant)
        router = app.router  # this request's router to the end, even across a reload
        item = cmp.request_item(router, tau, cmp.prompt_text(payload, chat),
                                asgi.header(scope, cmp.TASK_HEADER), limits)
        routed.tau, routed.point = item.point.tau, item.point
        if not item.point.feasible:
            self._infeasible(routed)
        t_route = time.perf_counter()
        decision = routed.decision = await app.routing.decide(item, router, tenant.name,
                                                              routed.request_id)
        app.metrics.routing.observe(time.perf_counter() - t_route)
        app.metrics.decisions.labels(decision["model"], tenant.name).inc()
        app.metrics.tau.labels(tenant.name).observe(routed.tau)
        payload = self._reserve(routed, payload, size, chat)
        if routed.client_gone():  # e.g. it gave up while the request queued: spend nothing
            raise asgi.client_closed("before it was forwarded")
        t_forward = time.perf_counter()
        reply, fallback_from = await self._forward_while_client_waits(
            routed, COMPLETION_PATHS[scope["path"]], payload)
        return reply, fallback_from, t_forward, time.perf_counter()

    def _infeasible(self, routed: cmp.Routed) -> None:
        """Count a request at an infeasible τ; refuse it (422) when its tenant says so."""
        self.app.metrics.infeasible.labels(routed.tenant.name).inc()
        if routed.tenant.infeasible_tau == "refuse":
            raise GatewayError(422, f"τ={routed.tau:g} is infeasible for this router and tenant "
                                    f"{routed.tenant.name!r} refuses infeasible τ: "
                                    f"{routed.point.reason}", "invalid_request_error",
                               "infeasible_tau")

    def _reserve(self, routed: cmp.Routed, payload: dict[str, Any], size: int,
                 chat: bool) -> dict[str, Any]:
        """Hold the request's worst case (402 if it cannot fit); the payload to send upstream
        (with the output cap added when the request stated none)."""
        app, model = self.app, routed.decision["model"]
        tokens, completions, cap_field = pricing.output_bound(payload, chat,
                                                              app.settings.max_output_tokens)
        fallback = app.proxy.upstreams[model].fallback
        prices = [(m, app.prices.get(m)) for m in (model, fallback) if m is not None]
        routed.estimate_usd = routed.decision["c_hat"][model]
        routed.hold = app.budgets.reserve(
            routed.tenant, pricing.reservation(size, tokens, completions, prices,
                                               routed.estimate_usd))
        self._gauge(routed.tenant.name)
        return payload if cap_field is None else {**payload, cap_field: tokens}

    async def _forward_while_client_waits(self, routed: cmp.Routed, path: str,
                                          payload: dict[str, Any]) -> tuple[Reply, str | None]:
        """`proxy.forward`, abandoned when the client leaves before the upstream has answered
        (its connection is closed, which stops a generation): 499, and the tenant is charged the
        routed estimate (at most the hold), since the upstream may have started working."""
        model = routed.decision["model"]
        with routed.cancel_if_client_leaves():
            try:
                return await self.app.proxy.forward(model, path, payload, routed.request_id)
            except asyncio.CancelledError:
                if not routed.uncancel_if_client_left():
                    raise  # a real cancellation (shutdown), not the client leaving
            except MalformedReply as err:  # answered, so maybe billed: the hold is charged
                log.warning("request %s: %s", routed.request_id, err.message)
                self.app.metrics.bad_usage.labels(err.served_by.name).inc()
                self._charge(routed, err.served_by.name, routed.hold.usd, (0, 0), error=True)
                raise
        self._charge(routed, model, min(routed.estimate_usd, routed.hold.usd), (0, 0),
                     error=True)
        raise asgi.client_closed("while its upstream was answering")

    def _settle(self, routed: cmp.Routed, reply: Reply, endpoint: str) -> None:
        """Charge an answered request (after a stream has ended, when its usage is known)."""
        app, model = self.app, reply.served_by.name
        app.metrics.requests.labels(endpoint, str(reply.status)).inc()
        if reply.status != 200:  # a passed-through upstream 4xx: nothing was generated
            app.metrics.errors.labels("upstream_client_error").inc()
            app.budgets.release(routed.hold, model)
            return self._gauge(routed.tenant.name)
        try:
            counts = pricing.checked_usage(reply.usage(), app.settings.max_usage_tokens)
        except ValueError as err:  # BadUsage, or a stream's usage event that is not JSON
            log.warning("request %s: untrusted usage from %r (%s): charged its reservation",
                        routed.request_id, model, err)
            app.metrics.bad_usage.labels(model).inc()
            return self._charge(routed, model, routed.hold.usd, (0, 0))
        price = app.prices.get(model)
        if counts is None or price is None:  # no usage (a stream without it) or no price
            c_hat = routed.decision["c_hat"].get(model, routed.estimate_usd)
            return self._charge(routed, model, min(c_hat, routed.hold.usd), counts or (0, 0))
        self._charge(routed, model, pricing.token_cost(*counts, price), counts)

    def _charge(self, routed: cmp.Routed, model: str, usd: float, counts: tuple[int, int],
                error: bool = False) -> None:
        app, tenant = self.app, routed.tenant.name
        if usd > routed.hold.usd:
            app.metrics.overrun.labels(tenant).inc(usd - routed.hold.usd)
            log.warning("request %s of tenant %r cost $%.6f, more than its reservation $%.6f",
                        routed.request_id, tenant, usd, routed.hold.usd)
        app.budgets.settle(routed.hold, model, usd, *counts, error=error)
        routed.charged_usd += usd
        app.metrics.spend.labels(tenant, model).inc(usd)
        self._gauge(tenant)

    def _gauge(self, tenant: str) -> None:
        self.app.metrics.reserved.labels(tenant).set(self.app.budgets.held(tenant))

    def _count_error(self, routed: cmp.Routed, endpoint: str, err: GatewayError) -> None:
        app = self.app
        app.metrics.requests.labels(endpoint, str(err.status)).inc()
        app.metrics.errors.labels(err.code or err.type).inc()
        # a request with a hold is counted when the hold is settled or released
        if routed.tenant is not None and err.status >= 500 and routed.hold is None:
            model = routed.decision["model"] if routed.decision else "-"
            app.usage.record(routed.tenant.name, model, 0.0, error=True)
