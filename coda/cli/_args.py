"""Argument checking shared by the subcommands: every value is refused where it enters.

Each `type=` callable here parses one flag's text and raises `argparse.ArgumentTypeError` with
the value, the valid range and the nearest valid choice; `Parser.error` prints that as one line
(`coda: error: coda train: argument --devices: ...`) and exits with code 2, before any work.
Output paths are probed for writing at parse time, so a bad `--plot` or `--trace` fails before
the computation rather than after it.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, NoReturn

from coda.errors import ConfigError
from coda.paths import writable_file

PLOT_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg")
"""File suffixes `--plot` and `--timeline` accept (matplotlib picks the format from it)."""


class Parser(argparse.ArgumentParser):
    """An `ArgumentParser` whose usage errors are one line on stderr and exit code 2.

    Subparsers inherit the class (`add_subparsers` uses the parent's type), so every subcommand
    reports a bad flag the way the CLI reports a `CodaError`.
    """

    def _get_value(self, action: argparse.Action, arg_string: str) -> object:
        """Name the field and the value in a `type=` error: ``argument --seq-len: seq_len=0 is ...``."""
        try:
            return super()._get_value(action, arg_string)
        except argparse.ArgumentError as err:
            if not isinstance(action.type, _Checked):
                raise
            shown = arg_string if len(arg_string) <= 40 else arg_string[:37] + "..."
            raise argparse.ArgumentError(action, f"{action.dest}={shown!r} {err.message}") from None

    def error(self, message: str) -> NoReturn:
        text = " ".join(message.split())
        self.exit(2, f"coda: error: {self.prog}: {text} (see `{self.prog} --help`)\n")


class _Checked:
    """A `type=` callable whose `ArgumentTypeError` messages leave the value out: `Parser`
    prefixes them with ``dest=value`` (``seq_len='0' is outside [1, ...]``)."""

    def __init__(self, parse: Callable[[str], Any], name: str) -> None:
        self.parse, self.__name__ = parse, name

    def __call__(self, value: str) -> Any:
        return self.parse(value)


def _power(n: int) -> str:
    """`1048576` -> `2^20 = 1048576`; other numbers as they are."""
    return f"2^{n.bit_length() - 1} = {n}" if n > 2 and n & (n - 1) == 0 else str(n)


def _as_int(text: str, lo: int, hi: int) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"is not an integer; give a whole number in [{lo}, {_power(hi)}]") from None


def _in_range(value: int, lo: int, hi: int, why: str) -> int:
    if not lo <= value <= hi:
        nearest = min(max(value, lo), hi)
        raise argparse.ArgumentTypeError(f"is outside [{lo}, {_power(hi)}]{why}; nearest valid: {nearest}")
    return value


def int_range(lo: int, hi: int, why: str = "") -> Callable[[str], int]:
    """A `type=` for an integer in [lo, hi]; `why` explains the upper bound (``" (devices in the
    largest cluster modelled)"``)."""
    return _Checked(lambda text: _in_range(_as_int(text, lo, hi), lo, hi, why), "integer")


def int_list(lo: int, hi: int, why: str = "") -> Callable[[str], tuple[int, ...]]:
    """A `type=` for `8` or `1,2,8`: integers in [lo, hi], returned as a tuple.

    `Parser` shows the whole value once; a bad entry of a list is named after it
    (``tp='1,-3' has -3, which is outside [1, ...]``), a single bad value is not repeated.
    """

    def parse(text: str) -> tuple[int, ...]:
        parts = [p.strip() for p in text.split(",")]
        if not text.strip() or any(not p for p in parts):
            raise argparse.ArgumentTypeError(f"is not an integer or a comma-separated list of them (each in "
                                             f"[{lo}, {_power(hi)}])")
        return tuple(entry(p, several=len(parts) > 1) for p in parts)

    def entry(part: str, several: bool) -> int:
        try:
            return _in_range(_as_int(part, lo, hi), lo, hi, why)
        except argparse.ArgumentTypeError as err:
            if not several:
                raise
            raise argparse.ArgumentTypeError(f"has {part}, which {err}") from None

    return _Checked(parse, "integer list")


def float_range(lo: float, hi: float, lo_open: bool = False, unit: str = "") -> Callable[[str], float]:
    """A `type=` for a finite float in [lo, hi] (or (lo, hi] with `lo_open`); NaN and inf refused."""
    left = "(" if lo_open else "["
    span = f"{left}{lo:g}, {hi:g}]{' ' + unit if unit else ''}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"is not a number; give one in {span}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"is not a finite number; give one in {span}")
        if value < lo or (lo_open and value == lo) or value > hi:
            nearest = f"{hi:g}" if value > hi else (f"a value just above {lo:g}" if lo_open else f"{lo:g}")
            raise argparse.ArgumentTypeError(f"is outside {span}; nearest valid: {nearest}")
        return value

    return _Checked(parse, "number")


def text(what: str) -> Callable[[str], str]:
    """A `type=` for a non-empty name (`what` says what it names)."""

    def parse(value: str) -> str:
        if not value.strip():
            raise argparse.ArgumentTypeError(f"is an empty {what}; give a name")
        return value

    return _Checked(parse, what)


def output_file(suffixes: Iterable[str] | None = None) -> Callable[[str], str]:
    """A `type=` for a file the command will write: refused at parse time if it is a directory,
    lacks one of `suffixes`, or cannot be opened for writing (its directory missing or
    read-only). The probe opens the file for appending and removes it again if it was new."""
    allowed = tuple(suffixes) if suffixes is not None else None

    def parse(value: str) -> str:
        check_writable(value, allowed)
        return value

    return _Checked(parse, "output file")


def check_writable(value: str, suffixes: tuple[str, ...] | None = None) -> Path:
    """`value` as a path that can be written (`coda.paths.writable_file`) with one of `suffixes`;
    raises `ArgumentTypeError`."""
    if not value.strip():
        raise argparse.ArgumentTypeError("is an empty path; give a file name")
    try:
        path = writable_file(value, "file")
    except ConfigError as err:  # argparse names the flag and the value already
        raise argparse.ArgumentTypeError(str(err).removeprefix(f"file {value!r}").lstrip(": ")) from None
    if suffixes is not None and path.suffix.lower() not in suffixes:
        raise argparse.ArgumentTypeError(f"has no image suffix; end it with one of {', '.join(suffixes)}")
    return path


def cluster_name() -> Callable[[str], str]:
    """A `type=` for `--cluster`: a preset name, or a cluster from its parts
    (`GPU:GPUS_PER_NODE:nvlink=<GBps>[:ib=<Gbps>]...`, `coda.arch.cluster_parts.SPEC_SYNTAX`), whose
    syntax and units are checked at parse time (the GPU and the device count when the cluster is
    built)."""

    def parse(value: str) -> str:
        if not value.strip():
            raise argparse.ArgumentTypeError("is an empty cluster; give a preset (`coda hardware clusters`) or a parts "
                                             "spec such as h100-sxm:8:nvlink=450GBps:ib=400Gbps")
        from coda.arch.cluster_parts import is_parts_spec, parse_spec

        if is_parts_spec(value):
            try:
                parse_spec(value)
            except ConfigError as err:  # argparse names the flag and the value already
                text = str(err).replace(f"cluster spec {value!r}", "cluster spec")
                raise argparse.ArgumentTypeError(text.removeprefix("cluster spec").lstrip(": ")) from None
        return value

    return _Checked(parse, "cluster")


def stderr_is_terminal() -> bool:
    """Whether stderr is an interactive terminal (progress is shown only there)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


__all__ = ["PLOT_SUFFIXES", "Parser", "check_writable", "cluster_name", "float_range", "int_list", "int_range",
           "output_file", "stderr_is_terminal", "text"]
