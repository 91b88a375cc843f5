"""`python -m launch.data_summary`: the thin main prints the library's card."""

import re
import subprocess
import sys

import pandas as pd
import pytest
from absl import flags
from absl.testing import flagsaver

from launch import data_summary
from tests.conftest import REPO_ROOT


@pytest.fixture(autouse=True)
def _parsed_flags():
    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


def test_main_on_synthetic(capsys):
    with flagsaver.flagsaver((data_summary._SOURCE, "synthetic:routerbench?n=300&seed=1")):
        data_summary.main(["data_summary"])
    out = capsys.readouterr().out
    assert "N=300 queries x M=11 models" in out
    assert "best fixed   gpt-4-1106-preview" in out
    assert re.search(r"oracle\s+accuracy 0\.\d{4}", out)


def test_main_rejects_extra_args():
    with pytest.raises(Exception, match="unexpected arguments"):
        data_summary.main(["data_summary", "extra"])


def test_real_slice_oracle_printed_matches_pandas(rb_slice, capsys):
    with flagsaver.flagsaver((data_summary._SOURCE, f"routerbench:{rb_slice}?allow_pickle=1")):
        data_summary.main(["data_summary"])
    out = capsys.readouterr().out
    frame = pd.read_pickle(rb_slice)
    models = [c for c in frame.columns if f"{c}|total_cost" in frame.columns]
    expected = frame[models].apply(pd.to_numeric).dropna().max(axis=1).mean()
    printed = float(re.search(r"oracle\s+accuracy ([0-9.]+)", out).group(1))
    assert printed == pytest.approx(expected, abs=5e-5)
    assert "dropped 14 of 3164 rows with missing scores (104 cells)" in out


def test_command_line():
    result = subprocess.run(
        [sys.executable, "-m", "launch.data_summary", "--source=synthetic:sprout?n=200"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=True,
    )
    assert "N=200 queries x M=13 models" in result.stdout
