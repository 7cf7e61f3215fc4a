"""Experiments that regenerate the tables and figures of the README: `coda experiment list | run NAME`.

    import coda.experiments
    frames = coda.experiments.run("phaze-training", out="out/", quick=True)   # dict of DataFrames
    coda.experiments.list_experiments()                                      # name, produces, cost

Each experiment is one module with a `run(Options)` that writes CSV, Markdown (`results.md`), PNG,
`command.txt` and `metadata.json` (command, coda version, git commit, timer, timings) into its folder,
`experiments/NAME/` by default. Documentation: docs/experiments.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from coda.errors import ConfigError, UnknownNameError
from coda.experiments.evaluator import EXECUTORS, TIMERS


@dataclass(frozen=True)
class Experiment:
    """One registered experiment.

    Attributes:
        name: what `coda experiment run` takes.
        produces: the files and what they show.
        cost: rough run time of the full and the quick run, and on what.
        runner: `module.run(Options)`, imported when the experiment runs.
    """

    name: str
    produces: str
    cost: str
    runner: str


_REGISTRY: dict[str, Experiment] = {}


def register(exp: Experiment) -> None:
    """Add an experiment. Raises ConfigError on a duplicate name."""
    if exp.name in _REGISTRY:
        raise ConfigError(f"experiment {exp.name!r} is registered twice")
    _REGISTRY[exp.name] = exp


register(Experiment(
    name="phaze-training",
    produces="per_model.csv (best design per model, best single design, TPUv4-like, faithful TPU v4, A100/H100 rows: "
             "tokens/s, tokens/s per W, area, TDP, plan, ratios to TPU v4), family.csv (geometric-mean ranking), "
             "sensitivity.csv, pareto.csv + pareto.png (tokens/s vs TDP, area as colour), results.md",
    cost="full: 29,360 designs x 5 models, 20 min wall (26 min CPU) with the predictor timer and 2 workers on 2 "
         "shared cores (the bound leaves 1,700-3,700 designs per model; GPT-3 175B takes 13 of the 20 min); "
         "--quick: 16 designs, 35-50 s of CPU time",
    runner="coda.experiments.phaze_training",
))
register(Experiment(
    name="serving-design",
    produces="designs.csv (per workload, prompt-heavy 4096/100 and decode-heavy 200/2000 tokens, and chip: its best "
             "deployment's capacity under P99 TTFT <= 2 s and TBT <= 100 ms, output tokens/s per W, or its bound), "
             "deployments.csv, capacity_per_watt.png (tokens/s per W vs TDP), results.md",
    cost="full: 36 designs + TPU v4, TPUv4-like, A100, H100 for Llama-3-8B, about 2.5 min of CPU (4 min of wall time "
         "on 2 busy cores); --quick: 4 designs, short traces, 20-35 s of CPU",
    runner="coda.experiments.serving_design",
))


def list_experiments() -> pd.DataFrame:
    """The registered experiments: name, produces, cost."""
    return pd.DataFrame([dict(name=e.name, produces=e.produces, cost=e.cost) for e in _REGISTRY.values()])


def experiment(name: str) -> Experiment:
    """The experiment called `name`. Raises UnknownNameError with the known names."""
    if name not in _REGISTRY:
        raise UnknownNameError("experiment", name, list(_REGISTRY))
    return _REGISTRY[name]


def default_out(name: str) -> Path:
    """`experiments/NAME` of the repository (the work tree this package sits in), else of the current directory."""
    repo = Path(__file__).resolve().parents[2]
    base = repo if (repo / "pyproject.toml").exists() and (repo / "experiments").is_dir() else Path.cwd()
    return base / "experiments" / name


def check_out_dir(out: str | Path, what: str = "out", create: bool = True) -> Path:
    """`out` as a folder the experiment can write: refused if it is a file, if it is missing and so is its
    parent, or if nothing can be written there (`coda.paths.writable_file`); created when `create`."""
    from coda.paths import writable_file

    p = Path(out)
    if p.exists() and not p.is_dir():
        raise ConfigError(f"{what} {str(out)!r} is a file; give a folder for the experiment's outputs")
    if not p.exists():
        if not p.parent.is_dir():
            raise ConfigError(f"{what} {str(out)!r}: directory {str(p.parent)!r} does not exist; create it first")
        writable_file(p.parent / (p.name + ".probe"), what)
        if create:
            p.mkdir()
    if p.exists():
        writable_file(p / "results.md", what)
    return p


def check_options(executor: str, jobs: int, timer: str) -> None:
    """The run options, before any work (ConfigError naming the option, its value and the valid ones)."""
    if executor not in EXECUTORS:
        raise ConfigError(f"executor {executor!r} is unknown; use one of {', '.join(EXECUTORS)}")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise ConfigError(f"jobs={jobs!r} must be an integer >= 1 (designs evaluated at once)")
    if timer not in TIMERS:
        raise ConfigError(f"timer {timer!r} is unknown; use one of {', '.join(TIMERS)}")


def run(name: str, out: str | Path | None = None, store: str | Path | None = None, executor: str = "process",
        jobs: int | None = None, quick: bool = False, timer: str = "predictor", progress: bool = False,
        command: str = "") -> dict[str, pd.DataFrame]:
    """Run experiment `name`, write its files into `out` (default `experiments/NAME/`) and return its frames.

    Args:
        name: a registered experiment (`list_experiments()`).
        out: output folder (created if its parent exists).
        store: SQLite result store: finished designs are kept, so an interrupted run resumes.
        executor: ``process`` (default), ``inline`` or ``ray``.
        jobs: designs in flight (default: the CPU count).
        quick: a small subspace, under a minute.
        timer: ``predictor`` (default) or ``ilp`` layer timer; recorded in `metadata.json`.
        progress: progress bars on stderr.
        command: the command line to record (default: this call).

    Raises:
        UnknownNameError: an unknown experiment; ConfigError: a bad option or path, before any work.
        coda.search.SearchInterrupted: Ctrl-C or SIGTERM (finished designs are in `store`).
    """
    import importlib
    import os

    exp = experiment(name)
    jobs = jobs if jobs is not None else (os.cpu_count() or 1)
    check_options(executor, jobs, timer)
    folder = check_out_dir(out if out is not None else default_out(name), create=False)
    if store is not None:
        from coda.search import ResultStore

        ResultStore(store).close()  # refuses another program's file, a damaged store or an unwritable place now
    check_out_dir(folder)
    module: Any = importlib.import_module(exp.runner)
    opts = module.Options(out=folder, store=Path(store) if store is not None else None, executor=executor, jobs=jobs,
                          quick=quick, timer=timer, progress=progress,
                          command=command or f"coda.experiments.run({name!r}, out={str(folder)!r}, quick={quick}, "
                                             f"timer={timer!r})")
    runner: Callable[[Any], dict[str, pd.DataFrame]] = module.run
    return runner(opts)


__all__ = ["Experiment", "check_options", "check_out_dir", "default_out", "experiment", "list_experiments",
           "register", "run"]
