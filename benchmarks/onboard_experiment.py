"""Leave one model out, onboard it, compare with a full retrain (issue 30 item 3; docs/onboard.md).

    python benchmarks/onboard_experiment.py --root=runs/onboard --out=runs/onboard/onboard.json
    python benchmarks/onboard_experiment.py --datasets=rb --models=gpt-4-1106-preview --ns=1000
    python benchmarks/onboard_experiment.py --retrain_seeds=1,2   # + the full retrain's noise
    python benchmarks/onboard_experiment.py --draws=5             # + the label draw's noise

For each data set (the RouterBench slice, MMLU-Pro) and each left-out model X:

  * `full`: a router trained with every model (`ROOT/<ds>_full`, trained here if absent);
  * `without`: one trained with `data.exclude_models=X` (`ROOT/<ds>_wo_<tag>`), exported with its
    held-out rows (val, calib);
  * `onboard N`: `without` with X onboarded (`proteus.pipeline.onboard`) from N of X's labelled
    training-pool queries (a fixed random order: the 200 are among the 500, ...) plus X's labels
    on the held-out rows, features from the feature cache; with --draws=D, D such orders (seeds
    0 to D - 1; draw 0 is the default run's), each N onboarded once per draw;
  * `removed`: `full` with X removed (`proteus.pipeline.remove_model`), against `without`;
  * `full seed S` (with --retrain_seeds): `full` trained again with `seed=S`
    (`ROOT/<ds>_full_sS`): its ΔAIQ against `full` is what retraining alone moves AIQ by.

Every router is exported and scored the same way, from its artifact (`proteus_results` on the
artifact's held-out rows and the test split): AIQ (test, costs normalised over ALL models' test
costs, so routers with and without X are comparable), top accuracy (the highest test accuracy its
operating points reach), and its certified floors at the report grid: τ certified, and silent
misses (τ certified whose test accuracy is below τ; none allowed). `seconds` is the wall time of
the onboard (or remove) call: reading the artifact, fitting, re-measuring, re-certifying, writing
and verifying the new artifact, compilation included.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time

import numpy as np

from experiments import runs
from experiments.configs import mmlu_pro, routerbench
from proteus import pipeline
from proteus.data.dataset import RoutingDataset
from proteus.data.labels import ModelLabels
from proteus.evaluation import metrics
from proteus.pipeline import onboarding
from proteus.pipeline.evaluation import cost_range, proteus_results
from proteus.pipeline.routing import RunRouter
from proteus.pipeline.transfer import pool_of
from proteus.training import reopen

CASES = {
    "rb": (routerbench.get_config, ("gpt-4-1106-preview", "mistralai/mistral-7b-chat",
                                    "gpt-3.5-turbo-1106")),
    "mmlu": (mmlu_pro.get_config, ("gemini-1.5-pro-002", "gemini-1.5-flash-002",
                                   "Meta-Llama-3_1-70B-Instruct")),
}
TAGS = {"gpt-4-1106-preview": "gpt4", "mistralai/mistral-7b-chat": "mistral7b",
        "gpt-3.5-turbo-1106": "gpt35", "gemini-1.5-pro-002": "gemini_pro",
        "gemini-1.5-flash-002": "gemini_flash", "Meta-Llama-3_1-70B-Instruct": "llama70b"}


def trained_artifact(config, workdir: str, out: str) -> str:
    """Train (or resume, or reuse) the run in `workdir` and export it with held-out rows."""
    if not os.path.exists(os.path.join(workdir, runs.CERTIFICATION_FILE)):
        runs.evaluate(config, workdir, baselines=False, progress=False)
    if not os.path.exists(out):
        runs.export(workdir, out)
    return out


def in_order(ds: RoutingDataset, models) -> RoutingDataset:
    """`ds` with the columns of `models` in that order."""
    idx = [ds.models.index(m) for m in models]
    return dataclasses.replace(ds, models=tuple(models), scores=ds.scores[:, idx],
                               costs=ds.costs[:, idx])


def score(artifact: str, test: RoutingDataset) -> dict:
    """AIQ over all models' cost range, top accuracy, τ certified and silent misses on `test`,
    of the artifact's own operating points (an onboarded one's include points around its new
    model), certified on its `calib` rows as the evaluation certifies."""
    bundle, rows, _ = reopen.read_bundle(artifact)
    config = onboarding.training_config(artifact, bundle)
    res, _ = proteus_results(config, RunRouter.of_bundle(bundle),
                             {"val": rows.val, "calib": rows.calib,
                              "test": in_order(test, bundle.models)}, table=bundle.operating)
    sweep = res["routers"]["proteus"]["sweep"]
    cert = res["routers"]["proteus_certified"]
    taus = np.asarray(res["taus"])
    feasible = np.asarray(cert["feasible"], bool)
    acc = np.asarray([np.nan if a is None else a for a in cert["accuracy"]], np.float64)
    missed = feasible & (acc < taus - metrics.FLOOR_EPS)
    return {"aiq": metrics.aiq(sweep["cost"], sweep["accuracy"], cost_range(test)),
            "top_accuracy": float(np.max(sweep["accuracy"])),
            "n_certified": int(feasible.sum()), "silent_misses": int(missed.sum())}


def model_labels(splits, model: str, n: int, seed: int = 0) -> ModelLabels:
    """X's labels on every held-out row and on n training-pool rows (a fixed random order; n
    at most the pool's size)."""
    pool = [splits["pred"], splits["policy"]]
    rng = np.random.default_rng(seed)
    order = rng.permutation(sum(p.n_queries for p in pool))[:n]
    parts = [(p, None) for p in (splits["val"], splits["calib"])]
    cat = lambda f, ps: np.concatenate([getattr(p, f) for p in ps])
    m = splits["pred"].models.index(model)
    pick = lambda f: np.concatenate([cat(f, [p for p, _ in parts]), cat(f, pool)[order]])
    return ModelLabels(query_ids=pick("query_ids"), scores=pick("scores")[:, m],
                       costs=pick("costs")[:, m], features=pick("features"),
                       tasks=pick("tasks"))


def run_case(name: str, model: str, root: str, ns, rows_out: list, seeds=(),
             draws: int = 1, transfer: bool = False) -> None:
    get_config, _ = CASES[name]
    art = os.path.join(root, "artifacts")
    full = trained_artifact(get_config(), os.path.join(root, f"{name}_full"),
                            os.path.join(art, f"{name}_full"))
    config = get_config()
    config.unlock()
    config.data.exclude_models = model
    config.lock()
    tag = TAGS.get(model, model.replace("/", "_"))
    without = trained_artifact(config, os.path.join(root, f"{name}_wo_{tag}"),
                               os.path.join(art, f"{name}_wo_{tag}"))
    splits = pipeline.load_splits(get_config())
    test = splits["test"]
    add = lambda router, n, seconds, artifact: rows_out.append(
        {"dataset": name, "model": model, "router": router, "n": n, "seconds": seconds,
         **score(artifact, test)})
    if not any(r["dataset"] == name and r["router"] == "full" for r in rows_out):
        add("full", None, None, full)
        for seed in seeds:
            again = get_config()
            again.seed = seed
            add(f"full seed {seed}", None, None, trained_artifact(
                again, os.path.join(root, f"{name}_full_s{seed}"),
                os.path.join(art, f"{name}_full_s{seed}")))
    add("without", None, None, without)
    pool = splits["pred"].n_queries + splits["policy"].n_queries
    # --transfer: the old models' labels on the pool, rebuilt from the artifact's recorded config
    old_pool = (pool_of(config, reopen.read_bundle(without)[0].models) if transfer else None)
    for draw in range(draws):
        for n in sorted({min(n, pool) for n in ns}):  # an n past the pool means every pool row
            out = os.path.join(art, f"{name}_wo_{tag}+{n}" + ("t" if transfer else "")
                               + (f"d{draw}" if draw else ""))
            labels = model_labels(splits, model, n, seed=draw)
            start = time.perf_counter()
            onboarding.onboard(without, model, labels, out, pool=old_pool, overwrite=True)
            add(f"onboard {n}" + (f" #{draw}" if draw else ""), n, time.perf_counter() - start,
                out)
            rows_out[-1]["draw"] = draw
            print(format_row(rows_out[-1]), flush=True)
    out = os.path.join(art, f"{name}_full-{tag}")
    start = time.perf_counter()
    onboarding.remove_model(full, model, out, overwrite=True)
    add("removed", None, time.perf_counter() - start, out)


HEADER = (f"{'data':5} {'left out':28} {'router':12} {'AIQ':>7} {'ΔAIQ':>7} {'top acc':>7} "
          f"{'τ cert':>6} {'missed':>6} {'s':>6}")


def format_row(r: dict, reference: float | None = None) -> str:
    delta = "" if reference is None else f"{r['aiq'] - reference:+.4f}"
    secs = "" if r["seconds"] is None else f"{r['seconds']:.1f}"
    return (f"{r['dataset']:5} {r['model'][:28]:28} {r['router']:12} {r['aiq']:7.4f} "
            f"{delta:>7} {r['top_accuracy']:7.4f} {r['n_certified']:6d} "
            f"{r['silent_misses']:6d} {secs:>6}")


def table(rows: list) -> str:
    """The printed table: ΔAIQ against the full retrain of the same data set."""
    full = {r["dataset"]: r["aiq"] for r in rows if r["router"] == "full"}
    return "\n".join([HEADER, *(format_row(r, full.get(r["dataset"])) for r in rows)])


def draw_summary(rows: list) -> str:
    """Per data set, left-out model and N: ΔAIQ's mean, min and max over the label draws, against
    the seed-0 full retrain and against the mean of every full retrain (seed 0 and --retrain_seeds),
    and the draws' silent misses."""
    fulls: dict = {}
    for r in rows:
        if r["router"] == "full" or r["router"].startswith("full seed"):
            fulls.setdefault(r["dataset"], []).append(r["aiq"])
    groups: dict = {}
    for r in rows:
        if r["router"].startswith("onboard"):
            groups.setdefault((r["dataset"], r["model"], r["n"]), []).append(r)
    out = [f"{'data':5} {'left out':28} {'N':>6} {'draws':>5} {'ΔAIQ mean':>9} {'min':>7} "
           f"{'max':>7} {'vs mean':>8} {'missed':>6}"]
    for (ds, model, n), group in groups.items():
        delta = np.asarray([g["aiq"] for g in group]) - fulls[ds][0]
        shift = fulls[ds][0] - float(np.mean(fulls[ds]))  # seed 0's own offset from the mean
        out.append(f"{ds:5} {model[:28]:28} {n:6d} {len(group):5d} {delta.mean():+9.4f} "
                   f"{delta.min():+7.4f} {delta.max():+7.4f} {delta.mean() + shift:+8.4f} "
                   f"{sum(g['silent_misses'] for g in group):6d}")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default="runs/onboard")
    parser.add_argument("--out", default="runs/onboard/onboard.json")
    parser.add_argument("--datasets", default="rb,mmlu")
    parser.add_argument("--models", default="", help="comma-separated; default: each set's 3")
    parser.add_argument("--ns", default="200,500,1000")
    parser.add_argument("--draws", type=int, default=1,
                        help="draws of the N training labels (draw d: the pool in a random "
                             "order seeded d); with more than one, each N's mean is printed too")
    parser.add_argument("--transfer", action="store_true",
                        help="onboard with the training pool's soft labels, transferred from "
                             "the old models' labels (artifacts ...+Nt)")
    parser.add_argument("--retrain_seeds", default="",
                        help="comma-separated seeds of extra full retrains (training noise)")
    args = parser.parse_args()
    ns = [int(n) for n in args.ns.split(",")]
    seeds = [int(s) for s in args.retrain_seeds.split(",") if s]
    rows: list = []
    for name in args.datasets.split(","):
        wanted = [m for m in args.models.split(",") if m] or CASES[name][1]
        for model in wanted:
            run_case(name, model, args.root, ns, rows, seeds, args.draws, args.transfer)
            with open(args.out, "w") as f:
                json.dump(rows, f, indent=1)
    print(table(rows))
    if args.draws > 1:
        print(draw_summary(rows))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
