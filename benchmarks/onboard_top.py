"""The top of an exported router's curve on its `calib` rows: its top lanes against μ -> 1.

    python benchmarks/onboard_top.py runs/onboard/artifacts/mmlu_full \
        runs/onboard/artifacts/mmlu_wo_gemini_pro+1000

For each artifact, on the `calib` rows it carries (no column, an onboarded model's included, is
fitted on them; `val` is, for an onboarded one), prints the best single model's accuracy, each
of the top `--lanes` lanes' mean μ and accuracy, and the routing rule itself at a fixed μ
(`--mus`; μ = 1 routes every query to its argmax p̂). Where the top lane falls short of a full
retrain's, this says whether the policy's μ there (a policy trained without the new model) or
the columns' p̂ limit it: if no μ reaches higher, the columns do (docs/onboard.md).
"""

from __future__ import annotations

import numpy as np
from absl import app, flags

from experiments import logs
from proteus.operating import exclusion
from proteus.pipeline.routing import RunRouter, routes
from proteus.training import reopen

_LANES = flags.DEFINE_integer("lanes", 6, "How many of the top lanes to route.")
_MUS = flags.DEFINE_list("mus", ["0.99", "0.999", "1"], "Fixed quality preferences μ to route at.")


def top_of_curve(artifact: str, lanes: int = 6, mus=(0.99, 0.999, 1.0)) -> list[tuple]:
    """Rows (what, mean μ or None, accuracy, mean USD cost) on the artifact's `calib` rows:
    ("best single model", None, ...), then ("lane <τ'>", ...) for its top `lanes` lanes, then
    ("mu=<μ>", μ, ...) for each fixed μ of `mus` (the routing rule on the lanes' own p̂, ĉ)."""
    bundle, rows, _ = reopen.read_bundle(artifact)
    if rows is None:
        raise ValueError(f"{artifact} carries no held-out rows: re-export it")
    router, calib = RunRouter.of_bundle(bundle), rows.calib
    scores, costs = np.asarray(calib.scores), np.asarray(calib.costs)
    taus = np.asarray(router.lane_taus)[-lanes:]
    decision = routes(router, calib, taus)
    outcome = lambda model: (float(scores[np.arange(len(model)), model].mean()),
                             float(costs[np.arange(len(model)), model].mean()))
    best = int(np.argmax(scores.mean(axis=0)))
    out = [("best single model", None, *outcome(np.full(calib.n_queries, best)))]
    for k, tau in enumerate(taus):
        out.append((f"lane {tau:.3f}", float(np.mean(decision.mu[k])),
                    *outcome(np.asarray(decision.model[k]))))
    p_hat, c_hat = np.asarray(decision.p_hat), np.asarray(decision.c_hat)
    c_ref = float(router.params["stats"]["c_ref"])
    for mu in mus:
        chosen = exclusion.choose(np.full(calib.n_queries, mu, np.float32), p_hat, c_hat, c_ref,
                                  np.zeros(p_hat.shape, bool))
        out.append((f"mu={mu:g}", float(mu), *outcome(chosen)))
    return out


def main(argv):
    logs.job_logging()
    print("| artifact | routing | mean μ | calib accuracy | mean cost (USD) |\n"
          "|---|---|---:|---:|---:|")
    for artifact in argv[1:]:
        for what, mu, accuracy, cost in top_of_curve(artifact, _LANES.value,
                                                     [float(m) for m in _MUS.value]):
            mu = "" if mu is None else f"{mu:.3f}"
            print(f"| {artifact.rstrip('/').split('/')[-1]} | {what} | {mu} | {accuracy:.4f} | "
                  f"{cost:.6f} |")


if __name__ == "__main__":
    app.run(main)
