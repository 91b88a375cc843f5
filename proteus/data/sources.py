"""One string names any dataset: `load_source("<kind>:<target>[?key=value&...]")`.

Specs (query parameters are optional; keyword arguments to `load_source` override them):

    routerbench:<file.parquet | file.pkl | owner/name[/file.pkl]>[?missing=drop|error|zero
                &allow_pickle=0|1]
    sprout:<file.parquet | directory | owner/name>[?split=test&missing=drop]
    table:<file.csv | .tsv | .jsonl | .parquet | directory | owner/name>[?layout=auto|long|wide
          &missing=drop&cost_suffix=|cost&split=train]
    synthetic:<routerbench | sprout>[?n=20000&seed=0&signal=0.9&feature_dim=64]

A pickle is read only with `allow_pickle=1` (or `load_source(..., allow_pickle=True)`): unpickling
runs code from the file. `check_spec` validates a spec (and that opt-in) without reading anything.

Examples: `routerbench:rb_0shot.parquet`, `routerbench:rb_slice.pkl?allow_pickle=1`,
`sprout:/data/SPROUT/data?split=test`, `synthetic:sprout?n=5000&seed=3&signal=0.5`.
The target is everything between the first ":" and the first "?" (a path may not contain "?").
"""

from __future__ import annotations

import os
from collections.abc import Callable

from proteus.data.dataset import RoutingDataset
from proteus.data.routerbench import check_pickle_opt_in, load_routerbench
from proteus.data.sprout import load_sprout
from proteus.data.synthetic import PRESETS, synthetic
from proteus.data.table import load_table


def parse_flag(value: str) -> bool:
    """A query-string boolean: 1/true/yes/on or 0/false/no/off (any case)."""
    text = value.strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ValueError(f"expected 1/true/yes/on or 0/false/no/off, got {value!r}")


# kind -> (loader, parameter name -> parser of its query-string value)
_KINDS: dict[str, tuple[Callable[..., RoutingDataset], dict[str, Callable[[str], object]]]] = {
    "routerbench": (load_routerbench, {"missing": str, "allow_pickle": parse_flag}),
    "sprout": (load_sprout, {"split": str, "missing": str}),
    "table": (load_table, {"layout": str, "missing": str, "cost_suffix": str, "split": str}),
    "synthetic": (synthetic, {"n": int, "seed": int, "signal": float, "feature_dim": int}),
}
KINDS = tuple(_KINDS)
USAGE = (
    "expected '<kind>:<target>[?key=value&...]' with kind in "
    f"{list(KINDS)}, e.g. 'routerbench:path/to/routerbench_0shot.pkl?missing=drop', "
    "'table:scores.csv?layout=long', 'synthetic:routerbench?n=20000&seed=0&signal=0.9'"
)


def parse_spec(spec: str) -> tuple[str, str, dict[str, str]]:
    """Split a source spec into (kind, target, raw query parameters).

    `"synthetic:sprout?n=10&seed=2"` -> `("synthetic", "sprout", {"n": "10", "seed": "2"})`.

    Raises:
      ValueError: an unknown kind, an empty target, or a malformed parameter (with the usage).
    """
    kind, sep, rest = spec.partition(":")
    if not sep or kind not in _KINDS:
        raise ValueError(f"bad data source {spec!r}: {USAGE}")
    target, _, query = rest.partition("?")
    if not target:
        raise ValueError(f"bad data source {spec!r}: empty target; {USAGE}")
    params: dict[str, str] = {}
    for item in filter(None, query.split("&")):
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise ValueError(f"bad data source {spec!r}: parameter {item!r} is not key=value")
        params[key] = value
    return kind, target, params


def _loader_kwargs(spec: str, allow_pickle: bool, overrides: dict[str, object]
                   ) -> tuple[str, str, dict[str, object]]:
    """(kind, target, loader keyword arguments): parsed, typed, opt-ins applied, checked."""
    kind, target, raw = parse_spec(spec)
    _, parsers = _KINDS[kind]
    unknown = sorted((set(raw) | set(overrides)) - set(parsers))
    if unknown:
        raise ValueError(f"{spec!r}: unknown parameter(s) {unknown} for {kind}; known: "
                         f"{sorted(parsers)}")
    kwargs: dict[str, object] = {}
    for key, value in raw.items():
        try:
            kwargs[key] = parsers[key](value)
        except ValueError as e:
            raise ValueError(f"{spec!r}: parameter {key}={value!r}: {e}") from None
    kwargs.update(overrides)
    if "allow_pickle" in parsers:  # the caller's opt-in adds to the spec's; never removes it
        kwargs["allow_pickle"] = bool(kwargs.get("allow_pickle", False)) or allow_pickle
        check_pickle_opt_in(os.path.expanduser(target), kwargs["allow_pickle"])
    if kind == "synthetic" and target not in PRESETS:
        raise ValueError(f"{spec!r}: unknown synthetic preset {target!r}; "
                         f"known: {sorted(PRESETS)}")
    return kind, target, kwargs


def check_spec(spec: str, allow_pickle: bool = False) -> None:
    """Raise what `load_source(spec)` would raise before reading anything (for config checks).

    Raises:
      ValueError: a malformed spec, an unknown parameter or preset, a value of the wrong type.
      PickleRefusedError: a pickle without the opt-in.
    """
    _loader_kwargs(spec, allow_pickle, {})


def canonical_spec(spec: str) -> str:
    """`spec` without its `allow_pickle` opt-in: two specs that load the same data compare equal.

    Used when comparing a workdir's recorded config with a new one (the opt-in changes
    permission, not data). A spec that does not parse is returned as is.
    """
    try:
        kind, target, raw = parse_spec(spec)
    except ValueError:
        return spec
    query = "&".join(f"{k}={v}" for k, v in raw.items() if k != "allow_pickle")
    return f"{kind}:{target}" + (f"?{query}" if query else "")


def load_source(
    spec: str, cache_dir: str | os.PathLike | None = None, allow_pickle: bool = False,
    **overrides: object,
) -> RoutingDataset:
    """Load the dataset a spec names (see the module docstring for the grammar).

    Args:
      spec: "<kind>:<target>[?key=value&...]".
      cache_dir: HF Arrow cache directory for the file loaders (ignored by synthetic).
      allow_pickle: opt in to reading a pickle (for kinds that can read one; ignored by the
        rest). Either this or the spec's `allow_pickle=1` suffices.
      **overrides: loader keyword arguments that take precedence over the spec's parameters.

    Returns:
      The `RoutingDataset` from the kind's loader.

    Raises:
      ValueError: a malformed spec, an unknown parameter or preset, or a value of the wrong type.
      PickleRefusedError: a pickle without the opt-in (nothing is read).
    """
    kind, target, kwargs = _loader_kwargs(spec, allow_pickle, overrides)
    loader = _KINDS[kind][0]
    if kind == "synthetic":
        return loader(target, **kwargs)
    return loader(os.path.expanduser(target), cache_dir=cache_dir, **kwargs)
