"""A deterministic hashing n-gram text encoder: no download, no fitted state.

Design (the default query features of DESIGN.md section 2):
  * Text is lowercased and tokenised into word runs (`\\w+`) and single punctuation characters.
  * Features are word n-grams (default unigrams and bigrams, never across texts) and character
    n-grams (default 3 to 5) of each token padded with a space on either side, so that prefixes
    and suffixes are marked, as in fastText; character n-grams never span two tokens.
  * Each n-gram gets a 64-bit hash built only from integer arithmetic on its Unicode code points
    (a polynomial hash, then the splitmix64 finaliser, salted by feature kind, n and seed). No
    Python `hash()`: vectors are bit-identical across processes and PYTHONHASHSEED values, and
    across machines the buckets and signs are identical (values agree to float32 rounding).
  * Per text, each distinct n-gram weighs 1 + log(tf) (sublinear tf). Bit 20 of its hash picks a
    sign (signed hashing, so collisions cancel in expectation rather than pile up) and its top 24
    bits, scaled to [0, dim), pick the bucket. Rows are L2-normalised; an empty text gives a zero
    row (never NaN). There is no IDF: the encoder has no fitted state, so a serving process
    rebuilds it from its id alone.

All of it runs as a few numpy passes over a batch's concatenated code points; Python touches
each text once (lowercase + regex tokenise), never each n-gram.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import re
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from proteus.encoders.base import (
    EncoderSpecError,
    format_range,
    parse_int,
    parse_options,
    parse_range,
)

DEFAULT_DIM = 1024
HASHING_VERSION = 1  # bump whenever the vectors change; it is part of the id, so caches refresh

_TOKEN_RE = re.compile(r"\w+|[^\w\s]")
_SPACE = 32
_R = 0x9E3779B97F4A7C15  # odd polynomial base, so it is invertible modulo 2**64
_R_INV = pow(_R, -1, 2**64)
_LEN_MULT = 0xD6E8FEB86659FD93
_KEY_SHIFT = 44  # a key is (row << 44) | (hash >> 20): 20 bits of row, 44 of feature id
_MAX_CHUNK_CHARS = 1 << 20  # bounds the working memory of one numpy pass (~100 MB)
_MAX_CHUNK_ROWS = 1 << 16  # must stay below 2**20 (the row bits of a key)
_TABLES: dict[str, Any] = {}  # lazily grown lookup tables, replaced whole (thread-safe reads)


@dataclasses.dataclass(frozen=True)
class HashingEncoder:
    """Signed hashing of word and character n-grams into `dim` buckets (see module docstring).

    Attributes:
      dim: D, number of hash buckets (output width).
      word_ngrams: (lo, hi) word n-gram orders; (0, 0) disables word features.
      char_ngrams: (lo, hi) character n-gram orders within padded tokens; (0, 0) disables.
      seed: changes every hash; different seeds give (nearly) independent feature maps.
      version: algorithm version; only `HASHING_VERSION` is implemented.
    """

    dim: int = DEFAULT_DIM
    word_ngrams: tuple[int, int] = (1, 2)
    char_ngrams: tuple[int, int] = (3, 5)
    seed: int = 0
    version: int = HASHING_VERSION

    def __post_init__(self) -> None:
        if self.version != HASHING_VERSION:
            raise EncoderSpecError(
                f"hashing encoder version {self.version} is not implemented by this code "
                f"(it implements v={HASHING_VERSION}); vectors would not match"
            )
        if not 1 <= self.dim <= 2**24:
            raise EncoderSpecError(f"hashing encoder dim={self.dim} must be in [1, 2**24]")
        for name, (lo, hi) in (("word", self.word_ngrams), ("char", self.char_ngrams)):
            if (lo == 0) != (hi == 0) or hi < lo or lo < 0:
                raise EncoderSpecError(f"hashing encoder {name} n-gram range {(lo, hi)} invalid")
        if self.word_ngrams[0] == 0 and self.char_ngrams[0] == 0:
            raise EncoderSpecError("hashing encoder needs word or character n-grams (both off)")
        if self.seed < 0:
            raise EncoderSpecError(f"hashing encoder seed={self.seed} must be >= 0")

    @classmethod
    def from_spec(cls, spec: str, options: str) -> HashingEncoder:
        """Build from the option text of `hashing:dim=2048,word=1-2,char=3-5,seed=0,v=1`."""
        opts = parse_options(spec, options, ("dim", "word", "char", "seed", "v"))
        kwargs: dict[str, Any] = {}
        if "dim" in opts:
            kwargs["dim"] = parse_int(spec, "dim", opts["dim"], lo=1)
        if "word" in opts:
            kwargs["word_ngrams"] = parse_range(spec, "word", opts["word"])
        if "char" in opts:
            kwargs["char_ngrams"] = parse_range(spec, "char", opts["char"])
        if "seed" in opts:
            kwargs["seed"] = parse_int(spec, "seed", opts["seed"], lo=0)
        if "v" in opts:
            kwargs["version"] = parse_int(spec, "v", opts["v"], lo=1)
        try:
            return cls(**kwargs)
        except EncoderSpecError as err:
            raise EncoderSpecError(f"encoder spec {spec!r}: {err}") from None

    @property
    def id(self) -> str:
        return (
            f"hashing:dim={self.dim},word={format_range(*self.word_ngrams)},"
            f"char={format_range(*self.char_ngrams)},seed={self.seed},v={self.version}"
        )

    def to_config(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": "hashing",
            "dim": self.dim,
            "word_ngrams": list(self.word_ngrams),
            "char_ngrams": list(self.char_ngrams),
            "seed": self.seed,
            "version": self.version,
        }

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Hash `texts` [N] str into L2-normalised rows [N, dim] float32 (zero rows if empty)."""
        docs = tokenize(texts)
        bounds = _chunks([len(d) for d in docs])
        if len(bounds) == 1:
            return self._encode_chunk(docs)
        out = np.zeros((len(docs), self.dim), np.float32)
        for start, stop in bounds:
            out[start:stop] = self._encode_chunk(docs[start:stop])
        return out

    def _encode_chunk(self, docs: list[str]) -> np.ndarray:
        """Space-padded token strings [B] -> [B, dim] float32."""
        lengths = np.fromiter(map(len, docs), np.int64, len(docs))
        codes = np.frombuffer("".join(docs).encode("utf-32-le"), "<u4").astype(np.uint64)
        row_of = np.repeat(np.arange(len(docs), dtype=np.uint64), lengths)
        space = codes == _SPACE
        salted: list[np.ndarray] = []  # raw hashes ^ their kind's salt, mixed below in one pass
        rows: list[np.ndarray] = []
        if self.char_ngrams[0]:
            for n, h, starts in _char_ngrams(codes, space, *self.char_ngrams):
                salted.append(h ^ _salt("char", n, self.seed))
                rows.append(row_of[starts])
        if self.word_ngrams[0]:
            for n, h, first in _word_ngrams(codes, space, row_of, *self.word_ngrams):
                salted.append(h ^ _salt("word", n, self.seed))
                rows.append(first)
        if not salted:  # no text in this chunk is long enough for any n-gram
            return np.zeros((len(docs), self.dim), np.float32)
        # one elementwise _mix over every kind: the same values as one call per kind, with a
        # fraction of the numpy calls (a short query's encode is mostly per-call overhead)
        return _accumulate(_mix(np.concatenate(salted)), np.concatenate(rows), len(docs),
                           self.dim)


def tokenize(texts: Sequence[str]) -> list[str]:
    """Lowercase and tokenise: [N] str -> [N] str of tokens joined and padded by single spaces.

    `"Hi, there!"` -> `" hi , there ! "`; an empty or all-space text -> `"  "`.
    """
    out = []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise TypeError(f"text at row {i} is {type(text).__name__} {text!r}, expected str")
        out.append(" " + " ".join(_TOKEN_RE.findall(text.lower())) + " ")
    return out


def _chunks(lengths: list[int]) -> list[tuple[int, int]]:
    """Consecutive [start, stop) row ranges of <= _MAX_CHUNK_CHARS chars (>= 1 row each)."""
    bounds, start, total = [], 0, 0
    for i, length in enumerate(lengths):
        if i > start and (total + length > _MAX_CHUNK_CHARS or i - start >= _MAX_CHUNK_ROWS):
            bounds.append((start, i))
            start, total = i, 0
        total += length
    if start < len(lengths):
        bounds.append((start, len(lengths)))
    return bounds


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a bijection of uint64 in which every input bit moves every output."""
    z = z ^ (z >> 30)
    z *= 0xBF58476D1CE4E5B9
    z ^= z >> 27
    z *= 0x94D049BB133111EB
    return z ^ (z >> 31)


@functools.lru_cache(maxsize=256)
def _salt(kind: str, n: int, seed: int) -> int:
    digest = hashlib.blake2b(f"proteus-hashing:{kind}:{n}:{seed}".encode(), digest_size=8)
    return int.from_bytes(digest.digest(), "little")


def _powers(length: int) -> tuple[np.ndarray, np.ndarray]:
    """[length] uint64 arrays of R**j and R**-j modulo 2**64 (cached, grown on demand)."""
    fwd, inv = _TABLES.get("powers", (np.empty(0, np.uint64),) * 2)
    if fwd.shape[0] < length:
        size = max(length, 1 << 16)
        fwd = np.cumprod(np.full(size, _R, np.uint64)) * _R_INV
        inv = np.cumprod(np.full(size, _R_INV, np.uint64)) * _R
        _TABLES["powers"] = (fwd, inv)
    return fwd[:length], inv[:length]


def _char_ngrams(
    codes: np.ndarray, space: np.ndarray, lo: int, hi: int
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield (n, polynomial hash [K] uint64, start positions [K]) of valid char n-grams.

    A window is valid when no space lies strictly inside it and it is not all spaces, i.e. it
    sits inside one space-padded token. The hash of the window at i is
    sum_k codes[i + k] * R**k modulo 2**64.
    """
    total = codes.shape[0]
    n_space = np.zeros(total + 1, np.int32)  # n_space[i] = number of spaces in codes[:i]
    np.cumsum(space, out=n_space[1:])
    poly, power = codes, 1
    for n in range(1, hi + 1):
        m = total - n + 1  # windows of length n
        if m <= 0:
            return
        if n > 1:
            power = power * _R % 2**64
            poly = poly[:m] + codes[n - 1 :] * power
        if n < lo:
            continue
        if n == 1:
            valid = ~space
        elif n == 2:
            valid = ~(space[:-1] & space[1:])
        else:  # no space in the interior codes[i + 1 : i + n - 1]
            valid = n_space[n - 1 : n - 1 + m] == n_space[1 : 1 + m]
        starts = np.flatnonzero(valid)
        yield n, poly[starts], starts


def _word_ngrams(
    codes: np.ndarray, space: np.ndarray, row_of: np.ndarray, lo: int, hi: int
) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Yield (n, hash [K] uint64, row [K] uint64) of word n-grams that stay inside one text."""
    starts = np.flatnonzero(space[:-1] & ~space[1:]) + 1
    ends = np.flatnonzero(~space[:-1] & space[1:]) + 1  # exclusive; texts start and end in space
    fwd, inv = _powers(codes.shape[0])
    prefix = np.concatenate([np.zeros(1, np.uint64), np.cumsum(codes * fwd)])
    # sum_j codes[j] * R**(j - start): the same polynomial as a character window
    poly = (prefix[ends] - prefix[starts]) * inv[starts]
    base = _mix(poly + (ends - starts).astype(np.uint64) * _LEN_MULT)
    word_row = row_of[starts]
    gram = base
    for n in range(1, hi + 1):
        count = base.shape[0] - n + 1
        if count <= 0:
            return
        if n > 1:
            gram = _mix(gram[:count] * _R + base[n - 1 :])
        if n >= lo:
            keep = np.flatnonzero(word_row[:count] == word_row[n - 1 :])
            yield n, gram[keep], word_row[keep]


def _accumulate(hashes: np.ndarray, rows: np.ndarray, n_rows: int, dim: int) -> np.ndarray:
    """Sublinear-tf, signed, bucketed, L2-normalised rows [n_rows, dim] float32.

    Args:
      hashes: [K] uint64 hash of each n-gram occurrence.
      rows: [K] uint64 row (text) of each occurrence.
      n_rows: B, the number of texts.
      dim: D, the number of buckets.
    """
    out = np.zeros((n_rows, dim), np.float32)
    if hashes.shape[0] == 0:
        return out
    keys = (rows << _KEY_SHIFT) | (hashes >> (64 - _KEY_SHIFT))
    keys.sort()
    # one entry per distinct (row, n-gram), with its term frequency
    new = np.empty(keys.shape[0], bool)
    new[0] = True
    np.not_equal(keys[1:], keys[:-1], out=new[1:])
    firsts = np.flatnonzero(new)
    counts = np.diff(firsts, append=keys.shape[0])
    keys = keys[firsts]
    # weight 1 + log(tf), negated when the key's lowest bit (hash bit 20) is set
    weights = _signed_log_table(int(counts.max()))[(counts << 1) | (keys & 1).view(np.int64)]
    bucket = (((keys >> (_KEY_SHIFT - 24)) & 0xFFFFFF) * dim) >> 24  # top 24 bits -> [0, dim)
    flat = ((keys >> _KEY_SHIFT) * dim + bucket).view(np.int64)
    np.add.at(out.reshape(-1), flat, weights)
    norms = np.sqrt(np.einsum("ij,ij->i", out, out))
    # an empty text has norm 0 and an all-zero row; dividing it by 1 keeps it free of NaN
    out /= np.where(norms > 0, norms, 1.0).astype(np.float32)[:, None]
    return out


def _signed_log_table(max_count: int) -> np.ndarray:
    """[2 * (max_count + 1)] float32: entry 2c is 1 + log(c), entry 2c + 1 its negation."""
    table = _TABLES.get("log", np.empty(0, np.float32))
    if table.shape[0] < 2 * (max_count + 1):
        counts = np.arange(max(max_count + 1, 1024), dtype=np.float64)
        magnitude = 1.0 + np.log(np.maximum(counts, 1.0))
        table = np.stack([magnitude, -magnitude], axis=1).reshape(-1).astype(np.float32)
        _TABLES["log"] = table
    return table
