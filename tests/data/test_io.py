"""HF-backed file reading: formats, directories, errors, quiet logging, the Arrow cache."""

import logging

import datasets
import pandas as pd
import pytest

from proteus.data import DataValidationError
from proteus.data.io import (
    cached_frame,
    data_files,
    file_key,
    is_hub_name,
    quiet_hf,
    read_arrow,
    text_array,
)


def test_is_hub_name(tmp_path):
    assert is_hub_name("CARROT-LLM-Routing/SPROUT")
    assert not is_hub_name("data/scores.csv")  # a file suffix: a path
    assert not is_hub_name("plainname")
    (tmp_path / "a").mkdir()
    assert not is_hub_name(str(tmp_path / "a"))  # exists locally


def test_data_files_directory_split_and_mixed(tmp_path):
    (tmp_path / "d").mkdir()
    for name in ("test-0.parquet", "train-1.parquet", "train-0.parquet", "notes.txt"):
        (tmp_path / "d" / name).write_text("x")
    names = [p.rsplit("/", 1)[1] for p in data_files(tmp_path / "d")]
    assert names == ["test-0.parquet", "train-0.parquet", "train-1.parquet"]
    assert [p.rsplit("/", 1)[1] for p in data_files(tmp_path / "d", "test")] == ["test-0.parquet"]
    (tmp_path / "d" / "x.csv").write_text("a\n1\n")
    with pytest.raises(DataValidationError, match="mixes file formats"):
        data_files(tmp_path / "d")
    with pytest.raises(FileNotFoundError):
        data_files(tmp_path / "d", "validation")
    with pytest.raises(DataValidationError, match="unsupported file type"):
        data_files(tmp_path / "d" / "notes.txt")


def test_read_arrow_csv_and_parquet_dir(tmp_path):
    pd.DataFrame({"a": [1, 2]}).to_csv(tmp_path / "t.csv", index=False)
    assert read_arrow(tmp_path / "t.csv", tmp_path / "hf").column("a").to_pylist() == [1, 2]
    (tmp_path / "p").mkdir()
    pd.DataFrame({"a": [1]}).to_parquet(tmp_path / "p" / "0.parquet")
    pd.DataFrame({"a": [2, 3]}).to_parquet(tmp_path / "p" / "1.parquet")
    assert read_arrow(tmp_path / "p", tmp_path / "hf").column("a").to_pylist() == [1, 2, 3]


def test_read_arrow_empty(tmp_path):
    (tmp_path / "e.parquet").write_bytes(b"")
    with pytest.raises(DataValidationError, match="e.parquet: empty file"):
        read_arrow(tmp_path / "e.parquet", tmp_path / "hf")


def test_quiet_hf_restores_state():
    datasets.logging.set_verbosity(logging.WARNING)
    datasets.enable_progress_bars()
    with quiet_hf():
        assert datasets.are_progress_bars_disabled()
        assert datasets.logging.get_verbosity() == logging.CRITICAL
    assert not datasets.are_progress_bars_disabled()
    assert datasets.logging.get_verbosity() == logging.WARNING


def test_cached_frame_builds_once(tmp_path):
    src = tmp_path / "src.bin"
    src.write_text("v1")
    calls = []

    def build():
        calls.append(1)
        return pd.DataFrame({"x": [1.0, None], "y": ["a", "b"]})

    first = cached_frame(src, tmp_path / "c", "t", build)
    second = cached_frame(src, tmp_path / "c", "t", build)
    assert len(calls) == 1
    pd.testing.assert_frame_equal(first, second)
    assert cached_frame(src, None, "t", build) is not None and len(calls) == 2
    key = file_key(src)
    assert len(key) == 16 and key == file_key(src)


def test_text_array_is_object_dtype():
    out = text_array(["a", None, 3])
    assert out.dtype == object and out.tolist() == ["a", "", "3"]
