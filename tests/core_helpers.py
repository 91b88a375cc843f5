"""Tiny data and configs shared by the core tests (networks, losses, train, loop, pipeline).

Everything here is small enough for CPU tests: a separable 3-model routing problem, a shrunk
training config built from the real `experiments/configs/common.py`, and tree comparisons.

Compiling a policy chunk (Beta sampling, gradients of log-Beta and digamma, Adam) takes several
seconds on CPU. `loop.run_chunk` is jitted once at module level, so JAX's cache compiles each chunk
program once per session: all core tests use the same data shapes and `tiny_config`. jit compiles
separately for arguments committed to a device (what a checkpoint restore returns) and for
uncommitted ones (what a fresh run starts from); `tiny_setup` commits the setup's arrays, so that
fresh and resumed runs share one compiled program.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from experiments.configs import common
from proteus.data.dataset import RoutingDataset
from proteus.pipeline import config as config_lib
from proteus.pipeline import setup as setup_lib
from proteus.training import networks, train

# The separable problem's models, their costs in USD per call and the difficulty below which each
# model is (mostly) right: cheap solves d < 0.45, mid solves d < 0.75, strong nearly everything.
MODELS = ("cheap", "mid", "strong")
MODEL_COSTS = (1e-4, 3e-4, 1e-3)
SOLVES_BELOW = (0.45, 0.75, 1.4)
SHARPNESS = 15.0  # logit slope of P(correct) in difficulty: high = nearly deterministic

# The networks of `tiny_config` on `separable_dataset` (what `setup.make_setup` derives).
TINY_SPEC = networks.RouterSpec(n_models=3, feature_dim=6, hidden=16, policy_hidden=16,
                                use_tau_input=True, use_lambda_input=True, static_cost=False,
                                folds=1, groups=0)


def spec_for(n_models: int, feature_dim: int, **fields) -> networks.RouterSpec:
    """A RouterSpec with the base config's settings (`router_spec`), `fields` replaced."""
    spec = config_lib.router_spec(common.base_config(), n_models, feature_dim, 0)
    return spec._replace(**fields)


def static_for(spec: networks.RouterSpec, **fields) -> train.StaticConfig:
    """The base config's StaticConfig (`static_config`) around `spec`, `fields` replaced."""
    return config_lib.static_config(common.base_config(), spec)._replace(**fields)


def tiny_stats() -> dict[str, jax.Array]:
    """Identity standardisation, mean costs (1, 2, 3), c_ref 3: the shapes of TINY_SPEC's data."""
    return {"mean": jnp.zeros(6, jnp.float32), "scale": jnp.ones(6, jnp.float32),
            "mean_cost": jnp.arange(1.0, 4.0, dtype=jnp.float32),
            "c_ref": jnp.asarray(3.0, jnp.float32)}


def on_device(tree):
    """`tree` committed to the default device, as `Checkpointer.restore` returns a state."""
    return jax.device_put(tree, jax.devices()[0])


def tiny_setup(config: ml_collections.ConfigDict, splits: dict[str, RoutingDataset],
               hparams: train.HParams | None = None) -> setup_lib.Setup:
    """`setup.make_setup` with its arrays committed to the device (see the module docstring).

    A fresh state built from it (`setup.initial_state`) is committed too, like a restored one.
    """
    setup = setup_lib.make_setup(config, splits, hparams=hparams)
    return dataclasses.replace(
        setup, hparams=on_device(setup.hparams), run_keys=on_device(setup.run_keys),
        init_keys=on_device(setup.init_keys), init=on_device(setup.init))


def init_params(spec: networks.RouterSpec, seed: int, stats: dict[str, jax.Array]):
    """`networks.init_params` under jit: one compile instead of dozens of eager op compiles.

    The stats go in as host arrays, so that committed and uncommitted callers share the compile.
    """
    return _jit_init_params(spec, jax.random.key(seed), jax.tree.map(np.asarray, stats))


_jit_init_params = jax.jit(networks.init_params, static_argnums=0)


def separable_dataset(n: int = 8000, n_features: int = 6, seed: int = 0) -> RoutingDataset:
    """A 3-model problem whose features reveal which cheap model is right.

    Query i has a difficulty d_i ~ U(0, 1); model m is correct with probability
    sigmoid(SHARPNESS (SOLVES_BELOW[m] − d_i)) (binary scores), so about 45% of queries need only
    "cheap", 30% more need "mid", and "strong" solves ~all at 10x cheap's price. Feature 0 is d
    itself, feature 1 is d plus noise, the rest are noise; realised costs jitter ±10% around
    MODEL_COSTS. Mean accuracies ≈ (0.45, 0.76, 0.999).

    Returns:
      RoutingDataset with scores, costs [n, 3] float32 and features [n, n_features] float32.
    """
    rng = np.random.default_rng(seed)
    d = rng.uniform(size=n)
    logits = SHARPNESS * (np.asarray(SOLVES_BELOW)[None, :] - d[:, None])
    scores = (rng.uniform(size=(n, 3)) < 1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
    costs = (np.asarray(MODEL_COSTS)[None, :] * rng.uniform(0.9, 1.1, size=(n, 3)))
    features = rng.normal(size=(n, n_features))
    features[:, 0] = d
    features[:, 1] = d + 0.05 * rng.normal(size=n)
    return RoutingDataset(
        name="separable", models=MODELS, scores=scores, costs=costs.astype(np.float32),
        query_ids=np.array([f"q{i}" for i in range(n)]), tasks=np.array(["t"] * n),
        features=features.astype(np.float32))


@functools.lru_cache(maxsize=1)
def _default_dataset() -> RoutingDataset:
    return separable_dataset()


def tiny_config(**train_overrides) -> ml_collections.ConfigDict:
    """The real base config with the smoke variant, shrunk further; `train_overrides` last.

    Hidden 16, 4 lanes, batch 32, chunks of 10 steps, 30 + 30 steps, a checkpoint every 2 chunks
    (and at the phase ends), no predictor early stop (a vmapped group of runs stops only when all
    runs are patient, so equality across groupings needs a fixed predictor phase length).
    """
    c = common.apply_variant(common.base_config(), "smoke")
    c.name = "tiny"
    c.model.hidden = 16
    c.model.policy_hidden = 16
    c.lanes.n = 4
    c.train.batch_size = 32
    c.train.chunk_size = 10
    c.train.pred_max_steps = 30
    c.train.policy_steps = 30
    c.train.pred_patience = 1000
    c.checkpoint.every_chunks = 2
    c.checkpoint.max_to_keep = 2
    c.train.folds = 1  # the loop's mechanics on the two-split scheme (tests/test_crossfit.py: F)
    c.model.groups = 0  # group priors need cross-fitting
    for name, value in train_overrides.items():
        c.train[name] = value
    return c


def tiny_splits(config: ml_collections.ConfigDict, ds: RoutingDataset | None = None
                ) -> dict[str, RoutingDataset]:
    """`ds` (default: `separable_dataset()`) split as `setup.load_splits` would split it.

    All core tests use the same default data and `tiny_config` shapes, so that they run the same
    compiled programs (see the module docstring).
    """
    ds = _default_dataset() if ds is None else ds
    fractions = {name: float(config.data.splits[name])
                 for name in ("pred", "policy", "val", "calib", "test")}
    return ds.split(fractions, salt=config.data.split_salt)


def tree_diff(a, b) -> list[str]:
    """Paths of leaves of `a` and `b` that differ in structure, dtype, shape or any bit."""
    paths_a, tree_a = jax.tree_util.tree_flatten_with_path(a)
    paths_b, tree_b = jax.tree_util.tree_flatten_with_path(b)
    if tree_a != tree_b:
        return [f"tree structure: {tree_a} != {tree_b}"]
    bad = []
    for (path, x), (_, y) in zip(paths_a, paths_b, strict=True):
        if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
            x, y = jax.random.key_data(x), jax.random.key_data(y)
        x, y = np.asarray(x), np.asarray(y)
        if x.dtype != y.dtype or x.shape != y.shape or x.tobytes() != y.tobytes():
            bad.append(jax.tree_util.keystr(path))
    return bad
