"""Serving an exported PROTEUS router: `Router.load(ARTIFACT)` and `router.route(queries, tau)`.

An artifact (written by `proteus.training.export.write_artifact`) is a directory:

    manifest.json      models, prices, encoder, feature_dim, λ(τ) table, operating points,
                       certification, versions, the size and sha256 of every other file, and a
                       digest of itself
    params/            the router's parameters (Orbax, via `proteus.serving.artifact.save_params`)
    route.jaxexport    the routing function serialised with `jax.export` (symbolic batch "b")

`Router.load` verifies all of it before serving (`proteus.serving.artifact`: what is checked and the
threat model), and every decision is checked finite before it is returned (`RoutingError`).
Inputs are validated by one set of functions shared by every front door (the request model:
`proteus.serving.protocol` for HTTP, the command line, the gateway and the online service;
`proteus.serving.inputs` for what they share with the Python API).

Loading needs numpy, jax, orbax and json only (no flax, no trainer, no config code); a text
encoder is rebuilt from the manifest only when the artifact was trained on one.

A request's τ is first mapped to an operating point of the manifest's table
(`proteus.operating`, the same rule evaluation uses): the policy at a target τ', or one
fixed model. The exported function takes both (τ' and the fixed model, −1 for the policy) and
computes λ(τ') from the lane table exactly as training-time evaluation does.

A router trained with a task prior (the manifest's `tasks`, e.g. MMLU-Pro's categories) also takes
each query's task: one of those names, or None for a task it does not know (routed without the
task prior). Its operating points and certificate were measured on queries that carried their
task, so traffic should too (`task_ids`; the rule for names: `proteus.tasks`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from proteus.operating import OperatingPoint, OperatingPolicy, exclusion
from proteus.serving import artifact, manifest_checks
from proteus.serving.artifact import ArtifactError
from proteus.serving.inputs import check_features, check_text, resolve_taus
from proteus.tasks import UNKNOWN, TaskVocabulary
from proteus.types import Decisions

MAX_BUCKET = 4096  # rows per compiled call; larger inputs are chunked


class RoutingError(RuntimeError):
    """The routing function returned non-finite values (a corrupted or broken artifact)."""


def finite_rows(raw: Decisions) -> np.ndarray:
    """[B] bool: the rows whose model index is one of the M models and whose μ, λ, p̂ and ĉ
    are all finite."""
    m = np.shape(raw.p_hat)[1]
    return ((raw.model >= 0) & (raw.model < m) & np.isfinite(raw.mu) & np.isfinite(raw.lam)
            & np.isfinite(raw.p_hat).all(axis=1) & np.isfinite(raw.c_hat).all(axis=1))


def take_rows(d: Decisions, rows: np.ndarray) -> Decisions:
    """The decisions of `rows` ([R] indices) only."""
    return Decisions(*[None if f is None else tuple(f[i] for i in rows.tolist())
                       if isinstance(f, tuple) else f[rows] for f in d])


_PACKED_CALLS: dict[str, Any] = {}  # sha256 of the serialised function -> its jitted call


def _packed_call(exported: jax.export.Exported, sha256: str):
    """jit(exported.call) with its five outputs packed into one [B, 3 + 2M] array (one transfer).

    Shared by every `Router` of the same function, so loading an artifact twice compiles once.
    """
    if sha256 not in _PACKED_CALLS:
        def packed(params, lane_taus, lane_lams, features, tau, fixed, *task):
            model, mu, p_hat, c_hat, lam = exported.call(params, lane_taus, lane_lams, features,
                                                         tau, fixed, *task)
            cols = [model[:, None].astype(jnp.float32), mu[:, None], lam[:, None], p_hat, c_hat]
            return jnp.concatenate(cols, axis=1)  # model indices < 2**24 are exact in float32

        _PACKED_CALLS[sha256] = jax.jit(packed)
    return _PACKED_CALLS[sha256]


def _bucket(n: int) -> int:
    """Rows a batch of n is padded to: the next power of two (bounds the compiled shapes)."""
    return 1 << max(0, n - 1).bit_length()


class Router:
    """A loaded artifact: τ resolution, the compiled routing function and (maybe) an encoder.

    Thread-safe after `load`. Use `Router.load(path)`, not the constructor.
    """

    def __init__(self, path: str, manifest: dict[str, Any], params: Any,
                 exported: jax.export.Exported, fallback: str | None):
        self.path = path
        self.manifest = manifest
        self.models: tuple[str, ...] = tuple(manifest["models"])
        self.feature_dim: int = int(manifest["feature_dim"])
        self.vocabulary = TaskVocabulary(tuple(manifest.get("tasks", ())))
        self.tasks: tuple[str, ...] = self.vocabulary.names  # the task prior's names
        lam = manifest["lambda"]
        self.policy = OperatingPolicy(manifest["operating"], manifest["certification"]["table"],
                                      fallback or manifest["fallback"], self.models)
        self.fallback_override = fallback  # what `load` was given (a reload keeps it)
        self._params = jax.device_put(params)
        self._lanes = (jnp.asarray(lam["taus"], jnp.float32), jnp.asarray(lam["lams"], jnp.float32))
        self._fn = _packed_call(exported, manifest["function"]["sha256"])
        self._encoder = None
        if manifest["encoder"]["kind"] != "precomputed":
            from proteus.encoders import encoder_from_config  # noqa: PLC0415 (text artifacts only)
            self._encoder = encoder_from_config(manifest["encoder"])
            if self._encoder.dim != self.feature_dim:
                raise ArtifactError(f"{path}: encoder {self._encoder.id!r} gives "
                                    f"{self._encoder.dim}-d features, the router takes "
                                    f"{self.feature_dim}")

    @classmethod
    def load(cls, path: str, fallback: str | None = None, warmup: int = 1) -> Router:
        """Load an artifact directory after verifying it (see `proteus.serving.artifact`).

        Args:
          path: the artifact written by `proteus.training.export.write_artifact`.
          fallback: "best_effort" | "refuse" for infeasible τ; None keeps the manifest's default.
          warmup: compile the batch buckets up to this many rows now (0: on first use).

        Raises:
          ArtifactError: naming the file or manifest field that is missing, corrupted or
            inconsistent.
        """
        manifest = artifact.read_manifest(path)
        artifact.verify_files(path, manifest)
        manifest_checks.validate_manifest(path, manifest)
        exported = artifact.load_function(path, manifest)
        params = artifact.load_params(os.path.join(path, artifact.PARAMS_DIR))
        want = exported.in_tree.children()[0].children()[0]  # ((args...), kwargs)
        if jax.tree.structure(params) != want:
            raise ArtifactError(f"{path}: parameters {jax.tree.structure(params)} do not match "
                                f"the routing function's {want}")
        table = params.get("calib", {}).get("task_prior")
        if (0 if table is None else np.shape(table)[0] - 1) != len(manifest.get("tasks", [])):
            raise ArtifactError(f"{path}: the manifest's {len(manifest.get('tasks', []))} tasks "
                                "do not match the parameters' task prior")
        leaves = jax.tree_util.tree_flatten_with_path(params)[0]
        manifest_checks.check_finite_params(path, [(jax.tree_util.keystr(k), v) for k, v in leaves])
        router = cls(path, manifest, params, exported, fallback)
        router.warmup(warmup)
        return router

    @property
    def fallback(self) -> str:
        return self.policy.fallback

    @property
    def accepts_text(self) -> bool:
        return self._encoder is not None

    @property
    def cheap_to_encode(self) -> bool:
        """True for precomputed features and the hashing encoder: a batch encodes and routes in
        well under a millisecond, so servers route it on their event loop (no worker thread)."""
        return self.manifest["encoder"]["kind"] in ("hashing", "precomputed")

    @property
    def cost_scale(self) -> float:
        """c_ref in USD: the routing rule's cost normaliser (the mean cost of the dearest model),
        for callers that re-apply the rule μ p̂ − (1 − μ) ĉ / c_ref to `run`'s outputs
        (`proteus.operating.exclusion`)."""
        return float(self._params["stats"]["c_ref"])

    def warmup(self, rows: int) -> None:
        """Compile every batch bucket up to `rows` rows (at most `MAX_BUCKET`)."""
        size = 1
        while size <= min(rows, MAX_BUCKET):
            self.run(np.zeros((size, self.feature_dim), np.float32), np.zeros(size, np.float32),
                     np.full(size, -1, np.int32))
            size *= 2

    def resolve(self, tau: Any) -> OperatingPoint:
        """The operating point for a requested τ (see `OperatingPolicy.resolve`)."""
        return self.policy.resolve(tau)

    def require_text(self) -> None:
        """Raise ValueError unless the artifact has a text encoder."""
        if self._encoder is None:
            raise ValueError(
                f"this artifact was trained on precomputed features (encoder "
                f"{self.manifest['encoder']['id']!r}), so it cannot encode text queries; send "
                f"'features' ({self.feature_dim} floats per query) instead")

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """[B] non-empty str -> [B, D] float32 features, with the artifact's own encoder."""
        self.require_text()
        for i, text in enumerate(texts):
            check_text(text, f"query {i}")
        return np.asarray(self._encoder.encode(list(texts)), np.float32)

    def check_features(self, features: Any, one_row: bool = False) -> np.ndarray:
        """`check_features` at this artifact's feature_dim ([B, D] float32, or [D] if one_row)."""
        return check_features(features, self.feature_dim, one_row)

    def check_finite(self, raw: Decisions) -> None:
        """Raise `RoutingError` naming the queries whose decisions are not finite."""
        bad = np.flatnonzero(~finite_rows(raw))
        if bad.size:
            raise RoutingError(f"{self.path}: the router returned non-finite μ/p̂/ĉ/λ for "
                               f"{bad.size} of {len(raw.mu)} queries (first: {bad[:5].tolist()}); "
                               "the artifact is broken: re-export it")

    def task_ids(self, task: Any, n: int) -> np.ndarray:
        """The queries' tasks -> [n] int32 ids in `self.tasks` (`UNKNOWN` = −1: not known).

        task: None (no task given), a name or None for every query, or [n] names / None. The
        names follow `proteus.tasks`' rule (an unknown name is a ValueError: a typo would
        silently route without the task prior); any name given to a router trained without a
        task prior is refused too.
        """
        if task is None or isinstance(task, str):
            given = [task] * n
        elif isinstance(task, Sequence | np.ndarray):
            given = list(task)
        else:
            raise ValueError(f"task must be a name, None or a list of them, got "
                             f"{type(task).__name__}")
        if len(given) != n:
            raise ValueError(f"got {len(given)} tasks for {n} queries")
        if not self.tasks and any(t is not None for t in given):
            raise ValueError("this router was trained without a task prior: drop 'task'")
        return self.vocabulary.ids(given)

    def run(self, features: np.ndarray, operating_tau: np.ndarray,
            fixed: np.ndarray | None = None, task_ids: np.ndarray | None = None) -> Decisions:
        """The exported routing function at given operating points (no τ resolution): the
        network's five fields of `Decisions` (the operating-table fields are None).

        Args:
          features: [B, D] float32.
          operating_tau: [B] float32 τ' per query (NaN allowed where `fixed` >= 0).
          fixed: [B] int32 model of a fixed-model point, −1 for the policy (None: all −1).
          task_ids: [B] int32 task ids (`task_ids`; None: all unknown). Ignored by a router
            without a task prior.
        """
        n = features.shape[0]
        fixed = np.full(n, -1, np.int32) if fixed is None else np.asarray(fixed, np.int32)
        tasks = (np.full(n, UNKNOWN, np.int32) if task_ids is None
                 else np.asarray(task_ids, np.int32))
        # A fixed-model point has no τ'; the policy still runs on its rows, so give it a number.
        operating_tau = np.where(fixed >= 0, 0.0, operating_tau).astype(np.float32)
        parts = []
        for start in range(0, n, MAX_BUCKET):
            x, t = features[start:start + MAX_BUCKET], operating_tau[start:start + MAX_BUCKET]
            f, k = fixed[start:start + MAX_BUCKET], tasks[start:start + MAX_BUCKET]
            pad = _bucket(x.shape[0]) - x.shape[0]
            if pad:
                x = np.concatenate([x, np.zeros((pad, x.shape[1]), np.float32)])
                t = np.concatenate([t, np.zeros(pad, np.float32)])
                f = np.concatenate([f, np.full(pad, -1, np.int32)])
                k = np.concatenate([k, np.full(pad, UNKNOWN, np.int32)])
            task_arg = (k,) if self.tasks else ()
            out = np.asarray(self._fn(self._params, *self._lanes, x, t, f, *task_arg))
            parts.append(out[: out.shape[0] - pad])
        m = len(self.models)
        if not parts:  # no rows (an empty [0, D] batch): no call, an answer of the function's width
            parts = [np.zeros((0, 3 + 2 * m), np.float32)]
        out = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return Decisions(model=out[:, 0].astype(np.int32), mu=out[:, 1], lam=out[:, 2],
                         p_hat=out[:, 3:3 + m], c_hat=out[:, 3 + m:])

    def decide(self, features: Any, tau: Any, task: Any = None) -> Decisions:
        """Route B feature rows ([D] or [B, D]) at τ (a scalar or [B], one per query), each of
        task `task` (see `task_ids`).

        Each distinct τ is checked once, where it is resolved (`inputs.resolve_taus`).

        Raises:
          ValueError: bad features, τ or task; `InfeasibleTauError` under the "refuse" fallback.
          RoutingError: the router returned non-finite values (never silently passed on).
        """
        x = self.check_features(features)
        points, inverse = resolve_taus(self.resolve, tau, x.shape[0])
        decisions = self.run_points(x, points, inverse, self.task_ids(task, x.shape[0]))
        self.check_finite(decisions)
        return decisions

    def run_points(self, features: np.ndarray, points: Sequence[OperatingPoint],
                   inverse: np.ndarray, task_ids: np.ndarray | None = None) -> Decisions:
        """Route row i of features [B, D] float32 (task id task_ids[i], see `run`) at the
        resolved point points[inverse[i]], around the models that point excludes, if any
        (`proteus.operating.exclusion`).

        Not checked for finiteness: `decide` raises, `dispatch.route_items` fails bad rows alone.
        """
        operating = np.asarray([p.operating_tau for p in points], np.float32)[inverse]
        fixed = np.asarray([p.operating_model for p in points], np.int32)[inverse]
        raw = self.run(features, operating, fixed, task_ids)
        if any(p.excluded for p in points):  # a point that routes around models
            mask = exclusion.rows_mask([points[i].excluded for i in inverse.tolist()],
                                       len(self.models))
            raw = raw._replace(model=exclusion.route_around(raw.model, raw.mu, raw.p_hat,
                                                            raw.c_hat, self.cost_scale, mask))
        return self.assemble(raw, points, inverse)

    def assemble(self, raw: Decisions, points: Sequence[OperatingPoint],
                 inverse: np.ndarray) -> Decisions:
        """`run`'s decisions completed with the operating point of query i: points[inverse[i]]."""
        pick = lambda field, dtype: np.asarray([getattr(p, field) for p in points], dtype)[inverse]
        return raw._replace(tau=pick("tau", np.float64),
                            operating_tau=pick("operating_tau", np.float64),
                            point=pick("point", np.int32), feasible=pick("feasible", bool),
                            reason=tuple(points[i].reason for i in inverse.tolist()))

    def route(self, queries: str | Sequence[str] | Any, tau: Any,
              task: Any = None) -> list[dict[str, Any]]:
        """Route text queries (str or [B] str) or features ([D] or [B, D]) at τ (scalar or [B]),
        of task `task` (None, a name, or [B]; see `task_ids`).

        Returns:
          one decision dict per query (`records`: what the CLI and HTTP return).
        """
        if isinstance(queries, str):
            queries = [queries]
        is_text = isinstance(queries, Sequence) and any(isinstance(q, str) for q in queries)
        return self.records(self.decide(self.encode(queries) if is_text else queries, tau, task))

    def records(self, d: Decisions) -> list[dict[str, Any]]:
        """[B] decisions as JSON-able dicts, built column-wise: model (name), model_index, mu,
        p_hat and c_hat ({model: value}), lambda, tau, operating_tau (None at a fixed-model
        point), operating_point, feasible, certified, reason, operating_model (or None)."""
        certified, names = self.policy.certified, self.models
        cols = zip(d.model.tolist(), d.mu.tolist(), d.p_hat.tolist(), d.c_hat.tolist(),
                   d.lam.tolist(), d.tau.tolist(), d.operating_tau.tolist(), d.point.tolist(),
                   d.feasible.tolist(), d.reason, strict=True)
        fixed = self.policy.models
        return [{"model": names[m], "model_index": m, "mu": mu,
                 "p_hat": dict(zip(names, p, strict=True)),
                 "c_hat": dict(zip(names, c, strict=True)), "lambda": lam, "tau": tau,
                 "operating_tau": None if op != op else op, "operating_point": point,
                 "feasible": ok, "certified": certified, "reason": why,
                 "operating_model": names[fixed[point]] if fixed[point] >= 0 else None}
                for m, mu, p, c, lam, tau, op, point, ok, why in cols]

    def info(self) -> dict[str, Any]:
        """The model pool, prices and feasible τ range (the body of GET /v1/models)."""
        lo, hi = self.policy.tau_range
        mf = self.manifest
        return {"models": [{"name": name, "index": i, "price": mf["prices"].get(name),
                            "mean_cost_usd": mf["mean_cost_usd"][i]}
                           for i, name in enumerate(self.models)],
                "feasible_tau": {"min": lo, "max": hi},
                "certified": self.policy.certified, "fallback": self.fallback,
                "promise": self.policy.table.promise() if self.policy.certified else None,
                "encoder": mf["encoder"]["id"], "feature_dim": self.feature_dim,
                "accepts_text": self.accepts_text, "tasks": list(self.tasks)}
