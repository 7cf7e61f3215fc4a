"""`coda hardware gpus [NAME] [--json]` and `coda hardware clusters [--spec SPEC --devices N] [--json]`:
the hardware catalog, and a cluster from its parts (`--spec h100-sxm:8:nvlink=200GBps:ib=400Gbps`).

Tables convert SI to the units named in their column headers (GB/s = 1e9 B/s, GiB = 2**30 B).
"""

from __future__ import annotations

import argparse
from dataclasses import fields
from typing import Any

import pandas as pd

from coda.arch.cluster_parts import SPEC_SYNTAX, is_parts_spec, parse_spec
from coda.arch.clusters import MAX_DEVICES, Cluster, cluster, list_clusters, preset_description
from coda.arch.gpus import DTYPES, GPU, gpu, list_gpus
from coda.cli._args import cluster_name, int_range, text
from coda.cli._output import print_json, print_table
from coda.errors import ConfigError
from coda.units import GB, GiB, MiB, T, fmt_bytes, fmt_si


def _t(v: float | None) -> float | None:
    return None if v is None else v / T


def gpu_row(g: GPU) -> dict[str, Any]:
    """One catalog row in display units."""
    row: dict[str, Any] = {"name": g.name, "arch": g.architecture, "SMs": g.sm_count, "clock_MHz": g.clock_hz / 1e6}
    for d in ("bf16", "fp16", "tf32", "fp8"):
        row[f"tc_{d}_TFLOPs"] = _t(getattr(g.tensor_flops_per_s, d))
    row["fp32_TFLOPs"] = _t(g.simt_flops_per_s.fp32)
    row.update({
        "mem_GiB": g.hbm_bytes / GiB, "mem_GBps": g.hbm_bw_bytes_per_s / GB, "L2_MiB": g.l2_bytes / MiB,
        "smem_KiB": g.smem_per_sm_bytes / 1024, "TDP_W": g.tdp_w,
        "nvlink_GBps_bidir": None if g.nvlink_bw_bidir_bytes_per_s is None else g.nvlink_bw_bidir_bytes_per_s / GB,
    })
    return row


def gpu_record(g: GPU) -> dict[str, Any]:
    """Every field of a GPU in SI units, with its sources (for `--json`)."""
    out: dict[str, Any] = {}
    for f in fields(g):
        v = getattr(g, f.name)
        if f.name in ("tensor_flops_per_s", "simt_flops_per_s"):
            v = {d: getattr(v, d) for d in DTYPES}
        elif f.name == "sources":
            v = dict(v)
        elif isinstance(v, tuple):
            v = list(v)
        out[f.name] = v
    return out


def _gpu_display(g: GPU) -> list[tuple[str, str]]:
    """(field, value with units) for the single-GPU view."""
    def peaks(p: Any) -> str:
        return ", ".join(f"{d} {getattr(p, d) / T:g}" for d in DTYPES if getattr(p, d) is not None) or "none"

    nv = g.nvlink_bw_bidir_bytes_per_s
    return [
        ("architecture", g.architecture), ("memory_kind", g.memory_kind), ("sm_count", str(g.sm_count)),
        ("clock_hz", fmt_si(g.clock_hz, "Hz")), ("max_clock_hz", fmt_si(g.max_clock_hz, "Hz")),
        ("tensor_flops_per_s", f"{peaks(g.tensor_flops_per_s)} TFLOP/s"),
        ("simt_flops_per_s", f"{peaks(g.simt_flops_per_s)} TFLOP/s"),
        ("hbm_bytes", fmt_bytes(g.hbm_bytes)), ("hbm_bw_bytes_per_s", fmt_si(g.hbm_bw_bytes_per_s, "B/s")),
        ("l2_bytes", fmt_bytes(g.l2_bytes)), ("smem_per_sm_bytes", fmt_bytes(g.smem_per_sm_bytes)),
        ("tdp_w", fmt_si(g.tdp_w, "W")), ("nvlink_bw_bidir_bytes_per_s", "none" if nv is None else fmt_si(nv, "B/s")),
        ("die_area_mm2", f"{g.die_area_mm2:g} mm2"),
    ]


def clusters_frame() -> pd.DataFrame:
    """Presets and their levels, with the (fitted or assumed) latency and efficiency per level and their source."""
    rows = []
    for name in list_clusters():
        desc = preset_description(name)
        sizes = [lv["size"] for lv in desc["levels"]]
        finite = [s for s in sizes if s is not None]
        n = finite[-1] * 2 if sizes[-1] is None else finite[-1]
        c = cluster(name, n)
        for spec, lv in zip(desc["levels"], c.levels):
            rows.append({
                "cluster": name, "device": c.device_name, "level": lv.name,
                "size": "all" if spec["size"] is None else spec["size"],
                "bw_GBps_each_way": lv.bw_each_way_bytes_per_s / GB, "latency_us": lv.latency_s * 1e6,
                "efficiency": lv.efficiency, "p2p_latency_us": (lv.p2p_latency_s or 0.0) * 1e6,
                "p2p_efficiency": lv.p2p_efficiency, "overhead_us": c.collective_overhead_s * 1e6,
                "calibration": desc["calibration"] or "none (assumed)", "source": lv.source,
            })
    return pd.DataFrame(rows)


def cluster_frame(c: Cluster) -> pd.DataFrame:
    """One cluster's levels (a preset at a size, or one from its parts) in display units, with sources."""
    return pd.DataFrame([{
        "cluster": c.name, "device": c.device_name, "devices": c.n_devices, "level": lv.name, "size": lv.size,
        "bw_GBps_each_way": lv.bw_each_way_bytes_per_s / GB, "latency_us": lv.latency_s * 1e6,
        "efficiency": lv.efficiency, "p2p_latency_us": (lv.p2p_latency_s or 0.0) * 1e6,
        "p2p_efficiency": lv.p2p_efficiency, "overhead_us": c.collective_overhead_s * 1e6, "source": lv.source,
    } for lv in c.levels])


def _gpus(args: argparse.Namespace) -> int:
    if args.name:
        g = gpu(args.name)
        if args.json:
            print_json(gpu_record(g))
        else:
            print(f"{g.full_name} ({g.name}); aliases: {', '.join(g.aliases)}")
            for key, value in _gpu_display(g):
                print(f"  {key:<28} {value:<38} {g.sources.get(key, '')}")
        return 0
    df = pd.DataFrame([gpu_row(gpu(n)) for n in list_gpus()])
    if args.json:
        print_json(df.to_dict(orient="records"))
    else:
        print_table(df.astype(object).where(df.notna(), "-"), title="GPU catalog (dense peaks; tc = tensor cores)")
    return 0


def _two_nodes(name: str) -> int:
    """Devices of two nodes of a parts spec (one node if it gives no network) or of a preset."""
    if is_parts_spec(name):
        kw = parse_spec(name)
        return int(kw["gpus_per_node"]) * (2 if "inter_node_Gbps" in kw else 1)
    sizes = [lv["size"] for lv in preset_description(name)["levels"] if lv["size"] is not None]
    return 2 * sizes[0] if sizes else 2


def _clusters(args: argparse.Namespace) -> int:
    if args.spec is not None:
        c = cluster(args.spec, _two_nodes(args.spec) if args.devices is None else args.devices)
        df = cluster_frame(c)
        if args.json:
            print_json(df.to_dict(orient="records"))
            return 0
        print_table(df.drop(columns="source"), title=f"{c.name}, {c.n_devices} devices (levels innermost first; "
                                                     "bandwidth per device, each way)")
        print("\nSources")
        for r in df.itertuples():
            print(f"  {r.level}: {r.source}")
        return 0
    if args.devices is not None:
        raise ConfigError("--devices sizes a --spec cluster; presets are listed at their nominal size")
    df = clusters_frame()
    if args.json:
        print_json(df.to_dict(orient="records"))
    else:
        print_table(df.drop(columns="source"),
                    title="Cluster presets (levels innermost first; bandwidth per device, each way)")
        print("\nSources")
        for r in df.itertuples():
            print(f"  {r.cluster} {r.level}: {r.source}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("hardware", help="the GPU catalog and cluster presets")
    hw = p.add_subparsers(dest="hardware_command", metavar="WHAT", required=True)
    g = hw.add_parser("gpus", help="list GPUs, or show one with its sources")
    g.add_argument("name", nargs="?", type=text("GPU name"),
                   help="GPU name or alias, e.g. h100-sxm or 'NVIDIA A100-PCIE-40GB' (default: list them all)")
    g.add_argument("--json", action="store_true", help="machine-readable output in SI units (default: off, a table)")
    g.set_defaults(handler=_gpus)
    c = hw.add_parser("clusters", help="list cluster presets and their network levels, or show a cluster from its "
                                       "parts")
    c.add_argument("--spec", type=cluster_name(), default=None,
                   help=f"show a cluster from its parts (or a preset) at --devices: {SPEC_SYNTAX}; bandwidths per GPU "
                        "each way (default: list the presets)")
    c.add_argument("--devices", type=int_range(1, MAX_DEVICES, " (devices in the largest cluster modelled)"),
                   default=None, help="devices in the --spec cluster (default: two nodes' worth)")
    c.add_argument("--json", action="store_true", help="machine-readable output (default: off, a table)")
    c.set_defaults(handler=_clusters)
