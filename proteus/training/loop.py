"""Compiled chunks of training steps and the Python host loop that runs between them.

The compiled unit is a `lax.scan` over `chunk_size` steps of ONE run, vmapped over S independent
runs (seeds and swept hyperparameters; on a lone CPU device, runs with wide activations are mapped
one after another instead, see `runs_at_once`) and jit-compiled at module level with static
settings, so JAX's cache compiles each phase's program once per process: a sweep of S runs is one
program.
Minibatches are drawn on device from `fold_in(run_key, step)`, so a run resumed from a checkpoint
at a chunk boundary replays exactly the steps an uninterrupted run would take.

Between chunks the host loop (`fit`) evaluates, early-stops the predictor phase, reports metrics
through a callback and checkpoints through another; the library itself does no file I/O here.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging

from proteus.training import crossfit, predictor_phase, train
from proteus.training.networks import RouterSpec, lambda_of_tau, predicted, route_predicted
from proteus.types import Array, Decisions, Params

StepFn = Callable[..., tuple[train.TrainState, dict[str, Array]]]


class LoopConfig(NamedTuple):
    """Host-loop settings; no defaults: `proteus.pipeline.config.loop_config` reads them from the
    config (`train.*`), which holds their defaults and meaning."""

    chunk_size: int
    pred_max_steps: int  # a multiple of chunk_size
    pred_patience: int  # predictor evaluations (one per chunk) without improvement
    policy_steps: int  # a multiple of chunk_size
    run_batch: int  # runs vmapped together inside a chunk (`runs_at_once`); 0: automatic


def make_chunk(static: train.StaticConfig, step_fn: StepFn, chunk_size: int, constrain=None):
    """A pure `chunk(state, run_key, data, hp) -> (state, mean metrics)` for ONE run.

    `constrain` (sharding hook, `proteus.training.sharding.Placement.constrain_batch`) lays out
    each drawn minibatch across devices; None leaves it to XLA.
    """

    def chunk(state: train.TrainState, run_key: Array, data: train.Batch, hp: train.HParams):
        n = data.features.shape[0]

        def body(state, _):
            key = jax.random.fold_in(run_key, state.step)
            k_batch, k_step = jax.random.split(key)
            idx = jax.random.randint(k_batch, (static.batch_size,), 0, n)
            batch = jax.tree.map(lambda v: v[idx], data)  # the rows drawn, absent fields stay None
            batch = constrain(batch) if constrain is not None else batch  # sharding hook
            return step_fn(static, state, k_step, batch, hp)

        state, metrics = jax.lax.scan(body, state, None, length=chunk_size)
        return state, jax.tree.map(lambda m: m.mean(axis=0), metrics)

    return chunk


# On a lone CPU device, runs whose widest activation is at least this many bytes train one after
# another inside the chunk program; smaller ones are vmapped. Measured with the policy step on
# this project's 2-core machine (1 MiB L2 per core), 16 runs, ratio to a loop of one-run chunks:
# 2 MiB per run (the default config's B=256 x K=16 x 128): vmapped 0.73-0.83x, in sequence
# 0.94-1.11x; 1 MiB: 0.80-0.98x vs 0.95-1.04x; 512 KiB: both 1.05-1.10x; 32-256 KiB: vmapped
# 1.26-1.68x, in sequence 1.10-1.33x.
CPU_VMAP_MAX_BYTES = 512 * 1024


def widest_activation(static: train.StaticConfig, phase: str, n_lanes: int = 1) -> int:
    """float32 bytes of one run's widest activation in a step of `phase` ("predictor" or
    "policy", with K = `n_lanes`): the policy's [K, B, policy_hidden] or the fold predictors'
    [F, B, hidden]."""
    spec = static.spec
    if phase == "policy":
        return 4 * n_lanes * static.batch_size * spec.policy_hidden
    return 4 * max(spec.folds, 1) * static.batch_size * spec.hidden


def runs_at_once(run_batch: int, sharded: bool, activation_bytes: int) -> int | None:
    """How many runs one chunk program vmaps together (None: all of them).

    `run_batch` > 0 is taken as given. 0 (automatic) vmaps every run on an accelerator or a device
    mesh, where batched matrix products are the point, and on a lone CPU device when a run's
    widest activation (`widest_activation`) is below `CPU_VMAP_MAX_BYTES`; above it, XLA:CPU runs
    the runs' batched products slower than the same work run by run, so runs go one at a time.
    """
    if run_batch > 0:
        return run_batch
    if sharded or jax.default_backend() != "cpu" or activation_bytes < CPU_VMAP_MAX_BYTES:
        return None
    return 1


@functools.partial(jax.jit, donate_argnames="state", static_argnames=(
    "static", "step_fn", "chunk_size", "wrap", "constrain", "data_axes", "run_batch"))
def run_chunk(state: train.TrainState, run_keys: Array, data: train.Batch, hp: train.HParams, *,
              static: train.StaticConfig, step_fn: StepFn, chunk_size: int, wrap=None,
              constrain=None, data_axes=None,
              run_batch: int | None = None) -> tuple[train.TrainState, dict[str, Array]]:
    """One chunk of S runs: `make_chunk` over the runs, jitted once, donating the state.

    The settings after `*` are static (hashable), so JAX's own jit cache compiles each chunk
    program once per (settings, shapes, placements) for the whole process, however many times
    `fit` runs.

    Args:
      state: TrainState with [S] leaves; run_keys: [S] typed keys; hp: HParams with [S] leaves.
      data: train.Batch, shared by every run unless `data_axes` says otherwise.
      wrap: decorates the one-run chunk before vmap (e.g. `chex.assert_max_traces(n=1)`).
      constrain: sharding hook for each minibatch (see `make_chunk`).
      data_axes: the data's in_axes over runs (None: shared by every run).
      run_batch: runs vmapped together (see `runs_at_once`); None vmaps all S, g < S maps
        groups of g in sequence (`lax.map`). Each run's arithmetic is the same either way.

    Returns:
      (state [S], metrics: each [S], the chunk's mean).
    """
    chunk = make_chunk(static, step_fn, chunk_size, constrain)
    chunk = wrap(chunk) if wrap is not None else chunk
    if run_batch is None or run_batch >= run_keys.shape[0]:
        return jax.vmap(chunk, in_axes=(0, 0, data_axes, 0))(state, run_keys, data, hp)
    # per-run data (the frozen predictor's outputs) is mapped with the state; the rest is shared
    own = {} if data_axes is None else {
        name: getattr(data, name) for name, axis in data_axes._asdict().items() if axis == 0}

    def one_run(xs):
        run_state, key, run_hp, run_data = xs
        return chunk(run_state, key, data._replace(**run_data), run_hp)

    return jax.lax.map(one_run, (state, run_keys, hp, own), batch_size=run_batch)


class ChunkFn(NamedTuple):
    """`run_chunk` with its static settings bound: call it, or `.lower(...)` it (benchmarks)."""

    static: train.StaticConfig
    step_fn: StepFn
    chunk_size: int
    wrap: Callable | None = None
    constrain: Callable | None = None
    data_axes: train.Batch | None = None
    run_batch: int | None = None

    def __call__(self, state, run_keys, data, hp):
        return run_chunk(state, run_keys, data, hp, **self._asdict())

    def lower(self, state, run_keys, data, hp):
        return run_chunk.lower(state, run_keys, data, hp, **self._asdict())


def compile_chunk(static: train.StaticConfig, step_fn: StepFn, chunk_size: int, wrap=None,
                  constrain=None, data_axes=None, run_batch: int | None = None) -> ChunkFn:
    """The chunk program of these settings (see `run_chunk`; compiled on first call, once)."""
    return ChunkFn(static, step_fn, chunk_size, wrap, constrain, data_axes, run_batch)


@functools.partial(jax.jit, static_argnums=0)
def _val_loss(static: train.StaticConfig, params: Params, data: train.Batch) -> Array:
    """Validation predictor loss of every run: [S] (or [S, F] per cross-fitted fold)."""
    batch = train.Batch(data.features, data.scores, data.costs, data.fold)
    return jax.vmap(lambda p: predictor_phase.held_out_loss(static, p, batch))(params)


@functools.partial(jax.jit, static_argnums=0)
def _policy_inputs(static: train.StaticConfig, params: Params, data: train.Batch):
    """Per run: (calibration, (z, p_hat, c_hat)) the policy phase trains on; see below."""
    def one(p):
        if static.spec.folds > 1:
            return crossfit.calibrate_and_predict(static.spec, p, data.features, data.scores,
                                                  data.fold, data.task)
        return p["calib"], predicted(static.spec, p, data.features)  # one predictor: as trained

    return jax.vmap(one)(params)


def policy_phase_data(static: train.StaticConfig, state: train.TrainState,
                      data: train.Batch) -> tuple[train.TrainState, train.Batch]:
    """The frozen predictor's outputs on the policy data, computed once per phase (not per step).

    Cross-fitting: out-of-fold outputs, with the per-model calibration fitted on them and stored
    in the state (a deterministic function of the fold predictors, so a resumed run recomputes
    exactly what it saved). One predictor: its outputs on the held-out `policy` split.
    """
    calib, (z, p_hat, c_hat) = _policy_inputs(static, state.params, data)
    state = state.replace(params={**state.params, "calib": calib})
    return state, data._replace(z=z, p_hat=p_hat, c_hat=c_hat)


_track_best = jax.jit(jax.vmap(predictor_phase.track_best_predictor, in_axes=(0, 0, None)),
                      static_argnums=2)
_freeze = jax.jit(jax.vmap(predictor_phase.freeze_best_predictor))


@functools.partial(jax.jit, static_argnums=0)
def route_grid(spec: RouterSpec, params: Params, lane_taus: Array, lane_lams: Array,
               features: Array, taus: Array, tasks: Array | None = None) -> Decisions:
    """Route every query at every τ of a grid for ONE run: `networks.route` mapped over τ.

    Args:
      params: one run's parameters; lane_taus, lane_lams: [K]; features: [N, D]; taus: [T];
      tasks: [N] int32 task indices (None: unknown; used only when spec.tasks > 0).

    Returns:
      `Decisions` with model, mu: [T, N], lam: [T] and the τ-independent p_hat, c_hat: [N, M].
    """
    prediction = predicted(spec, params, features, tasks)  # τ-independent: once for the grid
    n = features.shape[0]

    def at_tau(tau):
        lam = lambda_of_tau(lane_taus, lane_lams, tau)
        d = route_predicted(spec, params, prediction, jnp.full((n,), tau), jnp.full((n,), lam))
        return d.model, d.mu, lam

    model, mu, lam = jax.lax.map(at_tau, taus)
    return Decisions(model=model, mu=mu, p_hat=prediction[1], c_hat=prediction[2], lam=lam)


class Callbacks(NamedTuple):
    """Host hooks: on_metrics(phase, step, metrics as numpy) and save(phase, state, phase_end).

    `save` is called after every chunk; phase_end is True for the state that starts the policy
    phase (the frozen predictor) and for the final state, which a checkpointer must keep.
    """

    on_metrics: Callable[[str, int, dict], None] = lambda phase, step, metrics: None
    save: Callable[[str, train.TrainState, bool], None] = lambda phase, state, phase_end: None


class Callback:
    """A hook that `proteus.pipeline.train` runs on the host, outside the compiled chunks (brax's
    `progress_fn`, with checkpointing's two more). Override what you need; each is a no-op here.

    restore(state, phase) -> (state, phase): before training, where the run starts (a
      checkpointer returns its newest step; a metrics log drops records past it).
    on_metrics(phase, step, metrics): after every chunk, the chunk's mean metrics ([S] numpy).
    save(phase, state, phase_end): after every chunk (see `Callbacks`).
    close(): when training ends or fails.
    """

    def restore(self, state: train.TrainState, phase: str) -> tuple[train.TrainState, str]:
        return state, phase

    def on_metrics(self, phase: str, step: int, metrics: dict) -> None:
        pass

    def save(self, phase: str, state: train.TrainState, phase_end: bool) -> None:
        pass

    def close(self) -> None:
        pass


class _Progress(Callback):
    """A plain `fn(phase, step, metrics)` as a Callback (brax's progress_fn)."""

    def __init__(self, fn: Callable[[str, int, dict], None]):
        self.fn = fn

    def on_metrics(self, phase: str, step: int, metrics: dict) -> None:
        self.fn(phase, step, metrics)


def as_callbacks(hooks: Iterable[Callback | Callable[[str, int, dict], None]],
                 ) -> tuple[Callback, ...]:
    """Callbacks and plain `fn(phase, step, metrics)` functions, as Callbacks (in order)."""
    return tuple(h if isinstance(h, Callback) else _Progress(h) for h in hooks)


def combine(hooks: Sequence[Callback]) -> Callbacks:
    """The loop's two hooks calling every Callback of `hooks` in order."""
    def on_metrics(phase, step, metrics):
        for hook in hooks:
            hook.on_metrics(phase, step, metrics)

    def save(phase, state, phase_end):
        for hook in hooks:
            hook.save(phase, state, phase_end)

    return Callbacks(on_metrics=on_metrics, save=save)


def fit(static: train.StaticConfig, loop: LoopConfig, state: train.TrainState, run_keys: Array,
        hp: train.HParams, data: dict[str, train.Batch], phase: str = "predictor",
        callbacks: Callbacks | None = None, progress: bool = True,
        constrain=None) -> train.TrainState:
    """Train S vmapped runs through both phases, resuming from `state` and `phase`.

    Args:
      state: TrainState with [S] leading axes (fresh or restored).
      run_keys: [S] typed keys, one per run (the same keys on resume).
      hp: HParams with [S] leaves.
      data: {"pred", "policy", "val"} train.Batch.
      phase: "predictor" or "policy": where a restored state stands.
      constrain: sharding hook for each minibatch (see `make_chunk`); None on one device.

    Returns:
      the final state ([S] leaves).
    """
    callbacks = callbacks or Callbacks()
    step = int(np.asarray(state.step)[0])
    if phase == "predictor":
        state = fit_predictor(static, loop, state, run_keys, hp, data, callbacks, progress,
                              constrain)
        step = int(np.asarray(state.step)[0])
        callbacks.save("policy", state, True)
    policy_end = _policy_end(loop, state)
    if phase == "policy" and loop.policy_steps > 0 and step >= policy_end:
        # A finished run, restored: its calibration was saved with it (policy_phase_data's, in
        # every policy chunk's state), so it is returned as it is. Recomputing the phase's inputs
        # (the cross-fitted calibration) to train no step took 9 of a resumed 8-device sweep's
        # 10 s. (With no policy step, the saved phase-start state has no calibration yet.)
        return state
    state, policy_data = policy_phase_data(static, state, data["policy"])
    state = _unaliased(state)
    n_lanes = state.lane_taus.shape[-1]
    chunk = compile_chunk(static, train.policy_step, loop.chunk_size, constrain=constrain,
                          data_axes=policy_data.run_axes(),
                          run_batch=runs_at_once(loop.run_batch, constrain is not None,
                                                 widest_activation(static, "policy", n_lanes)))
    bar = _progress(progress, "policy", policy_end - step, loop.policy_steps)
    while step < policy_end:
        state, metrics = chunk(state, run_keys, policy_data, hp)
        step += loop.chunk_size
        callbacks.on_metrics("policy", step, jax.device_get(metrics))
        callbacks.save("policy", state, step >= policy_end)
        bar.update(loop.chunk_size)
    bar.close()
    return state


def fit_predictor(static: train.StaticConfig, loop: LoopConfig, state: train.TrainState,
                  run_keys: Array, hp: train.HParams, data: dict[str, train.Batch],
                  callbacks: Callbacks | None = None, progress: bool = True,
                  constrain=None) -> train.TrainState:
    """The predictor phase alone, early-stopped and frozen: what `fit` starts the policy phase
    from ([S] leaves; `data` needs "pred" and "val"). Also the held-out evidence behind the
    automatic settings (`proteus.pipeline.auto`), which read the fold predictors only."""
    state = _predictor_phase(static, loop, state, run_keys, hp, data,
                             callbacks or Callbacks(), progress, constrain)
    state = _freeze(state)
    logging.info("predictor phase done at step %d; best val loss per run %s",
                 int(np.asarray(state.step)[0]), np.round(np.asarray(state.best_val), 4))
    return state


@jax.jit
def _unaliased(state: train.TrainState) -> train.TrainState:
    """Give every leaf its own buffer before a donating chunk.

    `best_predictor` starts as (and `freeze` makes `params["predictor"]` equal to) the other
    predictor tree, and jit may return such leaves as one shared buffer; donating a buffer twice
    is an error, so each phase starts from fresh copies (a few MB, once per phase). One program
    for the whole tree: copied leaf by leaf, each shape compiled its own small program (4.4 of
    the smoke main job's 27 CPU seconds from an empty compile cache).
    """
    return jax.tree.map(jnp.copy, state)


def _policy_end(loop: LoopConfig, state: train.TrainState) -> int:
    """The policy phase runs `policy_steps` after the step at which the predictor stopped."""
    pred_steps = int(np.asarray(state.pred_steps)[0])
    return pred_steps + loop.policy_steps


def _predictor_phase(static, loop, state, run_keys, hp, data, callbacks, progress,
                     constrain=None):
    chunk = compile_chunk(static, predictor_phase.predictor_step, loop.chunk_size,
                          constrain=constrain,
                          run_batch=runs_at_once(loop.run_batch, constrain is not None,
                                                 widest_activation(static, "predictor")))
    state = _unaliased(state)
    step = int(np.asarray(state.step)[0])
    bar = _progress(progress, "predictor", loop.pred_max_steps - step, loop.pred_max_steps)
    while step < loop.pred_max_steps:
        state, metrics = chunk(state, run_keys, data["pred"], hp)
        step += loop.chunk_size
        val = _val_loss(static, state.params, data["val"])
        state = _track_best(state, val, loop.pred_patience)
        callbacks.on_metrics("predictor", step, {**jax.device_get(metrics),
                                                 "val_loss": np.asarray(val)})
        bar.update(loop.chunk_size)
        if np.all(np.asarray(state.bad_evals) >= loop.pred_patience):
            logging.info("predictor early-stopped at step %d", step)
            break
        callbacks.save("predictor", state, False)
    bar.close()
    return state.replace(pred_steps=jnp.full_like(state.step, step))


def _progress(enabled: bool, phase: str, remaining: int, total: int):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=total - max(remaining, 0), desc=f"train[{phase}]",
                unit="step", disable=not enabled, leave=False)
