"""Tests for proteus.training.checkpoint: training checkpoints (keep-last-N, resume point) and
pytrees."""

import json
import shutil

import jax
import jax.numpy as jnp
import pytest

from proteus.training import checkpoint, duals, train
from tests import core_helpers


def _tree(value: float) -> dict:
    """A small state-like pytree: float and int leaves, a NamedTuple, nested dicts."""
    return {"step": jnp.asarray(int(value), jnp.int32),
            "params": {"w": jnp.full((2, 3), value, jnp.float32), "b": jnp.arange(3.0) + value},
            "duals": duals.init_dual(jnp.full((4,), value), jnp.linspace(0.5, 0.9, 4))}


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


def test_checkpointer_save_interval(tmp_path):
    ckpt = checkpoint.Checkpointer(str(tmp_path), max_to_keep=5, save_interval_steps=20)
    # 10 % 20 != 0: skipped (not even as the first step); 20: saved; 30 skipped unless forced.
    assert [ckpt.save(s, _tree(1.0), {}) for s in (10, 20, 30)] == [False, True, False]
    assert ckpt.save(30, _tree(1.0), {}, force=True)
    assert ckpt.latest_step() == 30
    ckpt.close()


def test_train_state_round_trip_is_bit_exact(tmp_path):
    params = core_helpers.init_params(core_helpers.TINY_SPEC, 0, core_helpers.tiny_stats())
    static = core_helpers.static_for(core_helpers.TINY_SPEC)
    state = train.init_state(static, params, jnp.array([0.6, 0.8]), jnp.asarray(1.0))
    state = state.replace(step=jnp.asarray(7, jnp.int32), best_val=jnp.asarray(0.25))
    template = jax.tree.map(jnp.zeros_like, state)
    ckpt = checkpoint.Checkpointer(str(tmp_path))
    ckpt.save(7, state, {"phase": "policy"})
    restored, meta = ckpt.restore(template)
    ckpt.close()
    assert isinstance(restored, train.TrainState) and meta == {"phase": "policy"}
    assert core_helpers.tree_diff(restored, state) == []


# ----------------------------------------------------------------------------- fault injection
# Issue 11 item 6: a damaged latest checkpoint stopped the run with raw Orbax / TensorStore
# traces, and one with flipped bytes resumed silently into a much worse router.


def _data_file(step_dir):
    """The largest array-data file Orbax wrote for the state item."""
    files = [p for p in (step_dir / "state").rglob("*") if p.is_file() and p.parent.name == "d"]
    return max(files, key=lambda p: p.stat().st_size)


def _truncate(step_dir):
    path = _data_file(step_dir)
    path.write_bytes(path.read_bytes()[:10])
    return path.name


def _flip(step_dir):
    path = _data_file(step_dir)
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2:len(raw) // 2 + 4] = bytes(b ^ 0xFF for b in raw[len(raw) // 2:][:4])
    path.write_bytes(bytes(raw))
    return path.name


def _delete(rel):
    def fault(step_dir):
        target = step_dir / rel
        shutil.rmtree(target) if target.is_dir() else target.unlink()
        return rel.split("/")[-1]
    return fault


@pytest.fixture
def three_steps(tmp_path):
    directory = tmp_path / "ckpt"
    ckpt = checkpoint.Checkpointer(str(directory), max_to_keep=3)
    for step in (10, 20, 30):
        ckpt.save(step, _tree(float(step)), {"phase": "predictor", "step": step})
    ckpt.close()
    return directory


@pytest.mark.parametrize("fault", [
    _truncate, _flip, _delete("_CHECKPOINT_METADATA"), _delete("state/_METADATA"),
    _delete("state/manifest.ocdbt"), _delete("state"), _delete(checkpoint.CHECKSUM_FILE)],
    ids=["truncate", "bit-flip", "del-orbax-metadata", "del-state-metadata", "del-manifest",
         "del-state", "del-checksums"])
def test_damaged_latest_falls_back_to_newest_intact(three_steps, fault, caplog, capfd):
    named = fault(three_steps / "30")
    ckpt = checkpoint.Checkpointer(str(three_steps), max_to_keep=3)
    state, meta = ckpt.restore(_tree(0.0))
    assert meta["step"] == 20 and core_helpers.tree_diff(state, _tree(20.0)) == []
    assert "step 30" in caplog.text and "falling back to step 20" in caplog.text
    assert named in caplog.text  # the damaged file (or item) is named
    assert ckpt.latest_step() == 20  # the damaged step is set aside ...
    assert (three_steps.parent / "ckpt.damaged" / "30").is_dir()
    assert ckpt.save(30, _tree(31.0), {"step": 30})  # ... so training can write it again
    assert ckpt.restore(_tree(0.0))[1]["step"] == 30
    ckpt.close()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "Event loop is closed" not in err


def test_every_step_damaged_is_one_clear_error(three_steps):
    for step in ("10", "20", "30"):
        _flip(three_steps / step)
    ckpt = checkpoint.Checkpointer(str(three_steps), max_to_keep=3)
    with pytest.raises(checkpoint.CheckpointError) as e:
        ckpt.restore(_tree(0.0))
    msg = str(e.value)
    assert all(f"step {s}: file " in msg for s in (30, 20, 10)) and "does not match" in msg
    with pytest.raises(checkpoint.CheckpointError, match="step 20"):
        ckpt.restore(_tree(0.0), step=20)  # an explicit step is verified too
    ckpt.close()


def test_checkpoints_without_checksums_still_restore(three_steps, caplog):
    for step in ("10", "20", "30"):
        (three_steps / step / checkpoint.CHECKSUM_FILE).unlink()
    ckpt = checkpoint.Checkpointer(str(three_steps), max_to_keep=3)
    assert ckpt.restore(_tree(0.0))[1]["step"] == 30
    assert "predate checksums" in caplog.text
    ckpt.close()


# ----------------------------------------------------------------------------- checksums by hand

_SHA256_ABC = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"  # FIPS 180-2
_SHA256_EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
_SHA256_BRACES = "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"  # b"{}"


def _fake_step(step_dir):
    """A step directory shaped like Orbax's: metadata JSON, the two item dirs, one data file."""
    for item in checkpoint.ITEMS:
        (step_dir / item).mkdir(parents=True)
    (step_dir / checkpoint.ORBAX_METADATA).write_text("{}")
    (step_dir / "state" / "data").write_bytes(b"abc")
    (step_dir / "meta" / "empty").write_bytes(b"")
    return step_dir


def test_file_digests_hash_every_file_but_the_checksum_file(tmp_path):
    step = _fake_step(tmp_path / "10")
    (step / checkpoint.CHECKSUM_FILE).write_text("not hashed")
    assert checkpoint.file_digests(str(step)) == {
        checkpoint.ORBAX_METADATA: _SHA256_BRACES,
        "meta/empty": _SHA256_EMPTY, "state/data": _SHA256_ABC}  # sorted by relative path
    assert list(checkpoint.file_digests(str(step))) == sorted(checkpoint.file_digests(str(step)))


def test_write_checksums_records_the_digests_atomically(tmp_path):
    step = _fake_step(tmp_path / "10")
    checkpoint.write_checksums(str(step))
    recorded = json.loads((step / checkpoint.CHECKSUM_FILE).read_text())
    assert recorded["version"] == 1
    assert recorded["files"]["state/data"] == _SHA256_ABC
    assert set(recorded["files"]) == {checkpoint.ORBAX_METADATA, "meta/empty", "state/data"}
    assert sorted(p.name for p in step.iterdir()) == sorted(
        [checkpoint.CHECKSUM_FILE, checkpoint.ORBAX_METADATA, "meta", "state"])  # no tmp left
    checkpoint.write_checksums(str(step))  # again: its own file is never hashed into itself
    assert json.loads((step / checkpoint.CHECKSUM_FILE).read_text()) == recorded


def test_verify_step_names_what_is_wrong(tmp_path):
    verify = lambda **kw: checkpoint.verify_step(str(step), **kw)
    step = tmp_path / "10"
    assert verify() == "the step directory is missing"
    _fake_step(step)
    assert verify() == "proteus_checksums.json is missing (cannot verify)"
    assert verify(require_checksums=False) is None
    checkpoint.write_checksums(str(step))
    assert verify() is None
    (step / "state" / "data").write_bytes(b"abd")
    assert verify() == "file state/data does not match its checksum (truncated or modified)"
    (step / "state" / "data").unlink()
    assert verify() == "file state/data is missing"
    (step / checkpoint.CHECKSUM_FILE).write_text("{")
    assert verify() == "proteus_checksums.json is unreadable (JSONDecodeError)"
    (step / checkpoint.CHECKSUM_FILE).write_text("[]")  # valid JSON, no "files"
    assert verify() == "proteus_checksums.json is unreadable (TypeError)"
    shutil.rmtree(step / "meta")
    assert verify() == "item directory ['meta'] missing"
    shutil.rmtree(step / "state")
    assert verify() == "item directories ['state', 'meta'] missing"
    (step / checkpoint.ORBAX_METADATA).write_text("{not json")
    assert verify() == "Orbax metadata _CHECKPOINT_METADATA is unreadable (JSONDecodeError)"
    (step / checkpoint.ORBAX_METADATA).unlink()
    assert verify(require_checksums=False) == "Orbax metadata _CHECKPOINT_METADATA is missing"
