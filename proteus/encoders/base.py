"""The encoder protocol and the small spec-parsing helpers every encoder shares.

A spec is `kind` or `kind:options`. An encoder's `id` is its canonical spec: every setting that
changes the output is spelled out, so `get_encoder(encoder.id)` rebuilds an encoder that produces
the same vectors (DESIGN.md section 2), and the id can key caches and manifests.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import numpy as np


class EncoderSpecError(ValueError):
    """Raised for a spec or config that names no valid encoder; the message quotes it."""


@runtime_checkable
class Encoder(Protocol):
    """Maps query texts to fixed-size float32 feature rows.

    Attributes:
      id: canonical spec that fully identifies the encoder and every setting that changes its
        output; `get_encoder(id)` rebuilds an equivalent encoder.
      dim: D, the width of each feature row.
    """

    @property
    def id(self) -> str: ...

    @property
    def dim(self) -> int: ...

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """[N] str -> [N, D] float32."""
        ...

    def to_config(self) -> dict[str, Any]:
        """A small JSON-serialisable dict; `encoder_from_config` rebuilds the encoder from it."""
        ...


def split_spec(spec: str) -> tuple[str, str]:
    """`"kind:rest"` -> `("kind", "rest")`; `"kind"` -> `("kind", "")`. Kind is lowercased."""
    if not isinstance(spec, str) or not spec.strip():
        raise EncoderSpecError(f"empty encoder spec {spec!r}")
    kind, _, rest = spec.strip().partition(":")
    return kind.strip().lower(), rest.strip()


def parse_options(spec: str, text: str, allowed: Sequence[str]) -> dict[str, str]:
    """Parse `"a=1,b=2"` into `{"a": "1", "b": "2"}`, rejecting names outside `allowed`.

    Args:
      spec: the whole spec, quoted in error messages.
      text: the option part after `kind:`; may be empty.
      allowed: option names this encoder accepts.

    Returns:
      option name -> raw string value.
    """
    out: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, eq, value = item.partition("=")
        name, value = name.strip().lower(), value.strip()
        if not eq or not value:
            raise EncoderSpecError(f"encoder spec {spec!r}: expected name=value, got {item!r}")
        if name not in allowed:
            raise EncoderSpecError(
                f"encoder spec {spec!r}: unknown option {name!r} (allowed: {', '.join(allowed)})"
            )
        if name in out:
            raise EncoderSpecError(f"encoder spec {spec!r}: option {name!r} given twice")
        out[name] = value
    return out


def parse_int(spec: str, name: str, value: str, lo: int = 0) -> int:
    """An integer option >= `lo`, with an error that names the spec and the option."""
    try:
        number = int(value)
    except ValueError:
        raise EncoderSpecError(
            f"encoder spec {spec!r}: option {name}={value!r} is not an integer"
        ) from None
    if number < lo:
        raise EncoderSpecError(f"encoder spec {spec!r}: option {name}={number} must be >= {lo}")
    return number


def parse_range(spec: str, name: str, value: str) -> tuple[int, int]:
    """`"3-5"` -> (3, 5); `"2"` -> (2, 2); `"0"` or `"none"` -> (0, 0), meaning disabled."""
    if value.lower() == "none":
        return (0, 0)
    lo_text, dash, hi_text = value.partition("-")
    lo = parse_int(spec, name, lo_text, lo=0)
    hi = parse_int(spec, name, hi_text, lo=0) if dash else lo
    if (lo == 0) != (hi == 0) or hi < lo:
        raise EncoderSpecError(
            f"encoder spec {spec!r}: option {name}={value!r} must be 'lo-hi' with 1 <= lo <= hi, "
            "or 0/none to disable"
        )
    return (lo, hi)


def format_range(lo: int, hi: int) -> str:
    """Inverse of `parse_range` in canonical form."""
    return "0" if lo == 0 else (str(lo) if lo == hi else f"{lo}-{hi}")
