"""The per-model drift tests of a service: one `drift.ModelHealth` per (tenant, model).

A tenant's feedback tests only that tenant's models and steers only its streams: a key posting
false scores cannot get a model routed around for anyone else (a model that regresses for
everyone is found in each tenant that uses it, on that tenant's feedback).

On an event the streams the model served (those holding an anchor) are re-pointed
(`controller.repoint`): on exclusion the climb of their integral since its anchor (the value it
held when the exclusion test's statistic was last 0, i.e. before the shortfall that led to the
exclusion) is undone in proportion to the model's share of the stream's feedback since then
(`attributed`), unless `keeps_climb(stream, excluded models)` says routing around them does not
bring the stream's static point back to its setpoint (the service measures that on the
artifact's held-out rows, `proteus.online.heldout`): then the climb is what still holds the
stream there, and it is kept. On readmission it is kept. Either way feedback on decisions made
before the change only counts. Events are logged (`log_event`, one WARNING line naming the model
and by how much) and handed to the service's listeners (the gateway's metrics).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from proteus.online import controller as ctl
from proteus.online import drift

log = logging.getLogger("proteus.online")


def health_key(tenant: str, model: str) -> str:
    return f"{tenant}|{model}"


class Watch:
    """The tests of every (tenant, model), their exclusions and the re-pointing they cause.

    Not thread-safe on its own: the service calls it under its lock.
    """

    def __init__(self, models: Sequence[str], cfg: drift.DriftConfig,
                 controller: ctl.ControllerConfig, stored: Mapping[str, dict[str, Any]],
                 keeps_climb: Callable[[str, tuple[int, ...]], bool] = lambda s, e: False):
        self.models = tuple(models)
        self.keeps_climb = keeps_climb
        self.cfg, self.controller = cfg, controller
        self.health = {k: drift.ModelHealth.from_dict(v) for k, v in stored.items()}
        self._dirty: set[str] = set()

    def excluded(self, tenants: Sequence[str]) -> np.ndarray | None:
        """[B, M] bool: the models routed around for row i's tenant; None when there are none."""
        out = None
        for tenant in set(tenants):
            models = self.excluded_models(tenant)
            if models:
                out = np.zeros((len(tenants), len(self.models)), bool) if out is None else out
                rows = [i for i, t in enumerate(tenants) if t == tenant]
                out[np.ix_(rows, models)] = True
        return out

    def excluded_models(self, tenant: str) -> tuple[int, ...]:
        """The indices of the models routed around for `tenant`, sorted."""
        out = set()
        for key, health in self.health.items():
            owner, _, model = key.rpartition("|")
            if health.excluded and owner == tenant and model in self.models:
                out.add(self.models.index(model))
        return tuple(sorted(out))

    def probe(self, tenant: str, model_index: int, content: bytes) -> bool:
        """A request of `tenant` (its features' bytes: `content`) the router would send to the
        excluded model: is it a probe (`drift.probe`)?"""
        key = health_key(tenant, self.models[model_index])
        self._dirty.add(key)
        return drift.probe(self.health[key], self.cfg, content)

    def apply(self, tenant: str, model: str, stream: str, score: float, p_hat: float,
              now: float, states: dict[str, ctl.ControllerState]) -> dict[str, Any] | None:
        """One feedback on `model`, served in `stream` (call it before the stream's controller
        takes the feedback): its test; on an event, the re-pointing of the streams it served (in
        `states`, in place). Returns the event dict or None."""
        if not self.cfg.enabled:
            return None
        key = health_key(tenant, model)
        health = self.health.setdefault(key, drift.ModelHealth())
        self._dirty.add(key)
        if not health.excluded and health.down == 0.0 and stream in states:
            # no evidence of a fall yet: the stream's integral (and feedback count) before this
            # feedback are its values before any drift this test may find
            health.anchors[stream] = [states[stream].integral, states[stream].n_feedback]
        event = drift.update(health, self.cfg, score, p_hat, now)
        if event is None:
            return None
        streams = sorted(s for s in health.anchors if s in states)
        excluded = self.excluded_models(tenant)
        for s in streams:
            undo = event == "excluded" and not self.keeps_climb(s, excluded)
            target = (attributed(states[s], *health.anchors[s], health.last_evidence["feedbacks"])
                      if undo else None)
            ctl.repoint(states[s], self.controller, now, target)
        return {"event": event, "tenant": tenant, "model": model, "streams": streams,
                "shortfall": health.last_shortfall, **(health.last_evidence or {}),
                "threshold": self.cfg.threshold, "probe_every": self.cfg.probe_every}

    def summaries(self, tenant: str | None = None) -> dict[str, dict[str, Any]]:
        """`drift.summary` of every (tenant, model) test, or of `tenant`'s only."""
        return {k: drift.summary(h, self.cfg) for k, h in sorted(self.health.items())
                if tenant is None or k.rpartition("|")[0] == tenant}

    def dirty_states(self) -> dict[str, dict[str, Any]]:
        """The tests changed since the last call, as JSON-able dicts (for the store)."""
        out = {k: self.health[k].to_dict() for k in self._dirty if k in self.health}
        self._dirty.clear()
        return out


def attributed(state: ctl.ControllerState, anchor: float, anchor_n: int, model_n: int) -> float:
    """The integral once the excluded model's part of its climb is undone: the climb since the
    anchor, I − anchor, is attributed to the model in proportion to its share of the stream's
    feedback since then (its `model_n` feedbacks of the run that excluded it, over the stream's
    n − anchor_n): a model that served most of the stream takes the whole climb back with it,
    a minor one little of it (a climb that other drift caused stays)."""
    share = min(1.0, model_n / max(1, state.n_feedback - anchor_n))
    return state.integral - share * max(0.0, state.integral - anchor)


def log_event(event: dict[str, Any]) -> None:
    """One WARNING line: which model, for which tenant, and by how much."""
    how = (f": realised {event['realised']:.3f} against predicted {event['predicted']:.3f} on "
           f"its last {event['feedbacks']} feedbacks ({event['shortfall']:+.3f} short)"
           if event.get("feedbacks") else "")
    if event["event"] == "excluded":
        log.warning("model %r excluded for tenant %r%s; routing around it (1 in %d of its "
                    "requests still probes it), %d streams re-pointed", event["model"],
                    event["tenant"], how, event["probe_every"], len(event["streams"]))
    else:
        log.warning("model %r readmitted for tenant %r%s; routing to it again",
                    event["model"], event["tenant"], how)
