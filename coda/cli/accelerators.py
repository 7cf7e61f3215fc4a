"""`coda accelerators show|space|tdp-check`: the accelerator template, its design space, the TDP check."""

from __future__ import annotations

import argparse

import pandas as pd

from coda.arch.accelerators import PRESETS, accelerator_preset, tdp_comparison
from coda.arch.design_space import DesignSpace
from coda.cli._args import float_range, int_range, text
from coda.cli._output import print_json, print_table
from coda.units import fmt_bytes, fmt_si

MAX_AREA_MM2 = 1e5
"""Largest area budget the CLI takes, mm^2: a full 300 mm wafer is about 7e4 mm^2."""
MAX_TDP_W = 1e5
"""Largest TDP budget the CLI takes, W (a wafer-scale engine draws about 2.3e4 W)."""

_SORT_KEYS = {
    "flops-per-w": ("peak_flops_per_w", False),
    "peak": ("peak_flops", False),
    "tdp": ("tdp_w", True),
    "area": ("area_mm2", False),
}


def _show(args: argparse.Namespace) -> int:
    acc = accelerator_preset(args.name)
    area22 = acc.area_breakdown_mm2()
    area_node = acc.area_breakdown_mm2(at_node=True)
    power = acc.power_breakdown()
    if args.json:
        print_json({"accelerator": acc.summary(), "area_mm2_22nm": area22,
                    f"area_mm2_{acc.tech_nm}nm": area_node, "power_w": power})
        return 0
    fields = pd.DataFrame([
        ("tensor cores", f"{acc.n_tc} x {acc.tc_rows}x{acc.tc_cols} MACs"),
        ("vector cores", f"{acc.n_vc} x {acc.vc_lanes} lanes"),
        ("local buffers",
         f"{fmt_bytes(acc.local_tc_bytes)} per tensor core, {fmt_bytes(acc.local_vc_bytes)} per vector core"),
        ("global buffer", fmt_bytes(acc.glb_bytes)),
        ("on-chip SRAM", fmt_bytes(acc.sram_bytes)),
        ("HBM", f"{fmt_bytes(acc.hbm_bytes)} at {fmt_si(acc.hbm_bw_bytes_per_s, 'B/s')}"),
        ("links", f"{acc.n_links} x {fmt_si(acc.link_bw_bytes_per_s, 'B/s')} per direction"),
        ("clock", fmt_si(acc.clock_hz, "Hz")),
        ("operand width", f"{acc.dtype_bytes} B"),
        ("node", f"{acc.tech_nm} nm"),
        ("peak (tensor)", fmt_si(acc.peak_flops, "FLOP/s", 4)),
        ("peak (vector)", fmt_si(acc.vector_flops, "FLOP/s", 4)),
        ("area, 22 nm model", f"{acc.area_mm2:.2f} mm^2"),
        (f"area, scaled to {acc.tech_nm} nm", f"{acc.area_mm2_at_node:.2f} mm^2"),
        ("TDP", f"{acc.tdp_w:.1f} W"),
        ("peak per TDP", fmt_si(acc.peak_flops_per_w, "FLOP/s/W", 4)),
    ], columns=["field", "value"])
    print_table(fields, title=f"accelerator {acc.name}")
    print()
    area_df = pd.DataFrame({"component": list(area22), "mm2_22nm": list(area22.values()),
                            f"mm2_{acc.tech_nm}nm": list(area_node.values())})
    area_df["share"] = area_df["mm2_22nm"] / area_df["mm2_22nm"].sum()
    print_table(area_df, title="area breakdown (22 nm PHAZE model; node-scaled core array)")
    print()
    power_df = pd.DataFrame({"component": list(power), "watts": list(power.values())})
    power_df["share"] = power_df["watts"] / power_df["watts"].sum()
    print_table(power_df, title=f"TDP breakdown at {acc.tech_nm} nm, full activity (coda.arch.power)")
    return 0


def _space(args: argparse.Namespace) -> int:
    overrides = {}
    if args.max_area_mm2 is not None:
        overrides["max_area_mm2"] = args.max_area_mm2
    if args.min_area_fraction is not None:
        overrides["min_area_fraction"] = args.min_area_fraction
    if args.max_tdp_w is not None:
        overrides["max_tdp_w"] = args.max_tdp_w
    if args.tech_nm is not None:
        overrides["tech_nm"] = args.tech_nm
    space = DesignSpace.phaze(**overrides)
    df = space.to_frame()
    key, ascending = _SORT_KEYS[args.sort]
    top = df.sort_values(key, ascending=ascending, kind="stable").head(args.limit)
    if args.json:
        print_json({"space": {k: v for k, v in space.describe().items()}, "n_points": space.n_points,
                    "n_admitted": len(df), "top": top.to_dict(orient="records")})
        return 0
    print(f"PHAZE design space: {space.n_points} points, {len(df)} admitted "
          f"(area <= {space.max_area_mm2:.2f} mm^2 at 22 nm, >= {space.min_area_fraction:g} of it"
          f"{'' if space.max_tdp_w is None else f', TDP <= {space.max_tdp_w:g} W'}; TDP at {space.tech_nm} nm)")
    table = pd.DataFrame({
        "n_tc": top["n_tc"], "tc": top["tc_rows"].astype(str) + "x" + top["tc_cols"].astype(str),
        "n_vc": top["n_vc"], "lanes": top["vc_lanes"], "glb_MiB": top["glb_bytes"] / 2**20,
        "area_mm2": top["area_mm2"], "tdp_w": top["tdp_w"], "peak_TFLOPs": top["peak_flops"] / 1e12,
        "GFLOPs_per_W": top["peak_flops_per_w"] / 1e9,
    })
    print_table(table, title=f"top {len(top)} by {args.sort}")
    return 0


def _tdp_check(args: argparse.Namespace) -> int:
    df = tdp_comparison()
    if args.json:
        print_json(df.to_dict(orient="records"))
        return 0
    table = df.drop(columns=["source"]).assign(peak_flops=df["peak_flops"] / 1e12).rename(
        columns={"peak_flops": "peak_TFLOPs"})
    print_table(table, title="model TDP vs published power (one model, sourced constants; W)", floatfmt="{:.3g}")
    for _, row in df.iterrows():
        print(f"  {row['name']}: {row['source']}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("accelerators", help="the accelerator template, its design space and TDP model")
    cmds = p.add_subparsers(dest="accelerators_command", metavar="ACTION", required=True)

    show = cmds.add_parser("show", help="fields, peak, area and TDP breakdown of a reference accelerator")
    show.add_argument("name", nargs="?", type=text("accelerator"), default="tpuv4-like",
                      help=f"one of {', '.join(PRESETS)} (default: tpuv4-like)")
    show.add_argument("--json", action="store_true", help="machine-readable output (default: off, tables)")
    show.set_defaults(handler=_show)

    space = cmds.add_parser("space", help="enumerate PHAZE's design space under area/TDP budgets")
    space.add_argument("--max-area-mm2", type=float_range(0, MAX_AREA_MM2, lo_open=True, unit="mm^2"), default=None,
                       help=f"area budget at 22 nm, mm^2, at most {MAX_AREA_MM2:g} (default: the TPUv4-like chip's)")
    space.add_argument("--min-area-fraction", type=float_range(0, 1), default=None,
                       help="least fraction of the area budget a design uses, in [0, 1] (default: 0.3)")
    space.add_argument("--max-tdp-w", type=float_range(0, MAX_TDP_W, lo_open=True, unit="W"), default=None,
                       help=f"TDP budget, W, at most {MAX_TDP_W:g} (default: none)")
    space.add_argument("--tech-nm", type=int, choices=(7, 5, 4), default=None,
                       help="process node for the TDP, nm (default: 7)")
    space.add_argument("--limit", type=int_range(1, 10**6), default=10, help="rows to print (default: 10)")
    space.add_argument("--sort", choices=sorted(_SORT_KEYS), default="flops-per-w",
                       help="ranking key (default: flops-per-w)")
    space.add_argument("--json", action="store_true", help="machine-readable output (default: off, a table)")
    space.set_defaults(handler=_space)

    check = cmds.add_parser("tdp-check", help="model TDP of TPUv4-, A100- and H100-like chips vs published power")
    check.add_argument("--json", action="store_true", help="machine-readable output (default: off, a table)")
    check.set_defaults(handler=_tdp_check)
