"""Pickles run code when read: refused without an explicit opt-in; parquet is the safe path.

Issue 11 items 1 and 9: a crafted `routerbench:<file.pkl>` used to execute its payload on load; a
file that is not a pickle used to fail with a bare `UnpicklingError` that did not name it.
"""

import pickle
import subprocess
import sys

import numpy as np
import pytest

from proteus.data import (
    DataValidationError,
    PickleRefusedError,
    canonical_spec,
    check_spec,
    load_routerbench,
    load_source,
)
from proteus.data.routerbench import to_parquet
from tests.conftest import REPO_ROOT


class _Payload:
    """Unpickling this calls `open(marker, "w")`: a stand-in for any command a pickle can run."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture
def evil_pkl(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps(_Payload(tmp_path / "PWNED")))
    return path


@pytest.mark.parametrize("load", [
    lambda p: load_routerbench(p),
    lambda p: load_source(f"routerbench:{p}"),
    lambda p: load_source(f"routerbench:{p}?allow_pickle=0"),
    lambda p: check_spec(f"routerbench:{p}"),
])
def test_pickle_refused_without_opt_in_and_payload_never_runs(evil_pkl, load):
    with pytest.raises(PickleRefusedError) as e:
        load(evil_pkl)
    msg = str(e.value)
    assert str(evil_pkl) in msg and "arbitrary code" in msg
    assert "--to_parquet" in msg and "allow_pickle=1" in msg  # both ways on are named
    assert not (evil_pkl.parent / "PWNED").exists()


@pytest.mark.parametrize("load", [
    lambda p: load_routerbench(p),
    lambda p: load_source(f"routerbench:{p}"),
    lambda p: to_parquet(p, p.with_suffix(".parquet")),
])
def test_a_missing_pickle_is_named_missing_not_refused(tmp_path, load):
    """A typo in a pickle's path used to be answered with the unpickling risk."""
    missing = tmp_path / "typo.pkl"
    with pytest.raises(FileNotFoundError, match=f"^{missing}: no such file$"):
        load(missing)


def test_hub_default_file_is_a_pickle_and_refused_before_download():
    with pytest.raises(PickleRefusedError, match="withmartian/routerbench"):
        load_routerbench("withmartian/routerbench")


def test_opt_in_reads_a_trusted_pickle(routerbench_pkl):
    for ds in (load_routerbench(routerbench_pkl, allow_pickle=True),
               load_source(f"routerbench:{routerbench_pkl}?allow_pickle=1"),
               load_source(f"routerbench:{routerbench_pkl}", allow_pickle=True)):
        assert ds.n_queries == 3


def test_not_a_pickle_names_the_file(tmp_path):
    path = tmp_path / "notes.pkl"
    path.write_text("just some text, not a pickle\n")
    with pytest.raises(DataValidationError, match="could not be read as a pandas pickle") as e:
        load_routerbench(path, allow_pickle=True)
    assert str(path) in str(e.value)


def test_pickle_of_something_else_names_the_file(tmp_path):
    path = tmp_path / "list.pkl"
    path.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(DataValidationError, match=r"list.pkl: the pickle holds a list"):
        load_routerbench(path, allow_pickle=True)


def test_to_parquet_round_trip_needs_no_opt_in(tmp_path, routerbench_pkl):
    with pytest.raises(PickleRefusedError):
        to_parquet(routerbench_pkl, tmp_path / "x.parquet")
    out = to_parquet(routerbench_pkl, tmp_path / "rb.parquet", allow_pickle=True)
    from_parquet = load_routerbench(out, cache_dir=tmp_path / "hf")
    from_pickle = load_routerbench(routerbench_pkl, allow_pickle=True)
    assert from_parquet.fingerprint() == from_pickle.fingerprint()
    np.testing.assert_array_equal(from_parquet.tasks, from_pickle.tasks)
    assert from_parquet.notes == from_pickle.notes


def test_canonical_spec_ignores_only_the_opt_in():
    assert canonical_spec("routerbench:a.pkl?allow_pickle=1&missing=zero") == \
        "routerbench:a.pkl?missing=zero"
    assert canonical_spec("routerbench:a.pkl?allow_pickle=1") == "routerbench:a.pkl"
    assert canonical_spec("synthetic:sprout?n=5") == "synthetic:sprout?n=5"


def test_data_summary_refuses_then_converts(tmp_path, evil_pkl, routerbench_pkl):
    def run(*args):
        return subprocess.run([sys.executable, "-m", "launch.data_summary", *args], cwd=REPO_ROOT,
                              capture_output=True, text=True, timeout=120)

    refused = run(f"--source=routerbench:{evil_pkl}")
    assert refused.returncode == 1 and "arbitrary code" in refused.stderr
    assert "Traceback" not in refused.stderr and not (tmp_path / "PWNED").exists()
    out = tmp_path / "conv.parquet"
    done = run(f"--source=routerbench:{routerbench_pkl}", "--allow_pickle",
               f"--to_parquet={out}", f"--cache_dir={tmp_path / 'hf'}")
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"wrote {out}" in done.stdout
    assert load_routerbench(out, cache_dir=tmp_path / "hf").n_queries == 3


def test_real_slice_parquet_matches_pickle(tmp_path, rb_slice):
    out = to_parquet(rb_slice, tmp_path / "slice.parquet", allow_pickle=True)
    got = load_routerbench(out, cache_dir=tmp_path / "hf")
    assert (got.n_queries, got.n_models) == (3150, 11)
    assert got.fingerprint() == load_routerbench(rb_slice, allow_pickle=True).fingerprint()
