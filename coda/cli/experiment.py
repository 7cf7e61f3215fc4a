"""`coda experiment list | run NAME`: the experiments that regenerate the README's tables and figures.

    coda experiment list
    coda experiment run phaze-training --store runs.sqlite            # into experiments/phaze-training/
    coda experiment run phaze-training --quick --out /tmp/quick        # a small subspace, under a minute

Bad names, paths and options are refused in one line before any work; Ctrl-C keeps every finished
design in `--store` and the same command resumes (`coda.experiments`, docs/experiments.md).
"""

from __future__ import annotations

import argparse
import sys

from coda.cli._args import int_range, stderr_is_terminal, text
from coda.cli._output import print_table

EXIT_SIGINT, EXIT_SIGTERM = 130, 143


def _list(args: argparse.Namespace) -> int:
    from coda.experiments import list_experiments

    print_table(list_experiments(), title="experiments (coda experiment run NAME)")
    return 0


def _run(args: argparse.Namespace) -> int:
    import coda.experiments as experiments
    from coda.experiments.outputs import cli_command
    from coda.runs.executors import Terminated
    from coda.search import SearchInterrupted

    experiments.experiment(args.name)  # an unknown name: one line, before anything else
    try:
        experiments.run(args.name, out=args.out, store=args.store, executor=args.executor, jobs=args.jobs,
                                 quick=args.quick, timer=args.timer, command=cli_command(),
                                 progress=stderr_is_terminal() if args.progress is None else args.progress)
    except SearchInterrupted as stop:
        word = "interrupted" if stop.signal_name == "SIGINT" else "terminated"
        kept = (f"finished designs are stored in {stop.store}; run the same command to resume" if stop.store
                else "nothing was kept (no --store); add --store runs.sqlite to resume next time")
        print(f"coda: {word}: {kept}", file=sys.stderr)
        return EXIT_SIGINT if stop.signal_name == "SIGINT" else EXIT_SIGTERM
    except KeyboardInterrupt as err:
        print(f"coda: {'terminated' if isinstance(err, Terminated) else 'interrupted'}", file=sys.stderr)
        return EXIT_SIGTERM if isinstance(err, Terminated) else EXIT_SIGINT
    out = experiments.check_out_dir(args.out if args.out else experiments.default_out(args.name))
    print(f"wrote {', '.join(sorted(p.name for p in out.iterdir() if p.is_file()))} to {out}")
    meta = out / "metadata.json"
    if meta.exists():
        import json

        answer = json.loads(meta.read_text(encoding="utf-8")).get("answer")
        if answer:
            print()
            print(answer)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from coda.experiments.evaluator import EXECUTORS, TIMERS

    p = sub.add_parser("experiment", help="list or run the experiments that produce the README's tables and plots",
                       description=__doc__.splitlines()[0])
    verbs = p.add_subparsers(dest="verb", metavar="VERB", required=True)
    lst = verbs.add_parser("list", help="name, outputs and rough cost of each experiment")
    lst.set_defaults(handler=_list)
    r = verbs.add_parser("run", help="run one experiment and write its CSV, Markdown, PNG and command into a folder")
    r.add_argument("name", type=text("experiment name"), help="experiment to run (see `coda experiment list`)")
    r.add_argument("--out", default=None, help="output folder, created if its parent exists (default: "
                                               "experiments/NAME of the repository)")
    r.add_argument("--store", default=None, help="SQLite result store: finished designs are kept there, so an "
                                                 "interrupted run resumes (default: none)")
    r.add_argument("--executor", choices=EXECUTORS, default="process",
                   help="where designs are evaluated: process (default: a local process pool), inline, or ray "
                        "(pip install coda-llm[ray])")
    r.add_argument("--jobs", type=int_range(1, 4096, " (designs evaluated at once)"), default=None,
                   help="designs evaluated at once, >= 1 (default: the CPU count)")
    r.add_argument("--quick", action="store_true", help="a small subspace, under a minute (default: the full space)")
    r.add_argument("--timer", choices=TIMERS, default="predictor",
                   help="layer timer: predictor (default: summed predicted op latencies, fast) or ilp (PHAZE's "
                        "on-chip schedule; hours for the full space on 2 cores)")
    r.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bars on stderr (default: on when stderr is a terminal)")
    r.set_defaults(handler=_run)
