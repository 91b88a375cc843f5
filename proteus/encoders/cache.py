"""Encode a dataset's queries once and cache the features on disk.

A cache file is `<cache_dir>/<dataset fingerprint>-<sha256(encoder id)[:16]>.npy`, written
atomically (temporary file + rename), so concurrent runs never read a half-written file. The
default directory is `$PROTEUS_CACHE`, else `~/.cache/proteus/features`.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import tqdm

from proteus.encoders.base import Encoder
from proteus.encoders.registry import DEFAULT_SPEC, PrecomputedEncoder, get_encoder

if TYPE_CHECKING:  # only annotations: serving loads encoders without the data loaders (pandas)
    from proteus.data.dataset import RoutingDataset

log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """`$PROTEUS_CACHE` when set, else `~/.cache/proteus/features`."""
    env = os.environ.get("PROTEUS_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "proteus" / "features"


def cache_path(ds: RoutingDataset, encoder: Encoder, cache_dir: str | Path | None = None) -> Path:
    """Where `encode_dataset` caches `encoder`'s features of `ds`."""
    key = hashlib.sha256(encoder.id.encode()).hexdigest()[:16]
    root = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    return root / f"{ds.fingerprint()}-{key}.npy"


def encode_dataset(
    ds: RoutingDataset,
    encoder: str | Encoder = DEFAULT_SPEC,
    cache_dir: str | Path | None = None,
    batch_size: int = 1024,
    *,
    use_cache: bool = True,
    progress: bool = True,
) -> RoutingDataset:
    """`ds` with `features` [N, D] float32 from `encoder`, read from or written to the cache.

    Args:
      ds: the dataset; needs `texts` unless the encoder is `precomputed`.
      encoder: a spec for `get_encoder` or an encoder.
      cache_dir: cache directory; None for `default_cache_dir()`.
      batch_size: texts per `encoder.encode` call (one progress-bar step).
      use_cache: False to neither read nor write the cache.
      progress: show a progress bar when there is more than one batch.

    Returns:
      `ds.with_features(features)`; for `precomputed`, `ds` itself.

    Raises:
      ValueError: `precomputed` on a dataset without features (or of another width), a text
        encoder on a dataset without texts, or an encoder output of the wrong shape.
    """
    enc = get_encoder(encoder) if isinstance(encoder, str) else encoder
    if isinstance(enc, PrecomputedEncoder):
        return _check_precomputed(ds, enc)
    _check_texts(ds, enc)
    path = cache_path(ds, enc, cache_dir) if use_cache else None
    if path is not None:
        cached = _read_cache(path, ds.n_queries)
        if cached is not None:
            log.info("features of %s from cache %s", ds.name, path)
            return ds.with_features(cached)
    features = _encode_batches(ds, enc, batch_size, progress)
    if path is not None:
        try:
            _save_atomic(path, features)
        except OSError as err:  # a read-only cache must not lose the work just done
            log.warning("could not write feature cache %s: %s", path, err)
    return ds.with_features(features)


def _check_precomputed(ds: RoutingDataset, enc: PrecomputedEncoder) -> RoutingDataset:
    if ds.features is None:
        raise ValueError(
            f"dataset {ds.name!r} has no precomputed features, so encoder {enc.id!r} cannot be "
            "used; pick a text encoder such as 'hashing'"
        )
    if enc.dim is not None and ds.features.shape[1] != enc.dim:
        raise ValueError(
            f"dataset {ds.name!r} has {ds.features.shape[1]}-d features but encoder {enc.id!r} "
            f"expects {enc.dim}"
        )
    return ds


def _check_texts(ds: RoutingDataset, enc: Encoder) -> None:
    if ds.texts is None:
        raise ValueError(
            f"dataset {ds.name!r} has no texts, so encoder {enc.id!r} has nothing to encode; "
            "use a loader that keeps the prompts, or 'precomputed' if the data has features"
        )
    if ds.texts.dtype.kind != "U":
        for row, text in enumerate(ds.texts):
            if not isinstance(text, str):
                raise ValueError(
                    f"dataset {ds.name!r}: text of query {ds.query_ids[row]!r} (row {row}) is "
                    f"{text!r}, expected str"
                )


def _encode_batches(
    ds: RoutingDataset, enc: Encoder, batch_size: int, progress: bool
) -> np.ndarray:
    """[N, D] float32 features of `ds.texts`, `batch_size` texts per encoder call."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    texts = ds.texts.tolist()
    starts = range(0, len(texts), batch_size)
    parts = []
    bar = tqdm.tqdm(
        starts, desc=f"encode {ds.name}", unit="batch", disable=not progress or len(starts) <= 1
    )
    for start in bar:
        batch = texts[start : start + batch_size]
        out = np.asarray(enc.encode(batch), np.float32)
        width = parts[0].shape[1] if parts else (out.shape[1] if out.ndim == 2 else -1)
        if out.shape != (len(batch), width):
            raise ValueError(
                f"encoder {enc.id!r} returned shape {out.shape} for {len(batch)} texts of "
                f"dataset {ds.name!r}; expected ({len(batch)}, D) with one D for all batches"
            )
        parts.append(out)
    features = np.concatenate(parts)
    if not np.all(np.isfinite(features)):
        raise ValueError(f"encoder {enc.id!r} returned non-finite features for {ds.name!r}")
    return features


def _read_cache(path: Path, n_rows: int) -> np.ndarray | None:
    """The cached [n_rows, D] float32 array, or None when absent or unusable."""
    if not path.exists():
        return None
    try:
        features = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as err:
        log.warning("ignoring unreadable feature cache %s: %s", path, err)
        return None
    if features.ndim != 2 or features.shape[0] != n_rows or features.dtype != np.float32:
        log.warning(
            "ignoring feature cache %s: %s %s, expected [%d, D] float32",
            path,
            features.dtype,
            features.shape,
            n_rows,
        )
        return None
    return features


def _save_atomic(path: Path, array: np.ndarray) -> None:
    """Write `array` to `path` via a temporary file in the same directory and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.save(f, array, allow_pickle=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
