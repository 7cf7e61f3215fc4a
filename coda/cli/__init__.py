"""The `coda` command line: a thin layer over the library.

Every module in this package that defines `register(subparsers)` adds one subcommand; the
subcommand's handler receives the parsed namespace and returns an exit code. Any `CodaError`
becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from coda.errors import CodaError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coda",
        description="Co-design LLM accelerators and their distributed execution.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except CodaError as err:
        print(f"coda: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `coda ... | head`
        return 0


if __name__ == "__main__":
    sys.exit(main())
