"""Does a routing decision depend on the batch it is routed in?

    python benchmarks/batch_invariance.py --artifact=artifacts/rb

The exported routing function is compiled per batch bucket (`proteus.serving.router._bucket`),
and XLA's CPU backend multiplies matrices of a few rows with other kernels than larger ones, so
μ, p̂ and ĉ can differ in their last bits with the batch size. A server that micro-batches
concurrent requests (the router service, the gateway) therefore routes a request in a batch whose
size depends on what else arrived. This script routes the artifact's held-out rows (or
`--rows` random feature rows for an artifact without them) over a τ' grid in batches of 1, 2, 4,
..., 64 rows and compares each with routing all rows at once: how many decisions choose another
model, and the largest difference in μ and p̂.
"""

from __future__ import annotations

import argparse

import numpy as np

from proteus.online.heldout import load_heldout
from proteus.serving import Router

_BATCHES = (1, 2, 4, 8, 16, 32, 64)
_GRID = np.round(np.arange(0.50, 0.951, 0.01), 3)  # τ' (operating τ of the policy)


def feature_rows(router: Router, n_random: int) -> np.ndarray:
    """[N, D] float32: the artifact's held-out rows (val and calib), else n_random N(0, 1) rows."""
    rows = load_heldout(router)
    if rows is not None:
        return rows.features
    rng = np.random.default_rng(0)
    return rng.normal(size=(n_random, router.feature_dim)).astype(np.float32)


def compare(router: Router, x: np.ndarray, taus: np.ndarray = _GRID,
            batches: tuple[int, ...] = _BATCHES) -> dict[str, float]:
    """Route x [N, D] at each τ' in taus, in batches of each size, against all N at once.

    Returns decisions (N x len(taus) x len(batches)), model_differs (of those), and the largest
    absolute differences of μ and p̂.
    """
    n, differs, mu_max, p_max = x.shape[0], 0, 0.0, 0.0
    for tau in taus:
        t = np.full(n, tau, np.float32)
        whole = router.run(x, t)
        for b in batches:
            parts = [router.run(x[s:s + b], t[s:s + b]) for s in range(0, n, b)]
            model = np.concatenate([p.model for p in parts])
            differs += int(np.sum(model != whole.model))
            mu_max = max(mu_max, float(np.max(np.abs(np.concatenate([p.mu for p in parts])
                                                     - whole.mu))))
            p_max = max(p_max, float(np.max(np.abs(np.concatenate([p.p_hat for p in parts])
                                                   - whole.p_hat))))
    return {"decisions": n * len(taus) * len(batches), "model_differs": differs,
            "max_abs_mu": mu_max, "max_abs_p_hat": p_max}


def main(argv: list[str] | None = None) -> None:
    # argparse, not absl flags: a test imports this script beside others that define --artifact
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--artifact", required=True, help="an exported router artifact")
    p.add_argument("--rows", type=int, default=1000,
                   help="random feature rows, where the artifact stores no held-out rows")
    args = p.parse_args(argv)
    router = Router.load(args.artifact)
    x = feature_rows(router, args.rows)
    out = compare(router, x)
    print(f"{args.artifact}: {x.shape[0]} rows x {len(_GRID)} τ' x {len(_BATCHES)} batch sizes "
          f"({', '.join(map(str, _BATCHES))}) = {out['decisions']:,} decisions against routing "
          f"all rows at once: another model in {out['model_differs']:,}; largest |Δμ| "
          f"{out['max_abs_mu']:.2e}, |Δp̂| {out['max_abs_p_hat']:.2e}")


if __name__ == "__main__":
    main()
