"""experiments.outputs: a launcher's output file is never written over unless asked; a workdir that
cannot be a directory is named."""

import os

import pytest

from experiments import outputs


def test_check_new_file_refuses_an_existing_path_unless_overwrite(tmp_path):
    path = tmp_path / "out.jsonl"
    assert outputs.check_new_file(str(path), "output") is None  # nothing there yet
    assert outputs.check_new_file(None, "output") is None  # the flag not given
    assert outputs.check_new_file("", "output") is None
    path.write_text("kept")
    with pytest.raises(FileExistsError, match=rf"^--output={path} exists; pass --overwrite to "
                                              "replace it$"):
        outputs.check_new_file(str(path), "output")
    assert outputs.check_new_file(str(path), "output", overwrite=True) is None
    os.symlink(tmp_path / "absent", tmp_path / "dangling")  # a dangling link exists too
    with pytest.raises(FileExistsError, match="dangling exists"):
        outputs.check_new_file(str(tmp_path / "dangling"), "to_parquet")
    assert path.read_text() == "kept"
    (tmp_path / "a_dir").mkdir()  # a directory is not written into either
    with pytest.raises(FileExistsError, match="a_dir exists"):
        outputs.check_new_file(str(tmp_path / "a_dir"), "output")
    assert outputs.check_new_file("/dev/null", "output") is None  # a device: written, not replaced


def test_make_dir_creates_parents_and_names_a_path_that_cannot_be_one(tmp_path):
    target = tmp_path / "a" / "b"
    outputs.make_dir(str(target))
    outputs.make_dir(str(target))  # already there: nothing to do
    assert target.is_dir()
    afile = tmp_path / "afile"
    afile.write_text("kept\n")
    with pytest.raises(outputs.OutputDirError,
                       match=f"^{afile}: exists and is not a directory"):
        outputs.make_dir(str(afile))
    with pytest.raises(outputs.OutputDirError,
                       match=f"^{afile}/sub: cannot create the directory: Not a directory"):
        outputs.make_dir(str(afile / "sub"))
    assert afile.read_text() == "kept\n"


def test_a_file_as_workdir_is_one_line_for_the_training_launchers(tmp_path):
    """`workdir.prepare` used to end in os.makedirs' FileExistsError traceback."""
    from experiments import runs, workdir  # noqa: PLC0415 (the training stack)
    from experiments.configs import quickstart  # noqa: PLC0415

    afile = tmp_path / "afile"
    afile.write_text("")
    with pytest.raises(SystemExit) as exited, runs.one_line_errors("launch.train"):
        workdir.prepare(quickstart.get_config("smoke"), str(afile))
    assert exited.value.code == f"launch.train: {afile}: exists and is not a directory (a " \
        "workdir must be one)"
