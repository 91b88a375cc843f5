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
