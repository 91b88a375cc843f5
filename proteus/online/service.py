"""Online routing with feedback: request ids, stream controllers, per-model drift, durable state.

    service = OnlineService(Router.load(ARTIFACT), Store("online.db", time.time))
    decisions = service.route(features_or_texts, tau=0.8, tenant="acme")  # each has request_id
    service.feedback([{"request_id": d["request_id"], "score": 1.0, "cost": 2e-4}])
    service.controllers()

A stream is (tenant, τ bucket): τ is rounded UP to the bucket width, so the stream's controller
holds a target at least as strict as every request in it. Each stream keeps one
`controller.ControllerState`; decisions are served at its current knob position
(`controller.position`) through `adapter.serve`, which turns it into the operating τ'.

Each (tenant, model) keeps one `drift.ModelHealth` (`proteus.online.watch`): every feedback is
also evidence on the model that served it (its score against the p̂ stored with the decision).
A model the test excludes is routed around in that tenant's streams (the router's choice among
the other models), but for one request in `probe_every`; a readmitted model is routed to again.
While one is, a stream of that tenant off its static point is served on the held-out envelope
of its knob positions without it (`heldout.Hull`, `DriftConfig.mix`): each request at one of
the two envelope vertices around the stream's position, drawn from the request.
Decisions say so: `rerouted_from` (the model the router would have chosen) and `probe`.

Feedback outcomes (one per item, in order):
  accepted   applied to the stream's controller and its model's drift test
  duplicate  the id already has feedback; the first one stands, this one is ignored
  late       the decision is older than `feedback_ttl`: stored but not applied (the
             operating point it describes is stale)
  unknown    no such request_id (never issued, or deleted by retention)
  invalid    score not in [0, 1] or cost not a finite number >= 0 (nothing stored)
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import math
import threading
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from proteus.online import adapter, drift, heldout, watch
from proteus.online import controller as ctl
from proteus.online.store import LedgerRow, Store
from proteus.operating import check_tau
from proteus.serving import Router, RoutingError, finite_rows
from proteus.serving.dispatch import encode_rows
from proteus.serving.inputs import resolve_taus
from proteus.serving.protocol import Item
from proteus.serving.router import take_rows

OUTCOMES = ("accepted", "duplicate", "late", "unknown", "invalid")


@dataclasses.dataclass(frozen=True)
class OnlineSettings:
    """Streams, feedback rules and the per-model drift test of an `OnlineService`."""

    controller: ctl.ControllerConfig = ctl.ControllerConfig()
    drift: drift.DriftConfig = drift.DriftConfig()
    bucket: float = 0.01  # τ bucket width; τ is rounded up to a multiple of it
    feedback_ttl: float = 86400.0  # feedback later than this (clock units) is "late"
    default_tenant: str = "default"
    knob_min_slope: float = adapter.MIN_SLOPE  # see `adapter.knob`

    def __post_init__(self):
        if not 0.0 < self.bucket <= 1.0:
            raise ValueError(f"bucket must be in (0, 1], got {self.bucket!r}")
        if not self.feedback_ttl > 0.0:
            raise ValueError(f"feedback_ttl must be > 0, got {self.feedback_ttl!r}")


def bucket_tau(tau: float, width: float) -> float:
    """τ rounded up to a multiple of `width` (1e-9 tolerance for float noise), at most 1."""
    return min(1.0, round(math.ceil(tau / width - 1e-9) * width, 9))


def stream_key(tenant: str, tau_bucket: float) -> str:
    return f"{tenant}|{tau_bucket:.4f}"


def tenant_of(key: str) -> str:
    """The tenant of a stream key (or of a "tenant|model" health key)."""
    return key.rpartition("|")[0]


class OnlineService:
    """Router + controllers + drift tests + store. Thread-safe: one lock for the state, the
    store has its own.

    listeners: callables given each drift event dict (`watch.Watch.apply`), e.g. the gateway's
    metrics; called under the service's lock, so they must be quick.
    """

    def __init__(self, router: Router, store: Store, settings: OnlineSettings = OnlineSettings(),
                 new_id: Callable[[], str] = lambda: uuid.uuid4().hex):
        self.router, self.store, self.settings, self.new_id = router, store, settings, new_id
        self._lock = threading.Lock()
        self.knob = adapter.knob(router, settings.knob_min_slope)
        # Resume every stream and model test from its last committed state (a restart loses
        # nothing acknowledged).
        self._states = {k: ctl.ControllerState.from_dict(v) for k, v in store.states().items()}
        self.heldout = heldout.HeldoutAccuracy(router, self.knob, heldout.load_heldout(router))
        self.watch = watch.Watch(router.models, settings.drift, settings.controller,
                                 store.health(), self._short_without)
        self.listeners: list[Callable[[dict[str, Any]], None]] = []

    @property
    def cfg(self) -> ctl.ControllerConfig:
        return self.settings.controller

    # ------------------------------------------------------------------ routing
    def _stream(self, tenant: str, tau: float) -> tuple[str, adapter.StaticPoint]:
        """The stream of (tenant, checked τ) and its static point; creates the controller if
        new."""
        target = bucket_tau(tau, self.settings.bucket)
        static = adapter.static_point(self.router, self.knob, target)
        key = stream_key(tenant, target)
        state = self._states.get(key)
        if state is None:
            self._states[key] = ctl.new_state(target, static.base, static.lo, static.hi)
        elif (state.base, state.lo, state.hi) != (static.base, static.lo, static.hi):
            # A state stored under another artifact: keep what feedback taught (the integral,
            # the estimates), re-anchor it on this artifact's static point and range.
            state.base, state.lo, state.hi = static.base, static.lo, static.hi
        return key, static

    def _short_without(self, stream: str, excluded: tuple[int, ...]) -> bool:
        """Whether `stream`'s static point, routed around the `excluded` models, measures below
        its setpoint on the artifact's held-out rows (False without them)."""
        state = self._states[stream]
        static = adapter.static_point(self.router, self.knob, state.tau)
        accuracy = self.heldout.without(static, excluded)
        return accuracy is not None and accuracy < ctl.setpoint(state, self.cfg)

    def route(self, queries: Any, tau: Any, tenant: str | None = None,
              task: Any = None) -> list[dict[str, Any]]:
        """Route texts ([B] str) or features ([D] / [B, D]) at τ (scalar or [B]) for a tenant,
        of task `task` (`Router.task_ids`: None, a name or [B]).

        Returns the router's decision dicts (`Router.records` form) with `request_id`,
        `stream`, `offset`, `knob_tau` (the τ' of the stream's knob position; `operating_tau` is
        None while it routes at a fixed-model static point), `rerouted_from` and `probe` added;
        the decisions are stored before this returns. Raises `RoutingError` when the router
        returns non-finite values.
        """
        if isinstance(queries, str):
            queries = [queries]
        is_text = isinstance(queries, Sequence) and any(isinstance(q, str) for q in queries)
        x = self.router.check_features(self.router.encode(queries) if is_text else queries)
        taus, inverse = resolve_taus(check_tau, tau, x.shape[0])  # each distinct τ checked once
        tenant = tenant or self.settings.default_tenant
        keys = [(tenant, float(t)) for t in taus]
        out = self._route(x, keys, np.asarray(inverse), self.router.task_ids(task, x.shape[0]),
                          None)
        for r in out:
            if isinstance(r, Exception):
                raise r
        return out

    def route_items(self, items: Sequence[Item], tenant: str | Sequence[str] | None = None,
                    ids: Sequence[str] | None = None) -> list[dict[str, Any] | Exception]:
        """Route requests of the shared request model (`proteus.serving.protocol`: each already
        validated, its τ checked) for a tenant (one for all, or one per item), with the given
        request ids (None: new ones).

        Returns one decision dict (as `route`) or exception per item: a text that cannot be
        encoded is a `RequestError` (422), a non-finite decision a `RoutingError`; the others
        are routed and stored.
        """
        n = len(items)
        tenants = ([tenant or self.settings.default_tenant] * n
                   if tenant is None or isinstance(tenant, str) else list(tenant))
        results: list[Any] = [None] * n
        x = np.zeros((n, self.router.feature_dim), np.float32)
        texts = [i for i, item in enumerate(items) if item.text is not None]
        if texts:
            encode_rows(self.router, items, texts, x, results)
        for i, item in enumerate(items):
            if item.features is not None:
                x[i] = item.features
        ok = [i for i in range(n) if results[i] is None]
        if ok:
            keys = sorted({(tenants[i], float(items[i].point.tau)) for i in ok})
            inverse = np.asarray([keys.index((tenants[i], float(items[i].point.tau)))
                                  for i in ok])
            task_ids = np.asarray([items[i].task_id for i in ok], np.int32)
            routed = self._route(x[ok], keys, inverse, task_ids,
                                 None if ids is None else [ids[i] for i in ok])
            for i, r in zip(ok, routed, strict=True):
                results[i] = r
        return results

    def _route(self, x: np.ndarray, keys: list[tuple[str, float]], inverse: np.ndarray,
               task_ids: np.ndarray, ids: list[str] | None) -> list[dict | Exception]:
        """Rows x [B, D] of streams keys[inverse] ((tenant, checked τ) [U], [B]); each row a
        record, or a `RoutingError` (non-finite: not stored)."""
        tenants = [keys[j][0] for j in inverse]
        with self._lock:
            streams = [self._stream(tenant, tau) for tenant, tau in keys]
            states = [self._states[k] for k, _ in streams]
            positions = np.asarray([ctl.position(s, self.cfg) for s in states])[inverse]
            excluded = self.watch.excluded(tenants)
            served = self._on_envelope(x, positions, streams, inverse, excluded)
            d, unmasked, probed = adapter.serve(
                self.router, self.knob, x, served, [s for _, s in streams], inverse, task_ids,
                excluded, lambda i, m: self.watch.probe(tenants[i], m, x[i].tobytes()))
            d = d._replace(tau=np.asarray([keys[j][1] for j in inverse], np.float64))
            finite = finite_rows(d)
            records = iter(self.router.records(take_rows(d, np.flatnonzero(finite))))
            now, rows, out = self.store.clock(), [], []
            for i in range(x.shape[0]):
                if not finite[i]:
                    out.append(RoutingError("the router returned non-finite values for this "
                                            "query: the artifact is broken (re-export it)"))
                    continue
                rec, j = next(records), inverse[i]
                key, state = streams[j][0], states[j]
                state.n_decisions += 1
                rerouted = int(unmasked[i]) != rec["model_index"]
                rec.update(request_id=ids[i] if ids is not None else self.new_id(), stream=key,
                           offset=float(positions[i] - state.base), probe=bool(probed[i]),
                           rerouted_from=self.router.models[unmasked[i]] if rerouted else None)
                rec["knob_tau"] = self._tau_at(positions[i])  # a number at a fixed model too
                # the ledger keeps the stream's position (its delay compensation's `served_at`):
                # a request drawn on the envelope realises, in expectation, the mix there
                mixed = served[i] != positions[i] or rec["operating_tau"] is None
                rows.append(LedgerRow(rec["request_id"], key, now,
                                      rec["knob_tau"] if mixed else rec["operating_tau"],
                                      rec["model"], float(rec["c_hat"][rec["model"]]),
                                      p_hat=float(rec["p_hat"][rec["model"]])))
                out.append(rec)
            self.store.record_decisions(rows, {k: self._states[k].to_dict() for k, _ in streams},
                                        self.watch.dirty_states())
        return out

    def _on_envelope(self, x: np.ndarray, positions: np.ndarray,
                     streams: list[tuple[str, adapter.StaticPoint]], inverse: np.ndarray,
                     excluded: np.ndarray | None) -> np.ndarray:
        """[B] the knob positions rows x [B, D] are served at: their stream's position, but for
        a stream off its static point while models are routed around for its tenant (excluded
        [B, M] bool, `watch.Watch.excluded`; None: none are), a vertex of its held-out envelope
        without them, drawn per request (`heldout.Hull.draw`, with `request_unit`;
        `DriftConfig.mix`)."""
        out = positions.copy()
        if excluded is None or not self.settings.drift.mix:
            return out
        for i, j in enumerate(np.asarray(inverse).tolist()):
            key, static = streams[j]
            models = tuple(np.flatnonzero(excluded[i]).tolist())
            if positions[i] <= static.base or not models:
                continue  # at its point, or below it (`allow_below_certified`): the knob
            hull = self.heldout.hull(static, models)
            if hull is not None:
                out[i] = hull.draw(float(positions[i]), request_unit(x[i], key),
                                   self.cfg.dead_band)
        return out

    # ------------------------------------------------------------------ feedback
    def feedback(self, items: Sequence[dict[str, Any]], tenant: str | None = None
                 ) -> list[dict[str, Any]]:
        """Apply feedback items {request_id, score, cost?}; one result dict per item.

        With `tenant`, only that tenant's requests can be scored: another tenant's request id
        is "unknown" (the same answer as an id never issued, so ids of others are not revealed).
        All items of one call are committed in one transaction before this returns.
        """
        checked = [check_item(item) for item in items]
        ids = [c["request_id"] if "status" not in c else "" for c in checked]
        with self._lock:
            before = copy.deepcopy((self._states, self.watch.health))
            results = iter(checked)
            events: list[dict[str, Any]] = []
            try:
                out = self.store.apply_feedback(
                    lambda db, dec: self._one(db, dec, next(results), tenant, events), ids)
            except BaseException:
                # the transaction rolled back: so do the controllers and the model tests
                self._states, self.watch.health = before
                raise
            for event in events:  # committed: now it may be told
                watch.log_event(event)
                for listener in self.listeners:
                    listener(event)
            envelopes = [(adapter.static_point(self.router, self.knob, self._states[s].tau),
                          self.watch.excluded_models(e["tenant"]))
                         for e in events if e["event"] == "excluded" and self.settings.drift.mix
                         for s in e["streams"]]
        # The envelopes an exclusion calls for are measured here, outside the lock: measured on
        # the next request of these streams instead, under it, they would hold every stream's
        # requests for 1-3 s on the real sets (`_on_envelope` finds them cached).
        for static, excluded in envelopes:
            self.heldout.hull(static, excluded)
        return out

    def _one(self, db, dec: LedgerRow | None, item: dict[str, Any], tenant: str | None,
             events: list[dict[str, Any]]) -> dict[str, Any]:
        """The outcome of one checked item (runs inside the store's transaction)."""
        if "status" in item:
            return item
        rid, score, cost = item["request_id"], item["score"], item.get("cost")
        if dec is None or (tenant is not None and tenant_of(dec.stream) != tenant):
            return result(rid, "unknown", "no decision with this request_id (never issued, "
                           "or older than the store's retention)")
        if dec.outcome is not None:
            return result(rid, "duplicate", f"feedback already recorded ({dec.outcome}, score "
                           f"{dec.score}); the first feedback stands")
        now = self.store.clock()
        if now - dec.created > self.settings.feedback_ttl:
            self.store.mark(db, rid, score, cost, "late", now)
            return result(rid, "late", f"arrived {now - dec.created:g} after the decision, "
                           f"beyond feedback_ttl={self.settings.feedback_ttl:g}: stored, not "
                           "applied to the controller")
        state = self._states.get(dec.stream)
        if state is None:  # the stream's state was never stored (cannot happen after route)
            return result(rid, "unknown", f"stream {dec.stream!r} has no controller")
        changed = {dec.stream: state}
        if dec.p_hat is not None:  # the model's test first: it may re-point this stream
            event = self.watch.apply(tenant_of(dec.stream), dec.model, dec.stream, score,
                                     dec.p_hat, now, self._states)
            if event is not None:
                events.append(event)
                changed.update({k: self._states[k] for k in event["streams"]})
        if state.repointed is not None and dec.created < state.repointed:
            ctl.record(state, self.cfg, score, cost)  # served before the routing changed
        else:
            ctl.update(state, self.cfg, score, cost,
                       served_at=self.knob.position(dec.operating_tau))
        self.store.mark(db, rid, score, cost, "accepted", now)
        self.store.put_states(db, {k: s.to_dict() for k, s in changed.items()},
                              self.watch.dirty_states())
        return result(rid, "accepted", "", stream=dec.stream, score=score,
                       operating_tau=self._operating_tau(state))

    # ------------------------------------------------------------------ state
    def controllers(self, tenant: str | None = None, counts: bool = True) -> dict[str, Any]:
        """Every stream's controller summary, every model test and the store's counts (GET
        /v1/controllers); only `tenant`'s streams and models when given; `counts=False` skips
        the counts (a query over the whole ledger)."""
        with self._lock:
            streams = {k: {**ctl.summary(s, self.cfg), "operating_tau": self._operating_tau(s)}
                       for k, s in sorted(self._states.items())
                       if tenant is None or tenant_of(k) == tenant}
            models = self.watch.summaries(tenant)
        return {"controllers": streams, "models": models,
                "decisions": self.store.counts() if counts else None,
                "config": dataclasses.asdict(self.cfg),
                "drift": {**dataclasses.asdict(self.settings.drift),
                          "threshold": self.settings.drift.threshold},
                "bucket": self.settings.bucket, "feedback_ttl": self.settings.feedback_ttl}

    def _operating_tau(self, state: ctl.ControllerState) -> float:
        return self._tau_at(ctl.position(state, self.cfg))

    def _tau_at(self, position: float) -> float:
        return float(self.knob.operating_tau(np.asarray([position]))[0])

    def state(self, key: str) -> ctl.ControllerState:
        """A copy of one stream's state (KeyError if unknown)."""
        with self._lock:
            return dataclasses.replace(self._states[key])


def request_unit(features: np.ndarray, stream: str) -> float:
    """A number in [0, 1) drawn from a request's features and its stream: the same request in
    the same stream always draws the same, so at the same position it is served alike in
    process and through the gateway."""
    digest = hashlib.blake2b(features.tobytes() + stream.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0 ** 64


def result(request_id: Any, status: str, detail: str, **extra: Any) -> dict[str, Any]:
    """One feedback item's outcome (an `OUTCOMES` status), as /v1/feedback answers it."""
    return {"request_id": request_id, "status": status, "detail": detail, **extra}


def check_item(item: Any) -> dict[str, Any]:
    """A validated item, or an "invalid" result (which has a "status" key)."""
    if not isinstance(item, dict):
        return result(None, "invalid", f"a feedback item must be an object, got {item!r:.80}")
    rid = item.get("request_id")
    if not isinstance(rid, str) or not rid:
        return result(rid, "invalid", "request_id must be a non-empty string")
    extra = sorted(set(item) - {"request_id", "score", "cost"})
    if extra:
        return result(rid, "invalid", f"unknown field(s) {extra}; expected request_id, score, "
                       "cost")
    score, cost = item.get("score"), item.get("cost")
    if not _is_number(score) or not 0.0 <= score <= 1.0:
        return result(rid, "invalid", f"score must be a number in [0, 1], got {score!r}")
    if cost is not None and (not _is_number(cost) or not math.isfinite(cost) or cost < 0):
        return result(rid, "invalid", f"cost must be a finite number >= 0 (USD), got {cost!r}")
    return {"request_id": rid, "score": float(score),
            "cost": None if cost is None else float(cost)}


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and not math.isnan(v)
