"""Tests for proteus.pipeline (setup, train, routing) and its workdir layer experiments.runs:
learning to meet τ, kill-and-resume, vmapped runs, evaluation."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import runs
from experiments.configs import quickstart
from proteus.pipeline import routing
from proteus.pipeline import setup as setup_lib
from proteus.pipeline.fit import run_slice
from proteus.training import loop, train
from tests import core_helpers


class _Killed(Exception):
    """Stands in for the process dying right after a checkpoint was written."""


def _train(config, workdir, splits, setup=None):
    """`runs.train` (no progress bar) on a committed setup (see tests/core_helpers): the final
    [S] state and the setup."""
    setup = setup if setup is not None else core_helpers.tiny_setup(config, splits)
    trained = runs.train(config, str(workdir), splits, setup=setup, progress=False)
    return trained.state, trained.setup


# ----------------------------------------------------------------------------- learning


# Two runs with different HParams, trained together in one program (also the vmapped side of
# test_vmapped_runs_equal_separate_runs).
TWO_RUNS = train.HParams(pred_lr=jnp.array([3e-3, 3e-3]), policy_lr=jnp.array([1e-3, 2e-3]),
                         ent_coef=jnp.array([1e-3, 0.0]), dual_lr=jnp.array([0.5, 1.0]),
                         margin=jnp.array([0.015, 0.03]))


def test_policy_meets_tau_on_separable_problem(tmp_path):
    """Trained briefly, the router meets each τ on test, far cheaper than the strong model.

    The data (tests/core_helpers.separable_dataset): "cheap" solves easy queries, "mid" the
    middle, "strong" nearly all at 10x cheap's price; the features reveal the difficulty. Two
    runs with different hyperparameters are trained side by side; both must meet τ.
    """
    # dual_avg_start 0.025 · 600 = 15 steps, as in tiny_config (0.5 · 30): the same StaticConfig,
    # so the same compiled programs as the other tests.
    config = core_helpers.tiny_config(pred_max_steps=300, policy_steps=600, dual_avg_start=0.025)
    config.lanes.spacing, config.lanes.lo, config.lanes.hi = "linear", 0.5, 0.95
    config.checkpoint.every_chunks = 1000  # phase ends only: this test is about learning
    splits = core_helpers.tiny_splits(config)
    setup = core_helpers.tiny_setup(config, splits, hparams=TWO_RUNS)
    state, setup = _train(config, tmp_path, splits, setup)
    np.testing.assert_allclose(state.lane_taus, [[0.5, 0.65, 0.8, 0.95]] * 2, rtol=1e-6)
    test = splits["test"]
    taus = np.array([0.5, 0.65, 0.8, 0.9, 0.95])
    strong_cost = float(test.costs[:, 2].mean())
    # Test accuracy is measured on n_test queries: 2.5 standard errors of sampling noise below τ
    # (0.012 at τ = 0.95, 0.025 at τ = 0.8, 0.031 at τ = 0.5 on 1,600 queries).
    slack = 2.5 * np.sqrt(taus * (1 - taus) / test.n_queries)
    for run in (0, 1):
        # On the policy split (the labels the duals saw) every lane reached about τ + margin.
        assert np.all(np.asarray(state.duals.acc_avg[run]) >= np.asarray(state.lane_taus[run]))
        # λ rises with τ: a dearer target needs a higher price on accuracy.
        assert np.all(np.diff(np.asarray(state.duals.lam_avg[run])) > 0)
        # The deployed router: the operating point of each τ chosen on `val`
        # (proteus.operating).
        block = routing.proteus_blocks(config, setup, state, run, splits, taus)[0]["proteus"]
        acc, cost = np.asarray(block["accuracy"]), np.asarray(block["cost"])
        assert all(block["feasible"][:3]), block["reason"]
        assert np.all(acc >= taus - slack), (run, acc - taus, slack)
        assert np.all(np.diff(acc) >= 0)  # asking for more buys more
        assert np.all(cost[:3] <= 0.6 * strong_cost), (run, cost / strong_cost)
        assert cost[0] <= 0.2 * strong_cost  # τ = 0.5 is mostly the cheap model (0.1x)


# ----------------------------------------------------------------------------- resume


@pytest.fixture(scope="module")
def resume_case(tmp_path_factory):
    """The tiny config (30 predictor + 30 policy steps, checkpoints at steps 20, 30, 40, 60), its
    splits and the final state of an uninterrupted run."""
    config = core_helpers.tiny_config()
    splits = core_helpers.tiny_splits(config)
    state, _ = _train(config, tmp_path_factory.mktemp("uninterrupted"), splits)
    return config, splits, state


def _killing_fit(kill_after: int, calls: list):
    """`loop.fit` whose save callback raises right after its `kill_after`-th call."""
    real_fit = loop.fit

    def fit(*args, callbacks, **kwargs):
        def save(phase, state, phase_end):
            callbacks.save(phase, state, phase_end)
            calls.append((phase, int(np.asarray(state.step)[0])))
            if len(calls) == kill_after:
                raise _Killed(calls[-1])

        return real_fit(*args, callbacks=callbacks._replace(save=save), **kwargs)

    return fit


@pytest.mark.parametrize("kill_after, killed_at", [(2, ("predictor", 20)),
                                                   (5, ("policy", 40))])
def test_resume_after_kill_is_bit_identical(resume_case, tmp_path, monkeypatch, kill_after,
                                            killed_at):
    """Kill once in each phase; resuming from the checkpoint reproduces every bit of the state.

    Save calls of the run: predictor 10, 20, 30, then policy 30 (the frozen state), 40, 50, 60;
    the kills come right after the checkpoints at 20 (predictor) and 40 (policy) were written.
    The restored state's arrays are committed to the device, so the resumed run even runs
    separately compiled programs (jit keys on that) and must still match bit for bit.
    """
    config, splits, reference = resume_case
    calls = []
    with monkeypatch.context() as patch:
        patch.setattr(loop, "fit", _killing_fit(kill_after, calls))
        with pytest.raises(_Killed):
            _train(config, tmp_path, splits)
    assert calls[-1] == killed_at
    # load_trained needs the config the main job writes, and refuses an unfinished run.
    (tmp_path / "config.json").write_text(config.to_json_best_effort())
    with pytest.raises(ValueError, match="has not finished"):
        runs.load_trained(str(tmp_path), splits)
    resumed, _ = _train(config, tmp_path, splits)
    assert int(resumed.step[0]) == 60
    assert core_helpers.tree_diff(resumed, reference) == []
    loaded = runs.load_trained(str(tmp_path), splits).state
    assert core_helpers.tree_diff(loaded, reference) == []


def test_state_template_is_the_fresh_state_without_its_values(resume_case):
    """What `load_trained` restores into: the fresh state's structure, shapes, dtypes and
    placement, as `jax.ShapeDtypeStruct`s (the resume test above restores a finished run into it
    bit for bit)."""
    config, splits, _ = resume_case
    setup = core_helpers.tiny_setup(config, splits)
    fresh, template = setup_lib.initial_state(setup), setup_lib.state_template(setup)
    assert jax.tree.structure(template) == jax.tree.structure(fresh)
    for got, want in zip(jax.tree.leaves(template), jax.tree.leaves(fresh), strict=True):
        assert isinstance(got, jax.ShapeDtypeStruct)
        assert (got.shape, got.dtype, got.sharding) == (want.shape, want.dtype, want.sharding)


# ----------------------------------------------------------------------------- vmapped runs


def test_vmapped_runs_equal_separate_runs(resume_case, tmp_path):
    """Two runs with different HParams in one program equal the same runs trained alone.

    Equal to float rounding, not bit for bit: XLA computes the batched ([S, ...]) matmuls of the
    vmapped program with other kernels than the unbatched ones. The integer leaves (step,
    pred_steps, bad_evals) and the host schedule must agree exactly.
    """
    config, splits, _ = resume_case
    setup = core_helpers.tiny_setup(config, splits, hparams=TWO_RUNS)
    together, _ = _train(config, tmp_path / "together", splits, setup)
    # the two runs really differ (different keys and hyperparameters)
    assert float(jnp.abs(together.duals.lam[0] - together.duals.lam[1]).max()) > 0.0
    for run in (0, 1):
        alone_setup = dataclasses.replace(
            setup, hparams=jax.tree.map(lambda x, r=run: x[r:r + 1], setup.hparams),
            run_keys=setup.run_keys[run:run + 1], init_keys=setup.init_keys[run:run + 1])
        alone, _ = _train(config, tmp_path / f"alone{run}", splits, alone_setup)
        jax.tree.map(lambda a, b, r=run: np.testing.assert_allclose(
            np.asarray(a)[r], np.asarray(b)[0], rtol=1e-5, atol=1e-5), together, alone)
        for name in ("step", "pred_steps", "bad_evals"):
            assert int(getattr(together, name)[run]) == int(getattr(alone, name)[0]), name


# ----------------------------------------------------------------------------- setup, eval


def test_make_setup_derives_runs_lanes_and_schedule():
    config = core_helpers.tiny_config()
    config.num_seeds = 3
    splits = core_helpers.tiny_splits(config)
    setup = setup_lib.make_setup(config, splits)
    assert setup.hparams.policy_lr.shape == (3,) and setup.run_keys.shape == (3,)
    # run r's base key is fold_in(key(seed), r), split into (init, run) keys.
    init1, run1 = jax.random.split(jax.random.fold_in(jax.random.key(config.seed), 1))
    np.testing.assert_array_equal(jax.random.key_data(setup.run_keys[1]),
                                  jax.random.key_data(run1))
    np.testing.assert_array_equal(jax.random.key_data(setup.init_keys[1]),
                                  jax.random.key_data(init1))
    # dual_avg_start is a fraction of the policy phase: 0.5 · 30 = 15 steps.
    assert setup.static.duals.avg_start == 15
    assert setup.static.spec.n_models == 3 and setup.static.spec.feature_dim == 6
    # the lanes (from the policy labels) go into the fresh state, the one copy readers take
    state = setup_lib.initial_state(setup)
    np.testing.assert_array_equal(state.lane_taus, np.stack([setup.init.lane_taus] * 3))
    config.train.policy_steps = 35
    with pytest.raises(ValueError, match="multiple of train.chunk_size"):
        setup_lib.make_setup(config, splits)


def test_run_slice_by_hand():
    """Run r of every [S] leaf: device trees in one program, host trees as numpy."""
    keys = jax.random.split(jax.random.key(0), 3)
    tree = {"w": jnp.arange(6.0).reshape(3, 2), "step": jnp.array([4, 5, 6]), "key": keys}
    one = run_slice(tree, 1)
    np.testing.assert_array_equal(one["w"], [2.0, 3.0])
    assert int(one["step"]) == 5 and one["key"].shape == ()
    np.testing.assert_array_equal(jax.random.key_data(one["key"]), jax.random.key_data(keys[1]))
    assert int(run_slice(tree, -1)["step"]) == 6
    host = run_slice({"w": np.arange(6).reshape(3, 2)}, 2)["w"]
    assert isinstance(host, np.ndarray) and host.tolist() == [4, 5]


def test_eval_taus_by_hand():
    config = core_helpers.tiny_config()
    config.eval.tau_lo, config.eval.tau_hi, config.eval.tau_step = 0.8, 0.9, 0.05
    config.eval.wide_n = 3
    # default grid 0.8, 0.85, 0.9; wide grid linspace(0.5, 0.9, 3) = 0.5, 0.7, 0.9; the union,
    # sorted: 0.5, 0.7, 0.8, 0.85, 0.9.
    taus = routing.eval_taus(config, np.array([0.5, 0.6, 0.9]))
    np.testing.assert_allclose(taus, [0.5, 0.7, 0.8, 0.85, 0.9], atol=1e-9)
    config.eval.wide_n = 0
    np.testing.assert_allclose(routing.eval_taus(config, jnp.array([0.5, 0.95])),
                               [0.8, 0.85, 0.9], atol=1e-9)


def test_eval_taus_no_duplicate_when_grids_meet():
    config = core_helpers.tiny_config()
    config.eval.tau_lo, config.eval.tau_hi, config.eval.tau_step = 0.8, 0.9, 0.05
    config.eval.wide_n = 4
    # lanes as make_setup returns them (float32): wide grid 0.5, 0.65, 0.8, 0.95 meets the
    # default 0.8; expected union 0.5, 0.65, 0.8, 0.85, 0.9, 0.95.
    taus = routing.eval_taus(config, jnp.array([0.5, 0.6, 0.95], jnp.float32))
    np.testing.assert_allclose(taus, [0.5, 0.65, 0.8, 0.85, 0.9, 0.95], atol=1e-6)


def test_load_trained_needs_a_training_workdir(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        runs.load_trained(str(tmp_path), {})


@pytest.mark.parametrize("progress", [False, True])
def test_load_splits_encodes_silently_without_progress(tmp_path, capsys, progress):
    """On a cold feature cache the quickstart's text encoder runs 3 batches of 1,024 for 2,500
    queries: a bar on stderr with progress, nothing at all without (`launch.train --noprogress`
    on a fresh machine printed one)."""
    config = quickstart.get_config("smoke")
    config.data.source = "synthetic:routerbench?n=2500&seed=0"
    config.data.cache_dir = str(tmp_path)
    splits = setup_lib.load_splits(config, progress)
    assert sum(part.n_queries for part in splits.values()) == 2500
    err = capsys.readouterr().err
    assert ("encode synthetic:routerbench" in err) if progress else err == "", err
