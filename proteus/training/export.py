"""Export a trained router as a self-contained artifact that `proteus.serving.Router` loads.

    bundle = RouterBundle(spec=..., params=..., lane_taus=..., ...)   # one run's trained state
    manifest = write_artifact(bundle, "artifacts/quickstart")

The artifact layout is described in `proteus.serving`; the manifest holds (keys in order):

    format, format_version, created          "proteus-router", 2, ISO-8601 UTC time
    models [M], prices {model: {usd_per_input_token, usd_per_output_token}} where known,
    mean_cost_usd [M]                        per-model mean cost on the predictor's training part
    encoder {id, kind, ...}, feature_dim D   `Encoder.to_config()`; rebuilds the encoder
    spec                                     `RouterSpec` fields
    lambda {taus [K], lams [K], lane_accuracy [K]}   the λ(τ) table (lams as trained, interpolated
                                             in log space; not forced monotone)
    operating {tau, model, accuracy, cost, n_heldout, margin_z}   the candidate operating points
                                             in testing order (`proteus.operating`)
    certification {status, table}            "certified" with the `CertificationTable` dict over
                                             those points, or "uncertified" with null
    feasible_tau {min, max}, fallback        τ <= max is feasible (max null: none is), τ < min is
                                             routed at min; the default infeasible-τ fallback
    function {file, sha256, platforms, calling_convention_version, inputs, outputs}
    params {dir}, training {...}, versions {...}
    heldout {dir, val, calib, pool, texts}   (optional) the evaluation's held-out rows, stored in
                                             `heldout/` for onboarding (`proteus.training.reopen`)
    lineage [{parent, added, removed, ...}]  (optional) how the artifact was derived from others
                                             (`proteus.pipeline.onboard`), oldest step first
    files {path: {bytes, sha256}}            every other file of the artifact (params/ included)
    manifest_sha256                          sha256 of this manifest's canonical JSON without it

`files` and `manifest_sha256` are what `Router.load` verifies (`proteus.serving.artifact`, with the
threat model: they catch corruption and careless edits, not a party who can rewrite every file).

The routing function is `routing_function(spec)` exported with `jax.export` for a symbolic batch
dimension "b": (params, lane_taus [K], lane_lams [K], features [b, D], tau [b], fixed [b] int32)
-> (model [b] int32, mu [b], p_hat [b, M], c_hat [b, M], lam [b]); `fixed` >= 0 routes to that
model whatever the policy says (a fixed-model operating point). A router trained with a task
prior (`spec.tasks` > 0) takes a seventh input, task [b] int32: each query's index in the
manifest's `tasks`, −1 for none; the others keep the six-input function. Parameters are an
input rather than baked-in constants, so the artifact's `params/` is the single copy of the
weights.
"""

from __future__ import annotations

import dataclasses
import datetime
import functools
import hashlib
import json
import os
import shutil
from collections.abc import Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from proteus.environment import library_versions
from proteus.operating import feasible_range
from proteus.serving import artifact, manifest_checks
from proteus.serving import router as serving
from proteus.training import destination, networks, reopen
from proteus.types import Array, Params

DEFAULT_PLATFORMS = ("cpu", "cuda")
PLATFORMS = ("cpu", "cuda", "rocm", "tpu")  # what jax.export lowers for
FUNCTION_INPUTS = ("params", "lane_taus[K]", "lane_lams[K]", "features[b,D]", "tau[b]",
                   "fixed[b]")
TASK_INPUT = "task[b]"  # the seventh input of a router with a task prior
FUNCTION_OUTPUTS = ("model[b]", "mu[b]", "p_hat[b,M]", "c_hat[b,M]", "lam[b]")


@dataclasses.dataclass(frozen=True)
class RouterBundle:
    """Everything an artifact is made of (one run's trained router and its provenance).

    Attributes:
      spec: the networks' shapes.
      params: {"predictor", "policy", "stats", "calib"} of ONE run.
      lane_taus: [K] the lanes' τ, increasing.
      lane_lams: [K] the lanes' inference λ (`DualState.lam_avg`).
      lane_accuracy: [K] accuracy each lane reached in training, on the `policy` split the duals
        trained on (`DualState.acc_avg`; in-sample, not held out).
      models: [M] model names.
      encoder: `Encoder.to_config()` of the features the router was trained on.
      prices: model -> (USD per input token, USD per output token), where known.
      operating: the operating-point table (`proteus.pipeline.routing.operating_table`).
      certification: `CertificationTable.to_dict()` over those points, or None.
      training: provenance (workdir, config, data fingerprint, step, ...), JSON-able.
      tasks: the task prior's vocabulary (spec.tasks names; () without one).
      heldout: the evaluation's held-out rows with every model's labels, stored in the artifact
        for onboarding (`reopen.HeldoutRows`), or None.
      lineage: the steps that derived this router from exported ones (`pipeline.onboard`).
    """

    spec: networks.RouterSpec
    params: Params
    lane_taus: Array
    lane_lams: Array
    lane_accuracy: Array
    models: Sequence[str]
    encoder: Mapping[str, Any]
    operating: Mapping[str, Any]
    prices: Mapping[str, tuple[float, float]] = dataclasses.field(default_factory=dict)
    certification: Mapping[str, Any] | None = None
    training: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    tasks: Sequence[str] = ()
    heldout: reopen.HeldoutRows | None = None
    lineage: Sequence[Mapping[str, Any]] = ()


def routing_function(spec: networks.RouterSpec):
    """The function that is exported: training-time `networks.route` at λ(τ) from the lanes.

    Returns:
      fn(params, lane_taus [K], lane_lams [K], features [B, D], tau [B], fixed [B] int32
      [, task [B] int32 when spec.tasks > 0]) -> (model [B] int32, mu [B], p_hat [B, M],
      c_hat [B, M], lam [B]); fixed >= 0 overrides the policy's choice with that model.
    """

    def fn(params, lane_taus, lane_lams, features, tau, fixed, task=None):
        lam = networks.lambda_of_tau(lane_taus, lane_lams, tau)
        d = networks.route(spec, params, features, tau, lam, task)
        return jnp.where(fixed >= 0, fixed, d.model), d.mu, d.p_hat, d.c_hat, lam

    return fn  # called (and exported) with six inputs when spec.tasks is 0


@functools.lru_cache(maxsize=8)
def _jitted_routing(spec: networks.RouterSpec):
    """jit(routing_function(spec)), one per spec (eager dispatch would be far slower)."""
    return jax.jit(routing_function(spec))


def export_routing_function(spec: networks.RouterSpec, params: Params, n_lanes: int,
                            platforms: Sequence[str] = DEFAULT_PLATFORMS) -> jax.export.Exported:
    """`routing_function(spec)` exported for params' shapes, K lanes and a symbolic batch "b"."""
    (batch,) = jax.export.symbolic_shape("b")
    f32 = lambda *shape: jax.ShapeDtypeStruct(shape, jnp.float32)
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(np.shape(x), np.asarray(x).dtype),
                            params)
    i32 = jax.ShapeDtypeStruct((batch,), jnp.int32)
    args = (abstract, f32(n_lanes), f32(n_lanes), f32(batch, spec.feature_dim), f32(batch), i32,
            *([i32] if spec.tasks else []))
    return jax.export.export(jax.jit(routing_function(spec)), platforms=tuple(platforms))(*args)


def read_operating(path: str) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """A workdir's `certification.json`: (operating table, certification table dict or None).

    Raises:
      FileNotFoundError: no such file (evaluate the workdir first: `launch.evaluate`).
      ValueError: the file lacks a valid operating table.
    """
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: run launch.evaluate on the workdir first; "
                                "the operating points are measured there")
    with open(path) as f:
        payload = json.load(f)
    table = payload.get("operating")
    keys = ("tau", "model", "accuracy", "cost", "n_heldout", "margin_z")
    if not isinstance(table, dict) or any(k not in table for k in keys):
        raise ValueError(f"{path}: no operating table with keys {keys}")
    sizes = {k: len(table[k]) for k in keys[:4]}
    if len(set(sizes.values())) != 1 or not table["tau"]:
        raise ValueError(f"{path}: operating table columns differ in length: {sizes}")
    return table, payload.get("certification")


def _floats(x: Any) -> list[float]:
    return [float(v) for v in np.asarray(x, np.float32).ravel()]


def build_manifest(bundle: RouterBundle, exported: jax.export.Exported,
                   blob: bytes) -> dict[str, Any]:
    """The manifest (schema in the module docstring) for `bundle` and its serialised function."""
    cert = bundle.certification
    lam = {"taus": _floats(bundle.lane_taus), "lams": _floats(bundle.lane_lams),
           "lane_accuracy": _floats(bundle.lane_accuracy)}
    lo, hi = feasible_range(bundle.operating, cert)
    return {
        "format": artifact.FORMAT, "format_version": artifact.FORMAT_VERSION,
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "models": list(bundle.models),
        "prices": {m: {"usd_per_input_token": float(p[0]), "usd_per_output_token": float(p[1])}
                   for m, p in bundle.prices.items()},
        "mean_cost_usd": _floats(bundle.params["stats"]["mean_cost"]),
        "encoder": dict(bundle.encoder), "feature_dim": int(bundle.spec.feature_dim),
        "spec": bundle.spec._asdict(),
        "tasks": list(bundle.tasks),
        "lambda": lam,
        "operating": dict(bundle.operating),
        "certification": {"status": "certified" if cert else "uncertified",
                          "table": dict(cert) if cert else None},
        "feasible_tau": {"min": lo, "max": hi},
        "fallback": cert["fallback"] if cert else "best_effort",
        "function": {"file": artifact.FUNCTION_FILE, "sha256": hashlib.sha256(blob).hexdigest(),
                     "platforms": list(exported.platforms),
                     "calling_convention_version": exported.calling_convention_version,
                     "inputs": [*FUNCTION_INPUTS, *([TASK_INPUT] if bundle.tasks else [])],
                     "outputs": list(FUNCTION_OUTPUTS)},
        "params": {"dir": artifact.PARAMS_DIR},
        "training": dict(bundle.training),
        "versions": library_versions(),
        **({"heldout": bundle.heldout.summary()} if bundle.heldout is not None else {}),
        **({"lineage": [dict(step) for step in bundle.lineage]} if bundle.lineage else {}),
    }


def _check_bundle(bundle: RouterBundle) -> None:
    k, m = np.shape(bundle.lane_taus)[0], len(bundle.models)
    if np.shape(bundle.lane_lams) != (k,) or np.shape(bundle.lane_accuracy) != (k,) or k < 1:
        raise ValueError(f"lane tables must all be [K], got {np.shape(bundle.lane_taus)}, "
                         f"{np.shape(bundle.lane_lams)}, {np.shape(bundle.lane_accuracy)}")
    if m != bundle.spec.n_models:
        raise ValueError(f"{m} model names for a router over {bundle.spec.n_models} models")
    if bundle.heldout is not None and tuple(bundle.heldout.models) != tuple(bundle.models):
        raise ValueError(f"held-out rows of models {list(bundle.heldout.models)} for a router "
                         f"over {list(bundle.models)}")
    if len(bundle.tasks) != bundle.spec.tasks:
        raise ValueError(f"{len(bundle.tasks)} task names for a router with a prior over "
                         f"{bundle.spec.tasks} tasks")
    dim = bundle.encoder.get("dim")
    if dim is not None and dim != bundle.spec.feature_dim:
        raise ValueError(f"encoder {bundle.encoder.get('id')!r} gives {dim}-d features, the "
                         f"router takes {bundle.spec.feature_dim}")


def platforms_known(platforms: Sequence[str]) -> bool:
    """Whether `platforms` is a non-empty list of platforms jax.export lowers for (`PLATFORMS`)."""
    return bool(platforms) and all(p in PLATFORMS for p in platforms)


def check_platforms(platforms: Sequence[str]) -> None:
    """ValueError naming `platforms` unless `platforms_known` (checked before any export work:
    an unknown name used to fail only when the written artifact was verified)."""
    if not platforms_known(platforms):
        raise ValueError(f"platforms {list(platforms)}: give one or more of {list(PLATFORMS)}")


def write_artifact(bundle: RouterBundle, out: str, overwrite: bool = False,
                   platforms: Sequence[str] = DEFAULT_PLATFORMS,
                   verify: bool = True) -> dict[str, Any]:
    """Write `bundle` as an artifact directory `out` and check that it loads and agrees.

    The directory is assembled next to `out` and renamed into place, so a failed export never
    leaves a half-written artifact. The manifest is written last and records the size and sha256
    of every other file plus a digest of itself (`artifact.seal`). With `verify` (the default),
    the written artifact is loaded with `serving.Router.load` and must route probe features as
    the bundle does, and ordinary questions to finite decisions when it takes text
    (`verify_artifact`), before it is moved into place.

    `overwrite` replaces an existing artifact only (`destination.check_replaceable`): anything
    else at `out` is refused before any work. The old artifact and the new one are swapped in one
    rename (Linux `renameat2(RENAME_EXCHANGE)`; elsewhere two renames, the old one kept aside
    until the new one is in place), then the old one is deleted.

    Returns:
      the manifest.

    Raises:
      FileExistsError: `out` exists and is not to be replaced (see above).
      ValueError: a platform jax.export does not lower for (`check_platforms`).
      ArtifactError: the written artifact fails its checks (nothing is left at `out`).
    """
    _check_bundle(bundle)
    check_platforms(platforms)
    out = os.path.abspath(out)
    destination.check_out(out, overwrite)
    params = jax.tree.map(np.asarray, jax.device_get(bundle.params))
    exported = export_routing_function(bundle.spec, params, int(np.shape(bundle.lane_taus)[0]),
                                       platforms)
    blob = bytes(exported.serialize())
    manifest = build_manifest(bundle, exported, blob)
    # what `Router.load` would refuse, refused before writing (as JSON holds it: lists)
    manifest_checks.validate_manifest(out, json.loads(json.dumps(manifest)))
    leaves = jax.tree_util.tree_flatten_with_path(params)[0]
    manifest_checks.check_finite_params(out, [(jax.tree_util.keystr(k), v) for k, v in leaves])
    tmp = f"{out}.partial-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        with open(os.path.join(tmp, artifact.FUNCTION_FILE), "wb") as f:
            f.write(blob)
        artifact.save_params(os.path.join(tmp, artifact.PARAMS_DIR), params)
        if bundle.heldout is not None:
            reopen.write_heldout(bundle.heldout, tmp)
        manifest = artifact.seal(manifest, tmp)  # hashes every file written above
        with open(os.path.join(tmp, artifact.MANIFEST_FILE), "w") as f:
            json.dump(manifest, f, indent=1, allow_nan=False)
        if verify:
            verify_artifact(tmp, bundle)
        destination.move_into_place(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return manifest


# Ordinary questions of several kinds: an artifact that takes text must route them all.
PROBE_TEXTS = (
    "Which gas do plants absorb from the air?", "What is the capital of Australia?",
    "Solve for x: 3x + 7 = 22.", "Who wrote the novel Pride and Prejudice?",
    "Explain how a vaccine trains the immune system.", "Translate 'good morning' into French.",
    "Write a Python function that reverses a string.", "Summarise the causes of the French "
    "Revolution in two sentences.", "Is a tomato a fruit or a vegetable?")


def verify_artifact(path: str, bundle: RouterBundle, n_probe: int = 64) -> None:
    """Load `path` and check its decisions on probe features against `routing_function` (jitted,
    not exported), i.e. against `networks.route` at λ(τ); for an artifact that takes text, also
    that `PROBE_TEXTS` get finite decisions at every operating point (`probe_texts`).

    Raises:
      AssertionError: the artifact routes any probe differently from the bundle's router.
      ArtifactError: it cannot route ordinary text.
    """
    router = serving.Router.load(path, warmup=0)
    stats = bundle.params["stats"]
    rng = np.random.default_rng(0)
    x = np.asarray(stats["mean"]) + np.asarray(stats["scale"]) * rng.normal(
        size=(n_probe, bundle.spec.feature_dim))
    x = x.astype(np.float32)
    tau = np.asarray(rng.uniform(0.0, 1.0, n_probe), np.float32)
    fixed = np.where(rng.uniform(size=n_probe) < 0.25,
                     rng.integers(0, bundle.spec.n_models, n_probe), -1).astype(np.int32)
    task = rng.integers(-1, bundle.spec.tasks, n_probe).astype(np.int32) if bundle.spec.tasks \
        else None
    want = _jitted_routing(bundle.spec)(bundle.params, bundle.lane_taus, bundle.lane_lams, x,
                                        tau, fixed, *([] if task is None else [task]))[0]
    got = router.run(x, tau, fixed, task)
    if not np.array_equal(np.asarray(want), got.model):
        raise AssertionError(f"exported router at {path} disagrees with the trained one on "
                             f"{int(np.sum(np.asarray(want) != got.model))} of {n_probe} "
                             "probe queries")
    if router.accepts_text:
        probe_texts(router)


def probe_texts(router: serving.Router, texts: Sequence[str] = PROBE_TEXTS) -> None:
    """Route `texts` at every operating point of `router` (as an unknown task); raise
    `ArtifactError` naming the questions whose decisions are not finite (e.g. ĉ = inf: their
    encoded features lie far outside what the router was trained on, so it would answer 500)."""
    policy = router.policy
    x = np.tile(router.encode(list(texts)), (len(policy.taus), 1))
    taus = np.repeat(np.nan_to_num(policy.taus, nan=0.0), len(texts)).astype(np.float32)
    fixed = np.repeat(policy.models, len(texts)).astype(np.int32)
    bad = ~serving.finite_rows(router.run(x, taus, fixed)).reshape(len(policy.taus), len(texts))
    failing = [t for t, b in zip(texts, bad.any(axis=0), strict=True) if b]
    if failing:
        raise artifact.ArtifactError(
            f"{router.path}: the router answers non-finite decisions (ĉ, p̂ or μ) for "
            f"{len(failing)} of {len(texts)} ordinary questions (e.g. {failing[0]!r}): the "
            f"features its encoder {router.manifest['encoder']['id']!r} gives real text are far "
            "from those it was trained on, so it would answer them with errors. Not exported: "
            "train it on features of text like the traffic it will route")
