"""experiments.outputs: a launcher's output file is never written over unless asked."""

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
