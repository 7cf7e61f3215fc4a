"""`coda serve-search`: the deployment that serves a workload within a latency SLO most cheaply.

    coda serve-search --model llama2-70b --gpus h100-sxm,a100-sxm4-80gb --max-devices 16 \\
        --prompt-len 3996 --output-len 100 --slo-ttft-p99 2 --slo-tbt-p99 0.1 \\
        [--objective qps_per_device] [--store runs.sqlite] [--jobs 2]

A thin layer over `coda.serving.search.search` (docs/serving.md): every flag is checked where it
enters (`coda.cli._args`), the rest (the model, the GPUs, requests beyond the context, prices
for `qps_per_dollar`, the store) by the library before any simulation; a bad one is one line
`coda: error: ...` and exit code 2. It prints the best deployments, the counts, and ends with
the answer as a sentence (or, when no deployment meets the SLO, the closest one).
"""

from __future__ import annotations

import argparse
from typing import Any

import pandas as pd

from coda.arch.clusters import MAX_DEVICES
from coda.cli._args import int_list, int_range, stderr_is_terminal, text
from coda.cli._output import print_json, print_table
from coda.cli._serving_flags import add_run_flags, add_slo_flags, add_workload_flags, names, workload
from coda.errors import ConfigError
from coda.serving.schedulers.base import MAX_SEQS, MAX_TOKENS, SchedulerKind

SHOWN = {"gpu": ("gpu", 1), "n_devices": ("devices", 1), "replicas": ("replicas", 1), "tp": ("tp", 1),
         "pp": ("pp", 1), "ep": ("ep", 1), "scheduler": ("scheduler", 1), "max_batch": ("max_batch", 1),
         "max_tokens": ("max_tokens", 1), "chunk": ("chunk", 1), "capacity_qps": ("capacity_rps", 1),
         "bound_qps": ("bound_rps", 1), "ttft_p99_s": ("TTFT_p99_s", 1), "tbt_p99_s": ("TBT_p99_ms", 1e3),
         "status": ("status", 1)}
"""Frame column -> (printed column, scale: s -> ms)."""
OBJECTIVE_SHOWN = {"qps_per_device": ("rps_per_device", 1.0), "qps_per_watt": ("rps_per_kW", 1e3),
                   "qps_per_dollar": ("requests_per_USD", 1.0)}


def _price(value: str) -> tuple[str, float]:
    name, sep, usd = value.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError("is not GPU=USD_PER_HOUR (e.g. h100-sxm=2.5)")
    try:
        v = float(usd)
    except ValueError:
        raise argparse.ArgumentTypeError(f"price {usd!r} is not a number of USD per device-hour") from None
    if not 0 < v < 1e6:
        raise argparse.ArgumentTypeError(f"price {usd!r} is outside (0, 1000000) USD per device-hour")
    return name.strip(), v


def _display(frame: pd.DataFrame, objective: str, top: int) -> pd.DataFrame:
    shown = frame.head(top)
    out = pd.DataFrame({name: shown[c] * k if k != 1 else shown[c] for c, (name, k) in SHOWN.items()
                        if c not in ("status",)})
    name, k = OBJECTIVE_SHOWN[objective]
    out.insert(list(out.columns).index("capacity_rps") + 1, name, shown[objective] * k)
    out["status"] = shown["status"]
    return out


def _run(args: argparse.Namespace) -> int:
    from coda.models import get
    from coda.serving.search import search
    from coda.serving.space import ServingSpace

    slo = {k: v for k, v in (("ttft_p99_s", args.slo_ttft_p99), ("tbt_p99_s", args.slo_tbt_p99)) if v is not None}
    if not slo:
        raise ConfigError("serve-search needs --slo-ttft-p99 S and/or --slo-tbt-p99 S (seconds): the capacity of a "
                          "deployment is the highest rate that meets them")
    cfg = get(args.model)
    space_kw: dict[str, Any] = {k: getattr(args, k) for k in ("tp", "pp", "ep", "replicas", "max_batch", "max_tokens",
                                                              "chunk") if getattr(args, k) is not None}
    if args.schedulers is not None:
        space_kw["schedulers"] = args.schedulers
    space = ServingSpace(dtype=args.dtype, **space_kw)
    prices = dict(args.price) if args.price is not None else {}
    res = search(cfg, list(args.gpus), workload(args, "serve-search", cfg), slo, objective=args.objective,
                 prices_usd_per_h=prices,
                 max_devices=args.max_devices, space=space, rel_tol=args.rel_tol, prune=args.prune, store=args.store,
                 executor=args.executor, workers=args.jobs, progress=stderr_is_terminal())
    if args.csv:
        res.frame.to_csv(args.csv, index=False)
    if args.json:
        print_json({"summary": res.summary(), "counts": res.counts, "ratio_to_baseline": res.ratio,
                    "best": None if res.best is None else res.best.to_dict(),
                    "baseline": None if res.baseline is None else res.baseline.to_dict(),
                    "frame": res.frame.to_dict(orient="records")})
        return 0
    print_table(_display(res.frame, args.objective, args.top),
                title=f"{cfg.name}: {res.workload}; the {min(args.top, len(res.frame))} best of {len(res.frame)} "
                      f"deployments (capacity on a {100 * args.rel_tol:g}% grid; rps = requests/s)")
    if res.baseline is not None:
        print()
        print_table(_display(res.baseline.to_frame().T, args.objective, 1), title="heuristic baseline")
    if args.csv:
        print(f"\nframe: {args.csv}")
    print()
    print(res.summary())
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    widths = int_list(1, 1024, " (devices)")
    p = sub.add_parser("serve-search", help="serving-plan search: the deployment with the most requests/s per device "
                       "(watt, dollar) within a P99 TTFT and TBT SLO",
                       description="Search GPU types and counts, tp, pp, ep, replicas, schedulers and budgets for the "
                                   "deployment that serves a workload within a latency SLO most cheaply "
                                   "(docs/serving.md).")
    p.add_argument("--model", required=True, type=text("model"), help="preset name or config.json (required)")
    p.add_argument("--gpus", required=True, type=names,
                   help="GPU types, comma-separated, e.g. h100-sxm,a100-sxm4-80gb (Ampere or Hopper; required)")
    p.add_argument("--max-devices", dest="max_devices", type=int_range(1, MAX_DEVICES, " (devices)"), default=8,
                   help="most devices of one deployment (default: 8)")
    add_workload_flags(p, trace=True)
    s = p.add_argument_group("SLO and objective")
    add_slo_flags(s)
    s.add_argument("--objective", choices=("qps_per_device", "qps_per_watt", "qps_per_dollar"),
                   default="qps_per_device", help="what to maximise: capacity per device, per watt of TDP or per "
                   "dollar (needs --price) (default: qps_per_device)")
    s.add_argument("--price", action="append", type=_price, metavar="GPU=USD_PER_HOUR", default=None,
                   help="price of a GPU per device-hour, repeatable, e.g. --price h100-sxm=2.5 (default: none)")
    d = p.add_argument_group("space (comma-separated lists)")
    d.add_argument("--tp", type=widths, default=None, help="tensor-parallel widths (default: 1,2,4,8)")
    d.add_argument("--pp", type=widths, default=None, help="pipeline stages (default: 1,2,4)")
    d.add_argument("--ep", type=widths, default=None, help="expert-parallel widths, MoE only (default: 1)")
    d.add_argument("--replicas", type=int_list(1, MAX_DEVICES, " (replicas)"), default=None,
                   help="replica counts (default: 1,2,4,8,16)")
    d.add_argument("--schedulers", type=names, default=None,
                   help=f"policies among {', '.join(k.value for k in SchedulerKind)} (default: vllm,sarathi)")
    d.add_argument("--max-batch", dest="max_batch", type=int_list(1, MAX_SEQS, " (sequences)"), default=None,
                   help="most sequences per iteration (default: 128,256)")
    d.add_argument("--max-tokens", dest="max_tokens", type=int_list(1, MAX_TOKENS, " (tokens)"), default=None,
                   help="vllm, orca: prompt tokens per iteration (default: 4096)")
    d.add_argument("--chunk", type=int_list(1, MAX_TOKENS, " (tokens)"), default=None,
                   help="sarathi: token budget per iteration (default: 256,512,1024,2048)")
    d.add_argument("--dtype", choices=("bf16", "fp16", "fp8"), default="bf16",
                   help="weights, activations and KV cache (default: bf16)")
    add_run_flags(p, "rows", 15, "write the whole ranked frame", jobs_invariant=True)
    p.set_defaults(handler=_run)
