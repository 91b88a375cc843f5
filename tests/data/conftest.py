"""Fixtures for the data tests: small files in the real schemas, written by the tests."""

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

RB_MODELS = ("gpt-4-1106-preview", "mistralai/mistral-7b-chat", "claude-v2")
SPROUT_MODELS = ("openai-gpt-4o", "wxai-llama-3-2-1b-instruct")
SLICE = "routerbench/routerbench_0shot_arc_winogrande_mbpp.pkl"


@pytest.fixture
def rb_frame() -> pd.DataFrame:
    """4 prompts x 3 models in the routerbench_0shot.pkl schema (object scores, one NaN)."""
    scores = {
        "gpt-4-1106-preview": [1.0, 1.0, 0.0, 1.0],
        "mistralai/mistral-7b-chat": [0.0, 1.0, np.nan, 0.0],
        "claude-v2": [1.0, 0.0, 0.0, 0.5],
    }
    costs = {
        "gpt-4-1106-preview": [1e-3, 2e-3, 3e-3, 4e-3],
        "mistralai/mistral-7b-chat": [1e-5, 2e-5, 3e-5, 4e-5],
        "claude-v2": [5e-4, 6e-4, 7e-4, 8e-4],
    }
    frame = pd.DataFrame(
        {
            "sample_id": ["arc.0", "arc.1", "mbpp.0", "mbpp.1"],
            "prompt": ["['What is 2+2?']", "['turn one', 'turn two']", "not a list", "['x'"],
            "eval_name": ["arc-challenge", "arc-challenge", "mbpp", "mbpp"],
        }
    )
    for m in RB_MODELS:
        frame[m] = pd.Series(scores[m], dtype=object)
    for m in RB_MODELS:
        frame[f"{m}|model_response"] = "some answer"
    for m in RB_MODELS:
        frame[f"{m}|total_cost"] = costs[m]
    frame["oracle_model_to_route_to"] = "mistralai/mistral-7b-chat"
    return frame


@pytest.fixture
def routerbench_pkl(tmp_path: Path, rb_frame: pd.DataFrame) -> Path:
    path = tmp_path / "routerbench_tiny.pkl"
    rb_frame.to_pickle(path)
    return path


@pytest.fixture
def rb_slice(shared_data_dir: Path) -> Path:
    """The real 3-family RouterBench slice; skips where the shared data is absent."""
    path = shared_data_dir / SLICE
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    return path


def _sprout_table(models=SPROUT_MODELS, keys=("k0", "k1", "k2")) -> pa.Table:
    n = len(keys)
    cols = {
        "key": list(keys),
        "dataset": (["math", "gpqa"] * n)[:n],
        "dataset_level": ["1"] * n,
        "dataset_idx": list(range(n)),
        "prompt": [f"prompt {i}" for i in range(n)],
        "golden_answer": ["42"] * n,
    }
    for j, m in enumerate(models):
        cols[m] = [
            {"score": [1.0, 0.4, 0.0][i % 3], "num_input_tokens": 100 * (i + 1),
             "num_output_tokens": 10 * (j + 1), "response": "r", "rationale": "ok"}
            for i in range(n)
        ]
    return pa.table(cols)


@pytest.fixture
def sprout_table() -> Callable[..., pa.Table]:
    """Factory of SPROUT-schema tables: on row i, model j has score [1, .4, 0][i % 3],
    100 * (i + 1) input and 10 * (j + 1) output tokens; tasks alternate math, gpqa."""
    return _sprout_table


@pytest.fixture
def sprout_dir(tmp_path: Path) -> Path:
    """HF layout: data/train-00000-of-00001.parquet (3 rows), data/test-00000-of-00001.parquet
    (2 rows, keys t0, t1)."""
    data = tmp_path / "SPROUT" / "data"
    data.mkdir(parents=True)
    pq.write_table(_sprout_table(), data / "train-00000-of-00001.parquet")
    pq.write_table(_sprout_table(keys=("t0", "t1")), data / "test-00000-of-00001.parquet")
    return tmp_path / "SPROUT"
