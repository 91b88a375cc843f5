"""`proteus.data.source_card`, what `python -m launch.data_summary` prints."""

import re
import subprocess
import sys

import pandas as pd
import pytest

from proteus.data import source_card
from tests.conftest import REPO_ROOT


def test_card_of_synthetic():
    out = source_card("synthetic:routerbench?n=300&seed=1")
    assert "N=300 queries x M=11 models" in out
    assert "best fixed   gpt-4-1106-preview" in out
    assert re.search(r"oracle\s+accuracy 0\.\d{4}", out)


def test_to_parquet_only_converts_routerbench(tmp_path):
    with pytest.raises(ValueError, match="converts routerbench: sources, not synthetic:"):
        source_card("synthetic:routerbench?n=50", to_parquet=str(tmp_path / "x.parquet"))


def test_real_slice_oracle_printed_matches_pandas(rb_slice):
    out = source_card(f"routerbench:{rb_slice}?allow_pickle=1")
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
