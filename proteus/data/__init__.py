"""Routing data: one `RoutingDataset` contract, loaders for RouterBench, SPROUT and generic tables,
calibrated synthetic presets, and `load_source(spec)` that names any of them with one string.

pandas and pyarrow are imported inside the functions that read a table file, not with these
modules: 64 MB and 0.3 s in every process that imports the package (the main job, each
launcher) and reads none (the synthetic presets, a served artifact)."""

from proteus.data.card import card_stats, dataset_card, source_card
from proteus.data.checks import MISSING_POLICIES, check_routable
from proteus.data.dataset import (
    DataValidationError,
    RoutingDataset,
    oracle_choice,
    split_indices,
    validate,
)
from proteus.data.routerbench import (
    ROUTERBENCH_PRICES,
    PickleRefusedError,
    load_routerbench,
    parse_prompt,
)
from proteus.data.sources import KINDS, canonical_spec, check_spec, load_source, parse_spec
from proteus.data.sprout import CARROT_PRICES, load_sprout
from proteus.data.synthetic import PRESETS, Preset, SyntheticDraw, generate, synthetic
from proteus.data.table import load_table

__all__ = [
    "CARROT_PRICES",
    "DataValidationError",
    "KINDS",
    "MISSING_POLICIES",
    "PRESETS",
    "PickleRefusedError",
    "Preset",
    "ROUTERBENCH_PRICES",
    "RoutingDataset",
    "SyntheticDraw",
    "canonical_spec",
    "card_stats",
    "check_routable",
    "check_spec",
    "dataset_card",
    "generate",
    "load_routerbench",
    "load_source",
    "load_sprout",
    "load_table",
    "oracle_choice",
    "parse_prompt",
    "parse_spec",
    "source_card",
    "split_indices",
    "synthetic",
    "validate",
]
