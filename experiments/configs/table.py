"""Any routing table, with the data-dependent settings chosen from held-out evidence (docs/auto.md).

    python -m launch.evaluate --config=experiments/configs/table.py:scores.csv --workdir=runs/t
    python -m launch.evaluate --config=experiments/configs/table.py:scores.parquet,hashing \
        --workdir=runs/t_hashing
    python -m launch.evaluate --workdir=runs/mmlu_pro_auto \
        --config=experiments/configs/table.py:../shared/data/mmlu_pro/mmlu_pro_29models_wide.parquet
    python -m launch.evaluate --config="experiments/configs/table.py:routerbench:\
../shared/data/routerbench/routerbench_0shot_arc_winogrande_mbpp.pkl?allow_pickle=1" \
        --workdir=runs/rb_auto

The argument is the source, then optional variants after commas (`common.VARIANTS`): a path to a
CSV / TSV / JSON Lines / parquet table (long or wide layout, `proteus.data.table`) or any source
spec (`kind:target?...`, `proteus.data.sources`); a path may not contain a comma.

Left "auto", decided by `proteus.pipeline.resolve` before training, each by the rule in
`proteus.pipeline.auto_rules.RULES`, on the usable query count or on out-of-fold evidence from the
training pool (never `val`, `calib` or `test` labels), and recorded in results.json's "auto":

- `data.splits`, `train.batch_size`: the small-set split and batch below 5,000 queries;
- `data.encoder`: among the installed encoders (hashing always; MiniLM with the `text` extra);
- `model.task_prior`: where the table has a task column;
- `eval.tau_lo`, `eval.tau_hi`: the report grid spans the accuracies the router reaches.

Any of them can be set instead, e.g. `--config.model.task_prior=false` or
`--config.data.splits=0.35,0.25,0.1,0.1,0.2` (pred, policy, val, calib, test).
"""

from experiments.configs.common import apply_variant, base_config, set_auto
from proteus.data import KINDS

AUTO_SETTINGS = ("data.splits", "train.batch_size", "data.encoder", "model.task_prior",
                 "eval.tau_lo", "eval.tau_hi")


def source_spec(source: str) -> str:
    """A path -> "table:<path>"; a spec that names a source kind ("routerbench:...") as is."""
    kind, sep, _ = source.partition(":")
    return source if sep and kind in KINDS else f"table:{source}"


def get_config(arg: str | None = None):
    source, _, variants = (arg or "").partition(",")
    if not source:
        raise ValueError("table.py needs the table: --config=experiments/configs/table.py:<path "
                         "or source spec>[,variants]")
    c = base_config()
    c.name = "table"
    c.data.source = source_spec(source)
    # The two real configs' shared hand settings for real text tables (a smaller predictor step
    # and more weight decay than the synthetic presets', and more patience): set on the slice
    # and MMLU-Pro, not tuned per table.
    c.train.pred_lr = 3e-4
    c.train.weight_decay = 1e-3
    c.train.pred_patience = 6
    set_auto(c, *AUTO_SETTINGS)
    return apply_variant(c, variants)
