"""Tests for proteus.checkpoint: training checkpoints (keep-last-N, resume point) and pytrees."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from proteus import checkpoint, losses, train
from tests import core_helpers


@pytest.fixture(scope="module", autouse=True)
def _launcher_smoke_in_background(request):
    """Start tests/test_launch_train.py's subprocess now, if selected (see core_helpers)."""
    core_helpers.start_launcher_smoke_if_selected(request.session)


def _tree(value: float) -> dict:
    """A small state-like pytree: float and int leaves, a NamedTuple, nested dicts."""
    return {"step": jnp.asarray(int(value), jnp.int32),
            "params": {"w": jnp.full((2, 3), value, jnp.float32), "b": jnp.arange(3.0) + value},
            "duals": losses.init_dual(jnp.full((4,), value), jnp.linspace(0.5, 0.9, 4))}


def test_checkpointer_round_trip_and_keep_last(tmp_path):
    ckpt = checkpoint.Checkpointer(str(tmp_path / "ckpt"), max_to_keep=2)
    assert ckpt.latest_step() is None
    with pytest.raises(FileNotFoundError):
        ckpt.restore(_tree(0.0))
    for step in (10, 20, 30):
        assert ckpt.save(step, _tree(float(step)), {"phase": "predictor", "step": step})
    assert ckpt.latest_step() == 30
    assert sorted(int(p.name) for p in (tmp_path / "ckpt").iterdir() if p.name.isdigit()) == [
        20, 30]  # max_to_keep = 2: step 10 was deleted
    state, meta = ckpt.restore(_tree(0.0))
    assert core_helpers.tree_diff(state, _tree(30.0)) == []
    assert meta == {"phase": "predictor", "step": 30}
    state20, meta20 = ckpt.restore(_tree(0.0), step=20)
    assert core_helpers.tree_diff(state20, _tree(20.0)) == [] and meta20["step"] == 20
    assert not ckpt.save(30, _tree(99.0), {"phase": "x"}, force=True)  # a step is written once
    ckpt.close()
    # a new manager on the same directory (a restarted process) sees the same checkpoints
    again = checkpoint.Checkpointer(str(tmp_path / "ckpt"), max_to_keep=2)
    assert again.latest_step() == 30
    assert core_helpers.tree_diff(again.restore(_tree(0.0))[0], _tree(30.0)) == []
    again.close()


def test_checkpointer_save_every(tmp_path):
    ckpt = checkpoint.Checkpointer(str(tmp_path), max_to_keep=5, save_every=20)
    # 10 % 20 != 0: skipped; 20: saved; 30 skipped unless forced.
    assert [ckpt.save(s, _tree(1.0), {}) for s in (10, 20, 30)] == [False, True, False]
    assert ckpt.save(30, _tree(1.0), {}, force=True)
    assert ckpt.latest_step() == 30
    ckpt.close()


def test_train_state_round_trip_is_bit_exact(tmp_path):
    params = core_helpers.init_params(core_helpers.TINY_SPEC, 0, core_helpers.tiny_stats())
    static = train.StaticConfig(spec=core_helpers.TINY_SPEC)
    state = train.init_state(static, params, jnp.array([0.6, 0.8]), jnp.asarray(1.0))
    state = state.replace(step=jnp.asarray(7, jnp.int32), best_val=jnp.asarray(0.25))
    template = jax.tree.map(jnp.zeros_like, state)
    ckpt = checkpoint.Checkpointer(str(tmp_path))
    ckpt.save(7, state, {"phase": "policy"})
    restored, meta = ckpt.restore(template)
    ckpt.close()
    assert isinstance(restored, train.TrainState) and meta == {"phase": "policy"}
    assert core_helpers.tree_diff(restored, state) == []


def test_save_and_load_pytree(tmp_path):
    tree = {"predictor": {"w": np.arange(6, dtype=np.float32).reshape(2, 3)},
            "stats": {"c_ref": np.float32(2.5), "n": np.array([1, 2], np.int32)}}
    path = str(tmp_path / "params")
    checkpoint.save_pytree(path, jax.tree.map(jnp.asarray, tree))
    loaded = checkpoint.load_pytree(path)
    assert jax.tree.structure(loaded) == jax.tree.structure(tree)
    for got, want in zip(jax.tree.leaves(loaded), jax.tree.leaves(tree), strict=True):
        assert isinstance(got, np.ndarray)
        np.testing.assert_array_equal(got, want)
        assert got.dtype == np.asarray(want).dtype
    with pytest.raises(Exception):  # noqa: B017 (orbax raises its own error types)
        checkpoint.save_pytree(path, tree)  # the directory exists: no silent overwrite
