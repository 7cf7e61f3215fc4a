"""`coda serve-design`: which accelerator design serves a workload best, in output tokens/s per watt under an SLO.

    coda serve-design --model llama3-8b --prompt-len 200 --output-len 2000 --slo-ttft-p99 2 --slo-tbt-p99 0.1 \\
        --n-tc 4,8,16 --n-vc 8 --hbm-gbps 1200,2400 [--phaze] [--max-devices 8] [--store runs.sqlite] [--jobs 2]

A thin layer over `coda.serving.design_search.design_search` (docs/serving.md, "Which chip serves a workload
best"): the design space is PHAZE's template (`--phaze` for PHAZE's own 29,360-design space, or the axes given
here under the TPUv4-like area budget), each design deployed on a torus of at most `--max-devices` chips with
the tp / pp / replicas / scheduler choices given; the faithful TPU v4, PHAZE's TPUv4-like chip and the GPUs of
`--gpus` are searched beside it. Every bad flag is one line `coda: error: ...` and exit code 2 before any work.
It prints the best chips, the references, the counts and the answer as a sentence.
"""

from __future__ import annotations

import argparse
import functools
from dataclasses import replace
from typing import Any

import pandas as pd

from coda.cli._args import float_range, int_list, int_range, stderr_is_terminal, text
from coda.cli._output import print_json, print_table
from coda.cli._serving_flags import add_run_flags, add_slo_flags, add_workload_flags, names, workload
from coda.errors import ConfigError
from coda.serving.schedulers.base import MAX_SEQS, MAX_TOKENS, SchedulerKind

SHOWN = {"chip": ("chip", 1.0), "kind": ("kind", 1.0), "tdp_w": ("TDP_W", 1.0), "n_devices": ("devices", 1.0),
         "tp": ("tp", 1.0), "pp": ("pp", 1.0), "replicas": ("replicas", 1.0), "capacity_qps": ("capacity_rps", 1.0),
         "tokens_per_s_per_watt": ("tok_s_per_W", 1.0), "tokens_per_s_per_device": ("tok_s_per_device", 1.0),
         "best_bound_objective": ("bound", 1.0), "ttft_p99_s": ("TTFT_p99_s", 1.0), "tbt_p99_s": ("TBT_p99_ms", 1e3),
         "status": ("status", 1.0)}
"""Chips-frame column -> (printed column, scale)."""


def _floats(lo: float, hi: float, unit: str) -> Any:
    one = float_range(lo, hi, lo_open=True, unit=unit)

    def parse(value: str) -> tuple[float, ...]:
        parts = [p.strip() for p in value.split(",")]
        if not value.strip() or any(not p for p in parts):
            raise argparse.ArgumentTypeError(f"is not a number or a comma-separated list of them ({unit})")
        return tuple(one(p) for p in parts)

    return parse


def _space(args: argparse.Namespace) -> Any:
    from coda.arch.accelerators import tpuv4_like
    from coda.arch.design_space import DesignSpace
    from coda.units import GiB, MiB

    over: dict[str, Any] = {k: getattr(args, k) for k in ("n_tc", "n_vc", "tc_rows", "tc_cols", "n_links")
                            if getattr(args, k) is not None}
    for flag, field, scale in (("glb_mib", "glb_bytes", MiB), ("hbm_gib", "hbm_bytes", GiB),
                               ("hbm_gbps", "hbm_bw_bytes_per_s", 1e9), ("link_gbps", "link_bw_bytes_per_s", 1e9)):
        if getattr(args, flag) is not None:
            over[field] = tuple(type(scale)(v * scale) for v in getattr(args, flag))
    if args.max_tdp_w is not None:
        over["max_tdp_w"] = args.max_tdp_w
    if args.phaze:
        return DesignSpace.phaze(**over)
    area = args.max_area_mm2 if args.max_area_mm2 is not None else tpuv4_like().area_mm2
    return DesignSpace(max_area_mm2=area, min_area_fraction=args.min_area_fraction, **over)


def _display(frame: pd.DataFrame, top: int) -> pd.DataFrame:
    shown = frame.head(top)
    return pd.DataFrame({name: shown[c] * k if k != 1.0 else shown[c] for c, (name, k) in SHOWN.items()})


def _run(args: argparse.Namespace) -> int:
    from coda.models import get
    from coda.serving.design_search import DEFAULT_GPUS, DEFAULT_SPACE, design_search

    slo = {k: v for k, v in (("ttft_p99_s", args.slo_ttft_p99), ("tbt_p99_s", args.slo_tbt_p99)) if v is not None}
    if not slo:
        raise ConfigError("serve-design needs --slo-ttft-p99 S and/or --slo-tbt-p99 S (seconds): a chip's capacity "
                          "is the highest rate that meets them")
    cfg = get(args.model)
    given = {k: getattr(args, k) for k in ("tp", "pp", "replicas", "schedulers", "max_batch", "chunk", "max_tokens")
             if getattr(args, k) is not None}
    sspace = replace(DEFAULT_SPACE, dtype=args.dtype, **given)
    res = design_search(cfg, _space(args), workload(args, "serve-design"), slo, max_devices=args.max_devices,
                        serving_space=sspace,
                        objective=args.objective, references=args.references,
                        gpus=DEFAULT_GPUS if args.gpus is None else args.gpus, rel_tol=args.rel_tol,
                        prune=args.prune, store=args.store, executor=args.executor, workers=args.jobs,
                        progress=stderr_is_terminal())
    if args.csv:
        res.deployments.to_csv(args.csv, index=False)
    if args.json:
        print_json({"summary": res.summary(), "counts": res.counts,
                    "best": None if res.best is None else res.best.to_dict(),
                    "chips": res.chips.to_dict(orient="records")})
        return 0
    designs = res.chips[res.chips["kind"] == "design"]
    print_table(_display(designs, args.top), title=f"{cfg.name}: {res.workload}; the {min(args.top, len(designs))} "
                f"best of {len(designs)} designs (best deployment each; rps = requests/s, tok = output tokens)")
    if len(res.references):
        print()
        print_table(_display(res.references, len(res.references)), title="references")
    if args.csv:
        print(f"\nevery deployment: {args.csv}")
    print()
    print(res.summary())
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from coda.serving.design_result import OBJECTIVES

    widths = int_list(1, 1024, " (devices)")
    p = sub.add_parser("serve-design", help="which accelerator design serves a workload best: output tokens/s per "
                       "watt within a P99 TTFT and TBT SLO, beside TPU v4 and GPUs",
                       description="Search a design space of accelerators (PHAZE's template) for the chip that serves "
                                   "a workload with the most output tokens/s per watt within a latency SLO "
                                   "(docs/serving.md).")
    p.add_argument("--model", required=True, type=text("model"), help="preset name or config.json (required)")
    p.add_argument("--max-devices", dest="max_devices", type=int_range(1, 4096, " (chips)"), default=8,
                   help="most chips of one deployment (a design's torus: at most 16 or a multiple of 16) (default: 8)")
    add_workload_flags(p, trace=False)
    s = p.add_argument_group("SLO and objective")
    add_slo_flags(s)
    s.add_argument("--objective", choices=OBJECTIVES, default="tokens_per_s_per_watt",
                   help="output tokens/s at capacity per watt of TDP or per device (default: tokens_per_s_per_watt)")
    a = p.add_argument_group("design space (comma-separated lists; PHAZE's ranges where not given)")
    counts = int_list(1, 4096, " (cores)")
    sides = int_list(2, 256, " (a power of two)")
    a.add_argument("--phaze", action="store_true", help="PHAZE's space (area 30-100%% of the TPUv4-like chip's, "
                   "29,360 designs with the default axes) (default: off)")
    a.add_argument("--n-tc", dest="n_tc", type=counts, default=None, help="tensor cores (default: 1..4096)")
    a.add_argument("--n-vc", dest="n_vc", type=counts, default=None, help="vector cores (default: 1..4096)")
    a.add_argument("--tc-rows", dest="tc_rows", type=sides, default=None, help="tensor-core rows (default: 2..256)")
    a.add_argument("--tc-cols", dest="tc_cols", type=sides, default=None, help="tensor-core columns (default: 2..256)")
    a.add_argument("--glb-mib", dest="glb_mib", type=int_list(1, 2**20, " (MiB)"), default=None,
                   help="global buffer, MiB (default: 2..128)")
    a.add_argument("--hbm-gib", dest="hbm_gib", type=int_list(1, 2**12, " (GiB)"), default=None,
                   help="HBM capacity, GiB (default: 32)")
    a.add_argument("--hbm-gbps", dest="hbm_gbps", type=_floats(0, 1e6, "GB/s"), default=None,
                   help="HBM bandwidth, GB/s (default: 1200)")
    a.add_argument("--n-links", dest="n_links", type=int_list(1, 1024, " (links)"), default=None,
                   help="inter-chip links, multiples of 3 (default: 6)")
    a.add_argument("--link-gbps", dest="link_gbps", type=_floats(0, 1e6, "GB/s"), default=None,
                   help="bandwidth of one link per direction, GB/s (default: 50)")
    a.add_argument("--max-area-mm2", dest="max_area_mm2", type=float_range(0, 1e6, lo_open=True, unit="mm^2"),
                   default=None, help="area budget, 22 nm model (default: the TPUv4-like chip's 278.8)")
    a.add_argument("--min-area-fraction", dest="min_area_fraction", type=float_range(0, 1), default=0.0,
                   help="designs use at least this fraction of the area budget (default: 0)")
    a.add_argument("--max-tdp-w", dest="max_tdp_w", type=float_range(0, 1e6, lo_open=True, unit="W"), default=None,
                   help="TDP budget per chip, W (default: none)")
    a.add_argument("--references", action=argparse.BooleanOptionalAction, default=True,
                   help="also search the faithful TPU v4 and PHAZE's TPUv4-like chip (default: on)")
    a.add_argument("--gpus", type=functools.partial(names, none=True), default=None,
                   help="GPU rows for comparison, comma-separated, or 'none' (default: a100-sxm4-80gb,h100-sxm)")
    d = p.add_argument_group("deployments on each chip (comma-separated lists)")
    d.add_argument("--tp", type=widths, default=None, help="tensor-parallel widths (default: 1,2,4,8)")
    d.add_argument("--pp", type=widths, default=None, help="pipeline stages (default: 1)")
    d.add_argument("--replicas", type=int_list(1, 4096, " (replicas)"), default=None, help="replicas (default: 1)")
    d.add_argument("--schedulers", type=functools.partial(names, none=True), default=None,
                   help=f"policies among {', '.join(k.value for k in SchedulerKind)} (default: sarathi)")
    d.add_argument("--max-batch", dest="max_batch", type=int_list(1, MAX_SEQS, " (sequences)"), default=None,
                   help="most sequences per iteration (default: 256)")
    d.add_argument("--max-tokens", dest="max_tokens", type=int_list(1, MAX_TOKENS, " (tokens)"), default=None,
                   help="vllm, orca: prompt tokens per iteration (default: 4096)")
    d.add_argument("--chunk", type=int_list(1, MAX_TOKENS, " (tokens)"), default=None,
                   help="sarathi: token budget per iteration (default: 512)")
    d.add_argument("--dtype", choices=("bf16", "fp16"), default="bf16", help="weights, activations and KV "
                   "(default: bf16)")
    add_run_flags(p, "designs", 10, "write every (chip, deployment) row", jobs_invariant=False)
    p.set_defaults(handler=_run)
