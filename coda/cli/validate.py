"""`coda validate TARGET`: print the accuracy tables that check coda against measured data.

Each target is a library function returning a list of `(title, DataFrame)` sections; this
module only maps names to those functions and prints them.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from coda.cli._args import stderr_is_terminal
from coda.cli._output import print_json, print_table
from coda.units import markdown_table

# name -> "module:function"; the function takes no arguments and returns [(title, DataFrame)].
TARGETS: dict[str, str] = {
    "predictor": "coda.predictor.validation:predictor_report",
    "collectives": "coda.arch.collectives_fit:collectives_report",
    "e2e": "coda.evaluate.e2e_validation:e2e_report",
    "training": "coda.evaluate.training_validation:training_report",
    "inference": "coda.evaluate.inference_validation:inference_report",
    "accelerator": "coda.evaluate.accelerator_validation:accelerator_report",
    "serving": "coda.serving.validation:serving_report",
    "acceptance": "coda.evaluate.acceptance:acceptance_report",
}


@contextmanager
def _progress(label: str) -> Iterator[None]:
    """While the body runs: a live elapsed-time line (tqdm) on stderr if it is a terminal, else the
    one line ``coda: <label> ...``."""
    from tqdm import tqdm

    if not stderr_is_terminal():
        print(f"coda: {label} ...", file=sys.stderr)
        yield
        return
    done = threading.Event()
    with tqdm(desc=f"coda: {label}", total=None, bar_format="{desc} {elapsed}", file=sys.stderr, leave=False) as bar:
        def tick() -> None:  # redraw the elapsed time twice a second until the body ends
            while not done.wait(0.5):
                bar.refresh()

        ticker = threading.Thread(target=tick, daemon=True)
        ticker.start()
        try:
            yield
        finally:
            done.set()
            ticker.join()


def _run(args: argparse.Namespace) -> int:
    module_name, func_name = TARGETS[args.target].split(":")
    with _progress(f"validating {args.target}"):
        sections = getattr(importlib.import_module(module_name), func_name)()
    if args.json:
        print_json({title: df.to_dict(orient="records") for title, df in sections})
    elif args.markdown:
        print("\n\n".join(markdown_table(df, title) for title, df in sections))
    else:
        for i, (title, df) in enumerate(sections):
            if i:
                print()
            print_table(df, title=title)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("validate", help="compare coda's predictions with measured data")
    p.add_argument("target", choices=sorted(TARGETS), help="what to validate")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="machine-readable output (default: off, tables)")
    out.add_argument("--markdown", action="store_true", help="markdown tables, as in the docs (default: off)")
    p.set_defaults(handler=_run)
