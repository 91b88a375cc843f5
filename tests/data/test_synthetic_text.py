"""proteus.data.synthetic_text: prompts written from hand-built latent rows."""

import itertools
import re

import numpy as np
import pytest

from proteus.data import PRESETS
from proteus.data.synthetic_text import (
    CONNECTORS,
    DIFFICULTY_PHRASES,
    FILLERS,
    FRAMES,
    GENERIC_FRAMES,
    SUBJECTS,
    VOCAB,
    difficulty_bands,
    topic_levels,
    write_prompts,
)

K = len(SUBJECTS)
FAMILIES = PRESETS["routerbench"].families
WORD_SUBJECT = {w: s for s, words in VOCAB.items() for w in words}


def _row(family: int, topic, resid: float) -> np.ndarray:
    """One noisy-latent row [F + K + 1] with a clean one-hot."""
    row = np.zeros(len(FAMILIES) + K + 1)
    row[family] = 1.0
    row[len(FAMILIES) : len(FAMILIES) + K] = topic
    row[-1] = resid
    return row


def _tokens(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text.lower())


def _subject_counts(text: str) -> dict[str, int]:
    counts = dict.fromkeys(VOCAB, 0)
    for token in _tokens(text):
        if token in WORD_SUBJECT:
            counts[WORD_SUBJECT[token]] += 1
    return counts


def test_hand_built_prompt():
    # mbpp; topic: history x2 (1.6 -> level 2), law x1 (-0.7), finance 0 (0.2), software x2
    # (-2.4), cooking x1 (0.6); difficulty 2.0 lies in the hardest band.
    topic = [1.6, -0.7, 0.2, 0.0, 0.0, -2.4, 0.0, 0.6]
    row = _row(FAMILIES.index("mbpp"), topic, 2.0)
    text = write_prompts(row[None], FAMILIES, np.random.default_rng(0))[0]
    counts = _subject_counts(text)
    assert {s: c for s, c in counts.items() if c} == {
        "history": 2, "law": 1, "software": 2, "cooking": 1}
    assert text.split(":")[0] + ":" in DIFFICULTY_PHRASES[6]
    assert "Write a" in text and "Python" in text  # an MBPP frame
    assert any(c.split("{}")[0] in text for c in CONNECTORS)  # nouns 3-6 follow a connector


def test_levels_and_bands_hand_computed():
    z = np.array([-3.0, -1.6, -1.4, -0.6, -0.4, 0.0, 0.4, 0.6, 1.4, 1.6, 3.0])
    np.testing.assert_array_equal(topic_levels(z), [-2, -2, -1, -1, 0, 0, 0, 1, 1, 2, 2])
    resid = np.array([-2.0, -0.8, -0.3, 0.0, 0.3, 0.8, 2.0])
    np.testing.assert_array_equal(difficulty_bands(resid), np.arange(7))
    # equal-probability bands of N(0, 1)
    share = np.bincount(difficulty_bands(np.random.default_rng(0).normal(size=70000)), minlength=7)
    np.testing.assert_allclose(share / 70000, 1 / 7, atol=0.005)


def test_no_topic_uses_fillers_and_no_connector():
    text = write_prompts(_row(0, np.zeros(K), 0.0)[None], FAMILIES, np.random.default_rng(1))[0]
    assert sum(_subject_counts(text).values()) == 0
    assert sum(t in FILLERS for t in _tokens(text)) >= 1
    assert not any(c.split("{}")[0] in text for c in CONNECTORS)
    assert text.split(":")[0] + ":" in DIFFICULTY_PHRASES[3]  # 0.0: the middle band


def test_same_generator_same_prompts_and_draws_carry_nothing():
    rows = np.random.default_rng(5).normal(size=(50, len(FAMILIES) + K + 1))
    a = write_prompts(rows, FAMILIES, np.random.default_rng(3))
    assert a.tolist() == write_prompts(rows, FAMILIES, np.random.default_rng(3)).tolist()
    b = write_prompts(rows, FAMILIES, np.random.default_rng(4))
    assert a.tolist() != b.tolist()
    # another generator changes words and variants, never how many nouns of each subject
    assert [_subject_counts(t) for t in a] == [_subject_counts(t) for t in b]


def test_every_preset_family_has_frames_that_format():
    for preset in PRESETS.values():
        for fam in preset.families:
            assert fam in FRAMES, fam
    rows = np.stack([_row(f, np.ones(K), 0.0) for f in range(len(FAMILIES))])
    texts = write_prompts(rows, FAMILIES, np.random.default_rng(0))
    assert all("{" not in t and "}" not in t for t in texts)
    generic = write_prompts(rows[:1, 7:], ("custom",), np.random.default_rng(0))[0]
    assert GENERIC_FRAMES[0].split("{a}")[0] in generic


def test_vocabularies_are_disjoint_real_words():
    # A word names one subject, and no frame, phrase, connector or filler word names one.
    sizes = {len(words) for words in VOCAB.values()}
    assert sizes == {20} and set(VOCAB) == set(itertools.chain(*SUBJECTS))
    all_words = [w for words in VOCAB.values() for w in words]
    assert len(set(all_words)) == len(all_words)
    assert all(re.fullmatch(r"[a-z]+", w) for w in all_words)
    scaffold = " ".join([*itertools.chain(*FRAMES.values()), *GENERIC_FRAMES, *CONNECTORS,
                         *FILLERS, *itertools.chain(*DIFFICULTY_PHRASES)])
    assert not set(_tokens(scaffold)) & set(all_words)


def test_bad_width():
    with pytest.raises(ValueError, match="columns"):
        write_prompts(np.zeros((2, 5)), FAMILIES, np.random.default_rng(0))
