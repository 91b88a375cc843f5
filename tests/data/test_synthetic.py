"""Synthetic presets: calibration to the public numbers, determinism, signal, costs, texts."""

import dataclasses
import re

import numpy as np
import pytest

from proteus.data import PRESETS, generate, synthetic
from proteus.data.synthetic import ROUTERBENCH, logit_scale, preset_verbosity
from proteus.data.synthetic_text import (
    DIFFICULTY_PHRASES,
    FRAMES,
    SUBJECTS,
    VOCAB,
    difficulty_bands,
    topic_levels,
)
from proteus.encoders.hashing import HashingEncoder


@pytest.fixture(scope="module")
def rb20k():
    return generate("routerbench", n=20000, seed=0, signal=0.9)


def test_shapes_and_types():
    ds = synthetic("sprout", n=50, seed=1, feature_dim=16)
    assert (ds.n_queries, ds.n_models) == (50, 13)
    assert ds.scores.dtype == np.float32 and ds.costs.dtype == np.float32
    assert ds.features.shape == (50, 16) and ds.features.dtype == np.float32
    assert ds.texts.shape == (50,) and all(isinstance(t, str) and t for t in ds.texts)
    assert ds.is_binary
    assert set(ds.tasks) <= set(PRESETS["sprout"].families)
    assert ds.prices["openai-gpt-4o"] == pytest.approx((2.5e-6, 1e-5))
    assert ds.source == "synthetic:sprout?n=50&seed=1&signal=0.9&feature_dim=16"


def test_same_seed_same_data_other_seed_differs():
    a, b = synthetic(n=300, seed=4), synthetic(n=300, seed=4)
    assert a.fingerprint() == b.fingerprint()
    np.testing.assert_array_equal(a.features, b.features)
    assert a.texts.tolist() == b.texts.tolist()
    c = synthetic(n=300, seed=5)
    assert c.fingerprint() != a.fingerprint()
    assert not np.array_equal(c.scores, a.scores)
    assert c.texts.tolist() != a.texts.tolist()


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_model_means_match_preset(name):
    n = 5000
    ds = synthetic(name, n=n, seed=3, signal=0.7)
    target = np.asarray(PRESETS[name].mean_score)
    # Exact up to the data's resolution: each column has round(target * n) correct answers.
    np.testing.assert_array_equal(ds.scores.sum(0), np.round(target * n))
    assert np.abs(ds.scores.mean(0) - target).max() <= 0.5 / n + 1e-6
    assert ds.best_fixed()[0] == PRESETS[name].models[int(np.argmax(target))]


def test_routerbench_oracle_and_best_fixed(rb20k):
    accuracy, _ = rb20k.dataset.oracle()
    assert 0.95 <= accuracy <= 0.97  # public RouterBench: 3.6% of prompts no model solves
    model, best, _ = rb20k.dataset.best_fixed()
    assert model == "gpt-4-1106-preview" and best == pytest.approx(0.7814, abs=1e-4)


def test_sprout_oracle_near_public():
    accuracy, _ = synthetic("sprout", n=20000, seed=0, signal=0.9).oracle()
    assert 0.97 <= accuracy <= 0.99  # CARROT's kNN table: oracle 0.979


def test_probabilities_agree_with_scores(rb20k):
    draw = rb20k
    np.testing.assert_allclose(draw.probs.mean(0), draw.dataset.scores.mean(0), atol=0.02)
    assert draw.families.shape == draw.difficulty.shape == (20000,)


def test_cost_magnitudes(rb20k):
    ds = rb20k.dataset
    mean = dict(zip(ds.models, ds.costs.mean(0), strict=True))
    assert 1e-3 <= mean["gpt-4-1106-preview"] <= 4e-3
    assert 2e-5 <= mean["mistralai/mistral-7b-chat"] <= 1e-4
    # Unclipped verbosity -> the public mean cost per query within 1% (README), at n = 20000.
    np.testing.assert_allclose(ds.costs.mean(0), ROUTERBENCH.mean_cost, rtol=0.01)


def test_preset_verbosity_hand_computed():
    # E[in] = 100 tokens at $1/M, E[out] = 10 tokens at $2/M; target 100e-6 + 30e-6 -> 1.5.
    p = dataclasses.replace(
        ROUTERBENCH, models=("a", "b"), mean_score=(0.5, 0.5), price_per_1m=((1, 2), (1, 2)),
        mean_cost=(130e-6, 1e-9), families=("f",), family_share=(1,), family_mean=(0.5,),
        input_tokens=(100,), output_tokens=(10,),
    )
    np.testing.assert_allclose(preset_verbosity(p), [1.5, 0.25])  # the second is clipped


def test_logit_scale_linear():
    p = dataclasses.replace(ROUTERBENCH, logit_scale=(1.0, 5.0))
    assert (logit_scale(p, 0.0), logit_scale(p, 0.5), logit_scale(p, 1.0)) == (1.0, 3.0, 5.0)


def _held_out_r2(ds, features=None):
    """Held-out R^2 of a linear fit of the scores [N, M] on features (default the dataset's)."""
    x = np.c_[ds.features if features is None else features, np.ones(ds.n_queries)]
    x = x.astype(np.float64)
    y = ds.scores.astype(np.float64)
    half = ds.n_queries // 2
    w = np.linalg.lstsq(x[:half], y[:half], rcond=None)[0]
    resid = y[half:] - x[half:] @ w
    return float(1 - (resid**2).sum() / ((y[half:] - y[half:].mean(0)) ** 2).sum())


def test_signal_controls_predictability():
    r2 = {s: _held_out_r2(synthetic(n=4000, seed=2, signal=s)) for s in (0.0, 0.5, 0.9)}
    assert r2[0.0] < 0.02  # features are noise
    assert r2[0.0] < r2[0.5] < r2[0.9]
    assert r2[0.9] > 0.3


def _held_out_accuracy(x, labels):
    """A ridge one-vs-rest probe of [N, D] features: fit on the first half, accuracy on the rest."""
    classes, y = np.unique(labels, return_inverse=True)
    x = np.c_[x, np.ones(len(x))].astype(np.float64)
    fit = x[: len(x) // 2]
    w = np.linalg.solve(fit.T @ fit + 0.1 * np.eye(x.shape[1]),
                        fit.T @ np.eye(len(classes))[y[: len(fit)]])
    return float(np.mean(np.argmax(x[len(fit) :] @ w, axis=1) == y[len(fit) :]))


def _majority(labels):
    return np.unique(labels, return_counts=True)[1].max() / len(labels)


@pytest.fixture(scope="module")
def encoder():
    return HashingEncoder(dim=512)


@pytest.mark.parametrize("signal", [0.0, 1.0])
def test_texts_reveal_latents_as_signal_says(encoder, signal):
    # Probes on the hashing encoding of the texts: chance at signal 0, near perfect at 1.
    draw = generate(n=4000, seed=2, signal=signal)
    x = encoder.encode(draw.dataset.texts.tolist())
    family = _held_out_accuracy(x, draw.dataset.tasks)
    # biology nouns (+), law nouns (-) or neither: the sign of topic coordinate 1's level
    named = np.sign(topic_levels(draw.topic[:, 1]))
    topic = _held_out_accuracy(x, named)
    if signal == 0.0:
        # the majority class's share: the text says nothing of the family, topic, correctness
        assert family <= _majority(draw.dataset.tasks[2000:]) + 0.01
        assert topic <= _majority(named[2000:]) + 0.01
        assert _held_out_r2(draw.dataset, x) < 0.02
    else:
        assert family > 0.99 and topic > 0.85
        assert _held_out_r2(draw.dataset, x) > 0.3


def test_texts_carry_the_latents_at_signal_one():
    # At signal 1 the prompt is the latents' quantised reading: the family frame, the topic
    # nouns of each subject and the difficulty band, for every query.
    p = ROUTERBENCH
    draw = generate(p, n=400, seed=0, signal=1.0)
    fam_logit = np.log(np.asarray(p.family_mean) / (1.0 - np.asarray(p.family_mean)))
    resid = (draw.difficulty + (fam_logit - fam_logit.mean())[draw.families]) / p.difficulty_sd
    levels, bands = topic_levels(draw.topic), difficulty_bands(resid)
    for i, text in enumerate(draw.dataset.texts):
        words = set(re.findall(r"[a-z]+", text.lower()))
        for k, (pos, neg) in enumerate(SUBJECTS):
            for subject, want in ((pos, max(levels[i, k], 0)), (neg, max(-levels[i, k], 0))):
                assert len(words & set(VOCAB[subject])) == want, (text, subject)
        assert text.split(":")[0] + ":" in DIFFICULTY_PHRASES[bands[i]]
        frames = FRAMES[draw.dataset.tasks[i]]
        assert any(f.split("{")[0].strip() in text for f in frames), text


def test_texts_look_like_questions():
    ds = synthetic(n=200, seed=0)
    lengths = np.array([len(t.split()) for t in ds.texts])
    assert 10 <= lengths.min() and lengths.mean() < 40
    assert all(t[0].isupper() and t.rstrip()[-1] in ".?" for t in ds.texts)


def test_signal_keeps_queries_and_costs():
    a, b = synthetic(n=500, seed=1, signal=0.2), synthetic(n=500, seed=1, signal=1.0)
    np.testing.assert_array_equal(a.costs, b.costs)
    np.testing.assert_array_equal(a.tasks, b.tasks)


@pytest.mark.parametrize("kwargs", [{"signal": 1.5}, {"n": 0}, {"feature_dim": 0}])
def test_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        synthetic(**kwargs)
