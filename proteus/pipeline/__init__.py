"""The PROTEUS library API: load data -> train -> evaluate -> export -> route, with no workdir.

    from experiments.configs import quickstart
    from proteus import pipeline
    from proteus.serving import Router

    config = quickstart.get_config("smoke")                        # a ConfigDict
    splits = pipeline.load_splits(config)                          # 1. {"pred", ..., "test"}
    trained = pipeline.train(config, splits)                       # 2. Trained: setup, [S] state
    evaluation = pipeline.evaluate(trained)                        # 3. results, operating points
    pipeline.export(trained, evaluation, "/tmp/router")            # 4. the artifact's manifest
    Router.load("/tmp/router").route(splits["test"].features[:4], tau=0.9)  # 5. decisions

Checkpoints and logging attach to `train` as callbacks (`proteus.training.loop.Callback`):

    history = pipeline.History()                                   # metrics in memory
    ckpt = CheckpointCallback("/tmp/ckpt", every_steps=500, max_to_keep=3)  # Orbax, resumes
    trained = pipeline.train(config, splits, callbacks=[ckpt, history, print_fn])

A config may leave its data-dependent settings "auto" (`experiments/configs/table.py`):
`config = pipeline.resolve(config)` decides them first, from held-out evidence on the training
pool, and records each choice under `config.auto` (docs/auto.md).

(`CheckpointCallback` is `proteus.training.checkpoint.CheckpointCallback`; `print_fn` any
`fn(phase, step, metrics)`.) A workdir with a lock, `config.json`, `metrics.jsonl` and resume is
the layer above (`experiments/runs.py`), and the launchers only parse flags and call it. The
modules: `auto` (`resolve`; its rules in `auto_rules`, its evidence in `evidence`), `setup`
(config and data -> what the program needs), `config` (the config's settings objects, the one
place they are read), `fit` (`train`), `routing` (PROTEUS's operating points of a run on the
splits), `baselines`, `evaluation` (`evaluate`), `bundle` (`export`), `onboarding` (`onboard`,
`remove_model`: change an exported router's model pool without retraining it), `transfer`
(`training_pool`: the soft labels onboarding can fit on too).
"""

from proteus.evaluation.console import compliance_table
from proteus.pipeline.auto import resolve
from proteus.pipeline.bundle import export, router_bundle
from proteus.pipeline.config import ConfigError
from proteus.pipeline.evaluation import Evaluation, evaluate
from proteus.pipeline.fit import History, Trained, train
from proteus.pipeline.onboarding import OnboardError, heldout_queries, onboard, remove_model
from proteus.pipeline.setup import SPLITS, Setup, load_splits, make_setup
from proteus.pipeline.transfer import training_pool

__all__ = ["SPLITS", "ConfigError", "Evaluation", "History", "OnboardError", "Setup", "Trained",
           "compliance_table", "evaluate", "export", "heldout_queries", "load_splits",
           "make_setup", "onboard", "remove_model", "resolve", "router_bundle", "train",
           "training_pool"]
