"""MMLU-Pro with 29 models (real outcomes; 14 categories; estimated costs) and hashing features.

    python -m launch.evaluate --config=experiments/configs/mmlu_pro.py --workdir=runs/mmlu_pro

The parquet lives outside the repository (../shared/data/ from the repository root; see its
README). 1,706 questions some model did not answer are dropped (logged), leaving 10,326 x 29.
"""

from experiments.configs.common import apply_variant, base_config

TABLE = "../shared/data/mmlu_pro/mmlu_pro_29models_wide.parquet"


def get_config(arg: str | None = None):
    c = base_config()
    c.name = "mmlu_pro"
    c.data.source = f"table:{TABLE}?layout=wide"
    c.data.encoder = "hashing"  # word 1-2-grams + char 3-5-grams, 1024-d, no download
    c.data.splits.update(dict(pred=0.35, policy=0.25, val=0.1, calib=0.1, test=0.2))
    c.train.batch_size = 256
    c.train.pred_lr = 3e-4
    c.train.weight_decay = 1e-3
    c.train.pred_patience = 6
    return apply_variant(c, arg)
