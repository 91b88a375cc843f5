"""Quickstart: the synthetic RouterBench preset at high signal (the README's main job), read as
text by the hashing encoder, so its export routes a free-text question with no torch.

    python -m launch.train --config=experiments/configs/quickstart.py --workdir=runs/quickstart
    python -m launch.export --workdir=runs/quickstart --out=artifacts/quickstart
    python -m launch.route --artifact=artifacts/quickstart --tau=0.8 "Which gas do plants absorb?"
    python -m launch.train --config=experiments/configs/quickstart.py:smoke --workdir=/tmp/smoke
    python -m launch.train --config=experiments/configs/quickstart.py:precomputed --workdir=/tmp/p
"""

from experiments.configs.common import apply_variant, base_config


def get_config(arg: str | None = None):
    c = base_config()
    c.name = "quickstart"
    c.data.source = "synthetic:routerbench?n=20000&seed=0&signal=1.0"
    # The preset's prompts carry its latent family, topic and difficulty in ordinary words
    # (proteus.data.synthetic_text), so the router reads text with the default encoder (no
    # torch) and its export routes a free-text question. `:precomputed` trains on the preset's
    # latent features instead (sharper, but the router cannot read text; see docs/data.md).
    c.data.encoder = "hashing"
    # 5,000 policy queries make the duals' accuracy estimate tight, so a small margin suffices
    # (0.015, 0.008 and 0.005 were tried; see README "Results" for what each costs).
    c.train.margin = 0.005
    return apply_variant(c, arg)
