"""The `coda` command line: a thin layer over the library.

Every module in this package that defines `register(subparsers)` adds one subcommand; the
subcommand's handler receives the parsed namespace and returns an exit code. Bad input never
ends in a traceback: a malformed flag (`coda.cli._args.Parser`) or any `CodaError` becomes one
line on stderr and exit code 2; Ctrl-C becomes one line, `coda: interrupted`, and exit code 130.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from coda import __version__
from coda.cli._args import Parser
from coda.errors import CodaError

EXIT_USAGE = 2
"""Exit code of bad input (argparse's convention)."""
EXIT_INTERRUPTED = 130
"""Exit code after Ctrl-C (128 + SIGINT, the shell's convention)."""


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="coda",
        description="Co-design LLM accelerators and their distributed execution.",
    )
    parser.add_argument("--version", action="version", version=f"coda {__version__}",
                        help="print `coda <version>` and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        module.register(sub)
    return parser


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def main(argv: Sequence[str] | None = None) -> int:
    """Run one `coda` command; returns its exit code (0 ok, 2 bad input, 130 interrupted).

    `--help` and `--version` raise `SystemExit(0)` after printing, as argparse does.

    A subcommand with more to say on Ctrl-C (where to resume) prints its own line and returns
    130, or raises `KeyboardInterrupt("...")`, whose message is appended to `coda: interrupted`.
    """
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as done:  # --help and --version exit 0 as argparse does; a usage error returns 2
            if not done.code:
                raise
            return done.code if isinstance(done.code, int) else EXIT_USAGE
        return int(args.handler(args) or 0)
    except CodaError as err:
        print(f"coda: error: {_one_line(str(err))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as err:
        detail = _one_line(" ".join(str(a) for a in err.args))
        print(f"coda: interrupted{': ' + detail if detail else ''}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # `coda ... | head`
        return 0


if __name__ == "__main__":
    sys.exit(main())
