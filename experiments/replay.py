"""Replay benchmark of the online floor controller (`python -m launch.replay`).

Streams N requests drawn with replacement (seeded) from an artifact's test split (or its val
split, on which the controller's settings are tuned: `load_split`) through three
routers, in order: the static router (τ' = τ on the lanes, no certificate), the static certified
router (τ' = the certified point) and the online controller (`proteus.online.service`, its
feedback simulated: with probability F the realised score and cost of the chosen model are
revealed D requests later, delivered in shuffled order). Scenarios (one shift at `shift_at`):

  stationary        no shift
  task_shift        half of the draws move to the hardest tasks (lowest mean score over models,
                    adding tasks until they hold >= 20% of the split's rows)
  model_regression  the model carrying most of the static certified router's correct answers
                    silently loses `regression` of its correct answers (a fixed random subset)
  price_change      that model's price is multiplied by `price_factor`; the online router gets a
                    cost budget = the static certified router's mean cost before the shift
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import numpy as np

from experiments import outputs
from experiments.replay_report import plot, table  # noqa: F401 (re-exported)
from proteus.data import RoutingDataset, load_source
from proteus.encoders import encode_dataset
from proteus.online import controller as ctl
from proteus.online import drift
from proteus.online.service import OnlineService, OnlineSettings
from proteus.online.store import Store
from proteus.operating import OperatingPoint, OperatingPolicy
from proteus.serving import Router, artifact
from proteus.training import reopen

SCENARIOS = ("stationary", "task_shift", "model_regression", "price_change")
ROUTERS = ("static", "static_certified", "online")  # "online_http" too with via="http"/"both"
VIAS = ("inprocess", "http", "both")


@dataclasses.dataclass(frozen=True)
class ReplayConfig:
    """One replay run (the `launch.replay` flags)."""

    scenario: str = "stationary"
    tau: float = 0.8
    n: int = 20_000  # requests streamed
    feedback_fraction: float = 0.2
    delay: int = 200  # feedback arrives this many requests after its decision
    seed: int = 0
    shift_at: float = 0.4  # the shift happens at this fraction of the stream
    warmup: int = 1000  # requests excluded from the long-run and window metrics
    window: int = 1000  # requests per accuracy window
    window_step: int = 100  # sliding step between windows
    tolerance: float = 0.02  # a window "falls short" below τ − tolerance
    block: int = 20  # online requests routed per call (the controller moves between blocks)
    regression: float = 0.3  # share of correct answers the regressed model loses
    price_factor: float = 4.0
    controller: ctl.ControllerConfig = ctl.ControllerConfig()
    drift: drift.DriftConfig = drift.DriftConfig()
    knob_min_slope: float = OnlineSettings.knob_min_slope

    def __post_init__(self):
        if self.scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {self.scenario!r}; known: {SCENARIOS}")
        if not 0.0 <= self.feedback_fraction <= 1.0 or self.delay < 0 or self.n <= self.warmup:
            raise ValueError(f"need 0 <= feedback_fraction <= 1, delay >= 0 and n > warmup; got "
                             f"feedback_fraction={self.feedback_fraction}, delay={self.delay}, "
                             f"n={self.n}, warmup={self.warmup}")


def load_split(manifest: dict[str, Any], source: str | None = None,
               split: str = "test", path: str | None = None) -> RoutingDataset:
    """One of the artifact's splits ("test", or "val" or "calib" to tune the controller without
    touching test), rebuilt from its data source, encoder and split config.

    An artifact whose pool was changed after training (onboarded or removed models: its
    manifest's lineage) routes between other models than its training data's: its `val` and
    `calib` rows are the ones it carries (`path`; they hold every model's labels), and its test
    split is refused (the data source has no labels of a model added from a labels file).

    Raises ValueError for a split the artifact does not have, or when the rebuilt split's
    fingerprint differs from the one recorded at training time (a different file, loader or
    salt would replay other queries).
    """
    if manifest.get("lineage"):
        if source is not None:
            raise ValueError("this artifact's pool changed after training: it replays on the "
                             "held-out rows it carries, not on a data source (drop --source)")
        return _carried_split(manifest, split, path)
    training = manifest["training"]
    data = training["config"]["data"]
    if split not in data["splits"]:
        raise ValueError(f"the artifact has no {split!r} split; it has {sorted(data['splits'])}")
    ds = load_source(source or training["data_source"])
    ds = encode_dataset(ds, data["encoder"], cache_dir=data.get("cache_dir") or None,
                        progress=False)
    rows = ds.split(data["splits"], salt=data["split_salt"])[split]
    want = training.get("split_fingerprints", {}).get(split)
    if want is not None and rows.fingerprint() != want:
        raise ValueError(f"the rebuilt {split} split has fingerprint {rows.fingerprint()}, the "
                         f"artifact was trained with {want}: is --source the training data?")
    return rows


def _carried_split(manifest: dict[str, Any], split: str, path: str | None) -> RoutingDataset:
    """The `val` or `calib` rows an artifact with a lineage carries (see `load_split`)."""
    step = manifest["lineage"][-1]
    changed = f"added {step['added']}" if step.get("added") else f"removed {step['removed']}"
    fitted = artifact.fitted_on_val(manifest)
    if split not in ("val", "calib"):
        raise ValueError(f"this artifact's pool changed after training ({changed}): replay it "
                         f"on the held-out rows it carries, "
                         f"{'--split=calib' if fitted else '--split=val or --split=calib'} (its "
                         f"{split} split has no labels of the new pool)")
    if split == "val" and fitted:
        raise ValueError(f"this artifact's column of {', '.join(fitted)} was fitted on its val "
                         "rows (onboarding fits on them): replay it on --split=calib, the rows "
                         "no column saw")
    rows = None if path is None else reopen.read_heldout(path, manifest)
    if rows is None:
        raise ValueError(f"this artifact's pool changed after training ({changed}) and it "
                         "carries no held-out rows to replay")
    return rows.splits()[split]


@dataclasses.dataclass
class Stream:
    """The replayed requests: rows of the replayed split and the scores/costs they realise."""

    rows: np.ndarray  # [N] int row of the replayed split per request
    scores: np.ndarray  # [N, M] realised score of each model (after any regression)
    costs: np.ndarray  # [N, M] realised cost (after any price change)
    shifts: list[int]
    info: dict[str, Any]


def hardest_tasks(test: RoutingDataset, share: float = 0.2) -> list[str]:
    """Tasks by increasing mean score (over models), until they hold >= `share` of the rows."""
    names, counts = np.unique(test.tasks, return_counts=True)
    means = [test.scores[test.tasks == t].mean() for t in names]
    picked, held = [], 0
    for i in np.argsort(means):
        picked.append(str(names[i]))
        held += counts[i]
        if held >= share * test.n_queries:
            break
    return picked


def make_stream(test: RoutingDataset, cfg: ReplayConfig, key_model: int) -> Stream:
    """Draw the stream of `cfg.scenario`; `key_model` is the model the drift acts on."""
    rng = np.random.default_rng(cfg.seed)
    shift = int(cfg.shift_at * cfg.n) if cfg.scenario != "stationary" else None
    rows = rng.integers(0, test.n_queries, cfg.n)
    scores, costs = test.scores[rows].copy(), test.costs[rows].copy()
    info: dict[str, Any] = {"scenario": cfg.scenario}
    if cfg.scenario == "task_shift":
        hard = hardest_tasks(test)
        pool = np.flatnonzero(np.isin(test.tasks, hard))
        after = np.arange(shift, cfg.n)
        moved = after[rng.random(after.size) < 0.5]
        rows[moved] = rng.choice(pool, moved.size)
        scores, costs = test.scores[rows].copy(), test.costs[rows].copy()
        info.update(hard_tasks=hard, moved_share=0.5)
    elif cfg.scenario == "model_regression":
        lost = rng.random(test.n_queries) < cfg.regression  # a fixed subset of the queries
        hit = np.arange(cfg.n) >= shift
        scores[hit, key_model] *= ~lost[rows[hit]]
        info.update(model=test.models[key_model], lost_share=cfg.regression)
    elif cfg.scenario == "price_change":
        costs[shift:, key_model] *= cfg.price_factor
        info.update(model=test.models[key_model], price_factor=cfg.price_factor)
    return Stream(rows, scores, costs, [] if shift is None else [shift], info)


def task_names(router: Router, tasks: np.ndarray) -> list[str | None] | None:
    """The tasks a replayed request carries: its split's task where the router has a task prior
    and knows it (None where it does not: `TaskVocabulary.known`), or None for a router without
    one."""
    if not router.tasks:
        return None
    return router.vocabulary.known(np.asarray(tasks).astype(str).tolist())


def static_points(router: Router, tau: float) -> dict[str, OperatingPoint]:
    """The operating points of the static routers: the uncertified rule on the artifact's
    operating table, and the artifact's own (certified when it is) resolution."""
    plain = OperatingPolicy(router.manifest["operating"], None, "best_effort", router.models)
    return {"static": plain.resolve(tau), "static_certified": router.resolve(tau)}


def point_models(router: Router, x: np.ndarray, point: OperatingPoint,
                 task_ids: np.ndarray | None) -> np.ndarray:
    """[N] the model each row of x [N, D] goes to at `point`, as serving routes it (a fixed
    model's rows to it, a point that routes around models around them: `Router.run_points`)."""
    return router.run_points(x, [point], np.zeros(x.shape[0], np.int64), task_ids).model


def run_static(router: Router, x: np.ndarray, stream: Stream, point: OperatingPoint,
               tasks: list[str | None] | None = None) -> dict:
    """Per-request chosen model, score and cost of a router at a fixed operating point
    (`tasks`: the requests' task names, see `task_names`)."""
    n = x.shape[0]
    model = point_models(router, x, point, router.task_ids(tasks, n))
    idx = np.arange(n)
    return {"model": model, "score": stream.scores[idx, model],
            "cost": stream.costs[idx, model], "operating_tau": np.full(n, point.operating_tau)}


class FeedbackSchedule:
    """Which requests reveal their score and when: with probability F each request's feedback
    arrives `delay` requests after it, and what is due at a block's start arrives shuffled. One
    seeded sequence, so the in-process and the HTTP replay (`experiments.http_replay`) deliver
    the same feedback in the same order."""

    def __init__(self, cfg: ReplayConfig):
        self.rng = np.random.default_rng(cfg.seed + 1)
        self.revealed = self.rng.random(cfg.n) < cfg.feedback_fraction
        self.delay = cfg.delay
        self._due: dict[int, list[int]] = {}

    def served(self, i: int) -> None:
        """Request i was answered: schedule its feedback if it reveals one."""
        if self.revealed[i]:
            self._due.setdefault(i + self.delay, []).append(i)

    def ready(self, now: int) -> list[int]:
        """The requests whose feedback arrives at request index `now`, in arrival order."""
        ready = [i for t in sorted(k for k in self._due if k <= now) for i in self._due.pop(t)]
        if ready:
            self.rng.shuffle(ready)  # feedback arrives out of order
        return ready


def online_settings(cfg: ReplayConfig, controller: ctl.ControllerConfig,
                    ttl: float | None = None) -> OnlineSettings:
    """The online service's settings of a replay (`ttl`: feedback_ttl, default 10 n)."""
    return OnlineSettings(controller=controller, drift=cfg.drift,
                          feedback_ttl=10.0 * cfg.n if ttl is None else ttl,
                          knob_min_slope=cfg.knob_min_slope)


def run_online(router: Router, x: np.ndarray, stream: Stream, cfg: ReplayConfig,
               controller: ctl.ControllerConfig, tasks: list[str | None] | None = None) -> dict:
    """Route the stream through an `OnlineService` (in-memory SQLite, clock = request index)."""
    n, clock = x.shape[0], [0]
    store = Store(":memory:", clock=lambda: float(clock[0]), retention=10.0 * n)
    counter = iter(range(n))
    service = OnlineService(router, store, online_settings(cfg, controller),
                            new_id=lambda: str(next(counter)))
    events: list[dict[str, Any]] = []
    service.listeners.append(lambda e: events.append({**e, "at": clock[0]}))
    schedule = FeedbackSchedule(cfg)
    model, op_tau = np.zeros(n, np.int32), np.zeros(n)
    for start in range(0, n, cfg.block):
        clock[0] = start
        ready = schedule.ready(start)
        if ready:
            service.feedback([{"request_id": str(i), "score": float(stream.scores[i, model[i]]),
                               "cost": float(stream.costs[i, model[i]])} for i in ready])
        stop = min(n, start + cfg.block)
        decisions = service.route(x[start:stop], cfg.tau,
                                  task=None if tasks is None else tasks[start:stop])
        for i, d in zip(range(start, stop), decisions, strict=True):
            model[i], op_tau[i] = d["model_index"], d["knob_tau"]
            schedule.served(i)
    idx = np.arange(n)
    state = service.controllers()
    return {"model": model, "score": stream.scores[idx, model], "cost": stream.costs[idx, model],
            "operating_tau": op_tau, "controllers": state["controllers"],
            "models": state["models"], "events": events}


def windows(values: np.ndarray, cfg: ReplayConfig) -> tuple[np.ndarray, np.ndarray]:
    """(end index, mean) of the sliding windows that start at or after the warm-up."""
    csum = np.concatenate([[0.0], np.cumsum(values, dtype=np.float64)])
    starts = np.arange(cfg.warmup, len(values) - cfg.window + 1, cfg.window_step)
    return starts + cfg.window, (csum[starts + cfg.window] - csum[starts]) / cfg.window


def recovery(score: np.ndarray, shift: int, cfg: ReplayConfig) -> int | None:
    """Requests after `shift` until the next `window` requests are >= τ − tolerance (0: they
    never fell short; None: never within the stream)."""
    floor = cfg.tau - cfg.tolerance
    csum = np.concatenate([[0.0], np.cumsum(score, dtype=np.float64)])
    for k in range(0, len(score) - shift - cfg.window + 1, 50):
        a = shift + k
        if (csum[a + cfg.window] - csum[a]) / cfg.window >= floor:
            return k
    return None


def summarize(result: dict, stream: Stream, cfg: ReplayConfig) -> dict[str, Any]:
    """The replay.json entry of one router."""
    ends, acc = windows(result["score"], cfg)
    _, cost = windows(result["cost"], cfg)
    _, op = windows(result["operating_tau"], cfg)
    after = slice(cfg.warmup, None)
    return {"long_run_accuracy": float(result["score"][after].mean()),
            "long_run_cost": float(result["cost"][after].mean()),
            "share_windows_below": float(np.mean(acc < cfg.tau - cfg.tolerance)),
            "min_window_accuracy": float(acc.min()),
            "recovery": [recovery(result["score"], s, cfg) for s in stream.shifts],
            "windows": {"end": ends.tolist(), "accuracy": acc.tolist(), "cost": cost.tolist(),
                        "operating_tau": op.tolist()}}


def key_model(router: Router, test: RoutingDataset, tau: float) -> int:
    """The model the static certified router gets most correct answers from on the
    replayed split."""
    n, point = test.n_queries, router.resolve(tau)
    model = point_models(router, np.asarray(test.features, np.float32), point,
                         router.task_ids(task_names(router, test.tasks), n))
    correct = test.scores[np.arange(test.n_queries), model]
    return int(np.argmax(np.bincount(model, weights=correct, minlength=test.n_models)))


def replay(router: Router, test: RoutingDataset, cfg: ReplayConfig,
           via: str = "inprocess") -> dict[str, Any]:
    """Run the routers over one scenario's stream; returns the replay.json payload.

    via: the online router "inprocess" (an `OnlineService`), "http" (through a running gateway,
    `experiments.http_replay`; its router is "online_http") or "both" (and their agreement).
    """
    if tuple(test.models) != router.models:
        raise ValueError(f"the split's models {test.models} are not the artifact's "
                         f"{router.models}")
    if via not in VIAS:
        raise ValueError(f"via must be one of {VIAS}, got {via!r}")
    stream = make_stream(test, cfg, key_model(router, test, cfg.tau))
    x = test.features[stream.rows].astype(np.float32)
    tasks = task_names(router, test.tasks[stream.rows])
    points = static_points(router, cfg.tau)
    results = {name: run_static(router, x, stream, points[name], tasks) for name in points}
    controller = cfg.controller
    if cfg.scenario == "price_change" and controller.budget is None:
        # Budget = what the static certified router spent before the shift (USD per request).
        pre = results["static_certified"]["cost"][: stream.shifts[0]]
        controller = dataclasses.replace(controller, budget=float(pre.mean()))
    if via in ("inprocess", "both"):
        results["online"] = run_online(router, x, stream, cfg, controller, tasks)
    if via in ("http", "both"):
        from experiments import http_replay  # noqa: PLC0415 (the gateway: only when asked)

        http_replay.memo_encoder(router, test.texts, test.features)
        results["online_http"] = http_replay.run_http(router, test.texts, stream, cfg,
                                                      controller, tasks)
    summary = {name: summarize(result, stream, cfg) for name, result in results.items()}
    for name in summary:
        for ref in ("static", "static_certified"):
            summary[name][f"cost_vs_{ref}"] = (summary[name]["long_run_cost"]
                                               / summary[ref]["long_run_cost"])
    online = [name for name in ("online", "online_http") if name in results]
    payload = {
        "scenario": cfg.scenario, "tau": cfg.tau, "config": _jsonable(cfg),
        "budget": controller.budget, "stream": stream.info, "shifts": stream.shifts,
        "static_points": {name: {"operating_tau": None if p.operating_model >= 0
                                 else p.operating_tau,
                                 "operating_model": (router.models[p.operating_model]
                                                     if p.operating_model >= 0 else None),
                                 "point": p.point, "feasible": p.feasible}
                          for name, p in points.items()}, "routers": summary,
        "online_controllers": results[online[0]]["controllers"],
        "online_models": results[online[0]]["models"],
        "online_events": [{k: v for k, v in e.items() if k != "streams"}
                          for e in results[online[0]]["events"]],
        "checks": checks(summary, cfg, online[0])}
    if via == "both":
        payload["checks_http"] = checks(summary, cfg, "online_http")
        payload["agreement"] = {
            "same_model": float(np.mean(results["online"]["model"]
                                        == results["online_http"]["model"])),
            "online_http_controllers": results["online_http"]["controllers"]}
    return payload


def checks(summary: dict[str, Any], cfg: ReplayConfig,
           online: str = "online") -> dict[str, bool | None]:
    """The issue's done-when criteria for this run (None where they do not apply), of the
    online router `online` ("online" or "online_http")."""
    on = summary[online]
    drift = cfg.scenario != "stationary"
    rec = [r for r in on["recovery"] if r is not None]
    return {"online_long_run_ge_tau": on["long_run_accuracy"] >= cfg.tau,
            "online_windows_95pct": on["share_windows_below"] <= 0.05,
            "static_falls_short": (summary["static"]["share_windows_below"] > 0.05
                                   or summary["static"]["long_run_accuracy"] < cfg.tau)
            if drift else None,
            "stationary_cost_le_certified": on["cost_vs_static_certified"] <= 1.0
            if not drift else None,
            "recovery_le_1500": (len(rec) == len(on["recovery"]) and all(r <= 1500 for r in rec))
            if drift else None}


def replay_to(router: Router, test: RoutingDataset, cfg: ReplayConfig, workdir: str,
              via: str = "inprocess", **meta: str) -> dict[str, Any]:
    """`replay`, then WORKDIR/replay.json (with `meta`) and replay.png; prints the table and
    the checks. Returns the payload."""
    outputs.make_dir(workdir)  # before the replay: a bad --workdir costs no minutes
    payload = {**replay(router, test, cfg, via), "via": via, **meta}
    with open(os.path.join(workdir, "replay.json"), "w") as f:
        json.dump(payload, f, indent=1)
    plot(payload, os.path.join(workdir, "replay.png"))
    print(f"{cfg.scenario} at τ={cfg.tau}, seed {cfg.seed}, on {test.name} "
          f"({meta.get('split', 'test')} split, {test.n_queries} queries; {cfg.n} requests, "
          f"feedback {cfg.feedback_fraction:.0%} after {cfg.delay})")
    print(table(payload))
    for event in payload["online_events"]:
        print(f"  at request {event['at']}: {event['model']} {event['event']} "
              f"(shortfall {event['shortfall']:+.3f})")
    print("checks:", json.dumps(payload["checks"]))
    if "checks_http" in payload:
        print("checks (online_http):", json.dumps(payload["checks_http"]))
        print(f"same model chosen in-process and through HTTP: "
              f"{payload['agreement']['same_model']:.2%} of the requests")
    return payload


def _jsonable(cfg: ReplayConfig) -> dict[str, Any]:
    return json.loads(json.dumps(dataclasses.asdict(cfg)))
