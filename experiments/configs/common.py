"""Defaults shared by every PROTEUS training config; one comment per field.

A config file's `get_config(arg)` starts from `base_config()`, sets its data source and overrides,
applies the variant named by `arg` (see `apply_variant`) and returns the locked ConfigDict, so a
mistyped `--config.train.dual_lr=...` override is an error, not a silent no-op.
"""

from __future__ import annotations

import ml_collections

from proteus.encoders.registry import MINILM as ST_MINILM  # noqa: F401 (the real configs')
from proteus.pipeline.config import AUTO


def base_config() -> ml_collections.ConfigDict:
    """Every default, one section per sub-config (each built by its own function below)."""
    c = ml_collections.ConfigDict()
    c.name = "proteus"  # experiment name, written into results.json
    c.seed = 0  # base PRNG seed; run r uses fold_in(key(seed), r)
    c.num_seeds = 1  # independent runs vmapped in one program; results.json reports run 0
    c.data = _data()
    c.model = _model()
    c.lanes = _lanes()
    c.train = _train()
    c.eval = _eval()
    c.certify = _certify()
    c.operating = _operating()
    c.checkpoint = _checkpoint()
    return c


def _data() -> ml_collections.ConfigDict:
    """The data source, its encoder and the query-id split."""
    s = ml_collections.ConfigDict()
    s.source = "synthetic:routerbench"  # see proteus.data.load_source for the spec format
    # "precomputed" | "hashing[:opts]" | "sentence-transformers:<m>"; "auto" (table.py) chooses
    # among the installed ones from out-of-fold evidence (proteus.pipeline.resolve, docs/auto.md),
    # as it can the task prior, the grid's ends, the splits and the batch size
    s.encoder = "precomputed"
    s.cache_dir = ""  # feature cache ("" = $PROTEUS_CACHE or ~/.cache/proteus/features)
    s.split_salt = "proteus"  # hash salt of the deterministic query-id split
    # comma-separated model names dropped from the source after loading (e.g. to train without a
    # model and onboard it later: docs/onboard.md); "" keeps every model
    s.exclude_models = ""
    # Split fractions. `pred` trains the predictor, `policy` the RL policy and the duals (labels the
    # predictor never fitted), `val` early-stops the predictor and tunes baselines, `calib`
    # certifies floors, `test` is reported.
    s.splits = ml_collections.ConfigDict(
        dict(pred=0.35, policy=0.25, val=0.1, calib=0.1, test=0.2))
    return s


def _model() -> ml_collections.ConfigDict:
    """The networks' shapes and the predictor's calibration."""
    s = ml_collections.ConfigDict()
    s.hidden = 256  # trunk width (paper: 2-layer MLP, 256-d)
    s.policy_hidden = 128  # policy head width
    s.use_tau_input = True  # ablation "no_tau": False hides τ from the policy
    s.use_lambda_input = True  # ablation "no_lambda": False hides λ from the policy
    s.static_cost = False  # ablation "static_cost": per-model mean cost, no cost head
    # k-means groups of the query features whose per-model accuracy (shrunk, out of fold) is
    # stacked into the predictor's calibration (0 = none; needs train.folds > 1)
    s.groups = 16
    # A per-(task, model) prior stacked into the calibration, from the data's task column (needs
    # train.folds > 1 and >= 2 tasks); queries then carry their task when routed or served
    s.task_prior = False
    return s


def _lanes() -> ml_collections.ConfigDict:
    """The τ lanes the one policy is trained on."""
    s = ml_collections.ConfigDict()
    s.n = 16  # K τ lanes sharing one policy, each with its own dual
    s.lo = -1.0  # lowest lane τ (< 0: the cheapest model's accuracy on `policy`)
    s.hi = -1.0  # highest lane τ (< 0: min(0.99, oracle accuracy on `policy`))
    s.spacing = "log1m"  # "log1m": uniform in log(1 - τ), dense at high τ; or "linear"
    return s


def _train() -> ml_collections.ConfigDict:
    """Cross-fitting, optimisation, the duals and the phases."""
    s = ml_collections.ConfigDict()
    # Cross-fitting folds over the training pool (`pred` + `policy`): F predictors, each fitted on
    # F - 1 folds and early-stopped on its own; the policy and duals learn on out-of-fold outputs
    # and the fold ensemble is deployed. 1 = the two-split scheme (`pred` fits, `policy` trains).
    s.folds = 5
    s.batch_size = 256  # queries per update (every lane sees the whole batch)
    s.pred_lr = 1e-3  # predictor Adam learning rate
    s.policy_lr = 3e-4  # policy Adam learning rate
    s.ent_coef = 1e-3  # entropy bonus of the Beta policy
    s.dual_lr = 0.5  # η_λ, dual ascent step (PID: scales the gains)
    s.margin = 0.015  # the duals aim at τ + margin on the policy part
    s.lam_init = 1.0  # initial λ of every lane
    s.lam_max = 100.0  # projection bound of λ
    s.algo = "reinforce"  # "reinforce" | "ppo" (clipped surrogate, ppo_epochs per batch)
    s.ppo_epochs = 4  # PPO passes over each sampled batch
    s.ppo_clip = 0.2  # PPO clip ε
    s.dual = "plain"  # "plain" projected ascent | "pid" (Stooke et al. 2020)
    s.pid_gains = (2.0, 0.5, 1.0)  # (K_p, K_i, K_d), multiplied by dual_lr
    s.dual_ema = 0.9  # EMA of the batch accuracy that drives λ (0 = none)
    s.dual_avg = 0.99  # EMA of the λ iterates; the averaged λ is used at inference
    s.dual_avg_start = 0.5  # fraction of the policy phase before that EMA starts
    s.dual_lr_late = 0.2  # dual step multiplier from then on (steadier λ to average)
    s.tau_jitter = 0.0  # half-width of uniform noise on each lane's τ input
    s.cost_weight = 0.5  # weight of the log-cost loss in the predictor loss
    s.weight_decay = 1e-4  # decoupled weight decay (both parameter groups)
    s.grad_clip = 1.0  # global-norm gradient clip
    s.chunk_size = 100  # steps per compiled lax.scan chunk (host work between chunks)
    s.pred_max_steps = 3000  # predictor phase cap (a multiple of chunk_size)
    s.pred_patience = 4  # predictor evaluations without val improvement before stopping
    s.policy_steps = 2000  # policy phase length (a multiple of chunk_size)
    # runs vmapped together in a chunk; 0: automatic (all on an accelerator or mesh; on a lone CPU
    # device, one after another when a run's activations are wide: `loop.runs_at_once`). How runs
    # execute, not what they learn: each run's numbers agree to float rounding either way.
    s.run_batch = 0
    return s


def _eval() -> ml_collections.ConfigDict:
    """The τ grid and sweep the evaluation reports."""
    s = ml_collections.ConfigDict()
    s.tau_lo = 0.85  # DESIGN.md default grid: tau_lo..tau_hi step tau_step
    s.tau_hi = 0.95
    s.tau_step = 0.01
    # plus this many τ evenly over the lanes' range (0 = none): the τ the compliance, r and cost
    # columns are measured at
    s.wide_n = 40
    # AIQ alone also routes every router at τ = 0, aiq_step, ..., 1 (0 = the grid alone), so that
    # each router's curve is traced over its knob's whole range
    # (proteus.pipeline.evaluation.sweep_taus)
    s.aiq_step = 0.001
    return s


def _certify() -> ml_collections.ConfigDict:
    """The certified floors (proteus.operating.certificate)."""
    s = ml_collections.ConfigDict()
    # Every certified τ promises P(accuracy of a window of `window` requests < τ − tolerance) <= δ
    # (proteus.operating.certificate); the evaluation's own certificate takes the test split's
    # size as the window, so its test accuracy is what the promise is about. window = 0: the
    # older population promise P(expected accuracy < τ) <= δ.
    s.delta = 0.05
    s.window = 1000  # N, the served window (the online controller's window length)
    s.tolerance = 0.0  # ε: 0 promises τ itself over every window of N requests
    s.n_points = 40  # operating points τ' tested in fixed sequence (highest first)
    s.method = "auto"  # "auto": Clopper-Pearson for binary scores, else Hoeffding-Bentkus
    s.fallback = "best_effort"  # uncertified τ: "best_effort" (max quality) or "refuse"
    return s


def _operating() -> ml_collections.ConfigDict:
    """Operating points (proteus.operating): the policy at certify.n_points targets τ' plus every
    fixed model, measured on `val`; the uncertified router takes the cheapest point whose val
    accuracy is >= τ + margin_z standard errors, the certified one the cheapest certified point."""
    s = ml_collections.ConfigDict()
    s.fixed_models = True  # every single model is a candidate point
    s.margin_z = 1.0  # allowance for the val estimate's noise, in standard errors
    # A candidate beating the best single model on val is credited with its accuracy minus
    # margin_z paired standard errors, and ranks above that model only if it clears credit_z of
    # them: the best of dozens of candidates measured on a few hundred queries is often lucky, so
    # it must show a clear (one-sided ~98%) advantage to take the top.
    s.credit_z = 2.0
    return s


def _checkpoint() -> ml_collections.ConfigDict:
    """Checkpointing of a training run."""
    s = ml_collections.ConfigDict()
    s.max_to_keep = 3  # keep the last N checkpoints
    s.every_chunks = 5  # save every N chunks (and at phase ends)
    return s


VARIANTS = {
    # the real configs' default is a sentence encoder; this variant needs no torch
    "hashing": dict(data=dict(encoder="hashing")),
    # a synthetic preset's latent features instead of its prompts (a router that reads no text)
    "precomputed": dict(data=dict(encoder="precomputed")),
    "smoke": dict(train=dict(batch_size=64, chunk_size=10, pred_max_steps=40, policy_steps=40),
                  lanes=dict(n=4), model=dict(hidden=32, policy_hidden=16)),
    "no_lambda": dict(model=dict(use_lambda_input=False)),
    "no_tau": dict(model=dict(use_tau_input=False)),
    "static_cost": dict(model=dict(static_cost=True)),
    "ppo": dict(train=dict(algo="ppo")),
    "pid": dict(train=dict(dual="pid")),
}


def apply_variant(config: ml_collections.ConfigDict, arg: str | None) -> ml_collections.ConfigDict:
    """Apply comma-separated variants, e.g. "smoke" or "ppo,smoke"; then lock the config.

    A variant's value replaces an "auto" setting (e.g. `:smoke`'s batch size, `:hashing`'s
    encoder in `table.py`): the variant names it, so it is no longer left to the data.
    """
    for name in filter(None, (arg or "").split(",")):
        if name not in VARIANTS:
            raise ValueError(f"unknown config variant {name!r}; known: {sorted(VARIANTS)}")
        for section, values in VARIANTS[name].items():
            for key, value in values.items():
                if config[section].get(key) == AUTO:  # a str field: retype it
                    del config[section][key]
                config[section][key] = value
    config.lock()
    return config


def set_auto(config: ml_collections.ConfigDict, *names: str) -> ml_collections.ConfigDict:
    """Give each dotted setting of `names` (of `proteus.pipeline.config.AUTO_SETTINGS`) the value
    "auto", whatever its type was; `proteus.pipeline.resolve` decides it from the data."""
    for name in names:
        *parents, leaf = name.split(".")
        node = config
        for part in parents:
            node = node[part]
        del node[leaf]  # ConfigDict fields keep their type; "auto" is a string
        node[leaf] = AUTO
    return config
