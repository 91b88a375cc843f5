"""The synthetic RouterBench preset at a chosen signal (default 0.9, the preset's calibration).

    python -m launch.evaluate --config=experiments/configs/synthetic_routerbench.py --workdir=runs/s
    python -m launch.evaluate --config=experiments/configs/synthetic_routerbench.py:no_lambda \
        --workdir=runs/s_no_lambda
"""

from experiments.configs.common import apply_variant, base_config


def get_config(arg: str | None = None):
    c = base_config()
    c.name = "synthetic_routerbench"
    c.data.source = "synthetic:routerbench?n=20000&seed=0&signal=0.9"
    c.data.encoder = "precomputed"
    return apply_variant(c, arg)
