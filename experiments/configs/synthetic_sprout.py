"""The synthetic SPROUT preset (13 models, CARROT's prices) at high signal.

    python -m launch.evaluate --config=experiments/configs/synthetic_sprout.py --workdir=runs/sp
"""

from experiments.configs.common import apply_variant, base_config


def get_config(arg: str | None = None):
    c = base_config()
    c.name = "synthetic_sprout"
    c.data.source = "synthetic:sprout?n=20000&seed=0&signal=1.0"
    c.data.encoder = "precomputed"
    return apply_variant(c, arg)
