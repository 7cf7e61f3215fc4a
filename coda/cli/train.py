"""`coda train`: evaluate a training plan, or search the parts of it left out.

    coda train --model gpt3-175b --cluster dgx-a100 --devices 1024 --global-batch 1536 --seq-len 2048 \\
        --tp 8 --pp 16 --dp 8 --micro-batch 1 --recompute full --no-sequence-parallel \\
        --schedule interleaved --virtual-stages 2 --zero 0        # every part given: evaluate
    coda train --model gpt3-175b --cluster dgx-a100 --devices 1024 --global-batch 1536 --seq-len 2048
                                                                  # nothing given: optimise all of it

Any plan flag left out is optimised (`coda.placement.optimize`); the others are fixed. `--cp`,
`--ep`, `--recompute-every` and `--hsdp` default to 1; when optimising they also take a list to search over
(`--ep 1,8`).
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any

import pandas as pd

from coda.arch.clusters import MAX_DEVICES
from coda.cli._args import cluster_name, int_list, int_range, text
from coda.cli._output import print_json, print_table
from coda.errors import ConfigError
from coda.models.config import MAX_LAYERS, MAX_SEQ_LEN
from coda.placement.chain import FSDP, MEGATRON_2021, MEGATRON_CORE, Software
from coda.placement.plan import ZERO_STAGES, PipelineSchedule, Recompute
from coda.placement.rules import MAX_GLOBAL_BATCH_TOKENS
from coda.placement.software import DEEPSPEED_2021, GRAD_DTYPES, MEGATRON_CORE_2024
from coda.units import GiB

SOFTWARE = {"default": Software(), "megatron-2021": MEGATRON_2021, "megatron-core": MEGATRON_CORE, "fsdp": FSDP,
            "deepspeed-2021": DEEPSPEED_2021, "megatron-core-2024": MEGATRON_CORE_2024}
SOFTWARE_FLAGS = ("tp_comm_overlap", "dp_gather_overlap", "grad_dtype")  # Software fields set over the profile
PLAN_FLAGS = ("tp", "pp", "dp", "micro_batch", "recompute", "sequence_parallel", "schedule", "virtual_stages", "zero")
WIDTH_FLAGS = ("cp", "ep", "recompute_every", "hsdp")  # default 1; a list is searched when optimising


def _widths(text: str) -> tuple[int, ...]:
    """`8` or `1,2,8` -> (8,) or (1, 2, 8): widths in [1, MAX_DEVICES]."""
    return int_list(1, MAX_DEVICES, " (devices in the largest cluster modelled)")(text)


def _cluster(args: argparse.Namespace) -> Any:
    from coda.arch.accelerators import PRESETS, accelerator_preset
    from coda.arch.clusters import cluster, preset_description
    from coda.arch.gpus import gpu

    device: Any = None
    if args.device:
        device = accelerator_preset(args.device) if args.device.lower() in PRESETS else gpu(args.device)
    elif preset_description(args.cluster)["device_kind"] != "gpu":
        device = accelerator_preset("tpuv4-like")  # the accelerator model of the TPU v4 pod
    return cluster(args.cluster, args.devices, device=device)


def _compact(layers: list[int]) -> str:
    """`[6, 6, 6]` -> `3 x 6`; uneven splits are listed."""
    return f"{len(layers)} x {layers[0]}" if layers and len(set(layers)) == 1 else str(layers)


def _plan_table(result: Any) -> pd.DataFrame:
    s = dict(result.summary())
    s["stage_layers"] = _compact(s["stage_layers"])
    keys = ("model", "cluster", "devices", "plan", "stage_layers", "step_s", "tokens_per_s", "tokens_per_s_per_device",
            "model_TFLOPs_per_device", "hardware_TFLOPs_per_device", "mfu", "hfu", "peak_memory_GiB",
            "memory_limit_GiB", "software")
    return pd.DataFrame([dict(field=k, value=str(s[k]) if isinstance(s[k], (list, bool)) else s[k]) for k in keys])


def _run(args: argparse.Namespace) -> int:
    from coda.evaluate.training import training
    from coda.models import get
    from coda.placement import Plan, memory_frame, optimize

    cfg = get(args.model)
    cl = _cluster(args)
    sw = SOFTWARE[args.software]
    changes = {k: getattr(args, k) for k in SOFTWARE_FLAGS if getattr(args, k) is not None}
    if changes:  # the label says what was changed, e.g. megatron-core+tp_comm_overlap=True
        sw = replace(sw, **changes, name="+".join([sw.name, *(f"{k}={v}" for k, v in changes.items())]))
    given = {k: getattr(args, k) for k in PLAN_FLAGS if getattr(args, k) is not None}
    ranked = None
    if len(given) == len(PLAN_FLAGS):
        widths: dict[str, Any] = {}
        for k in WIDTH_FLAGS:
            values = (1,) if getattr(args, k) is None else getattr(args, k)
            if len(values) > 1:
                flag = k.replace("_", "-")
                what = "width" if k in ("cp", "ep") else "value"
                raise ConfigError(f"--{flag} {','.join(map(str, values))}: a fully given plan takes one {k} {what}; "
                                  "leave a plan flag out to optimise over several")
            widths[k] = values[0]
        plan = Plan(global_batch=args.global_batch, **widths, **given)
        result = training(cfg, cl, plan, args.seq_len, args.dtype, software=sw)
    else:
        extra = {k: getattr(args, k) for k in WIDTH_FLAGS if getattr(args, k) is not None}
        _, result, ranked = optimize(cfg, cl, args.global_batch, args.seq_len, dtype=args.dtype, software=sw, **given,
                                     **extra)
    if args.json:
        out = result.to_dict()
        if ranked is not None:
            out["alternatives"] = ranked.head(args.top).to_dict(orient="records")
            out["search"] = dict(ranked.attrs)
        print_json(out)
        return 0
    print_table(_plan_table(result), title="plan" if ranked is None else
                f"best plan (optimised: {', '.join(k for k in PLAN_FLAGS if k not in given)})")
    print()
    bd = result.breakdown_frame()
    bd["time_s"] = bd["time_s"].map(lambda v: f"{v:.4g}")
    print_table(bd, title="step-time breakdown")
    print()
    print_table(memory_frame(result), title="memory per device by stage (GiB)")
    if ranked is not None:
        print()
        a = ranked.attrs
        shown = ranked.drop(columns=["stage_layers"]).head(args.top)
        shown = shown.assign(peak_memory_bytes=shown["peak_memory_bytes"] / GiB).rename(
            columns={"peak_memory_bytes": "peak_memory_GiB"})  # SI in the frame, GiB on screen
        print_table(shown,
                    title=f"top {args.top} of {a['evaluated']} evaluated plans ({a['candidates']} candidates, "
                          f"{a['pruned_by_bound']} pruned by bound, {a['pruned_by_memory']} by memory, "
                          f"{a['seconds']:.2f} s)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    devices = int_range(1, MAX_DEVICES, " (devices in the largest cluster modelled)")
    p = sub.add_parser("train", help="evaluate or optimise a parallel training plan",
                       description="Evaluate a training plan; plan flags left out are optimised.")
    p.add_argument("--model", required=True, type=text("model"), help="preset name or config.json (required)")
    p.add_argument("--cluster", required=True, type=cluster_name(), help="cluster preset (`coda hardware clusters`): "
                   "dgx-a100, dgx-h100, tpuv4-pod, vidur-a100, vidur-h100, or a cluster from its parts, e.g. "
                   "h100-sxm:8:nvlink=200GBps:ib=400Gbps (required)")
    p.add_argument("--devices", type=devices, required=True,
                   help=f"devices in the cluster, all used, at most 2^20 = {MAX_DEVICES} (required)")
    p.add_argument("--device", type=text("device"), default=None,
                   help="replace the cluster's device: a GPU or accelerator preset name (default: the cluster's)")
    p.add_argument("--global-batch", type=int_range(1, MAX_GLOBAL_BATCH_TOKENS, " (sequences)"), required=True,
                   help=f"sequences per optimizer step; global batch x seq-len at most 2^30 = "
                        f"{MAX_GLOBAL_BATCH_TOKENS} tokens (required)")
    p.add_argument("--seq-len", type=int_range(1, MAX_SEQ_LEN, " (tokens; the longest context modelled)"),
                   required=True, help="tokens per sequence (required)")
    p.add_argument("--dtype", type=text("dtype"), default="bf16", help="bf16 | fp16 | fp32 (default: bf16)")
    p.add_argument("--software", choices=sorted(SOFTWARE), default="default",
                   help="framework behaviour: default (FlashAttention, overlapped DP), megatron-2021, megatron-core, "
                        "megatron-core-2024 (TP and weight-gather overlap), fsdp, deepspeed-2021 (ZeRO-3 per-tensor "
                        "gathers, not overlapped) (default: default)")
    p.add_argument("--tp-comm-overlap", dest="tp_comm_overlap", action=argparse.BooleanOptionalAction, default=None,
                   help="overlap the sequence-parallel TP all-gathers / reduce-scatters with their GEMMs "
                        "(Megatron-Core --tp-comm-overlap, TE userbuffers; needs sequence parallelism) (default: the "
                        "software's)")
    p.add_argument("--dp-gather-overlap", dest="dp_gather_overlap", action=argparse.BooleanOptionalAction,
                   default=None, help="overlap the ZeRO-1/2 weight all-gather with the next step's first forward "
                   "(Megatron-Core --overlap-param-gather) (default: the software's)")
    p.add_argument("--grad-dtype", dest="grad_dtype", choices=GRAD_DTYPES,
                   help="dtype the gradients are accumulated and reduced in (Megatron-LM before 2025: fp32 for every "
                        "bf16 run) (default: the software's; for most, the weights' dtype)")
    p.add_argument("--tp", type=devices, help="tensor-parallel width, devices (default: optimised)")
    p.add_argument("--cp", type=_widths, help="context-parallel width (needs fused attention); a list such as 1,2 is "
                   "searched when optimising (default: 1)")
    p.add_argument("--ep", type=_widths, help="expert-parallel width (MoE; divides the experts and tp*cp*dp); a list "
                   "such as 1,8 is searched when optimising (default: 1)")
    p.add_argument("--pp", type=devices, help="pipeline stages (default: optimised)")
    p.add_argument("--dp", type=devices, help="data-parallel replicas (default: optimised)")
    p.add_argument("--micro-batch", dest="micro_batch", type=int_range(1, MAX_GLOBAL_BATCH_TOKENS, " (sequences)"),
                   help="sequences per micro-batch (default: optimised)")
    p.add_argument("--recompute", choices=[r.value for r in Recompute],
                   help="activation recomputation (default: optimised)")
    p.add_argument("--sequence-parallel", dest="sequence_parallel", action=argparse.BooleanOptionalAction,
                   default=None, help="Megatron sequence parallelism (default: optimised)")
    p.add_argument("--schedule", choices=[s.value for s in PipelineSchedule],
                   help="pipeline schedule (default: optimised)")
    p.add_argument("--virtual-stages", dest="virtual_stages", type=int_range(1, MAX_LAYERS, " (layers)"),
                   help="model chunks per device, interleaved schedule (default: optimised)")
    p.add_argument("--zero", type=int, choices=ZERO_STAGES, help="ZeRO stage (default: optimised)")
    p.add_argument("--recompute-every", dest="recompute_every", type=int_list(1, MAX_LAYERS, " (layers)"),
                   help="with --recompute full, checkpoint every k-th block (blocks 0, k, 2k, ...); a list such as "
                        "1,2,4 is searched when optimising (default: 1, every block)")
    p.add_argument("--hsdp", type=_widths, help="hybrid sharding (zero >= 1): ZeRO states sharded over dp*cp/hsdp "
                   "devices, replicated over hsdp groups; a list such as 1,4 is searched when optimising (default: 1, "
                   "shard over all replicas)")
    p.add_argument("--top", type=int_range(1, 10**6), default=10, help="alternatives to list when optimising "
                   "(default: 10)")
    p.add_argument("--json", action="store_true", help="machine-readable output (default: off, tables)")
    p.set_defaults(handler=_run)
