"""One string names any dataset: `load_source("<kind>:<target>[?key=value&...]")`.

Specs (query parameters are optional; keyword arguments to `load_source` override them):

    routerbench:<file.pkl | file.parquet | owner/name[/file.pkl]>[?missing=drop|error|zero]
    sprout:<file.parquet | directory | owner/name>[?split=test&missing=drop]
    table:<file.csv | .tsv | .jsonl | .parquet | directory | owner/name>[?layout=auto|long|wide
          &missing=drop&cost_suffix=|cost&split=train]
    synthetic:<routerbench | sprout>[?n=20000&seed=0&signal=0.9&feature_dim=64]

Examples: `routerbench:../shared/data/routerbench/routerbench_0shot_arc_winogrande_mbpp.pkl`,
`sprout:/data/SPROUT/data?split=test`, `synthetic:sprout?n=5000&seed=3&signal=0.5`.
The target is everything between the first ":" and the first "?" (a path may not contain "?").
"""

from __future__ import annotations

import os
from collections.abc import Callable

from proteus.data.dataset import RoutingDataset
from proteus.data.routerbench import load_routerbench
from proteus.data.sprout import load_sprout
from proteus.data.synthetic import PRESETS, synthetic
from proteus.data.table import load_table

# kind -> (loader, parameter name -> parser of its query-string value)
_KINDS: dict[str, tuple[Callable[..., RoutingDataset], dict[str, Callable[[str], object]]]] = {
    "routerbench": (load_routerbench, {"missing": str}),
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


def load_source(
    spec: str, cache_dir: str | os.PathLike | None = None, **overrides: object
) -> RoutingDataset:
    """Load the dataset a spec names (see the module docstring for the grammar).

    Args:
      spec: "<kind>:<target>[?key=value&...]".
      cache_dir: HF Arrow cache directory for the file loaders (ignored by synthetic).
      **overrides: loader keyword arguments that take precedence over the spec's parameters.

    Returns:
      The `RoutingDataset` from the kind's loader.

    Raises:
      ValueError: a malformed spec, an unknown parameter or preset, or a value of the wrong type.
    """
    kind, target, raw = parse_spec(spec)
    loader, parsers = _KINDS[kind]
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
    if kind == "synthetic":
        if target not in PRESETS:
            raise ValueError(f"{spec!r}: unknown synthetic preset {target!r}; "
                             f"known: {sorted(PRESETS)}")
        return loader(target, **kwargs)
    return loader(os.path.expanduser(target), cache_dir=cache_dir, **kwargs)
