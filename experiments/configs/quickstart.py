"""Quickstart: the synthetic RouterBench preset at high signal (the README's main job).

    python -m launch.train --config=experiments/configs/quickstart.py --workdir=runs/quickstart
    python -m launch.train --config=experiments/configs/quickstart.py:smoke --workdir=/tmp/smoke
"""

from experiments.configs.common import apply_variant, base_config


def get_config(arg: str | None = None):
    c = base_config()
    c.name = "quickstart"
    c.data.source = "synthetic:routerbench?n=20000&seed=0&signal=1.0"
    c.data.encoder = "precomputed"  # the synthetic preset ships its latent features
    # 5,000 policy queries make the duals' accuracy estimate tight, so a small margin suffices
    # (0.015, 0.008 and 0.005 were tried; see README "Results" for what each costs).
    c.train.margin = 0.005
    return apply_variant(c, arg)
