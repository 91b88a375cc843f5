"""The workdir layer: the library's train -> evaluate -> export (`proteus.pipeline`) on a
directory that holds a run, so that a job can stop, resume and report.

A workdir holds `config.json` (the run's config, `experiments.workdir`), `checkpoints/` (Orbax,
through `CheckpointCallback`), `metrics.jsonl` (one record per chunk, `MetricsFile`),
`results.json` and `certification.json` (the evaluation's outputs; the second is what an export
reads), `report.md` and its plots (`output_files`). The launchers call one function
here each: `launch.train` and `launch.evaluate` call `evaluate`, `launch.export` calls `export`.
A resumed run is bit-identical to an uninterrupted one (tests/test_pipeline.py).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import flags, logging

from experiments import redraws as redraws_lib
from experiments import validate
from experiments import workdir as workdir_lib
from experiments.configs import common
from proteus import pipeline
from proteus.evaluation import plots, report, results
from proteus.pipeline import auto
from proteus.pipeline import config as pipeline_config
from proteus.pipeline.fit import metrics_record
from proteus.pipeline.setup import Setup, Splits, state_template
from proteus.training import checkpoint, destination, loop
from proteus.training import export as export_lib
from proteus.training.sharding import Placement
from proteus.training.train import TrainState

CHECKPOINTS = "checkpoints"
RESULTS_FILE = "results.json"
CERTIFICATION_FILE = "certification.json"


class MetricsFile(loop.Callback):
    """`WORKDIR/metrics.jsonl`, one `pipeline.fit.metrics_record` per chunk (process 0 writes).

    On restore, the records past the step training restarts from were written by an interrupted
    run and will be written again, so they are dropped (`workdir.truncate_metrics`).
    """

    def __init__(self, workdir: str):
        self.workdir = workdir
        self.path = os.path.join(workdir, workdir_lib.METRICS_FILE)

    def restore(self, state: TrainState, phase: str) -> tuple[TrainState, str]:
        if jax.process_index() == 0:
            workdir_lib.truncate_metrics(self.workdir, int(np.asarray(state.step)[0]))
        return state, phase

    def on_metrics(self, phase: str, step: int, metrics: dict) -> None:
        if jax.process_index() != 0:  # sharding hook: one writer in a multi-host job
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(metrics_record(phase, step, metrics)) + "\n")


def train(config: ml_collections.ConfigDict, workdir: str, splits: Splits,
          setup: Setup | None = None, progress: bool = True,
          placement: Placement | None = None) -> pipeline.Trained:
    """`pipeline.train` with the workdir's checkpoints (resumed when present) and metrics file.

    The caller has prepared the workdir (`workdir.prepare`: validated, locked, config recorded).
    """
    every = config.checkpoint.every_chunks * config.train.chunk_size
    ckpt = checkpoint.CheckpointCallback(os.path.join(workdir, CHECKPOINTS), every_steps=every,
                                         max_to_keep=config.checkpoint.max_to_keep,
                                         meta={"name": config.name})
    return pipeline.train(config, splits, callbacks=[ckpt, MetricsFile(workdir)], setup=setup,
                          placement=placement, progress=progress)


def load_config(workdir: str) -> ml_collections.ConfigDict:
    """The config a workdir's run stands under: `config.json` (written by the main job) with the
    changes later jobs were allowed (`experiments.workdir.recorded_config`)."""
    path = os.path.join(workdir, workdir_lib.CONFIG_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} not found: is {workdir!r} a PROTEUS training workdir?")
    config = ml_collections.ConfigDict(
        workdir_lib.recorded_config(workdir, common.base_config().to_dict()))
    config.lock()
    return config


def load_trained(workdir: str, splits: Splits | None = None) -> pipeline.Trained:
    """The finished run of a training workdir (its config, data, setup and final state)."""
    config = load_config(workdir)
    splits = splits or pipeline.load_splits(config)
    setup = pipeline.make_setup(config, splits)
    ckpt = checkpoint.Checkpointer(os.path.join(workdir, CHECKPOINTS))
    try:
        state, meta = ckpt.restore(state_template(setup))
    finally:
        ckpt.close()
    step = int(np.asarray(state.step)[0])
    if meta.get("phase") != "policy" or step < int(np.asarray(state.pred_steps)[0]) + \
            setup.loop.policy_steps:
        raise ValueError(f"training in {workdir!r} has not finished (step {step}, phase "
                         f"{meta.get('phase')}); run launch.train again to resume it")
    return pipeline.Trained(config, splits, setup, state)


def evaluate(config: ml_collections.ConfigDict | None, workdir: str,
             allow_change: Iterable[str] = (), progress: bool = True,
             baselines: bool = True, redraws: int = 0,
             allow_retrain: bool = False) -> dict[str, Any]:
    """Train or resume the run in `workdir`, evaluate it and write its outputs; returns the
    results dict. config None: the workdir's own. `baselines=False` is the main job (PROTEUS
    only; its report and plots too). With `redraws` > 0, results.json also holds the redraw
    evaluation (`experiments.redraws`). `allow_retrain`: see `workdir.prepare`."""
    config = config if config is not None else load_config(workdir)
    config = resolved(config, workdir, progress=progress)  # "auto" settings: decided, recorded
    workdir_lib.prepare(config, workdir, allow_change=allow_change,  # validate, lock, record
                        allow_retrain=allow_retrain)
    trained = train(config, workdir, pipeline.load_splits(config, progress), progress=progress)
    evaluation = pipeline.evaluate(trained, baselines=baselines)
    if redraws > 0:
        evaluation.results["redraw"] = redraws_lib.redraw_block(trained, redraws)
    write_outputs(workdir, evaluation)
    return evaluation.results


def resolved(config: ml_collections.ConfigDict, workdir: str,
             progress: bool = True) -> ml_collections.ConfigDict:
    """`config` with its "auto" settings decided (`pipeline.resolve`, docs/auto.md); when the
    workdir already holds a run resolved from the same request, that run's recorded config
    (the evidence is measured once per workdir, and a resumed run keeps its choices)."""
    if not pipeline_config.auto_settings(config):
        return auto.resolve(config)  # nothing to measure: string forms parsed
    if os.path.exists(os.path.join(workdir, workdir_lib.CONFIG_FILE)):
        recorded = load_config(workdir)
        diff = workdir_lib.config_diff(auto.request_of(recorded), auto.request_of(config))
        if pipeline_config.AUTO_RECORD in recorded and not set(diff) - workdir_lib.HOST_ONLY:
            logging.info("%s: using the automatic settings recorded there", workdir)
            return recorded
    validate.validate(config)  # a bad setting stops the job before minutes of evidence
    return auto.resolve(config, progress=progress)


def write_outputs(workdir: str, evaluation: pipeline.Evaluation,
                  with_report: bool = True) -> list[str]:
    """results.json, certification.json and (with_report) report.md and the three plots."""
    paths = [str(results.write_results(evaluation.results,
                                       os.path.join(workdir, RESULTS_FILE)))]
    paths.append(write_json(evaluation.certificate(),
                            os.path.join(workdir, CERTIFICATION_FILE)))
    if with_report:  # with the predictor and paired-AIQ sections when the results hold them
        paths += [str(p) for p in report.write_all(evaluation.results, workdir)]
    for p in paths:
        logging.info("wrote %s", p)
    return paths


def output_files() -> list[str]:
    """The names of the files `write_outputs` writes into a workdir, in that order."""
    return [RESULTS_FILE, CERTIFICATION_FILE, "report.md",
            *(f"{name}.png" for name in plots.PLOT_NAMES)]


def write_json(payload: dict[str, Any], path: str) -> str:
    """Strict JSON, written atomically (temp file, then rename)."""
    with open(path + ".tmp", "w") as f:
        json.dump(results.to_jsonable(payload), f, indent=1, allow_nan=False)
    os.replace(path + ".tmp", path)
    return path


def export(workdir: str, out: str, run: int = 0, overwrite: bool = False,
           platforms: Sequence[str] = export_lib.DEFAULT_PLATFORMS,
           certified: bool = True) -> dict[str, Any]:
    """Export run `run` of a finished, evaluated workdir to `out`; returns the manifest.

    The operating points are the evaluation's (`certification.json`); certified=False exports
    without the certification table (the uncertified operating rule).
    """
    destination.check_out(out, overwrite)  # before the workdir's data and checkpoints load
    trained = load_trained(workdir)
    operating, cert = export_lib.read_operating(os.path.join(workdir, CERTIFICATION_FILE))
    return pipeline.export(trained, pipeline.Evaluation(None, operating, cert), out, run=run,
                           certified=certified, overwrite=overwrite, platforms=platforms,
                           workdir=workdir)


@contextlib.contextmanager
def one_line_errors(launcher: str) -> Iterator[None]:
    """A launcher's user errors (a bad setting, a workdir in use or of another config, bad data,
    a damaged checkpoint, a missing file) end the job with one line naming the cause, not a
    traceback: the input or the workdir is at fault, not the program. The line starts with the
    launcher's module (`launcher`, e.g. "launch.train"), as every launcher's does."""
    try:
        yield
    except (*workdir_lib.USER_ERRORS, FileNotFoundError) as e:
        sys.exit(f"{launcher}: {e}")


def config_flags_parser(launcher: str, files: Sequence[str] = ("config",),
                        flag_values: flags.FlagValues = flags.FLAGS
                        ) -> Callable[[list[str]], list[str]]:
    """absl's flags parser for a launcher with config flags (`app.run(main, flags_parser=...)`);
    `files`: the names of its flags that load a config file (of `flag_values`).

    ml_collections reports a config file that fails to load with the traceback of its loading (an
    unknown variant) or defers the error to the config's first use (a missing file), and a
    `--config.<field>=` override naming no field with an uncaught AttributeError. All are a bad
    command line, so like every other bad flag they end the job with one line naming the flag and
    the cause (then absl's pointer to --helpshort)."""
    def parse(argv: list[str]) -> list[str]:
        try:
            with unknown_fields_exit(launcher, argv):
                rest = flag_values(argv)
                for name in files:
                    if flag_values[name].value is not None:
                        hasattr(flag_values[name].value, "keys")  # a deferred load error raises
                return rest
        except flags.Error as e:
            reason = _flag_error_line(str(e))
        except OSError as e:  # a config file that could not be loaded
            named = [a for a in argv[1:] for n in files if a.startswith(f"--{n}=")]
            reason = f"flag {named[0] if named else '--' + files[0]}: {_last_line(str(e))}"
        sys.exit(f"{launcher}: {reason}\n{_HELP}")
    return parse


_HELP = "Pass --helpshort or --helpfull to see help on flags."


@contextlib.contextmanager
def unknown_fields_exit(launcher: str, argv: Sequence[str]) -> Iterator[None]:
    """A `--<config>.<path>=` override of `argv` naming no field ends the job with one line.
    ml_collections applies overrides while parsing (and a `DEFINE_config_dict`'s when it is
    defined: wrap that too) and raises a bare AttributeError or KeyError for a missing field."""
    try:
        yield
    except (AttributeError, KeyError) as e:
        reason = _no_such_field(argv, e)
        if reason is None:  # not an override's field: a fault of the program, with its traceback
            raise
        sys.exit(f"{launcher}: {reason}\n{_HELP}")


def _flag_error_line(message: str) -> str:
    """"flag --x=v: <cause>" from absl's message, whose cause may be a traceback (`_last_line`)."""
    head, _, rest = message.strip().partition("\n")
    return f"{head.split(': ', 1)[0]}: {_last_line(rest)}" if rest.strip() else head


def _last_line(message: str) -> str:
    """The last non-empty line of a (traceback-bearing) message, without the exception's class."""
    lines = [line.strip() for line in message.strip().splitlines() if line.strip()]
    return re.sub(r"^[A-Za-z_.]*(Error|Exception): ", "", lines[-1]) if lines else ""


def _no_such_field(argv: Sequence[str], error: BaseException) -> str | None:
    """The override of `argv` that names the field the config lacks (`error`'s), and
    ml_collections' hint; None when no override of `argv` names that field."""
    inner: Any = error
    while isinstance(inner, BaseException) and inner.args:
        inner = inner.args[0]
    field, _, hint = str(inner).partition("\n")
    field = field.strip("'\"")
    names = [arg for arg in argv[1:] if arg.startswith("--") and "." in arg.split("=", 1)[0]]
    named = [arg for arg in names if field in arg.split("=", 1)[0][2:].split(".")]
    if not named:
        return None
    return f"flag {named[0]}: the config has no field {field!r}" + (f"; {hint}" if hint else "")
