"""`coda schedule MODEL`: the on-chip operator schedule of one layer on one accelerator."""

from __future__ import annotations

import argparse
import re

import pandas as pd

from coda import models
from coda.arch.accelerators import PRESETS, Accelerator, accelerator_preset
from coda.cli._args import PLOT_SUFFIXES, float_range, int_range, output_file, text
from coda.cli._output import print_json, print_table
from coda.errors import ConfigError
from coda.ilp import (
    DEFAULT_GAP,
    DEFAULT_TIME_LIMIT_S,
    Solver,
    roofline_latencies,
    schedule,
)
from coda.models.config import MAX_HEADS, MAX_SEQ_LEN
from coda.plotting import pyplot
from coda.units import MiB, fmt_si

PHASES = ("forward", "backward")
MAX_BATCH = 2**20
"""Most sequences in one micro-batch (far above any device's memory at any length)."""
MAX_TIME_LIMIT_S = 86400.0
"""Longest solver time limit the CLI takes: one day."""
_DESIGN = re.compile(r"^(\d+)x(\d+)x(\d+)tc-(\d+)x(\d+)vc-(\d+)MiB$")


def parse_design(text: str) -> Accelerator:
    """A preset name (``tpuv4-like``) or a template spec as `Accelerator.default_name()` writes it:
    ``NTCxROWSxCOLStc-NVCxLANESvc-GLBMiB``, e.g. ``2x256x256tc-2x256vc-128MiB``."""
    if text.lower() in PRESETS:
        return accelerator_preset(text)
    m = _DESIGN.match(text)
    if not m:
        raise ConfigError(f"design {text!r} is neither a preset ({', '.join(PRESETS)}) nor a spec like "
                          "'2x256x256tc-2x256vc-128MiB' (tensor cores x rows x cols, vector cores x lanes, GLB)")
    n_tc, rows, cols, n_vc, lanes, glb = (int(v) for v in m.groups())
    return Accelerator(n_tc=n_tc, tc_rows=rows, tc_cols=cols, n_vc=n_vc, vc_lanes=lanes, glb_bytes=glb * MiB)
PREDICTORS = ("tiles", "roofline")


def _run(args: argparse.Namespace) -> int:
    cfg = models.get(args.model)
    seq_len = cfg.max_seq_len if args.seq_len is None else args.seq_len
    model = models.build(cfg, args.phase, batch=args.batch, seq_len=seq_len, tp=args.tp)
    names = [g.name for g, _ in model.layers]
    match = [g for g, _ in model.layers if args.layer in (g.name, g.name.split(".")[0])]
    if not match:
        raise ConfigError(f"layer {args.layer!r} is not in {cfg.name} ({args.phase}); choose one of {', '.join(names)}")
    graph = match[0]
    acc = parse_design(args.design)
    latencies = roofline_latencies(graph, acc) if args.predictor == "roofline" else None
    if args.timeline:
        pyplot("--timeline")  # matplotlib is there before the solve
    s = schedule(graph, acc, latencies, solver=args.solver, time_limit_s=args.time_limit, gap=args.gap, fuse=args.fuse)
    try:
        if args.trace:
            s.to_chrome_trace(args.trace)
        if args.timeline:
            s.plot_timeline(args.timeline)
    except OSError as err:  # checked writable at parse time; the disk may still fill or vanish
        raise ConfigError(f"cannot write {err.filename or 'output'}: {err.strerror or err}") from None
    if args.json:
        print_json({"schema": "coda.ilp.schedule/1", "model": cfg.name, "phase": args.phase, "layer": graph.name,
                    "tp": args.tp, "batch": args.batch, "seq_len": model.seq_len, "predictor": args.predictor,
                    "summary": s.summary(), "ops": s.to_frame().to_dict(orient="records")})
        return 0
    df = s.to_frame()
    table = pd.DataFrame({
        "op": df["name"], "core_type": df["core_type"], "start_us": df["start_s"] * 1e6, "end_us": df["end_s"] * 1e6,
        "dur_us": df["duration_s"] * 1e6, "parallel": df["parallel"], "cores": df["cores"],
    })
    print_table(table, title=f"{cfg.name} {graph.name} (tp {args.tp}, batch {args.batch}, "
                             f"seq {model.seq_len}) on {acc.name}: {acc.n_tc} tensor + {acc.n_vc} vector cores")
    u = s.utilisation
    print()
    print(f"makespan {fmt_si(s.makespan_s, 's', 4)}  lower bound {fmt_si(s.lower_bound_s, 's', 4)}  "
          f"gap {s.gap:.2%}  status {s.status.value}  solver {s.solver}  solve {s.solve_time_s:.3f} s  "
          f"binaries {s.n_binaries}")
    print(f"sequential sum {fmt_si(s.sequential_s, 's', 4)} ({s.sequential_s / s.makespan_s:.3f}x the makespan)  "
          f"heuristic {fmt_si(s.heuristic_s, 's', 4)}  utilisation tensor {u['tensor']:.1%} vector {u['vector']:.1%}"
          if s.makespan_s > 0 else "empty layer")
    if args.trace:
        print(f"Chrome trace written to {args.trace} (open in https://ui.perfetto.dev)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("schedule", help="on-chip operator schedule (ILP) of one layer on an accelerator")
    p.add_argument("model", type=text("model"), help="preset name or path to a config.json")
    p.add_argument("--phase", choices=PHASES, default="forward", help="forward or backward (default: forward)")
    p.add_argument("--design", type=text("design"), default="tpuv4-like",
                   help=f"accelerator: a preset ({', '.join(PRESETS)}) or a spec such as "
                        "2x256x256tc-2x256vc-128MiB (default: tpuv4-like)")
    p.add_argument("--layer", type=text("layer"), default="block",
                   help="layer of the model graph (default: block, the transformer block)")
    p.add_argument("--tp", type=int_range(1, MAX_HEADS, " (heads)"), default=1,
                   help="tensor-parallel width, devices (default: 1)")
    p.add_argument("--seq-len", type=int_range(1, MAX_SEQ_LEN, " (tokens; the longest context modelled)"),
                   default=None, help="sequence length, tokens (default: the model's max_seq_len)")
    p.add_argument("--batch", type=int_range(1, MAX_BATCH, " (sequences)"), default=1,
                   help="micro-batch size, sequences (default: 1)")
    p.add_argument("--solver", choices=[s.value for s in Solver], default=Solver.CBC.value,
                   help=f"MILP solver (default: {Solver.CBC.value})")
    p.add_argument("--time-limit", type=float_range(0, MAX_TIME_LIMIT_S, unit="s"), default=DEFAULT_TIME_LIMIT_S,
                   help=f"solver time limit, s (default: {DEFAULT_TIME_LIMIT_S:g})")
    p.add_argument("--gap", type=float_range(0, 0.999), default=DEFAULT_GAP,
                   help=f"relative optimality gap, a fraction in [0, 1) (default: {DEFAULT_GAP:g})")
    p.add_argument("--fuse", action=argparse.BooleanOptionalAction, default=True,
                   help="fuse matmul + single elementwise/norm consumer (default: on)")
    p.add_argument("--predictor", choices=PREDICTORS, default="tiles",
                   help="op latencies: accelerator tile model or roofline (default: tiles)")
    p.add_argument("--trace", metavar="OUT.json", type=output_file(), default=None,
                   help="write a Chrome trace, one track per core (default: none)")
    p.add_argument("--timeline", metavar="OUT.png", type=output_file(PLOT_SUFFIXES), default=None,
                   help="write a PNG timeline, needs matplotlib (default: none)")
    p.add_argument("--json", action="store_true",
                   help="machine-readable output, schema coda.ilp.schedule/1 (default: off, a table)")
    p.set_defaults(handler=_run)
