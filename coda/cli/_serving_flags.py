"""Flags shared by `coda serve-search` and `coda serve-design`: the workload each capacity is
measured on, the P99 SLO, and how the search runs and reports. Each is declared once here and read
into the library's types (`coda.serving.capacity.Workload`) before any work."""

from __future__ import annotations

import argparse
from typing import Any

from coda.cli._args import float_range, int_range, output_file
from coda.cli.serve import lengths_spec
from coda.errors import ConfigError
from coda.models.config import MAX_SEQ_LEN
from coda.serving.trace import ARRIVALS, MAX_REQUESTS

TRACE_FLAGS = ("prompt_len", "output_len", "prompt_dist", "output_dist", "arrival", "cv")
"""Generated-workload flags a `--trace` replaces."""


def names(value: str, none: bool = False) -> tuple[str, ...]:
    """A comma-separated list of names; with `none`, the word 'none' is the empty list."""
    if none and value.strip().lower() == "none":
        return ()
    parts = tuple(p.strip() for p in value.split(","))
    if not value.strip() or any(not p for p in parts):
        raise argparse.ArgumentTypeError("is not a comma-separated list of names (e.g. h100-sxm,a100-sxm4-80gb)"
                                         + (" or 'none'" if none else ""))
    return parts


def add_workload_flags(p: argparse.ArgumentParser, trace: bool) -> None:
    """The generated workload (lengths, requests, seed) and, with `trace`, arrivals or a trace file."""
    tokens = int_range(1, MAX_SEQ_LEN, " (tokens; the longest context modelled)")
    w = p.add_argument_group("workload (generated, seeded" + ("; or --trace)" if trace else ")"))
    w.add_argument("--prompt-len", dest="prompt_len", type=tokens, default=None,
                   help="prompt tokens of every request (or --prompt-dist; default: none)")
    w.add_argument("--output-len", dest="output_len", type=tokens, default=None,
                   help="output tokens of every request (or --output-dist; default: none)")
    w.add_argument("--prompt-dist", dest="prompt_dist", type=lengths_spec, default=None,
                   help="prompt lengths: fixed:N, uniform:LO:HI, zipf:LO:HI:A or csv:PATH (default: none)")
    w.add_argument("--output-dist", dest="output_dist", type=lengths_spec, default=None,
                   help="output lengths, as --prompt-dist (default: none)")
    if trace:
        w.add_argument("--trace", metavar="FILE", default=None,
                       help="a trace (CSV or JSON of arrival_s, prompt_tokens, output_tokens), rescaled to each rate "
                            "tried, instead of generated requests (default: none)")
    w.add_argument("--requests", type=int_range(1, MAX_REQUESTS, " (requests)"), default=300,
                   help="requests per replica per simulation (default: 300)")
    if trace:
        w.add_argument("--arrival", choices=ARRIVALS, default=None, help="arrival process (default: poisson)")
        w.add_argument("--cv", type=float_range(0, 100, lo_open=True), default=None,
                       help="gamma arrivals' coefficient of variation, in (0, 100] (default: 1)")
    w.add_argument("--seed", type=int_range(0, 2**63 - 1), default=0, help="seed of the workload (default: 0)")


def workload(args: argparse.Namespace, command: str, cfg: Any = None) -> Any:
    """The `Workload` (or, with `--trace`, the loaded `Trace`) the flags of `add_workload_flags` give."""
    from coda.serving.capacity import Workload
    from coda.serving.trace import Lengths, load_trace

    if getattr(args, "trace", None) is not None:
        for flag in TRACE_FLAGS:
            if getattr(args, flag) is not None:
                raise ConfigError(f"--{flag.replace('_', '-')}: the trace gives the lengths and arrivals; leave it "
                                  "out with --trace")
        return load_trace(args.trace, cfg)
    lengths = {}
    for which in ("prompt", "output"):
        fixed, dist = getattr(args, f"{which}_len"), getattr(args, f"{which}_dist")
        if fixed is not None and dist is not None:
            raise ConfigError(f"--{which}-len {fixed} and --{which}-dist: give one (a fixed length or a distribution)")
        if fixed is None and dist is None:
            raise ConfigError(f"{command} needs --{which}-len N or --{which}-dist (e.g. uniform:64:2048), tokens"
                              + (", or --trace FILE" if hasattr(args, "trace") else ""))
        lengths[which] = dist if dist is not None else Lengths("fixed", int(fixed))
    cv, arrival = getattr(args, "cv", None), getattr(args, "arrival", None)
    if cv is not None and arrival != "gamma":
        raise ConfigError(f"--cv {cv:g} shapes gamma arrivals; add --arrival gamma or leave --cv out")
    return Workload(lengths["prompt"], lengths["output"], requests=args.requests,
                    arrival="poisson" if arrival is None else arrival, cv=1.0 if cv is None else cv, seed=args.seed)


def add_slo_flags(group: argparse._ArgumentGroup) -> None:
    """The P99 TTFT and TBT targets, seconds."""
    group.add_argument("--slo-ttft-p99", dest="slo_ttft_p99", type=float_range(0, 1e6, lo_open=True, unit="s"),
                       default=None,
                       help="target on the 99th percentile of time to first token, seconds (default: none)")
    group.add_argument("--slo-tbt-p99", dest="slo_tbt_p99", type=float_range(0, 1e6, lo_open=True, unit="s"),
                       default=None,
                       help="target on the 99th percentile of time between tokens, seconds (default: none)")
    group.add_argument("--rel-tol", dest="rel_tol", type=float_range(0, 1, lo_open=True), default=0.05,
                       help="capacity grid step: rates (1 + tol)^k requests/s (default: 0.05)")


def add_run_flags(p: argparse.ArgumentParser, what: str, top: int, csv_help: str, jobs_invariant: bool) -> None:
    """Pruning, the store, the executor, and what is printed or written; `what` names the rows;
    `jobs_invariant`: the frame is the same with any number of workers (said in --jobs' help)."""
    r = p.add_argument_group("execution and output")
    r.add_argument("--prune", action=argparse.BooleanOptionalAction, default=True,
                   help="skip deployments that cannot win (docs/serving.md, Exactness; --no-prune measures every one) "
                        "(default: on)")
    r.add_argument("--store", metavar="FILE", type=output_file(), default=None,
                   help="SQLite store of finished deployments: resume an interrupted search (default: none)")
    r.add_argument("--jobs", type=int_range(1, 1024, " (processes)"), default=None,
                   help="worker processes" + ("; the answer is the same with any number" if jobs_invariant else "")
                        + " (default: the CPUs)")
    r.add_argument("--executor", choices=("process", "inline", "ray"), default="process",
                   help="where deployments are evaluated (default: process)")
    r.add_argument("--top", type=int_range(1, 10**6), default=top, help=f"{what} printed (default: {top})")
    r.add_argument("--csv", metavar="OUT.csv", type=output_file(), default=None, help=f"{csv_help} (default: none)")
    r.add_argument("--json", action="store_true", help="machine-readable output (default: off, tables)")
