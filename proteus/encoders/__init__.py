"""Query encoders: texts -> fixed-size float32 features, and a cached dataset encoder.

    enc = get_encoder("hashing")                         # default, deterministic, no download
    ds = encode_dataset(ds, "hashing:dim=2048", cache_dir="/tmp/feats")
    manifest["encoder"] = enc.to_config()                 # small JSON dict
    enc = encoder_from_config(manifest["encoder"])        # same vectors in a serving process

See `registry` for the spec grammar, `hashing` for the default encoder's design.
"""

from proteus.encoders.base import Encoder, EncoderSpecError
from proteus.encoders.cache import cache_path, default_cache_dir, encode_dataset
from proteus.encoders.hashing import DEFAULT_DIM, HASHING_VERSION, HashingEncoder, tokenize
from proteus.encoders.registry import (
    DEFAULT_SPEC,
    PrecomputedEncoder,
    encoder_from_config,
    encoder_from_id,
    get_encoder,
)
from proteus.encoders.sentence import SentenceTransformerEncoder, resolve_model_path

__all__ = [
    "DEFAULT_DIM",
    "DEFAULT_SPEC",
    "HASHING_VERSION",
    "Encoder",
    "EncoderSpecError",
    "HashingEncoder",
    "PrecomputedEncoder",
    "SentenceTransformerEncoder",
    "cache_path",
    "default_cache_dir",
    "encode_dataset",
    "encoder_from_config",
    "encoder_from_id",
    "get_encoder",
    "resolve_model_path",
    "tokenize",
]
