"""Question-like prompts whose words carry the synthetic benchmark's latent family, topic and
difficulty, so a text encoder (the default hashing one included) can read them.

A prompt is written from one row of *noisy* latents (see `proteus.data.synthetic`: the family
one-hot, the K = 8 topic coordinates and the within-family difficulty, each seen through noise
set by `signal`), in three parts:

* A difficulty lead-in: the noisy difficulty falls in one of 7 equal-probability bands, and each
  band has its own two phrases ("Warm-up:" ... "Expert-level:").
* A family frame: the family is the argmax of the noisy one-hot, and each task family has its own
  question frames (RouterBench's ARC-Challenge asks "Which statement best explains how ...?",
  MBPP "Write a Python function that ...", GSM8K a word problem with numbers).
* Topic words: topic coordinate k has two subjects, one per sign (`SUBJECTS`: history/physics,
  biology/law, ...), each a vocabulary of 20 ordinary English nouns. The coordinate is rounded to a
  level in -2..2 (steps of `TOPIC_STEP`) and |level| distinct nouns of the subject its sign picks
  go into the prompt: the first two fill the frame's slots, the rest follow a connector.

So "Which gas do plants absorb?" shares "which" with the ARC frames, "gas" with chemistry and
"plants" with biology. All vocabularies are disjoint (a test checks it), so a word names one
subject. The word choices, the phrase and frame variants and any numbers are drawn from the
caller's generator; they carry nothing about the latents.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from proteus.data.io import text_array

# A topic coordinate z (marginally N(0, 1)) becomes round(z / TOPIC_STEP) clipped to +-2 nouns:
# |z| < 0.5 names nothing, then one noun, two from |z| >= 1.5; ~6 nouns a prompt. (Finer steps,
# 0.75 up to 3 nouns, make prompts a third longer and an ideal decoder's AUC 0.004 higher.)
TOPIC_STEP = 1.0
MAX_TOPIC_WORDS = 2
# Equal-probability bands of a standard normal difficulty: norm.ppf(k / 7), k = 1..6.
DIFFICULTY_EDGES = (-1.0676, -0.5659, -0.1800, 0.1800, 0.5659, 1.0676)
DIFFICULTY_PHRASES = (  # easiest band first; two phrasings each
    ("Warm-up:", "Trivial one:"),
    ("Easy:", "Basic:"),
    ("Simple:", "Introductory:"),
    ("Standard:", "Typical:"),
    ("Tricky:", "Intermediate:"),
    ("Hard:", "Advanced:"),
    ("Expert-level:", "Olympiad-level:"),
)
# (positive pole, negative pole) of each of the K = 8 topic coordinates.
SUBJECTS = (
    ("history", "physics"), ("biology", "law"), ("finance", "poetry"), ("medicine", "sports"),
    ("chemistry", "music"), ("geography", "software"), ("ethics", "algebra"),
    ("cooking", "astronomy"),
)
VOCAB = {
    "history": ("empire", "treaty", "revolution", "dynasty", "monarch", "colony", "pharaoh",
                "crusade", "senate", "parliament", "armistice", "feudalism", "renaissance",
                "archive", "chronicle", "rebellion", "independence", "kingdom", "artifact",
                "emperor"),
    "physics": ("force", "velocity", "momentum", "gravity", "friction", "magnet", "electron",
                "voltage", "circuit", "wavelength", "acceleration", "pendulum", "lens", "photon",
                "pressure", "density", "inertia", "energy", "laser", "torque"),
    "biology": ("plants", "cell", "gene", "photosynthesis", "leaf", "species", "protein",
                "enzyme", "chromosome", "bacteria", "evolution", "habitat", "organism", "roots",
                "tissue", "mitochondria", "seed", "pollen", "membrane", "ecosystem"),
    "law": ("contract", "verdict", "statute", "plaintiff", "defendant", "jury", "tort",
            "lawsuit", "appeal", "testimony", "attorney", "court", "liability", "evidence",
            "precedent", "constitution", "judge", "warrant", "lease", "copyright"),
    "finance": ("interest", "loan", "inflation", "dividend", "stock", "bond", "mortgage",
                "budget", "tax", "revenue", "profit", "investor", "currency", "bank",
                "portfolio", "credit", "deposit", "debt", "shares", "payroll"),
    "poetry": ("sonnet", "rhyme", "stanza", "metaphor", "verse", "meter", "haiku", "poet",
               "ballad", "imagery", "couplet", "elegy", "ode", "alliteration", "refrain", "lyric",
               "simile", "muse", "epic", "quatrain"),
    "medicine": ("patient", "vaccine", "diagnosis", "symptom", "dose", "surgery", "infection",
                 "antibiotic", "fever", "heart", "blood", "virus", "nurse", "clinic", "therapy",
                 "tumor", "insulin", "diabetes", "allergy", "pulse"),
    "sports": ("football", "tennis", "marathon", "referee", "goal", "tournament", "athlete",
               "stadium", "coach", "league", "basketball", "olympics", "sprint", "racket",
               "penalty", "championship", "cricket", "swimmer", "medal", "season"),
    "chemistry": ("gas", "oxygen", "carbon", "molecule", "acid", "atom", "reaction", "salt",
                  "hydrogen", "nitrogen", "compound", "catalyst", "element", "solvent", "ion",
                  "metal", "isotope", "crystal", "dioxide", "alkali"),
    "music": ("melody", "guitar", "piano", "symphony", "chord", "rhythm", "orchestra", "tempo",
              "violin", "opera", "composer", "drum", "harmony", "jazz", "concert", "song",
              "choir", "octave", "album", "trumpet"),
    "geography": ("river", "mountain", "continent", "desert", "ocean", "capital", "island",
                  "volcano", "glacier", "country", "valley", "climate", "border", "lake",
                  "coast", "population", "map", "latitude", "peninsula", "city"),
    "software": ("database", "compiler", "server", "algorithm", "browser", "network",
                 "password", "encryption", "cache", "thread", "kernel", "debugger", "software",
                 "app", "cloud", "website", "bug", "keyboard", "pixel", "backup"),
    "ethics": ("justice", "virtue", "duty", "fairness", "honesty", "morality", "consent",
               "rights", "dignity", "freedom", "utilitarianism", "dilemma", "responsibility",
               "harm", "trust", "equality", "conscience", "loyalty", "altruism", "privacy"),
    "algebra": ("equation", "polynomial", "fraction", "exponent", "matrix", "quadratic",
                "logarithm", "inequality", "coefficient", "sum", "product", "ratio", "vector",
                "parabola", "slope", "graph", "factor", "prime", "denominator", "theorem"),
    "cooking": ("recipe", "oven", "flour", "sugar", "butter", "soup", "bread", "sauce", "pasta",
                "garlic", "spice", "kitchen", "dough", "grill", "salad", "cheese", "egg", "rice",
                "chocolate", "pan"),
    "astronomy": ("planet", "star", "galaxy", "telescope", "orbit", "moon", "comet", "asteroid",
                  "nebula", "eclipse", "sun", "meteor", "constellation", "supernova",
                  "astronaut", "cosmos", "satellite", "universe", "mars", "spacecraft"),
}
# Fills a frame slot when the topic gives fewer than two nouns; names no subject.
FILLERS = ("thing", "situation", "example", "case", "object", "idea")
CONNECTORS = ("Consider {}.", "Keywords: {}.", "It also involves {}.", "Relevant: {}.")
# Frames per task family ({a}, {b}: topic nouns; {n0}..{n2}: small random numbers).
FRAMES: dict[str, tuple[str, ...]] = {
    # RouterBench
    "mmlu": ("Which of the following is true of the {a} and the {b}? Answer with A, B, C or D.",
             "Multiple choice: in the study of the {a}, what is the role of the {b}? "
             "Options A to D."),
    "hellaswag": ("Pick the most plausible ending. A woman talks about the {a} while holding "
                  "the {b}. She then...",
                  "Choose how the scene continues: a man explains the {a} next to the {b}, "
                  "and then he..."),
    "gsm8k": ("A shop sells {n0} boxes of {a} for {n1} dollars each and {n2} bags of {b}. "
              "How many dollars does it make in total? Show your steps.",
              "Tom has {n0} units of {a} and buys {n1} more units of {b} every week. How many "
              "will he have after {n2} weeks?"),
    "rag": ("Answer from the retrieved documents. Document 1 covers the {a}; document 2 covers "
            "the {b}. Question: what do the documents conclude?",
            "Using only the passage provided about the {a} and the {b}, answer the question "
            "that follows the passage."),
    "arc-challenge": ("Which statement best explains how the {a} affects the {b}?",
                      "A student observes the {a} and the {b} in an experiment. Which "
                      "conclusion is best supported?"),
    "winogrande": ("Fill in the blank: the {a} mattered more than the {b} because _ was needed "
                   "first. Option 1 or option 2?",
                   "Replace the underscore: Maria cared about the {a} but not the {b}, since "
                   "_ was closer to home."),
    "mbpp": ("Write a Python function that takes a list of {a} records and returns the one "
             "linked to the {b}. Your code should pass the given tests.",
             "Write a function in Python to count how often the word {a} appears next to "
             "the word {b} in a string."),
    "mt-bench": ("Compose an engaging blog post about the {a} and the {b} for a general "
                 "audience.",
                 "Act as a tutor and explain the {a} to a beginner, with the {b} as an "
                 "example."),
    # SPROUT
    "mmlu-pro": ("Which of the following best describes the {a} in relation to the {b}? "
                 "Choose one of the ten options A through J.",),
    "math": ("Let x be the number of {a} items and y the number of {b} items. If x + y = {n0} "
             "and x - y = {n1}, find x. Put the answer in a box.",
             "Compute the exact value: {n0} {a} kits are split among {n1} {b} teams. Simplify "
             "the result."),
    "openhermes": ("You are a helpful assistant. Give me three tips about the {a}, and explain "
                   "how it relates to the {b}.",
                   "Please draft a friendly reply to a customer asking about the {a} and the "
                   "{b}."),
    "ragbench": ("Given the context passages on the {a} and the {b}, answer the user's "
                 "question and cite the passage you used.",),
    "gpqa": ("A researcher studying the {a} measures an unexpected shift in the {b}. Which "
             "mechanism most plausibly accounts for the observation?",),
    "musr": ("Read the story. A detective investigates a murder near the {a}; a suspect keeps "
             "mentioning the {b}. Who most likely did it?",
             "In the story, Emma moves the {a} beside the {b} while Jack is away. Where will "
             "Jack look first?"),
}
GENERIC_FRAMES = ("Question about the {a} and the {b}: explain the connection.",)


def topic_levels(topic: np.ndarray) -> np.ndarray:
    """[..., K] float noisy topic -> [..., K] int levels in -2..2: the signed number of nouns."""
    return np.clip(np.round(topic / TOPIC_STEP), -MAX_TOPIC_WORDS, MAX_TOPIC_WORDS).astype(int)


def difficulty_bands(resid: np.ndarray) -> np.ndarray:
    """[N] float noisy within-family difficulty -> [N] int band in 0..6 (0 = easiest)."""
    return np.digitize(resid, DIFFICULTY_EDGES)


def write_prompts(noisy: np.ndarray, family_names: Sequence[str], rng: np.random.Generator
                  ) -> np.ndarray:
    """Write one prompt per row of noisy latents (see the module docstring).

    Args:
      noisy: [N, F + K + 1] float: noisy family one-hot [F], topic [K = len(SUBJECTS)] and
        within-family difficulty [1], as `proteus.data.synthetic` draws them.
      family_names: [F] the preset's task families (their frames; unknown names get generic).
      rng: draws the word, phrase and frame variants and the numbers (nothing latent).

    Returns:
      [N] object array of str.
    """
    n, n_fam, k = noisy.shape[0], len(family_names), len(SUBJECTS)
    if noisy.shape[1] != n_fam + k + 1:
        raise ValueError(f"noisy latents have {noisy.shape[1]} columns, expected {n_fam + k + 1}")
    fam = np.argmax(noisy[:, :n_fam], axis=1)
    levels = topic_levels(noisy[:, n_fam : n_fam + k])
    band = difficulty_bands(noisy[:, -1])
    # Random draws up front, as arrays: the Python loop below only assembles strings.
    vocab_size = len(VOCAB[SUBJECTS[0][0]])
    word_rank = np.argsort(rng.random((n, k, vocab_size)), axis=2)[:, :, :MAX_TOPIC_WORDS]
    order = rng.random((n, k * MAX_TOPIC_WORDS))  # shuffles the nouns, so position says nothing
    variant = rng.integers(0, 1 << 30, size=(n, 4))  # phrase, frame, connector, filler
    numbers = rng.integers(2, 50, size=(n, 3))
    out = []
    for i in range(n):
        words = _topic_words(levels[i], word_rank[i], order[i])
        out.append(_compose(family_names[fam[i]], int(band[i]), words, variant[i], numbers[i]))
    return text_array(out)


def _topic_words(level: np.ndarray, rank: np.ndarray, order: np.ndarray) -> list[str]:
    """[K] int levels, [K, 3] word ranks, [3K] sort keys -> the prompt's topic nouns, shuffled."""
    words, keys = [], []
    for dim, lev in enumerate(level.tolist()):
        vocab = VOCAB[SUBJECTS[dim][0 if lev > 0 else 1]]
        for j in range(abs(lev)):
            words.append(vocab[rank[dim, j]])
            keys.append(order[dim * MAX_TOPIC_WORDS + j])
    return [words[j] for j in np.argsort(keys)]


def _compose(family: str, band: int, words: list[str], variant: np.ndarray,
             numbers: np.ndarray) -> str:
    """One prompt: difficulty phrase, family frame with two nouns, the other nouns after."""
    phrases = DIFFICULTY_PHRASES[band]
    frames = FRAMES.get(family, GENERIC_FRAMES)
    slots = words[:2] + [FILLERS[(variant[3] + j) % len(FILLERS)] for j in range(2 - len(words))]
    frame = frames[variant[1] % len(frames)].format(
        a=slots[0], b=slots[1], n0=numbers[0], n1=numbers[1], n2=numbers[2])
    text = f"{phrases[variant[0] % len(phrases)]} {frame}"
    rest = words[2:]
    if rest:
        listed = rest[0] if len(rest) == 1 else ", ".join(rest[:-1]) + " and " + rest[-1]
        text += " " + CONNECTORS[variant[2] % len(CONNECTORS)].format(listed)
    return text
