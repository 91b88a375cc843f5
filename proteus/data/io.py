"""File reading for the loaders, through Hugging Face `datasets` (Arrow, memory-mapped, cached).

Every loader reads its files here, so that CSV, JSON Lines and parquet are parsed by one engine,
land in an Arrow cache under `cache_dir` (HF's default cache when None), and fail with a
`DataValidationError` that names the file. HF's progress bars and logging are silenced while we
read (and restored afterwards): a loader's messages are its notes, not HF's chatter.

`datasets` is imported lazily because it takes about a second to import and most users of
`proteus.data` (synthetic data, routers) never read a file.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from proteus.data.dataset import DataValidationError

if TYPE_CHECKING:  # imported where a file is read (proteus/data/__init__.py says why)
    import pandas as pd
    import pyarrow as pa

# File suffix -> HF packaged builder.
FORMATS = {
    ".csv": "csv",
    ".tsv": "csv",
    ".json": "json",
    ".jsonl": "json",
    ".parquet": "parquet",
    ".pq": "parquet",
}
# CSV: only an empty cell is missing. pandas' default NA words ("n/a", "NA", "null", "-nan", ...)
# would turn a typo'd score into a silently dropped row and a prompt reading "NA" into ""; with
# these options such text reaches `checks.numeric_column`, which names the cell.
CSV_NA = {"keep_default_na": False, "na_values": [""]}
_HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@contextlib.contextmanager
def quiet_hf() -> Iterator[None]:
    """Silence HF `datasets` progress bars and logging inside the block; restore them after."""
    import datasets

    bars_were_on = not datasets.are_progress_bars_disabled()
    verbosity = datasets.logging.get_verbosity()
    datasets.disable_progress_bars()
    # CRITICAL, not ERROR: on a malformed file HF logs an error AND raises; we re-raise it
    # as a DataValidationError that names the file, so the log line would only be noise.
    datasets.logging.set_verbosity(logging.CRITICAL)
    try:
        yield
    finally:
        datasets.logging.set_verbosity(verbosity)
        if bars_were_on:
            datasets.enable_progress_bars()


def is_hub_name(spec: str) -> bool:
    """True for an `owner/name` string that is not a local path (a HF hub dataset id)."""
    return (
        not os.path.exists(spec)
        and _HUB_NAME.match(spec) is not None
        and Path(spec).suffix.lower() not in FORMATS
    )


def data_files(path: str | os.PathLike, split: str | None = None) -> list[str]:
    """The table files behind `path`: the file itself, or a directory's files of one format.

    In a directory, files are found recursively and sorted; with `split`, only files whose name
    starts with it (HF layout: `data/test-00000-of-00001.parquet`).

    Raises:
      FileNotFoundError: when nothing matches.
      DataValidationError: a directory mixing formats, or an unsupported suffix.
    """
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file or directory")
    if p.is_file():
        if p.suffix.lower() not in FORMATS:
            raise DataValidationError(f"{p}: unsupported file type; expected one of {FORMATS}")
        return [str(p)]
    files = sorted(
        str(f)
        for f in p.rglob("*")
        if f.is_file()
        and f.suffix.lower() in FORMATS
        and (split is None or f.name.startswith(split))
    )
    if not files:
        raise FileNotFoundError(f"{p}: no {sorted(FORMATS)} files (split={split!r})")
    kinds = {FORMATS[Path(f).suffix.lower()] for f in files}
    if len(kinds) > 1:
        raise DataValidationError(f"{p}: mixes file formats {sorted(kinds)}; pass one file")
    return files


def read_arrow(
    path: str | os.PathLike | Sequence[str],
    cache_dir: str | os.PathLike | None = None,
) -> pa.Table:
    """Read CSV / TSV / JSON(L) / parquet file(s) into one Arrow table through HF `datasets`.

    Args:
      path: a file, a directory of files of one format, or a list of files of one format.
      cache_dir: where HF keeps its Arrow cache (None: HF's default cache).

    Returns:
      The rows of all files in order, as a `pyarrow.Table` (memory-mapped from the cache).

    Raises:
      DataValidationError: an empty file, a file with no data rows, or one HF cannot parse.
    """
    files = data_files(path) if isinstance(path, (str, os.PathLike)) else [str(f) for f in path]
    for f in files:
        if os.path.getsize(f) == 0:
            raise DataValidationError(f"{f}: empty file (0 bytes)")
    builder = FORMATS[Path(files[0]).suffix.lower()]
    kwargs = dict(CSV_NA) if builder == "csv" else {}
    if Path(files[0]).suffix.lower() == ".tsv":
        kwargs["delimiter"] = "\t"
    where = files[0] if len(files) == 1 else f"{files[0]} (+{len(files) - 1} files)"
    import datasets

    try:
        with quiet_hf():
            ds = datasets.load_dataset(
                builder,
                data_files=files,
                split="train",
                cache_dir=None if cache_dir is None else str(cache_dir),
                **kwargs,
            )
    except ValueError as e:  # HF: 'Instruction "train" corresponds to no data!'
        if "corresponds to no data" in str(e):
            raise DataValidationError(f"{where}: no data rows") from e
        raise DataValidationError(f"{where}: could not be read as {builder}: {e}") from e
    except datasets.exceptions.DatasetGenerationError as e:
        cause = e.__cause__ or e
        raise DataValidationError(f"{where}: could not be read as {builder}: {cause}") from e
    table = ds.with_format("arrow")[:]
    if table.num_rows == 0:
        raise DataValidationError(f"{where}: no data rows")
    return table


def read_hub(
    name: str, split: str | None, cache_dir: str | os.PathLike | None = None
) -> pa.Table:
    """A hub dataset split as an Arrow table (downloaded, or reused from the HF cache)."""
    import datasets

    with quiet_hf():
        ds = datasets.load_dataset(
            name, split=split or "train", cache_dir=None if cache_dir is None else str(cache_dir)
        )
    return ds.with_format("arrow")[:]


def text_array(values) -> np.ndarray:
    """[N] texts as an object array of Python str (None -> "").

    Object dtype, not numpy's fixed-width unicode: one long prompt would otherwise set the width
    (4 bytes per character) of every row.
    """
    out = np.empty(len(values), dtype=object)
    out[:] = ["" if v is None else str(v) for v in values]
    return out


def file_key(path: str | os.PathLike) -> str:
    """A short digest of a file's absolute path, size and mtime: a cache key that goes stale."""
    st = os.stat(path)
    raw = f"{os.path.abspath(path)}\x1f{st.st_size}\x1f{st.st_mtime_ns}"
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def cached_frame(
    path: str | os.PathLike,
    cache_dir: str | os.PathLike | None,
    tag: str,
    build,
) -> pd.DataFrame:
    """`build()`'s DataFrame for `path`, kept as an HF Arrow dataset under `cache_dir`.

    For formats HF has no builder for (a pandas pickle): the first call runs `build()` and saves
    its result with `Dataset.save_to_disk`; later calls with the same file (path, size, mtime)
    memory-map the saved Arrow files instead. With `cache_dir=None` nothing is cached.

    Args:
      path: the source file (its identity keys the cache).
      cache_dir: cache root, or None.
      tag: a name for the cache entry (e.g. the loader and its version).
      build: `() -> pd.DataFrame` with Arrow-compatible columns.
    """
    if cache_dir is None:
        return build()
    import datasets

    target = Path(cache_dir) / "proteus_arrow" / f"{tag}-{Path(path).stem}-{file_key(path)}"
    with quiet_hf():
        if target.exists():
            return datasets.load_from_disk(str(target)).to_pandas()
        frame = build()
        # Save beside the target, then rename: an interrupted save never leaves a half entry.
        tmp = target.with_name(f"{target.name}.tmp{os.getpid()}")
        datasets.Dataset.from_pandas(frame, preserve_index=False).save_to_disk(str(tmp))
        os.replace(tmp, target)
    return frame
