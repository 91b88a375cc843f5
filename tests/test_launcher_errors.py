"""The serving launchers name a bad artifact or file in one line, never with a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

MISSING = "/nonexistent-proteus-artifact"
NOT_AN_ARTIFACT = f"{MISSING}/manifest.json not found: is '{MISSING}' a PROTEUS router artifact?"


@pytest.mark.parametrize("launcher, args", [
    ("route", ["--tau=0.8", "What is 2 + 2?"]),
    ("serve", ["--port=0"]),
    ("replay", ["--tau=0.8", f"--workdir={MISSING}/replay"]),
    ("gateway", [f"--write_models_template={MISSING}/models.toml"]),
])
def test_a_missing_artifact_is_named_in_one_line(launcher, args):
    """Each used to end in ArtifactError's traceback."""
    argv = [sys.executable, "-m", f"launch.{launcher}", f"--artifact={MISSING}", *args]
    done = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip() == f"launch.{launcher}: {NOT_AN_ARTIFACT}", done.stderr


def test_a_bad_replay_setting_is_named_in_one_line():
    """`launch.replay --n` below the warm-up used to end in ReplayConfig's traceback; it is
    checked before the artifact is read."""
    argv = [sys.executable, "-m", "launch.replay", f"--artifact={MISSING}", "--tau=0.75",
            "--n=10", f"--workdir={MISSING}/replay"]
    done = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip() == (
        "launch.replay: need 0 <= feedback_fraction <= 1, delay >= 0 and n > warmup; got "
        "feedback_fraction=0.2, delay=200, n=10, warmup=1000"), done.stderr


def test_an_existing_output_file_is_refused_before_anything_loads(tmp_path):
    """`launch.route --output` used to write over an existing file (and, when it was the
    --input file, empty it): refused without --overwrite, before the artifact is even read."""
    taken = tmp_path / "decisions.jsonl"
    taken.write_text("kept\n")
    argv = [sys.executable, "-m", "launch.route", f"--artifact={MISSING}", "--tau=0.8",
            f"--input={taken}", f"--output={taken}"]
    done = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip() == (f"launch.route: --output={taken} exists; pass --overwrite to "
                                   "replace it")
    assert taken.read_text() == "kept\n"


def test_one_line_errors_start_with_the_launcher():
    """`runs.one_line_errors` (train, evaluate, sweep): a user error exits with one line, the
    launcher's module first, as every other launcher's; a program error is not swallowed."""
    from experiments import runs  # noqa: PLC0415 (the training stack: only this test)

    with pytest.raises(SystemExit) as exited:
        with runs.one_line_errors("launch.train"):
            raise FileNotFoundError("cfg.py: no such file")
    assert exited.value.code == "launch.train: cfg.py: no such file"
    with pytest.raises(ZeroDivisionError):
        with runs.one_line_errors("launch.train"):
            raise ZeroDivisionError("a bug")


def _parse_config_flags(tmp_path, monkeypatch, *args):
    """`runs.config_flags_parser` on a config-file flag of its own FlagValues: the SystemExit's
    message, or None when the command line parses. (ml_collections defines a flag per override it
    finds in sys.argv when the config flag is defined.)"""
    from absl import flags  # noqa: PLC0415
    from ml_collections import config_flags  # noqa: PLC0415

    from experiments import runs  # noqa: PLC0415 (the training stack: only these tests)

    config = tmp_path / "cfg.py"
    config.write_text("import ml_collections\n\ndef get_config(arg=None):\n"
                      "    if arg not in (None, 'small'):\n"
                      "        raise ValueError(f'unknown config variant {arg!r}')\n"
                      "    return ml_collections.ConfigDict({'train': {'batch_size': 8}})\n")
    argv = ["launch.train", *(a.replace("CFG", str(config)) for a in args)]
    monkeypatch.setattr(sys, "argv", argv)
    values = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "config", flag_values=values)
    parse = runs.config_flags_parser("launch.train", flag_values=values)
    try:
        parse(argv)
    except SystemExit as exited:
        return exited.code.replace(str(config), "CFG")
    return None


@pytest.mark.parametrize("args, line", [
    (["--config=CFG:large"], "flag --config=CFG:large: unknown config variant 'large'"),
    (["--config=/nonexistent/cfg.py"], "flag --config=/nonexistent/cfg.py: [Errno 2] No such "
     "file or directory: '/nonexistent/cfg.py'"),
    (["--config=CFG", "--config.train.batch_sise=4"], "flag --config.train.batch_sise=4: the "
     "config has no field 'batch_sise'; Did you mean \"batch_size\" instead of \"batch_sise\"?"),
    (["--config=CFG", "--config.seed=4"], "flag --config.seed=4: the config has no field 'seed'"),
    (["--config=CFG", "--config.train.batch_size=x"],
     "flag --config.train.batch_size=x: invalid literal for int() with base 10: 'x'"),
])
@pytest.mark.filterwarnings("ignore:the load_module:DeprecationWarning")  # ml_collections' loader
def test_a_bad_config_flag_is_named_in_one_line(tmp_path, monkeypatch, args, line):
    """ml_collections reported these with tracebacks (a missing file's only when the config was
    first used, a missing field's as an uncaught AttributeError)."""
    assert _parse_config_flags(tmp_path, monkeypatch, *args) == (
        f"launch.train: {line}\nPass --helpshort or --helpfull to see help on flags.")


@pytest.mark.filterwarnings("ignore:the load_module:DeprecationWarning")
def test_a_good_config_command_line_parses(tmp_path, monkeypatch):
    assert _parse_config_flags(tmp_path, monkeypatch, "--config=CFG:small",
                               "--config.train.batch_size=4") is None


def test_the_sweep_grids_unknown_field_is_named_in_one_line():
    """`--sweep.<field>=` is applied when launch.sweep defines its flag, before parsing."""
    argv = [sys.executable, "-m", "launch.sweep", "--config=experiments/configs/quickstart.py",
            "--sweep.seedz=1,2", "--workdir=/nonexistent-proteus-sweep"]
    done = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[0] == (
        "launch.sweep: flag --sweep.seedz=1,2: the config has no field 'seedz'; Did you mean "
        "\"seeds\" instead of \"seedz\"?"), done.stderr
