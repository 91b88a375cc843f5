"""RouterBench loader (withmartian/routerbench `routerbench_0shot.pkl` / `routerbench_5shot.pkl`).

Schema (one row per prompt): `sample_id`, `prompt` (a stringified Python list of turns),
`eval_name` (task family), one score column per model (object dtype, NaN where missing),
`<model>|model_response`, `<model>|total_cost` (USD), `oracle_model_to_route_to`. The models are
the score columns that have a matching `<model>|total_cost` column, in file order.

Pickles are refused unless the caller opts in (`allow_pickle=True`, `?allow_pickle=1` in a source
spec, `--allow_pickle`): unpickling runs whatever code the file names, so a crafted file executes
commands as the user. The same columns as parquet (or CSV / JSONL) need no opt-in; convert the
official pickle once, on a machine you trust:

    python -m launch.data_summary --source='routerbench:routerbench_0shot.pkl?allow_pickle=1' \
        --to_parquet=routerbench_0shot.parquet

(or `to_parquet(src, dst, allow_pickle=True)`), then use `routerbench:routerbench_0shot.parquet`.

Missing scores (the public 0-shot file has some, e.g. 104 cells in 14 ARC-Challenge rows of the
shared 3-family slice) follow `missing=`; see `proteus.data.checks.resolve_missing_scores`:
  "drop" (default): rows with any missing score are removed, with a note and a warning;
  "error": raise, naming file, model column and row;
  "zero": missing cells score 0 (a wrong answer), with a note and a warning.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from proteus.data import checks, io
from proteus.data.dataset import DataValidationError, RoutingDataset

if TYPE_CHECKING:  # imported where a file is read (proteus/data/__init__.py says why)
    import pandas as pd

COST_SUFFIX = "|total_cost"
RESPONSE_SUFFIX = "|model_response"
HUB_FILE = "routerbench_0shot.pkl"
PICKLE_SUFFIXES = (".pkl", ".pickle")
_CACHE_TAG = "routerbench-v1"  # bump when the cached (slimmed) frame changes meaning

# USD per token (input, output). Source: ../shared/data/benchmark_stats.json
# "routerbench_0shot.price_usd_per_1M_tokens_in_out", back-solved from the `total_cost` of public
# RouterBench rows (consistent to 3 s.f.); a best estimate, not an official price list.
_PER_1M = {
    "gpt-4-1106-preview": (10.0, 30.0),
    "gpt-3.5-turbo-1106": (1.0, 2.0),
    "claude-v2": (8.0, 24.0),
    "claude-v1": (8.0, 24.0),
    "claude-instant-v1": (0.8, 2.4),
    "meta/llama-2-70b-chat": (0.9, 0.9),
    "mistralai/mixtral-8x7b-chat": (0.6, 0.6),
    "zero-one-ai/Yi-34B-Chat": (0.8, 0.8),
    "WizardLM/WizardLM-13B-V1.2": (0.3, 0.3),
    "meta/code-llama-instruct-34b-chat": (0.776, 0.776),
    "mistralai/mistral-7b-chat": (0.2, 0.2),
}
ROUTERBENCH_PRICES: dict[str, tuple[float, float]] = {
    m: (p_in / 1e6, p_out / 1e6) for m, (p_in, p_out) in _PER_1M.items()
}


def parse_prompt(raw: object) -> str:
    """RouterBench's stringified list of turns -> one text (turns joined by a blank line).

    `"['What is 2+2?']"` -> `"What is 2+2?"`. A value that is not a Python list literal of strings
    is returned as its string form (never raises); None -> "".
    """
    if raw is None:
        return ""
    turns = raw
    if isinstance(raw, str):
        text = raw.strip()
        if not (text.startswith("[") or text.startswith("(")):
            return raw
        try:
            turns = ast.literal_eval(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return raw
    if isinstance(turns, (list, tuple, np.ndarray)) and all(isinstance(t, str) for t in turns):
        return "\n\n".join(turns)
    return str(raw)


def routerbench_models(columns) -> list[str]:
    """The model names of a RouterBench frame: score columns with a `<model>|total_cost` partner."""
    names = [str(c) for c in columns]
    present = set(names)
    return [c for c in names if "|" not in c and c + COST_SUFFIX in present]


class PickleRefusedError(DataValidationError):
    """A pickle was named without the explicit opt-in; the message names the file and the risk."""


def is_pickle(target: str | os.PathLike) -> bool:
    """True when loading `target` unpickles: a .pkl / .pickle file, or a hub id whose default
    file (`HUB_FILE`) is one."""
    spec = str(target)
    if Path(spec).suffix.lower() in PICKLE_SUFFIXES:
        return True
    return not os.path.exists(spec) and io.is_hub_name(spec)


def check_pickle_opt_in(target: str | os.PathLike, allow_pickle: bool) -> None:
    """Raise unless reading `target` is allowed: PickleRefusedError for a pickle without the
    opt-in (before anything is downloaded or read), but FileNotFoundError first for a missing
    local file (a typo is not a security question)."""
    if not is_pickle(target) or allow_pickle:
        return
    if not os.path.exists(target) and _is_local(str(target)):
        raise FileNotFoundError(f"{target}: no such file")
    raise refuse_pickle(target)


def refuse_pickle(target: str | os.PathLike) -> PickleRefusedError:
    """The error for a pickle named without opt-in: what the risk is and the two ways on."""
    stem = Path(str(target)).stem or "routerbench"
    return PickleRefusedError(
        f"{target}: refusing to unpickle this file: reading a pickle runs arbitrary code that "
        "the file names (a crafted file executes commands as you). Prefer a parquet copy: "
        f"python -m launch.data_summary --source='routerbench:{target}?allow_pickle=1' "
        f"--to_parquet={stem}.parquet, then use routerbench:{stem}.parquet. To load a pickle "
        f"you trust, opt in: 'routerbench:{target}?allow_pickle=1' (allow_pickle=True in "
        "Python, --allow_pickle on launch.data_summary)"
    )


def load_routerbench(
    path: str | os.PathLike,
    missing: str = "drop",
    cache_dir: str | os.PathLike | None = None,
    allow_pickle: bool = False,
) -> RoutingDataset:
    """Load a RouterBench file as a `RoutingDataset` (costs: the file's `|total_cost`, USD).

    Args:
      path: a RouterBench pickle (or the same columns as parquet / CSV / JSONL), or a hub id
        `withmartian/routerbench[/<file>.pkl]` (needs network; default file routerbench_0shot.pkl).
      missing: missing-score policy, "drop" | "error" | "zero" (see module docstring).
      cache_dir: keep the parsed table as Arrow files here (HF `datasets`), reused while the
        source file is unchanged; None: no cache for pickles, HF's default cache for the rest.
      allow_pickle: read a pickle (it runs code when read: only for files you trust). Checked
        before anything is downloaded or read.

    Returns:
      A dataset with scores [N, M] and costs [N, M] for the M models of the file, tasks from
      `eval_name`, texts from `prompt` (turns joined), prices from `ROUTERBENCH_PRICES`, and a
      note for each row or cell the missing-score policy changed.

    Raises:
      PickleRefusedError: a pickle without `allow_pickle`.
      FileNotFoundError: a local path that does not exist (named before the opt-in is asked).
      DataValidationError: a file that is not a readable pickle / table, missing columns,
        non-numeric / out-of-range scores, negative or non-finite costs, duplicate sample ids
        (each names file, column and row).
    """
    check_pickle_opt_in(path, allow_pickle)
    path = _resolve(path, cache_dir)
    check_pickle_opt_in(path, allow_pickle)  # a hub file named explicitly
    where = str(path)
    frame = _read_frame(path, cache_dir)
    models = routerbench_models(frame.columns)
    ids = frame["sample_id"].to_numpy()
    scores = frame[models].to_numpy(np.float64)
    keep, scores, notes = checks.resolve_missing_scores(where, scores, models, ids, missing)
    costs = frame[[m + COST_SUFFIX for m in models]].to_numpy(np.float64)[keep]
    return RoutingDataset(
        name=f"routerbench:{Path(path).name}",
        models=tuple(models),
        scores=scores.astype(np.float32),
        costs=costs.astype(np.float32),
        query_ids=ids[keep].astype(str),
        tasks=frame["eval_name"].to_numpy()[keep].astype(str),
        texts=io.text_array(frame["prompt"].to_numpy()[keep]),
        prices={m: ROUTERBENCH_PRICES[m] for m in models if m in ROUTERBENCH_PRICES},
        source=where,
        notes=notes,
    )


def _resolve(path: str | os.PathLike, cache_dir) -> str:
    """A local path as is; a hub id `owner/name[/file]` downloaded through huggingface_hub.

    A missing path that reads as a local one is not sent to the hub: `dir/x.pkl` (a repository
    is not named like a pickle) or one under a local directory (`data/routerbench/x.pkl` where
    `data/` exists).
    """
    spec = str(path)
    if os.path.exists(spec):
        return spec
    parts = spec.split("/")
    if not _is_local(spec):
        from huggingface_hub import hf_hub_download

        filename = parts[2] if len(parts) == 3 else HUB_FILE
        return hf_hub_download(
            "/".join(parts[:2]), filename, repo_type="dataset", cache_dir=cache_dir
        )
    raise FileNotFoundError(f"{spec}: no such file (and not a hub id owner/name[/file.pkl])")


def _is_local(spec: str) -> bool:
    """Whether a path that does not exist names a local file rather than a hub id (`_resolve`)."""
    parts = spec.split("/")
    local = os.path.isdir(parts[0]) or (len(parts) == 2
                                        and Path(spec).suffix.lower() in PICKLE_SUFFIXES)
    return not (len(parts) in (2, 3) and all(parts) and not local
                and (len(parts) == 3 or io.is_hub_name(spec)))


def to_parquet(src: str | os.PathLike, dst: str | os.PathLike,
               allow_pickle: bool = False) -> Path:
    """Write a RouterBench pickle's routing columns to parquet, the format to load from then on.

    Keeps sample_id, prompt (the original stringified turns), eval_name and every model's score
    and `|total_cost` (checked and typed as float); drops the bulky responses. `load_routerbench`
    reads the result (no opt-in) into the same dataset as the pickle.

    Raises:
      PickleRefusedError: `src` is a pickle and `allow_pickle` is False.
      FileNotFoundError: `src` does not exist.
    """
    check_pickle_opt_in(src, allow_pickle)
    src = str(src)
    raw = _read_pickle(src) if is_pickle(src) else io.read_arrow(src).to_pandas()
    frame = _slim(raw, src, parse_prompts=False)
    dst = Path(dst)
    tmp = dst.with_name(f"{dst.name}.tmp{os.getpid()}")
    frame.to_parquet(tmp, index=False)
    os.replace(tmp, dst)  # never a half-written parquet under the final name
    return dst


def _read_pickle(path: str) -> pd.DataFrame:
    """`pd.read_pickle` (the caller has checked the opt-in), with errors that name the file."""
    import pandas as pd

    try:
        frame = pd.read_pickle(path)
    except Exception as e:  # noqa: BLE001 (unpickling fails in many ways; all mean "not one")
        raise DataValidationError(
            f"{path}: could not be read as a pandas pickle ({type(e).__name__}: {e}); a "
            "routerbench: source must be a RouterBench pickle or parquet / CSV / JSONL table"
        ) from e
    if not isinstance(frame, pd.DataFrame):
        raise DataValidationError(
            f"{path}: the pickle holds a {type(frame).__name__}, not a pandas DataFrame")
    return frame


def _read_frame(path: str, cache_dir) -> pd.DataFrame:
    """The slimmed, checked frame: ids, parsed prompt, eval_name, float scores and costs."""
    if Path(path).suffix.lower() in PICKLE_SUFFIXES:
        build = lambda: _slim(_read_pickle(path), path)
        return io.cached_frame(path, cache_dir, _CACHE_TAG, build)
    return _slim(io.read_arrow(path, cache_dir).to_pandas(), path)


def _slim(raw: pd.DataFrame, where: str, parse_prompts: bool = True) -> pd.DataFrame:
    """Keep what routing needs (dropping the bulky responses), typed and range-checked.

    `parse_prompts=False` keeps RouterBench's stringified turns (for a file in the same schema).
    """
    import pandas as pd

    if len(raw) == 0:
        raise DataValidationError(f"{where}: no data rows")
    checks.require_columns(where, raw.columns, ["sample_id", "prompt", "eval_name"])
    models = routerbench_models(raw.columns)
    if not models:
        raise DataValidationError(
            f"{where}: no model columns; expected score columns <model> with a matching "
            f"<model>{COST_SUFFIX} column"
        )
    ids = raw["sample_id"].astype(str).to_numpy()
    checks.check_unique(where, "sample_id", ids)
    out = {
        "sample_id": ids,
        "prompt": [parse_prompt(p) if parse_prompts else ("" if p is None else str(p))
                   for p in raw["prompt"].tolist()],
        "eval_name": raw["eval_name"].fillna("").astype(str).to_numpy(),
    }
    for m in models:
        score = checks.numeric_column(where, m, raw[m].to_numpy(), ids)
        checks.check_range(where, m, score, ids, 0.0, 1.0, allow_nan=True)
        cost_col = m + COST_SUFFIX
        cost = checks.numeric_column(where, cost_col, raw[cost_col].to_numpy(), ids)
        checks.check_range(where, cost_col, cost, ids, 0.0, np.inf)
        out[m], out[cost_col] = score, cost
    return pd.DataFrame(out)
