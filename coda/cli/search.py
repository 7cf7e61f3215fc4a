"""`coda search`: the best accelerator design of a design space for training one model.

    coda search --model gpt2 --devices 16 --global-batch 64 --seq-len 512 \\
        --n-tc 2,8 --n-vc 1,2 --tc-rows 64,128 --tc-cols 64,128 --glb-mib 32,128 --store runs.sqlite

Ranges default to PHAZE's space and budget (`DesignSpace.phaze()`); each design runs on
`--devices` chips of the TPU-v4-like torus, its bandwidth set by the design's links (`--n-links`,
`--link-gbps`; `coda.search.search`, docs/search.md), with the best
plan among `--tp`, `--pp`, `--micro-batch`, `--recompute` and `--zero` (lists; defaults
`coda.search.DEFAULT_CHOICES`), the same for the `--gpu-reference` rows.
"""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

import pandas as pd

from coda.cli._output import print_json, print_table
from coda.errors import CodaError, ConfigError
from coda.plotting import pyplot, save_figure

TABLE_COLUMNS = ("rank", "name", "hbm_bytes", "area_mm2", "tdp_w", "peak_flops", "plan", "tokens_per_s",
                 "tokens_per_s_per_w", "mfu", "peak_memory_bytes", "bound_objective")


EXIT_SIGINT, EXIT_SIGTERM = 130, 143
"""Exit codes of an interrupted search: 128 + the signal number, as shells report them."""
PLOT_SUFFIXES = (".png", ".svg", ".pdf")


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _space(args: argparse.Namespace) -> Any:
    from coda.arch.accelerators import tpuv4_like
    from coda.arch.design_space import DesignSpace
    from coda.units import GiB, MiB

    over: dict[str, Any] = {}
    for flag in ("n_tc", "n_vc", "tc_rows", "tc_cols"):
        if getattr(args, flag) is not None:
            over[flag] = getattr(args, flag)
    if args.glb_mib is not None:
        over["glb_bytes"] = tuple(m * MiB for m in args.glb_mib)
    if args.hbm_gib is not None:
        over["hbm_bytes"] = tuple(g * GiB for g in args.hbm_gib)
    if args.n_links is not None:
        over["n_links"] = args.n_links
    if args.link_gbps is not None:
        over["link_bw_bytes_per_s"] = tuple(g * 1e9 for g in args.link_gbps)
    area = args.max_area_mm2 if args.max_area_mm2 is not None else tpuv4_like().area_mm2
    return DesignSpace(max_area_mm2=area, min_area_fraction=args.min_area_fraction, max_tdp_w=args.max_tdp_w, **over)


def _display(df: pd.DataFrame, links: bool = False) -> pd.DataFrame:
    out = df[[c for c in TABLE_COLUMNS if c in df.columns]].copy()
    if links:  # a link axis: each row's links, e.g. 6x50 (links x GB/s per link per direction)
        out.insert(out.columns.get_loc("area_mm2"), "links_x_GBps",
                   [f"{int(n)}x{b / 1e9:g}" if pd.notna(n) else "" for n, b in
                    zip(df["n_links"], df["link_bw_bytes_per_s"])])
    out["hbm_GiB"] = out.pop("hbm_bytes").astype(float) / 2**30
    out["peak_TFLOPs"] = out.pop("peak_flops").astype(float) / 1e12
    out["peak_mem_GiB"] = out.pop("peak_memory_bytes").astype(float) / 2**30
    out["bound"] = out.pop("bound_objective")
    return out


def _names(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


PLACEMENT_FLAGS = ("tp", "pp", "micro_batch", "recompute", "zero")
"""Placement choices `coda search` takes as comma lists (the rest keep `DEFAULT_CHOICES`)."""


def _choices(args: argparse.Namespace) -> dict[str, Any]:
    return {flag: getattr(args, flag) for flag in PLACEMENT_FLAGS if getattr(args, flag) is not None}


def _plot(result: Any, path: str, gpus: pd.DataFrame, front: pd.DataFrame | None) -> None:
    plt = pyplot("--plot")
    ok = result.frame[result.frame["status"] == "ok"]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter(ok["tdp_w"], ok["tokens_per_s"], s=12, label="designs")
    if front is not None:
        ax.step(front["tdp_w"], front["tokens_per_s"], where="post", c="tab:orange", lw=1, label="Pareto front")
    if result.best is not None:
        ax.scatter([result.best["tdp_w"]], [result.best["tokens_per_s"]], marker="*", s=150, c="tab:red",
                   label=f"best ({result.objective})")
    for marker, (_, ref) in zip("sP", result.references().iterrows()):
        if ref["status"] == "ok":
            ax.scatter([ref["tdp_w"]], [ref["tokens_per_s"]], marker=marker, s=50, c="black", label=ref["name"])
    for marker, (_, g) in zip("^vD", gpus[gpus["status"] == "ok"].iterrows()):
        ax.scatter([g["tdp_w"]], [g["tokens_per_s"]], marker=marker, s=60, c="tab:green", label=f"{g['name']} (board)")
    ax.set_xlabel("TDP per chip (W)")
    ax.set_ylabel("training tokens/s (cluster)")
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path, "--plot")


LIST_FLAGS = {"n_tc": "--n-tc", "n_vc": "--n-vc", "tc_rows": "--tc-rows", "tc_cols": "--tc-cols",
              "glb_mib": "--glb-mib", "hbm_gib": "--hbm-gib", "n_links": "--n-links", "link_gbps": "--link-gbps",
              "tp": "--tp", "pp": "--pp",
              "micro_batch": "--micro-batch", "recompute": "--recompute", "zero": "--zero",
              "gpu_reference": "--gpu-reference"}
"""Comma-list flags by destination (an empty list, e.g. `--n-tc ,`, is refused)."""
POW2_FLAGS = {"tc_rows": "--tc-rows", "tc_cols": "--tc-cols"}


def _at_least(flag: str, value: Any, low: float, what: str) -> None:
    if value is not None and not (math.isfinite(value) and value >= low):
        raise ConfigError(f"{flag} {value} is out of range: {what} must be a finite number >= {low:g}")


def _check_args(args: argparse.Namespace) -> None:
    """Every flag's range, before any work (one `ConfigError` naming the flag, its value and its range)."""
    _check_scalars(args)
    _check_lists(args)
    _check_outputs(args)


def _check_scalars(args: argparse.Namespace) -> None:
    """Counts >= 1, budgets finite and positive, the area fraction in [0, 1], the ILP time >= 0."""
    for dest, flag, what in (("devices", "--devices", "devices (chips) per design"),
                             ("global_batch", "--global-batch", "sequences per step"),
                             ("seq_len", "--seq-len", "tokens per sequence"), ("top", "--top", "designs to list"),
                             ("max_designs", "--max-designs", "new designs to evaluate"),
                             ("workers", "--workers", "designs in flight"),
                             ("ilp_node_limit", "--ilp-node-limit", "branch-and-bound nodes per ILP solve")):
        v = getattr(args, dest)
        if v is not None and v < 1:
            raise ConfigError(f"{flag} {v} is out of range: {what} must be an integer >= 1")
    if args.max_area_mm2 is not None and not (math.isfinite(args.max_area_mm2) and args.max_area_mm2 > 0):
        raise ConfigError(f"--max-area-mm2 {args.max_area_mm2} is out of range: the area budget must be a finite "
                          "number of mm2 > 0 (default the TPUv4-like chip's)")
    if not (math.isfinite(args.min_area_fraction) and 0 <= args.min_area_fraction <= 1):
        raise ConfigError(f"--min-area-fraction {args.min_area_fraction} is out of range: it must lie in [0, 1]")
    if args.max_tdp_w is not None and not (math.isfinite(args.max_tdp_w) and args.max_tdp_w > 0):
        raise ConfigError(f"--max-tdp-w {args.max_tdp_w} is out of range: the TDP budget must be a finite number "
                          "of W > 0 (or leave it out for no budget)")
    _at_least("--ilp-time-limit", args.ilp_time_limit, 0, "the ILP time per layer graph (seconds; 0: heuristic)")
    if not (math.isfinite(args.tie_tol) and 0 <= args.tie_tol < 1):
        raise ConfigError(f"--tie-tol {args.tie_tol} is out of range: the near-tie tolerance must lie in [0, 1) "
                          "(default 0.02)")


def _check_lists(args: argparse.Namespace) -> None:
    """Lists not empty, their values >= 1, tensor-core sides powers of two."""
    for dest, flag in LIST_FLAGS.items():
        v = getattr(args, dest)
        if v is not None and dest != "gpu_reference" and len(v) == 0:
            raise ConfigError(f"{flag} lists no value; give comma-separated values, e.g. {flag} 2,8, or leave the "
                              "flag out for its default")
    for dest in ("n_tc", "n_vc", "tc_rows", "tc_cols", "glb_mib", "hbm_gib", "n_links", "tp", "pp", "micro_batch"):
        bad = [v for v in getattr(args, dest) or () if v < 1]
        if bad:
            raise ConfigError(f"{LIST_FLAGS[dest]} {bad[0]} is out of range: values must be integers >= 1")
    bad_bw = [v for v in args.link_gbps or () if not (math.isfinite(v) and v > 0)]
    if bad_bw:
        raise ConfigError(f"--link-gbps {bad_bw[0]} is out of range: link bandwidths must be finite numbers of GB/s "
                          "> 0 (per link, per direction; the TPU v4's are 50)")
    for dest, flag in POW2_FLAGS.items():
        for v in getattr(args, dest) or ():
            if v & (v - 1):
                lo = 1 << (v.bit_length() - 1)
                raise ConfigError(f"{flag} {v} is not a power of two: tensor-core sides must be powers of two "
                                  f"(PHAZE: 2..256); use {lo} or {2 * lo}")


def _check_outputs(args: argparse.Namespace) -> None:
    """The plot file (writable, an image suffix, matplotlib present) and the GPU reference rows."""
    if args.plot is not None:
        from coda.search import check_output_path

        check_output_path(args.plot, "--plot")
        if not args.plot.lower().endswith(PLOT_SUFFIXES):
            raise ConfigError(f"--plot {args.plot!r}: the file name must end in {', '.join(PLOT_SUFFIXES)} "
                              "(the image format)")
        pyplot("--plot")  # matplotlib missing: say so now, not after the search
    if args.gpu_reference:
        from coda.search.gpu_reference import check_gpu_reference

        try:
            check_gpu_reference(args.gpu_reference, args.devices)
        except CodaError as err:
            raise ConfigError(f"--gpu-reference {','.join(args.gpu_reference)}: {err}") from None


def _interrupted(stop: Any) -> int:
    """One line on stderr for an interrupted search; the exit code (130 for SIGINT, 143 for SIGTERM)."""
    word = "interrupted" if stop.signal_name == "SIGINT" else "terminated"
    if stop.store is not None:
        print(f"coda: {word}: {stop.n_stored} designs stored in {stop.store}; run the same command to resume",
              file=sys.stderr)
    else:
        print(f"coda: {word}: {stop.n_new} designs evaluated and not kept (no --store); add --store runs.sqlite "
              "to keep finished designs and resume", file=sys.stderr)
    return EXIT_SIGINT if stop.signal_name == "SIGINT" else EXIT_SIGTERM


def _run(args: argparse.Namespace) -> int:
    from coda.placement import predictor_layer_time
    from coda.runs.executors import Terminated, terminate_as_interrupt
    from coda.search import SearchInterrupted, SearchLayerTime, gpu_reference, search

    _check_args(args)
    timer = predictor_layer_time if args.timer == "predictor" else SearchLayerTime(time_limit_s=args.ilp_time_limit,
                                                                                       node_limit=args.ilp_node_limit)
    progress = sys.stderr.isatty() if args.progress is None else args.progress
    with terminate_as_interrupt():
        try:
            result = search(args.model, _space(args), args.devices, args.global_batch, args.seq_len,
                            objective=args.objective, store=args.store, max_designs=args.max_designs,
                            progress=progress, layer_time=timer, executor=args.executor, workers=args.workers,
                            prune=args.prune, pareto=args.pareto, choices=_choices(args), tie_tol=args.tie_tol)
        except SearchInterrupted as stop:
            return _interrupted(stop)
        except KeyboardInterrupt as err:  # before the first design: nothing was evaluated
            print(f"coda: {'terminated' if isinstance(err, Terminated) else 'interrupted'} before any design was "
                  "evaluated", file=sys.stderr)
            return EXIT_SIGTERM if isinstance(err, Terminated) else EXIT_SIGINT
        try:
            return _report(args, result, gpu_reference)
        except KeyboardInterrupt as err:
            kept = f"its designs are stored in {args.store}" if args.store else "nothing was kept (no --store)"
            print(f"coda: {'terminated' if isinstance(err, Terminated) else 'interrupted'} after the search "
                  f"finished; {kept}", file=sys.stderr)
            return EXIT_SIGTERM if isinstance(err, Terminated) else EXIT_SIGINT


def _report(args: argparse.Namespace, result: Any, gpu_reference: Any) -> int:
    """GPU rows, plot and output of a finished search; the summary sentence comes last."""
    front = result.front() if args.pareto else None
    space = _space(args)
    links = len(space.n_links) * len(space.link_bw_bytes_per_s) > 1
    gpus = gpu_reference(args.model, args.gpu_reference or (), args.devices, args.global_batch, args.seq_len,
                         choices=_choices(args))
    if args.plot:
        _plot(result, args.plot, gpus, front)
    summary, short = result.summary(gpus), result.shortfall(args.top)
    if args.json:
        print_json(dict(counts=result.counts(), objective=result.objective,
                        top=result.frame[result.frame["status"] == "ok"].head(args.top).to_dict(orient="records"),
                        reference=result.reference.to_dict(), gpu_references=gpus.to_dict(orient="records"),
                        faithful_reference=None if result.faithful_reference is None
                        else result.faithful_reference.to_dict(),
                        pareto=None if front is None else front.to_dict(orient="records"),
                        infeasible=result.frame[result.frame["status"] != "ok"][["name", "reason"]]
                        .to_dict(orient="records"), near_ties=result.near_ties()["name"].tolist(),
                        tie_tol=result.tie_tol, shortfall=short, summary=summary))
        return 0
    c = result.counts()
    print(f"designs {c['designs']}: evaluated {c['evaluated']}, cached {c['cached']}, pruned by bound "
          f"{c['pruned_by_bound']}, infeasible {c['infeasible']}, unvisited {c['unvisited']} "
          f"({'exact' if c['complete'] else 'incomplete: max-designs reached'}, {c['seconds']:.1f} s)")
    if c["ilp_clock_limited"] or c["ilp_solver_errors"]:
        print(f"note: {c['ilp_clock_limited']} layer schedules were cut by --ilp-time-limit and "
              f"{c['ilp_solver_errors']} solver runs failed (heuristic kept): those designs' numbers may differ on a "
              "machine under another load")
    print()
    table = pd.concat([result.table(args.top), gpus.assign(rank="gpu")], ignore_index=True)
    n_listed = int((table["rank"] != "ref").sum() - len(gpus))
    title = (f"top {args.top} by {result.objective} (per W of cluster TDP), PHAZE's TPUv4-like reference, the "
             "faithful TPU v4"
             f"{', and GPUs on DGX nodes (board TDP, die area)' if len(gpus) else ''}")
    if short is not None:
        title += f"; {n_listed} listed: {short}"
    print_table(_display(table, links), title=title)
    if front is not None:
        print()
        print_table(_display(front.assign(rank=range(1, len(front) + 1)), links),
                    title="Pareto front over every design: no other design has lower TDP per chip and more tokens/s")
    if c["infeasible"]:
        print()
        bad = result.frame[result.frame["status"] != "ok"][["name", "hbm_bytes", "reason"]]
        print_table(bad.head(args.top), title="infeasible designs")
    if args.plot:
        print(f"\nplot: {args.plot}")
    print()
    print(summary)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from coda.search import EXECUTORS, OBJECTIVES

    p = sub.add_parser("search", help="search a design space for the best accelerator (exact, bound-pruned)",
                       description="Find the design of an accelerator design space that trains a model best on a "
                                   "TPU-v4-like torus of --devices chips; ranges default to PHAZE's space. Ctrl-C or "
                                   "SIGTERM stores the finished designs (with --store) and exits 130 / 143.")
    p.add_argument("--model", required=True, help="model preset name or Hugging Face config.json path (required)")
    p.add_argument("--devices", type=int, required=True,
                   help="devices (chips) per design in the TPU-v4-like torus, >= 1: at most 16 or a multiple of 16 "
                        "(required)")
    p.add_argument("--global-batch", type=int, required=True, help="sequences per optimizer step, >= 1 (required)")
    p.add_argument("--seq-len", type=int, required=True, help="tokens per sequence, >= 1 (required)")
    p.add_argument("--objective", choices=OBJECTIVES, default="tokens_per_s_per_w",
                   help="ranking objective: tokens_per_s_per_w (tokens/s per W of cluster TDP, the default) or "
                        "tokens_per_s")
    p.add_argument("--n-tc", dest="n_tc", type=_ints,
                   help="tensor cores per chip, comma list, e.g. 2,8 (default PHAZE's powers of two 1..4096)")
    p.add_argument("--n-vc", dest="n_vc", type=_ints,
                   help="vector cores per chip, comma list, e.g. 1,2 (default PHAZE's powers of two 1..4096)")
    p.add_argument("--tc-rows", dest="tc_rows", type=_ints,
                   help="tensor-core rows (PEs), powers of two, comma list (default 2..256)")
    p.add_argument("--tc-cols", dest="tc_cols", type=_ints,
                   help="tensor-core columns (PEs), powers of two, comma list (default 2..256)")
    p.add_argument("--glb-mib", dest="glb_mib", type=_ints,
                   help="global buffer sizes, MiB, comma list (default powers of two 2..128 MiB)")
    p.add_argument("--hbm-gib", dest="hbm_gib", type=_ints, help="HBM capacities per chip, GiB, comma list "
                   "(default 32 GiB)")
    p.add_argument("--n-links", dest="n_links", type=_ints,
                   help="inter-chip links per chip, comma list of multiples of 3 (the torus's axes), e.g. 3,6,12 "
                        "(default 6, the TPU v4's); they set the design's collective bandwidth and cost TDP")
    p.add_argument("--link-gbps", dest="link_gbps", type=_floats,
                   help="bandwidth of one link per direction, GB/s, comma list (default 50, the TPU v4's)")
    p.add_argument("--max-area-mm2", type=float, default=None,
                   help="area budget per chip, mm2 in the 22 nm model, finite > 0 (default the TPUv4-like chip's "
                        "278.83 mm2)")
    p.add_argument("--min-area-fraction", type=float, default=0.3,
                   help="designs must use at least this fraction of the area budget, in [0, 1] (default PHAZE's "
                        "0.3; designs with one tensor or vector core are exempt)")
    p.add_argument("--max-tdp-w", type=float, default=None,
                   help="TDP budget per chip, W, finite > 0 (default: no budget)")
    p.add_argument("--tp", type=_ints,
                   help="tensor-parallel widths, comma list; one must divide --devices (default 1,2,4,8)")
    p.add_argument("--pp", type=_ints, help="pipeline depths, comma list (default: every depth that fits)")
    p.add_argument("--micro-batch", dest="micro_batch", type=_ints,
                   help="micro-batch sizes, sequences, comma list (default 1,2,4)")
    p.add_argument("--recompute", type=_names,
                   help="activation recomputation modes, comma list of none, selective, full (default none,full)")
    p.add_argument("--zero", type=_ints, help="ZeRO stages, comma list of 0, 1, 3 (default 0,1)")
    p.add_argument("--max-designs", type=int, default=None,
                   help="evaluate at most this many new designs, >= 1, then stop; rerun with the same --store to "
                        "resume (default: no limit)")
    p.add_argument("--store", default=None,
                   help="SQLite result store file: each finished design is written at once and reused by later "
                        "runs; created if missing, refused if another program's (default: none, nothing is kept)")
    p.add_argument("--timer", choices=("ilp", "predictor"), default="ilp",
                   help="layer times: the on-chip ILP schedule (default ilp) or the sum of predicted op latencies "
                        "(predictor, ~50x faster)")
    p.add_argument("--ilp-node-limit", type=int, default=5000,
                   help="branch-and-bound nodes per ILP solve, integer >= 1 (default 5000): a budget that gives "
                        "the same result on a busy and an idle machine")
    p.add_argument("--ilp-time-limit", type=float, default=60.0,
                   help="ILP wall-time safety net per layer graph, seconds, finite >= 0 (default 60; 0: the "
                        "list-scheduling heuristic only); a layer it cuts is counted in the ilp_clock_limited "
                        "column, since its result may depend on machine load")
    p.add_argument("--executor", choices=EXECUTORS, default="process",
                   help="where designs are evaluated: process (default: a local process pool whose workers end "
                        "with coda), inline (one at a time in this process) or ray (Ray tasks on RAY_ADDRESS or a "
                        "local Ray; pip install coda-llm[ray])")
    p.add_argument("--workers", type=int, default=None,
                   help="designs evaluated at once, >= 1 (default: the CPU count, at most the designs to evaluate; "
                        "1 runs inline)")
    p.add_argument("--top", type=int, default=10, help="designs to list, >= 1 (default 10)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: on when stderr is a terminal)")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables (default: tables)")
    p.add_argument("--tie-tol", dest="tie_tol", type=float, default=0.02,
                   help="relative tolerance of the near ties reported with the best design: every design within it "
                        "is evaluated, never pruned, fraction in [0, 1) (default 0.02)")
    p.add_argument("--pareto", action="store_true",
                   help="also find and print the tokens/s vs TDP Pareto front, exactly: a design is then pruned only "
                        "when its bound is also dominated by an evaluated design (default: off)")
    p.add_argument("--prune", action=argparse.BooleanOptionalAction, default=True,
                   help="skip designs the bounds prove unneeded (default on; --no-prune evaluates every design)")
    p.add_argument("--gpu-reference", type=_names, default=None, metavar="GPUS",
                   help="comma list of Ampere or Hopper GPUs (e.g. a100-sxm4-80gb,h100-sxm) to also run on --devices "
                        "GPUs of their DGX nodes, for comparison (default: none)")
    p.add_argument("--plot", default=None,
                   help="write a tokens/s vs TDP scatter to this .png/.svg/.pdf file (needs matplotlib; default: "
                        "no plot)")
    p.set_defaults(handler=_run)
