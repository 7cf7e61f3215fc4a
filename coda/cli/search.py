"""`coda search`: the best accelerator design of a design space for training one model.

    coda search --model gpt2 --chips 16 --global-batch 64 --seq-len 512 \\
        --n-tc 2,8 --n-vc 1,2 --tc-rows 64,128 --tc-cols 64,128 --glb-mib 32,128 --store runs.sqlite

Ranges default to PHAZE's space and budget (`DesignSpace.phaze()`); each design runs on
`--chips` chips of the TPU-v4-like torus (`coda.search.search`, docs/search.md), with the best
plan among `--tp`, `--pp`, `--micro-batch`, `--recompute` and `--zero` (lists; defaults
`coda.search.DEFAULT_CHOICES`), the same for the `--gpu-reference` rows.
"""

from __future__ import annotations

import argparse
from typing import Any

import pandas as pd

from coda.cli._output import print_json, print_table
from coda.plotting import pyplot

TABLE_COLUMNS = ("rank", "name", "hbm_bytes", "area_mm2", "tdp_w", "peak_flops", "plan", "tokens_per_s",
                 "tokens_per_s_per_w", "mfu", "peak_memory_bytes", "bound_objective")


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


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
    area = args.max_area_mm2 if args.max_area_mm2 is not None else tpuv4_like().area_mm2
    return DesignSpace(max_area_mm2=area, min_area_fraction=args.min_area_fraction, max_tdp_w=args.max_tdp_w, **over)


def _display(df: pd.DataFrame) -> pd.DataFrame:
    out = df[[c for c in TABLE_COLUMNS if c in df.columns]].copy()
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
    ref = result.reference
    if ref["status"] == "ok":
        ax.scatter([ref["tdp_w"]], [ref["tokens_per_s"]], marker="s", s=50, c="black", label="TPUv4-like")
    for marker, (_, g) in zip("^vD", gpus[gpus["status"] == "ok"].iterrows()):
        ax.scatter([g["tdp_w"]], [g["tokens_per_s"]], marker=marker, s=60, c="tab:green", label=f"{g['name']} (board)")
    ax.set_xlabel("TDP per chip (W)")
    ax.set_ylabel("training tokens/s (cluster)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _run(args: argparse.Namespace) -> int:
    from coda.placement import predictor_layer_time
    from coda.search import SearchLayerTime, gpu_reference, pareto_front, search

    timer = predictor_layer_time if args.timer == "predictor" else SearchLayerTime(time_limit_s=args.ilp_time_limit)
    result = search(args.model, _space(args), args.chips, args.global_batch, args.seq_len, objective=args.objective,
                    store=args.store, max_designs=args.max_designs, progress=args.progress, layer_time=timer,
                    executor=args.executor, workers=args.workers, prune=not args.pareto, choices=_choices(args))
    front = pareto_front(result.frame) if args.pareto else None
    gpus = gpu_reference(args.model, args.gpu_reference, args.chips, args.global_batch, args.seq_len,
                         choices=_choices(args))
    if args.plot:
        _plot(result, args.plot, gpus, front)
    if args.json:
        print_json(dict(counts=result.counts(), objective=result.objective,
                        top=result.frame[result.frame["status"] == "ok"].head(args.top).to_dict(orient="records"),
                        reference=result.reference.to_dict(), gpu_references=gpus.to_dict(orient="records"),
                        pareto=None if front is None else front.to_dict(orient="records"),
                        infeasible=result.frame[result.frame["status"] != "ok"][["name", "reason"]]
                        .to_dict(orient="records")))
        return 0
    c = result.counts()
    print(f"designs {c['designs']}: evaluated {c['evaluated']}, cached {c['cached']}, pruned by bound "
          f"{c['pruned_by_bound']}, infeasible {c['infeasible']}, unvisited {c['unvisited']} "
          f"({'exact' if c['complete'] else 'incomplete: max-designs reached'}, {c['seconds']:.1f} s)")
    print()
    table = pd.concat([result.table(args.top), gpus.assign(rank="gpu")], ignore_index=True)
    print_table(_display(table), title=f"top {args.top} by {result.objective} (per W of cluster TDP), the TPUv4-like "
                f"reference{' and GPUs on DGX nodes (board TDP, die area)' if len(gpus) else ''}")
    if front is not None:
        print()
        print_table(_display(front.assign(rank=range(1, len(front) + 1))),
                    title="Pareto front over every design: no other design has lower TDP per chip and more tokens/s")
    if c["infeasible"]:
        print()
        bad = result.frame[result.frame["status"] != "ok"][["name", "hbm_bytes", "reason"]]
        print_table(bad.head(args.top), title="infeasible designs")
    if args.plot:
        print(f"\nplot: {args.plot}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("search", help="search a design space for the best accelerator (exact, bound-pruned)",
                       description="Find the design of an accelerator design space that trains a model best on a "
                                   "TPU-v4-like torus of --chips chips; ranges default to PHAZE's space.")
    p.add_argument("--model", required=True, help="preset name or config.json")
    p.add_argument("--chips", type=int, required=True, help="chips per design (<= 16 or a multiple of 16)")
    p.add_argument("--global-batch", type=int, required=True, help="sequences per optimizer step")
    p.add_argument("--seq-len", type=int, required=True, help="tokens per sequence")
    p.add_argument("--objective", choices=("tokens_per_s_per_w", "tokens_per_s"), default="tokens_per_s_per_w",
                   help="ranking objective (default tokens/s per W of cluster TDP)")
    p.add_argument("--n-tc", dest="n_tc", type=_ints, help="tensor cores, e.g. 2,8 (default PHAZE 1..4096)")
    p.add_argument("--n-vc", dest="n_vc", type=_ints, help="vector cores, e.g. 1,2 (default PHAZE 1..4096)")
    p.add_argument("--tc-rows", dest="tc_rows", type=_ints, help="tensor-core rows, powers of two (default 2..256)")
    p.add_argument("--tc-cols", dest="tc_cols", type=_ints, help="tensor-core columns, powers of two (default 2..256)")
    p.add_argument("--glb-mib", dest="glb_mib", type=_ints, help="GLB sizes in MiB (default 2..128)")
    p.add_argument("--hbm-gib", dest="hbm_gib", type=_ints, help="HBM capacities in GiB (default 32)")
    p.add_argument("--max-area-mm2", type=float, default=None,
                   help="area budget, 22 nm model (default the TPUv4-like chip, 278.83)")
    p.add_argument("--min-area-fraction", type=float, default=0.3,
                   help="designs must use this fraction of the area budget (PHAZE: 0.3; single-core exempt)")
    p.add_argument("--max-tdp-w", type=float, default=None, help="TDP budget per chip, W")
    p.add_argument("--tp", type=_ints, help="tensor-parallel widths to consider (default 1,2,4,8)")
    p.add_argument("--pp", type=_ints, help="pipeline depths to consider (default: every one that fits)")
    p.add_argument("--micro-batch", dest="micro_batch", type=_ints, help="micro-batch sizes (default 1,2,4)")
    p.add_argument("--recompute", type=_names, help="recomputation modes: none, selective, full (default none,full)")
    p.add_argument("--zero", type=_ints, help="ZeRO stages: 0, 1, 3 (default 0,1)")
    p.add_argument("--max-designs", type=int, default=None, help="evaluate at most this many designs (resume later)")
    p.add_argument("--store", default=None, help="SQLite result store (resume and reuse); created if missing")
    p.add_argument("--timer", choices=("ilp", "predictor"), default="ilp",
                   help="layer times: on-chip ILP schedule (default) or the sum of predicted op latencies")
    p.add_argument("--ilp-time-limit", type=float, default=1.0,
                   help="ILP seconds per layer graph (0: list-scheduling heuristic only)")
    p.add_argument("--executor", choices=("inline", "process"), default="process",
                   help="evaluate designs in a local process pool (default) or one at a time in-process")
    p.add_argument("--workers", type=int, default=None,
                   help="process-pool size (default: CPUs, at most the designs to evaluate; 1 runs inline)")
    p.add_argument("--top", type=int, default=10, help="designs to list")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=False, help="progress bar on stderr")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--pareto", action="store_true",
                   help="evaluate every design (no pruning) and print the tokens/s vs TDP Pareto front")
    p.add_argument("--gpu-reference", type=_names, default=(), metavar="GPUS",
                   help="also run these GPUs (e.g. a100-sxm4-80gb,h100-sxm) on --chips of their DGX nodes, "
                        "for comparison")
    p.add_argument("--plot", default=None, help="write a scatter of tokens/s vs TDP to this PNG (needs matplotlib)")
    p.set_defaults(handler=_run)
