"""Synthetic routing data with calibrated presets and a knob for how predictable correctness is.

Generative model (one draw of N queries; the models' traits are a fixed "world" per preset):

* Query i: task family t_i ~ Categorical(family shares), topic z_i ~ N(0, I_K), difficulty
  d_i ~ N(offset_t, difficulty_sd^2) (offset from the family's public mean score).
* Model m: per-family ability b[m, t] ~ N(0, ability_sd^2), topic loading u_m ~ N(0, topic_sd^2/K),
  intercept a_m.
* Correctness: P(y_im = 1) = sigmoid(a_m + g(signal) * (b[m, t_i] + u_m . z_i - d_i)), y binary.
  The intercepts are solved per draw with common random numbers: y_im = 1[v_im < a_m] with
  v_im = logit(U_im) - g * latent_im, so a_m is the empirical quantile of v[:, m] at the preset
  mean, and every model's realised mean equals its preset mean to within 1/N.
* Observations: the latents (family one-hot, topic, difficulty) seen through noise,
  obs = signal * latents + sqrt(1 - signal^2) * noise (each coordinate keeps its marginal).
  Texts: question-like prompts written from obs (`proteus.data.synthetic_text`: a family frame,
  a difficulty phrase, topic nouns whose subject and count follow each topic coordinate), for
  text encoders. Features: obs through a fixed random projection to D dims, for the
  `precomputed` encoder. The texts quantise obs (7 difficulty bands, 7 levels per topic
  coordinate), so they reveal a little less than the features. signal = 1: both reveal the
  latents and probabilities are sharp (g largest); signal = 0: both are independent of them.
* Costs: input tokens ~ lognormal per family; output tokens ~ lognormal per family x per-model
  verbosity (set so that the expected cost matches the public mean cost per query) x noise;
  cost = tokens x the preset's per-token prices.

Measured (n = 20000, seeds 0-2): hindsight oracle accuracy 0.965-0.967 (RouterBench) and
0.978-0.979 (SPROUT) at signal 0.9, 0.971-0.973 and 0.982-0.983 at signal 0.5; mean costs within
1% of the public numbers except SPROUT's llama-3-2-1b (x1.43: its public cost is below what its
input tokens alone cost, so its verbosity sits at the clip).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from proteus.data.dataset import RoutingDataset
from proteus.data.synthetic_text import SUBJECTS, write_prompts


@dataclasses.dataclass(frozen=True)
class Preset:
    """Public numbers a synthetic world is calibrated to. Tuples are aligned with `models` or
    with `families`; prices are USD per 1M tokens (input, output)."""

    name: str
    models: tuple[str, ...]
    mean_score: tuple[float, ...]
    price_per_1m: tuple[tuple[float, float], ...]
    mean_cost: tuple[float, ...]  # target USD per query (sets output-token verbosity)
    families: tuple[str, ...]
    family_share: tuple[float, ...]
    family_mean: tuple[float, ...]  # mean score over models (sets the family's difficulty)
    input_tokens: tuple[float, ...]  # mean input tokens per family
    output_tokens: tuple[float, ...]  # mean output tokens per family, before verbosity
    source: str
    # Latent-factor shape (ours, tuned so that at signal 0.9 the hindsight oracle matches the
    # public oracle: ~0.964 on RouterBench (3.6% of prompts no model solves), 0.979 on SPROUT).
    # g rises steeply with signal so that at high signal correctness is nearly decided by the
    # latents: the router that knows the true probabilities then sits within ~0.003 of the
    # hindsight oracle (0.9645 vs 0.966 on RouterBench at 0.9) instead of ~0.015 below it, and
    # the quality bar over τ in [0.85, 0.95] is a test of the router, not of Bernoulli noise.
    difficulty_sd: float = 1.0
    ability_sd: float = 0.7
    topic_sd: float = 0.8
    logit_scale: tuple[float, float] = (1.0, 12.0)  # g at signal 0 and at signal 1
    world_seed: int = 0


# RouterBench 0-shot: the 11 models' full-data mean scores ("overall_mean_score"), per-token prices
# ("price_usd_per_1M_tokens_in_out"), mean cost per query ("approx_mean_cost_usd_per_query_from_
# CARROT_plot_test_split"), family sizes and mean scores ("families") of
# ../shared/data/benchmark_stats.json ("routerbench_0shot"; withmartian/routerbench). Token means:
# ARC-Challenge, Winogrande and MBPP back-solved from the real slice's costs; the others are our
# estimates for 0-shot prompts (short multiple choice; GSM8K, MBPP and MT-Bench answers are long).
ROUTERBENCH = Preset(
    name="routerbench",
    models=(
        "WizardLM/WizardLM-13B-V1.2", "claude-instant-v1", "claude-v1", "claude-v2",
        "gpt-3.5-turbo-1106", "gpt-4-1106-preview", "meta/code-llama-instruct-34b-chat",
        "meta/llama-2-70b-chat", "mistralai/mistral-7b-chat", "mistralai/mixtral-8x7b-chat",
        "zero-one-ai/Yi-34B-Chat",
    ),
    mean_score=(0.431, 0.5984, 0.6301, 0.6359, 0.6193, 0.7814, 0.202, 0.3287, 0.306, 0.5471,
                0.6476),
    price_per_1m=((0.3, 0.3), (0.8, 2.4), (8, 24), (8, 24), (1, 2), (10, 30), (0.776, 0.776),
                  (0.9, 0.9), (0.2, 0.2), (0.6, 0.6), (0.8, 0.8)),
    mean_cost=(1e-4, 2.5e-4, 2.2e-3, 2.45e-3, 2.5e-4, 3.3e-3, 1.8e-4, 2e-4, 5e-5, 1.5e-4, 2e-4),
    families=("mmlu", "hellaswag", "gsm8k", "rag", "arc-challenge", "winogrande", "mbpp",
              "mt-bench"),
    family_share=(14042, 10042, 7450, 1719, 1470, 1267, 427, 80),
    family_mean=(0.6047, 0.6833, 0.5608, 0.4002, 0.7876, 0.6064, 0.5156, 0.6292),
    input_tokens=(150, 120, 120, 700, 500, 350, 150, 80),
    output_tokens=(3, 3, 150, 60, 2, 2, 150, 350),
    source="benchmark_stats.json:routerbench_0shot (withmartian/routerbench)",
    difficulty_sd=0.87,
)

# SPROUT: the 13 models' approximate test mean score and cost per query
# ("approx_test_mean_score_and_cost_from_CARROT_demo_plot") and CARROT's prices
# ("price_usd_per_1M_tokens_in_out_CARROT_repo") in the "sprout" section of
# ../shared/data/benchmark_stats.json (CARROT-LLM-Routing/SPROUT). The family shares, mean scores
# and token means are our estimates (the public statistics do not break them out).
SPROUT = Preset(
    name="sprout",
    models=(
        "openai-gpt-4o", "aws-claude-3-5-sonnet-v1", "wxai-llama-3-3-70b-instruct",
        "wxai-llama-3-1-70b-instruct", "openai-gpt-4o-mini", "wxai-llama-3-405b-instruct",
        "wxai-llama-3-1-8b-instruct", "wxai-granite-3-8b-instruct-8k-max-tokens",
        "wxai-llama-3-2-3b-instruct", "wxai-mixtral-8x7b-instruct-v01",
        "aws-titan-text-premier-v1", "wxai-granite-3-2b-instruct-8k-max-tokens",
        "wxai-llama-3-2-1b-instruct",
    ),
    mean_score=(0.838, 0.831, 0.81, 0.81, 0.808, 0.772, 0.697, 0.655, 0.637, 0.618, 0.583,
                0.553, 0.463),
    price_per_1m=((2.5, 10), (3, 15), (0.9, 0.9), (0.9, 0.9), (0.15, 0.6), (3.5, 3.5),
                  (0.2, 0.2), (0.2, 0.2), (0.06, 0.06), (0.6, 0.6), (0.8, 3.2), (0.1, 0.1),
                  (0.06, 0.06)),
    mean_cost=(5e-3, 7.6e-3, 5e-4, 8e-4, 3e-4, 2.1e-3, 2e-4, 1e-4, 4e-5, 4e-4, 1.15e-3, 5e-5,
               2e-5),
    families=("mmlu-pro", "math", "openhermes", "ragbench", "gpqa", "musr"),
    family_share=(0.27, 0.25, 0.2, 0.23, 0.012, 0.017),
    family_mean=(0.65, 0.7, 0.85, 0.8, 0.35, 0.55),
    input_tokens=(250, 120, 200, 1000, 250, 1000),
    output_tokens=(350, 500, 350, 150, 400, 400),
    source="benchmark_stats.json:sprout (CARROT-LLM-Routing/SPROUT)",
    difficulty_sd=1.2,
)

PRESETS: dict[str, Preset] = {p.name: p for p in (ROUTERBENCH, SPROUT)}
N_TOPICS = len(SUBJECTS)  # K: each topic coordinate has two subjects (synthetic_text)
_IN_SIGMA, _OUT_SIGMA, _MODEL_OUT_SIGMA = 0.5, 0.6, 0.3  # lognormal sigmas of token counts
_VERBOSITY_RANGE = (0.25, 4.0)  # output-token multipliers outside this are implausible


@dataclasses.dataclass(frozen=True)
class SyntheticDraw:
    """A synthetic dataset and the truth behind it (for tests and diagnostics).

    Attributes:
      dataset: the `RoutingDataset` (scores binary, features [N, D], texts set).
      probs: [N, M] float64 true P(correct) of each query-model pair.
      families: [N] int family index of each query.
      difficulty: [N] float64 latent difficulty.
      topic: [N, K] float64 latent topic coordinates.
    """

    dataset: RoutingDataset
    probs: np.ndarray
    families: np.ndarray
    difficulty: np.ndarray
    topic: np.ndarray


def preset_verbosity(preset: Preset) -> np.ndarray:
    """[M] output-token multipliers so that E[cost] matches `preset.mean_cost` (clipped)."""
    share = np.asarray(preset.family_share, np.float64)
    share = share / share.sum()
    e_in = share @ np.asarray(preset.input_tokens, np.float64)
    e_out = share @ np.asarray(preset.output_tokens, np.float64)
    price = np.asarray(preset.price_per_1m, np.float64) / 1e6
    verbosity = (np.asarray(preset.mean_cost) - e_in * price[:, 0]) / (e_out * price[:, 1])
    return np.clip(verbosity, *_VERBOSITY_RANGE)


def logit_scale(preset: Preset, signal: float) -> float:
    """g(signal): how sharply the latents decide correctness, linear between the preset's ends."""
    lo, hi = preset.logit_scale
    return lo + (hi - lo) * float(signal)


def generate(
    preset: str | Preset = "routerbench",
    n: int = 20000,
    seed: int = 0,
    signal: float = 0.9,
    feature_dim: int = 64,
    world_seed: int | None = None,
) -> SyntheticDraw:
    """Draw N synthetic queries from a preset world (see the module docstring for the model).

    Queries, their costs and the uniform draws behind correctness depend on `seed` only, so
    changing `signal` re-draws neither the queries nor their costs.

    Args:
      preset: a name in `PRESETS` or a `Preset`.
      n: number of queries N (>= 1).
      seed: query seed; same seed, same data.
      signal: in [0, 1]; how predictable correctness is from features and texts.
      feature_dim: D, the width of the features.
      world_seed: the models' traits and the feature projection (default: the preset's).

    Returns:
      A `SyntheticDraw` with the dataset and the true probabilities [N, M].
    """
    p = PRESETS[preset] if isinstance(preset, str) else preset
    if not 0.0 <= signal <= 1.0:
        raise ValueError(f"signal={signal} must be in [0, 1]")
    if n < 1 or feature_dim < 1:
        raise ValueError(f"need n >= 1 and feature_dim >= 1, got n={n}, feature_dim={feature_dim}")
    world = np.random.SeedSequence(p.world_seed if world_seed is None else world_seed)
    trait_rng, proj_rng = (np.random.default_rng(s) for s in world.spawn(2))
    # The first four children are what they were before texts had their own stream (spawn(n)[i]
    # does not depend on n), so features, scores and costs are unchanged by the text generator.
    lat_rng, y_rng, obs_rng, cost_rng, text_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(5)
    )
    fam, topic, resid, difficulty, latent = _query_latents(p, n, trait_rng, lat_rng)
    scores, probs = _correctness(y_rng, latent, logit_scale(p, signal), p.mean_score)
    latents = np.concatenate([np.eye(len(p.families))[fam], topic, resid[:, None]],
                             axis=1)  # [N, L]
    noisy = signal * latents + np.sqrt(1.0 - signal**2) * obs_rng.normal(size=latents.shape)
    projection = proj_rng.normal(size=(latents.shape[1], feature_dim)) / np.sqrt(latents.shape[1])
    features = noisy @ projection + 0.05 * obs_rng.normal(size=(n, feature_dim))
    prices = {m: (a / 1e6, b / 1e6) for m, (a, b) in zip(p.models, p.price_per_1m, strict=True)}
    ds = RoutingDataset(
        name=f"synthetic:{p.name}",
        models=p.models,
        scores=scores,
        costs=_costs(cost_rng, p, fam),
        query_ids=np.array([f"{p.name}-s{seed}-{i:07d}" for i in range(n)]),
        tasks=np.asarray(p.families)[fam],
        texts=write_prompts(noisy, p.families, text_rng),
        features=features.astype(np.float32),
        prices=prices,
        source=f"synthetic:{p.name}?n={n}&seed={seed}&signal={signal}&feature_dim={feature_dim}",
        notes=(f"synthetic data calibrated to {p.source}; not real model outputs",),
    )
    return SyntheticDraw(ds, probs, fam, difficulty, topic)


def _query_latents(p: Preset, n: int, trait_rng: np.random.Generator,
                   lat_rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """The world's model traits and N queries' latents: (family [N], topic [N, T], resid [N],
    difficulty [N], latent [N, M]), latent being each model's logit of correctness before the
    signal's scale. The draws' order is fixed: changing it would change every preset's data."""
    n_fam, n_models = len(p.families), len(p.models)
    ability = trait_rng.normal(0.0, p.ability_sd, (n_models, n_fam))
    loading = trait_rng.normal(0.0, p.topic_sd / np.sqrt(N_TOPICS), (n_models, N_TOPICS))
    share = np.asarray(p.family_share, np.float64)
    fam = lat_rng.choice(n_fam, size=n, p=share / share.sum())
    topic = lat_rng.normal(size=(n, N_TOPICS))
    resid = lat_rng.normal(size=n)  # within-family difficulty, standardised
    fam_logit = np.log(np.asarray(p.family_mean) / (1.0 - np.asarray(p.family_mean)))
    difficulty = -(fam_logit - fam_logit.mean())[fam] + p.difficulty_sd * resid
    latent = ability[:, fam].T + topic @ loading.T - difficulty[:, None]  # [N, M]
    return fam, topic, resid, difficulty, latent


def synthetic(
    preset: str | Preset = "routerbench",
    n: int = 20000,
    seed: int = 0,
    signal: float = 0.9,
    feature_dim: int = 64,
) -> RoutingDataset:
    """A synthetic `RoutingDataset`: binary scores [N, M], costs [N, M] USD, features [N, D]
    float32 and texts [N]. See `generate` for the arguments and the module docstring."""
    return generate(preset, n, seed, signal, feature_dim).dataset


def _correctness(rng, latent: np.ndarray, g: float, targets) -> tuple[np.ndarray, np.ndarray]:
    """Binary scores [N, M] float32 with column means = targets (to 1/N), and P(correct) [N, M].

    y = 1[logistic noise < a_m + g * latent]: with v = noise - g * latent, the realised mean is
    the empirical CDF of v[:, m] at a_m, so a_m is read off the sorted column (no bisection).
    """
    n = latent.shape[0]
    v = rng.logistic(size=latent.shape) - g * latent
    ordered = np.sort(v, axis=0)
    k = np.clip(np.round(np.asarray(targets) * n).astype(int), 0, n)
    padded = np.concatenate([ordered[:1] - 1.0, ordered, ordered[-1:] + 1.0], axis=0)
    cols = np.arange(latent.shape[1])
    intercept = 0.5 * (padded[k, cols] + padded[k + 1, cols])  # between the k-th and k+1-th
    scores = (v < intercept).astype(np.float32)
    probs = 1.0 / (1.0 + np.exp(-(intercept + g * latent)))
    return scores, probs


def _costs(rng, p: Preset, fam: np.ndarray) -> np.ndarray:
    """[N, M] float32 USD: lognormal input tokens per family, output tokens x model verbosity."""
    n, n_models = fam.shape[0], len(p.models)
    lognormal = lambda sigma, size: rng.lognormal(-0.5 * sigma**2, sigma, size)  # mean 1
    tok_in = np.maximum(1.0, np.round(np.asarray(p.input_tokens)[fam] * lognormal(_IN_SIGMA, n)))
    out_q = np.asarray(p.output_tokens)[fam] * lognormal(_OUT_SIGMA, n)
    out_mult = preset_verbosity(p)[None, :] * lognormal(_MODEL_OUT_SIGMA, (n, n_models))
    tok_out = np.maximum(1.0, np.round(out_q[:, None] * out_mult))
    price = np.asarray(p.price_per_1m, np.float64) / 1e6
    return (tok_in[:, None] * price[None, :, 0] + tok_out * price[None, :, 1]).astype(np.float32)
