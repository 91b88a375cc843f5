"""Online routing with feedback: request ids, per-stream controllers, durable state.

    service = OnlineService(Router.load(ARTIFACT), Store("online.db", time.time))
    decisions = service.route(features_or_texts, tau=0.8, tenant="acme")  # each has request_id
    service.feedback([{"request_id": d["request_id"], "score": 1.0, "cost": 2e-4}])
    service.controllers()

A stream is (tenant, τ bucket): τ is rounded UP to the bucket width, so the stream's controller
holds a target at least as strict as every request in it. Each stream keeps one
`controller.ControllerState`; decisions are served at its current knob position
(`controller.position`) through `adapter.serve`, which turns it into the operating τ'.

Feedback outcomes (one per item, in order):
  accepted   applied to the stream's controller
  duplicate  the id already has feedback; the first one stands, this one is ignored
  late       the decision is older than `feedback_ttl`: stored but not applied (the
             operating point it describes is stale)
  unknown    no such request_id (never issued, or deleted by retention)
  invalid    score not in [0, 1] or cost not a finite number >= 0 (nothing stored)
"""

from __future__ import annotations

import dataclasses
import math
import threading
import uuid
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from proteus.online import adapter
from proteus.online import controller as ctl
from proteus.online.store import LedgerRow, Store
from proteus.operating import check_tau
from proteus.serving import Router
from proteus.serving.inputs import resolve_taus
from proteus.serving.protocol import Item

OUTCOMES = ("accepted", "duplicate", "late", "unknown", "invalid")


@dataclasses.dataclass(frozen=True)
class OnlineSettings:
    """Streams and feedback rules of an `OnlineService`."""

    controller: ctl.ControllerConfig = ctl.ControllerConfig()
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


class OnlineService:
    """Router + controllers + store. Thread-safe: streams and store share one lock each."""

    def __init__(self, router: Router, store: Store, settings: OnlineSettings = OnlineSettings(),
                 new_id: Callable[[], str] = lambda: uuid.uuid4().hex):
        self.router, self.store, self.settings, self.new_id = router, store, settings, new_id
        self._lock = threading.Lock()
        self.knob = adapter.knob(router, settings.knob_min_slope)
        # Resume every stream from its last committed state (a restart loses nothing).
        self._states = {k: ctl.ControllerState.from_dict(v) for k, v in store.states().items()}

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

    def route(self, queries: Any, tau: Any, tenant: str | None = None,
              task: Any = None) -> list[dict[str, Any]]:
        """Route texts ([B] str) or features ([D] / [B, D]) at τ (scalar or [B]) for a tenant,
        of task `task` (`Router.task_ids`: None, a name or [B]).

        Returns the router's decision dicts (`Router.records` form) with `request_id`,
        `stream` and `offset` added; the decisions are stored before this returns.
        """
        if isinstance(queries, str):
            queries = [queries]
        is_text = isinstance(queries, Sequence) and any(isinstance(q, str) for q in queries)
        x = self.router.check_features(self.router.encode(queries) if is_text else queries)
        taus, inverse = resolve_taus(check_tau, tau, x.shape[0])  # each distinct τ checked once
        return self._route(x, np.asarray(taus, np.float64), inverse,
                           tenant or self.settings.default_tenant,
                           self.router.task_ids(task, x.shape[0]))

    def route_items(self, items: Sequence[Item], tenant: str | None = None
                    ) -> list[dict[str, Any]]:
        """Route requests of the shared request model (`proteus.serving.protocol`: each already
        validated, its τ checked) for a tenant; as `route`."""
        x = np.zeros((len(items), self.router.feature_dim), np.float32)
        texts = [i for i, item in enumerate(items) if item.text is not None]
        if texts:
            x[texts] = self.router.encode([items[i].text for i in texts])
        for i, item in enumerate(items):
            if item.features is not None:
                x[i] = item.features
        taus, inverse = np.unique([item.point.tau for item in items], return_inverse=True)
        task_ids = np.asarray([item.task_id for item in items], np.int32)
        return self._route(x, taus, inverse.reshape(-1), tenant or self.settings.default_tenant,
                           task_ids)

    def _route(self, x: np.ndarray, taus: np.ndarray, inverse: np.ndarray, tenant: str,
               task_ids: np.ndarray) -> list[dict]:
        """Rows x [B, D] at checked τ taus[inverse] ([U], [B]) through their streams."""
        with self._lock:
            streams = [self._stream(tenant, float(t)) for t in taus]
            states = [self._states[k] for k, _ in streams]
            positions = np.asarray([ctl.position(s, self.cfg) for s in states])[inverse]
            d = adapter.serve(self.router, self.knob, x, positions, [s for _, s in streams],
                              inverse, task_ids)
            d = d._replace(tau=taus[inverse])  # the request's own τ (the stream's: its bucket)
            records = self.router.records(d)
            now, rows = self.store.clock(), []
            for i, rec in enumerate(records):
                key, state = streams[inverse[i]][0], states[inverse[i]]
                state.n_decisions += 1
                rec.update(request_id=self.new_id(), stream=key,
                           offset=float(positions[i] - state.base))
                rows.append(LedgerRow(rec["request_id"], key, now, rec["operating_tau"],
                                      rec["model"], float(rec["c_hat"][rec["model"]])))
            self.store.record_decisions(rows, {k: self._states[k].to_dict() for k, _ in streams})
        return records

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
            before = {k: dataclasses.replace(s) for k, s in self._states.items()}
            results = iter(checked)
            try:
                return self.store.apply_feedback(
                    lambda db, dec: self._one(db, dec, next(results), tenant), ids)
            except BaseException:
                self._states = before  # the transaction rolled back: so do the controllers
                raise

    def _one(self, db, dec: LedgerRow | None, item: dict[str, Any],
             tenant: str | None) -> dict[str, Any]:
        """The outcome of one checked item (runs inside the store's transaction)."""
        if "status" in item:
            return item
        rid, score, cost = item["request_id"], item["score"], item.get("cost")
        if dec is None or (tenant is not None and dec.stream.rpartition("|")[0] != tenant):
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
        ctl.update(state, self.cfg, score, cost,
                   served_at=self.knob.position(dec.operating_tau))
        self.store.mark(db, rid, score, cost, "accepted", now)
        self.store.put_states(db, {dec.stream: state.to_dict()})
        return result(rid, "accepted", "", stream=dec.stream,
                       operating_tau=self._operating_tau(state))

    # ------------------------------------------------------------------ state
    def controllers(self) -> dict[str, Any]:
        """Every stream's controller summary and the store's counts (GET /v1/controllers)."""
        with self._lock:
            streams = {k: {**ctl.summary(s, self.cfg), "operating_tau": self._operating_tau(s)}
                       for k, s in sorted(self._states.items())}
        return {"controllers": streams, "decisions": self.store.counts(),
                "config": dataclasses.asdict(self.cfg),
                "bucket": self.settings.bucket, "feedback_ttl": self.settings.feedback_ttl}

    def _operating_tau(self, state: ctl.ControllerState) -> float:
        return float(self.knob.operating_tau(np.asarray([ctl.position(state, self.cfg)]))[0])

    def state(self, key: str) -> ctl.ControllerState:
        """A copy of one stream's state (KeyError if unknown)."""
        with self._lock:
            return dataclasses.replace(self._states[key])


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
