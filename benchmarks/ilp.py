"""Solve the on-chip schedule of real transformer blocks: `python benchmarks/ilp.py [--solvers cbc,highs]`.

Cases: the transformer block, forward and backward, of gpt3-175b (seq 2048, tp 1 and 8),
llama2-7b (seq 4096) and bert-large (seq 512), batch 1, on three designs: `tpuv4_like()`, and
two from `DesignSpace.phaze()`: many small cores (the most tensor cores among 16x16-array
designs, then the largest GLB) and few large cores (2 tensor cores of 256x256 and 2 vector
cores, the largest GLB). Latencies come from the accelerator tile model
(`coda.predictor.accel_tiles`), or the roofline with `--predictor roofline`.

Prints one row per (case, solver): model, layer, phase, design, ops (tasks after fusion),
binaries (of the last MILP; 0 when the heuristic meets a lower bound), makespan, bound, gap,
solve time and solver used, then per solver the median and maximum solve time and how many
cases are proven optimal or within the gap. Target with CBC on a 2-core machine: every case
optimal or within 1 %, median <= 1 s, max <= 10 s. Tests do not assert timings.
"""

from __future__ import annotations

import argparse
import platform

import pandas as pd

from coda import models
from coda.arch.accelerators import Accelerator, tpuv4_like
from coda.arch.design_space import DesignSpace
from coda.ilp import (
    Status,
    check_schedule,
    highs_available,
    make_problem,
    predicted_latencies,
    roofline_latencies,
    schedule,
)

CASES = (  # model, seq_len, tp
    ("gpt3-175b", 2048, 1),
    ("gpt3-175b", 2048, 8),
    ("llama2-7b", 4096, 1),
    ("bert-large", 512, 1),
)


def designs() -> list[Accelerator]:
    """The TPUv4-like chip and two extremes of PHAZE's space (see module doc)."""
    space = DesignSpace.phaze()
    df = space.to_frame()
    many = df[(df.tc_rows == 16) & (df.tc_cols == 16)].sort_values(["n_tc", "glb_bytes", "n_vc"], ascending=False)
    few = df[(df.n_tc == 2) & (df.tc_rows == 256) & (df.tc_cols == 256) & (df.n_vc == 2)].sort_values(
        "glb_bytes", ascending=False)
    out = [tpuv4_like()]
    for label, row in (("many-small", many.iloc[0]), ("few-large", few.iloc[0])):
        out.append(Accelerator(n_tc=int(row.n_tc), tc_rows=int(row.tc_rows), tc_cols=int(row.tc_cols),
                               n_vc=int(row.n_vc), vc_lanes=int(row.vc_lanes), glb_bytes=int(row.glb_bytes),
                               hbm_bytes=int(row.hbm_bytes), hbm_bw_bytes_per_s=float(row.hbm_bw_bytes_per_s),
                               clock_hz=float(row.clock_hz)))
        out[-1] = Accelerator(**{**out[-1].__dict__, "name": f"{label}:{out[-1].default_name()}"})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--solvers", default="cbc,highs", help="comma-separated: cbc, highs")
    parser.add_argument("--time-limit", type=float, default=10.0, help="seconds per layer (default 10)")
    parser.add_argument("--gap", type=float, default=0.01, help="relative gap (default 0.01)")
    parser.add_argument("--node-limit", type=int, default=None,
                        help="branch-and-bound nodes per solve (deterministic budget; default none)")
    parser.add_argument("--predictor", choices=("tiles", "roofline"), default="tiles")
    args = parser.parse_args()
    solvers = [s for s in args.solvers.split(",") if s != "highs" or highs_available()]

    rows = []
    for acc in designs():
        for model, seq_len, tp in CASES:
            for phase in ("forward", "backward"):
                g = models.build(models.get(model), phase, batch=1, seq_len=seq_len, tp=tp).layers[1][0]
                lat = roofline_latencies(g, acc) if args.predictor == "roofline" else predicted_latencies(g, acc)
                problem = make_problem(g, acc, lat)
                for solver in solvers:
                    s = schedule(g, acc, lat, solver=solver, time_limit_s=args.time_limit, gap=args.gap,
                                 node_limit=args.node_limit)
                    check_schedule(s, problem)
                    rows.append({
                        "model": f"{model}" + (f" tp{tp}" if tp > 1 else ""), "layer": g.name, "phase": phase,
                        "design": acc.name.split(":")[0], "ops": problem.n, "binaries": s.n_binaries,
                        "makespan_ms": s.makespan_s * 1e3, "bound_ms": s.lower_bound_s * 1e3, "gap_%": 100 * s.gap,
                        "vs_seq": s.makespan_s / s.sequential_s, "solve_s": s.solve_time_s,
                        "status": s.status.value, "solver": s.solver, "requested": solver,
                        "clock_cut": s.wall_clock_limited,
                    })
    df = pd.DataFrame(rows)
    print(f"designs: {', '.join(a.name for a in designs())}; latencies: {args.predictor}; "
          f"time limit {args.time_limit:g} s, gap {args.gap:g}, node limit {args.node_limit}; "
          f"{platform.processor() or platform.machine()}")
    with pd.option_context("display.width", 220, "display.max_rows", None):
        print(df.drop(columns="requested").to_string(index=False, float_format=lambda v: f"{v:.4g}"))
        print()
        summary = df.groupby("requested").agg(
            cases=("solve_s", "size"), median_s=("solve_s", "median"), max_s=("solve_s", "max"),
            optimal=("status", lambda s: int((s == Status.OPTIMAL.value).sum())),
            within_gap=("gap_%", lambda g: int((g <= 100 * args.gap + 1e-9).sum())),
            clock_cut=("clock_cut", "sum"))
        print(summary.to_string(float_format=lambda v: f"{v:.3g}"))


if __name__ == "__main__":
    main()
