"""experiments/workdir.py: lock, recorded config, metrics truncation (issue 11 items 3 and 7).

Before: rerunning a finished workdir with `--config.lanes.n=8` overwrote config.json and died in
a shape error; changing `train.dual_lr` or `data.source` resumed the old state silently; two runs
on one workdir interleaved; `metrics.jsonl` repeated the records written after the last
checkpoint of an interrupted run.
"""

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from experiments import runs, validate, workdir
from experiments.configs import quickstart
from proteus.training import loop
from tests import core_helpers
from tests.conftest import REPO_ROOT


@pytest.fixture(autouse=True)
def _release_locks():
    """Each test starts as a fresh process would: no workdir held or accepted."""
    yield
    for path in list(workdir._HELD):
        workdir.release(path)


def _config(**dotted):
    c = quickstart.get_config("smoke")
    for name, value in dotted.items():
        section, leaf = name.split("__")
        c[section][leaf] = value
    return c


def _started(path, config):
    """A workdir that `config` started and checkpointed (a step directory), then let go."""
    workdir.prepare(config, str(path))
    (path / "checkpoints" / "40").mkdir(parents=True)
    workdir.release(str(path))


def test_bad_config_writes_nothing(tmp_path):
    target = tmp_path / "never"
    with pytest.raises(validate.ConfigError, match="train.batch_size=0"):
        workdir.prepare(_config(train__batch_size=0), str(target))
    assert not target.exists()


def test_resume_under_changed_config_is_refused_naming_fields(tmp_path):
    _started(tmp_path, _config())
    before = (tmp_path / "config.json").read_bytes()
    changed = _config(train__dual_lr=0.7, lanes__n=8)
    with pytest.raises(workdir.WorkdirError) as e:
        workdir.prepare(changed, str(tmp_path))
    msg = str(e.value)
    assert "lanes.n: recorded 4, now 8" in msg and "train.dual_lr: recorded 0.5, now 0.7" in msg
    assert "--allow_config_change=lanes.n,train.dual_lr" in msg
    assert (tmp_path / "config.json").read_bytes() == before  # untouched


def test_changed_data_source_is_refused(tmp_path):
    _started(tmp_path, _config())
    other = _config(data__source="synthetic:routerbench?n=500&seed=1&signal=1.0")
    with pytest.raises(workdir.WorkdirError, match="data.source: recorded"):
        workdir.prepare(other, str(tmp_path))


def test_allowed_change_is_recorded_not_written_over(tmp_path):
    _started(tmp_path, _config())
    before = (tmp_path / "config.json").read_bytes()
    workdir.prepare(_config(train__dual_lr=0.7), str(tmp_path), allow_change=["train.dual_lr"])
    assert (tmp_path / "config.json").read_bytes() == before
    entry = json.loads((tmp_path / "config_changes.jsonl").read_text())
    assert entry["changes"] == {"train.dual_lr": [0.5, 0.7]}
    workdir.release(str(tmp_path))
    workdir.prepare(_config(train__dual_lr=0.7), str(tmp_path))  # allowed once, stays allowed
    workdir.release(str(tmp_path))
    with pytest.raises(workdir.WorkdirError, match=r"train.dual_lr: recorded 0.7, now 0.5"):
        workdir.prepare(_config(), str(tmp_path))  # going back is a change too


def test_same_config_and_host_only_fields_resume(tmp_path):
    _started(tmp_path, _config())
    workdir.prepare(_config(), str(tmp_path))
    workdir.release(str(tmp_path))
    workdir.prepare(_config(data__cache_dir="/elsewhere", train__run_batch=2), str(tmp_path))


def test_a_workdir_config_loads_with_its_allowed_changes_and_new_host_settings(tmp_path):
    # config.json written before `train.run_batch` existed, then evaluated with an allowed change:
    # the exporter and `launch.evaluate --workdir` see the change and the setting's default; a
    # real field still missing stays missing.
    recorded = _config().to_dict()
    del recorded["train"]["run_batch"], recorded["data"]["cache_dir"], recorded["train"]["pred_lr"]
    (tmp_path / "config.json").write_text(json.dumps(recorded))
    changes = [{"time": "t0", "changes": {"operating.margin_z": [1.0, 1.5]}},
               {"time": "t1", "changes": {"operating.margin_z": [1.5, 2.0],
                                          "eval.wide_n": [40, None]}}]
    (tmp_path / "config_changes.jsonl").write_text("".join(json.dumps(c) + "\n" for c in changes))
    config = runs.load_config(str(tmp_path))
    assert config.operating.margin_z == 2.0
    assert "wide_n" not in config.eval
    assert config.train.run_batch == 0
    assert config.data.cache_dir == quickstart.get_config().data.cache_dir
    assert "pred_lr" not in config.train


def test_a_workdir_from_before_a_new_setting_resumes_as_it_ran(tmp_path):
    # config.json written before `model.task_prior` existed: those runs had no task prior, so
    # the current default (False) resumes and re-evaluates it, and True is a change.
    recorded = _config().to_dict()
    del recorded["model"]["task_prior"]
    (tmp_path / "config.json").write_text(json.dumps(recorded))
    (tmp_path / "checkpoints" / "40").mkdir(parents=True)
    assert runs.load_config(str(tmp_path)).model.task_prior is False
    workdir.prepare(_config(), str(tmp_path))
    workdir.release(str(tmp_path))
    with pytest.raises(workdir.WorkdirError, match="model.task_prior: recorded False, now True"):
        workdir.prepare(_config(model__task_prior=True), str(tmp_path))


def test_pickle_opt_in_is_not_a_data_change():
    a = {"data": {"source": "routerbench:/d/rb.pkl"}}
    b = {"data": {"source": "routerbench:/d/rb.pkl?allow_pickle=1"}}
    assert workdir.config_diff(a, b) == {}


def test_nothing_to_resume_records_the_new_config(tmp_path):
    workdir.prepare(_config(), str(tmp_path))
    workdir.release(str(tmp_path))
    workdir.prepare(_config(train__dual_lr=0.7), str(tmp_path))  # no checkpoint, no results
    assert json.loads((tmp_path / "config.json").read_text())["train"]["dual_lr"] == 0.7


def test_second_run_on_a_locked_workdir_is_refused(tmp_path):
    # Another process's lock: a separate open file description, as flock sees it.
    fd = os.open(tmp_path / ".lock", os.O_RDWR | os.O_CREAT)
    os.write(fd, b"pid 4242 on otherhost since 2026-01-01T00:00:00+00:00\n")
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        with pytest.raises(workdir.WorkdirError, match=r"in use by another run \(pid 4242"):
            workdir.prepare(_config(), str(tmp_path))
    finally:
        os.close(fd)
    workdir.prepare(_config(), str(tmp_path))  # free again
    workdir.prepare(_config(), str(tmp_path))  # and re-entrant within one process


def test_truncate_metrics(tmp_path):
    lines = [json.dumps({"phase": "predictor", "step": s}) + "\n" for s in (10, 20, 30, 40)]
    (tmp_path / "metrics.jsonl").write_text("".join(lines) + '{"phase": "pol')  # cut by a kill
    assert workdir.truncate_metrics(str(tmp_path), 20) == 3
    assert (tmp_path / "metrics.jsonl").read_text() == "".join(lines[:2])
    assert workdir.truncate_metrics(str(tmp_path), 20) == 0
    assert workdir.truncate_metrics(str(tmp_path), None) == 2  # no checkpoint: start clean
    assert workdir.truncate_metrics(str(tmp_path / "absent"), 5) == 0


class _Killed(Exception):
    pass


def test_resume_leaves_one_metrics_record_per_step(tmp_path, monkeypatch):
    """Through `runs.train`: records after the last checkpoint are not repeated.

    A stand-in for `loop.fit` reports steps 10, 20, 30 and checkpoints at 20 (every 2 chunks),
    then dies; the resumed run must find records up to step 20 only, and add 30 once.
    """
    config = core_helpers.tiny_config()
    splits = core_helpers.tiny_splits(config)
    setup = core_helpers.tiny_setup(config, splits)
    seen = []

    def fit(static, loop_cfg, state, run_keys, hp, data, phase, callbacks, **kwargs):
        path = tmp_path / "metrics.jsonl"
        seen.append([json.loads(x)["step"] for x in path.read_text().splitlines()]
                    if path.exists() else [])
        start = int(np.asarray(state.step)[0])
        for step in range(start + 10, 40, 10):
            callbacks.on_metrics("predictor", step, {"loss": np.zeros(1)})
            callbacks.save("predictor", state.replace(step=jnp.full_like(state.step, step)), False)
            if len(seen) == 1 and step == 30:
                raise _Killed
        return state

    monkeypatch.setattr(loop, "fit", fit)
    with pytest.raises(_Killed):
        runs.train(config, str(tmp_path), splits, setup=setup, progress=False)
    runs.train(config, str(tmp_path), splits, setup=setup, progress=False)
    assert seen == [[], [10, 20]]
    steps = [json.loads(x)["step"] for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == [10, 20, 30]


def _launch(*args):
    return subprocess.run([sys.executable, "-m", "launch.train", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=180)


def test_launcher_reports_bad_setting_in_one_line(tmp_path):
    target = tmp_path / "w"
    done = _launch("--config=experiments/configs/quickstart.py:smoke", f"--workdir={target}",
                   "--config.train.algo=dqn", "--config.train.chunk_size=0", "--noprogress")
    assert done.returncode == 1
    assert "train.algo='dqn'" in done.stderr and "train.chunk_size=0" in done.stderr
    assert "Traceback" not in done.stderr and not target.exists()


def test_results_without_checkpoints_are_not_retrained_over(tmp_path, caplog):
    """Issue 26 item 9: a finished workdir whose checkpoints/ was deleted retrained over
    results.json with one INFO line. Refused (naming the way out) unless asked."""
    workdir.prepare(_config(), str(tmp_path))
    (tmp_path / "results.json").write_text('{"kept": true}')
    (tmp_path / "checkpoints").mkdir()  # emptied
    workdir.release(str(tmp_path))
    with pytest.raises(workdir.WorkdirError, match="results.json but no checkpoints.*"
                                                   "--allow_retrain"):
        workdir.prepare(_config(), str(tmp_path))
    assert (tmp_path / "results.json").read_text() == '{"kept": true}'
    workdir.release(str(tmp_path))
    workdir.prepare(_config(), str(tmp_path), allow_retrain=True)  # asked for: a warning
    assert "training from scratch" in caplog.text
    workdir.release(str(tmp_path))
    (tmp_path / "checkpoints" / "40").mkdir()
    workdir.prepare(_config(), str(tmp_path))  # checkpoints there: a plain resume


@pytest.mark.parametrize("key", sorted(workdir.ADDED_SETTINGS))
def test_every_added_setting_is_backfilled_in_an_older_workdir(tmp_path, key):
    # e.g. `data.exclude_models`: a workdir trained before it existed failed to re-evaluate
    # (AttributeError) instead of resuming with the value it ran with
    recorded = _config().to_dict()
    section, name = key.split(".")
    del recorded[section][name]
    (tmp_path / "config.json").write_text(json.dumps(recorded))
    loaded = runs.load_config(str(tmp_path))
    assert loaded[section][name] == workdir.ADDED_SETTINGS[key]
    workdir.prepare(_config(), str(tmp_path))  # the current config resumes it
    workdir.release(str(tmp_path))


def test_a_setting_added_since_a_released_schema_is_backfilled():
    # the settings a workdir of commit eaad7e0 recorded (quickstart): any setting added since
    # must say in ADDED_SETTINGS what those runs did, or their workdirs stop re-evaluating
    released = set(json.loads((Path(__file__).parent / "config_keys_eaad7e0.json").read_text()))
    now = set(validate.flatten(quickstart.get_config().to_dict()))
    assert now - released <= set(workdir.ADDED_SETTINGS), now - released
