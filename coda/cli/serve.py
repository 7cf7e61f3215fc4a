"""`coda serve`: TTFT, TPOT, throughput and memory of serving a static batch.

    coda serve --model llama2-70b --cluster dgx-h100 --devices 8 --batch 64 --prompt-len 2048 \\
        --output-len 2048 --tp 2 --dtype fp8

Tensor parallelism over `--tp` devices in each of `--pp` pipeline stages, or expert parallelism
over `--ep` devices for MoE models; the other devices are independent replicas
(`coda.evaluate.inference.inference` documents the model).
"""

from __future__ import annotations

import argparse
from typing import Any

import pandas as pd

from coda.arch.clusters import MAX_DEVICES
from coda.cli._args import PLOT_SUFFIXES, int_list, int_range, output_file, text
from coda.cli._output import print_json, print_table
from coda.cli.train import _cluster
from coda.errors import ConfigError
from coda.evaluate.inference import MAX_BATCH
from coda.models.config import MAX_SEQ_LEN
from coda.plotting import pyplot, save_figure
from coda.serving.cli import add_simulation_flags, run_simulation, simulating
from coda.units import GiB

DTYPES = ("bf16", "fp16", "fp8")


SWEEP_COLUMNS = {"batch": ("batch", 1), "fits": ("fits", 1), "ttft_s": ("TTFT_ms", 1e3), "tpot_s": ("TPOT_ms", 1e3),
                 "e2e_s": ("batch_latency_s", 1), "tokens_per_s_per_device": ("tokens_per_s_per_device", 1),
                 "tokens_per_s": ("tokens_per_s", 1), "mbu": ("decode_mbu", 1),
                 "kv_cache_bytes": ("kv_cache_GiB", 1 / GiB)}
"""Result field -> (sweep table column, display scale: s -> ms, bytes -> GiB)."""


def _title(r: Any, one_batch: bool = False) -> str:
    """What was served on what (from `InferenceResult.to_dict()`); `one_batch` adds the batch and
    its micro-batches."""
    micro = f" ({r['micro_batches']} micro-batches)" if one_batch else ""
    return (f"{r['model']} on {r['n_devices']} x {r['device']}, tp={r['tp']}"
            + (f", pp={r['pp']}{micro}" if r["pp"] > 1 else "") + (f", ep={r['ep']}" if r["ep"] > 1 else "")
            + f", {r['dtype']}" + (f", batch {r['batch']}" if one_batch else "")
            + f", {r['prompt_len']} in / {r['output_len']} out")


def _plot(df: pd.DataFrame, path: str) -> None:
    plt = pyplot("--plot")
    ok = df[df["fits"]]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(ok["tpot_s"] * 1e3, ok["tokens_per_s_per_device"], marker="o")
    for _, r in ok.iterrows():
        ax.annotate(f"b={r['batch']}", (r["tpot_s"] * 1e3, r["tokens_per_s_per_device"]), textcoords="offset points",
                    xytext=(4, -10), fontsize=8)
    ax.set_xlabel("TPOT (ms per output token)")
    ax.set_ylabel("generated tokens/s per device")
    ax.set_title(_title(df.iloc[0]), fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path, "--plot")


def _sweep(args: argparse.Namespace, cfg: Any) -> int:
    from coda.evaluate.inference import inference_sweep

    df = inference_sweep(cfg, _cluster(args), args.tp, args.batch, args.prompt_len, args.output_len,
                         dtype=args.dtype, pp=args.pp, ep=args.ep)
    if args.plot:
        _plot(df, args.plot)
    if args.json:
        print_json(df.to_dict(orient="records"))
        return 0
    table = pd.DataFrame({name: df[c] if k == 1 else df[c] * k for c, (name, k) in SWEEP_COLUMNS.items()})
    print_table(table, title=f"{_title(df.iloc[0])}: static batches (fits = memory holds the batch)")
    print(f"largest batch that fits: {df['max_batch'].iloc[0]}")
    if args.plot:
        print(f"\nplot: {args.plot}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from coda.evaluate.inference import inference
    from coda.models import get

    if simulating(args):
        return run_simulation(args)
    for flag in ("batch", "prompt_len", "output_len"):
        if getattr(args, flag) is None:
            raise ConfigError(f"--{flag.replace('_', '-')} is required for a static batch (or give --trace, --qps "
                              "or --concurrency to simulate serving)")
    if args.plot:
        pyplot("--plot")  # matplotlib is there before the work
    cfg = get(args.model)
    if len(args.batch) > 1 or args.plot:
        return _sweep(args, cfg)
    r = inference(cfg, _cluster(args), args.tp, args.batch[0], args.prompt_len, args.output_len,
                  dtype=args.dtype, pp=args.pp, ep=args.ep)
    if args.json:
        print_json(r.to_dict())
        return 0
    perf = [("TTFT_ms", r.ttft_s * 1e3), ("TTFT_comm_ms", r.ttft_comm_s * 1e3), ("TPOT_ms", r.tpot_s * 1e3),
            ("TPOT_comm_ms", r.tpot_comm_s * 1e3), ("batch_latency_s", r.e2e_s),
            ("tokens_per_s", r.tokens_per_s), ("tokens_per_s_per_replica", r.tokens_per_s_per_replica),
            ("tokens_per_s_per_device", r.tokens_per_s_per_device), ("replicas", r.replicas), ("decode_mbu", r.mbu)]
    print_table(pd.DataFrame(perf, columns=["field", "value"]),
                title=_title(r.to_dict(), one_batch=True))
    print()
    mem = [("weights", r.weights_bytes), ("kv_cache", r.kv_cache_bytes), ("workspace", r.workspace_bytes),
           ("free", r.free_bytes), ("limit (HBM - reserve)", r.memory_limit_bytes)]
    print_table(pd.DataFrame([(k, v / GiB) for k, v in mem], columns=["memory per device", "GiB"]))
    print(f"largest batch that fits: {r.max_batch}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    devices = int_range(1, MAX_DEVICES, " (devices in the largest cluster modelled)")
    tokens = int_range(1, MAX_SEQ_LEN, " (tokens; the longest context modelled)")
    p = sub.add_parser("serve", help="serving: a static batch (TTFT, TPOT, tokens/s, memory), or a simulation of "
                       "requests under load (--trace, --qps or --concurrency)",
                       description="Evaluate static-batched inference of a model on a cluster, or simulate serving "
                                   "a request trace with iteration-level batching (docs/serving.md).")
    p.add_argument("--model", required=True, type=text("model"), help="preset name or config.json (required)")
    p.add_argument("--cluster", required=True, type=text("cluster"), help="cluster preset: dgx-a100, dgx-h100, "
                   "vidur-a100, vidur-h100 (`coda hardware clusters`) (required)")
    p.add_argument("--devices", type=devices, required=True, help="devices in the cluster: tp*pp per replica, the "
                   f"rest replicas; at most 2^20 = {MAX_DEVICES} (required)")
    p.add_argument("--device", type=text("device"), default=None,
                   help="replace the cluster's device: a GPU preset name (default: the cluster's)")
    p.add_argument("--batch", type=int_list(1, MAX_BATCH, " (sequences)"), default=None,
                   help="sequences served together; a list such as 1,8,32,128 prints the latency-throughput sweep "
                        "(required in the static mode; default: none)")
    p.add_argument("--prompt-len", dest="prompt_len", type=tokens, default=None,
                   help="input tokens per sequence (required in the static mode and with --qps unless --prompt-dist; "
                        "default: none)")
    p.add_argument("--output-len", dest="output_len", type=tokens, default=None,
                   help="generated tokens per sequence (required in the static mode and with --qps unless "
                        "--output-dist; default: none)")
    p.add_argument("--tp", type=devices, default=1, help="tensor-parallel width, devices (default: 1)")
    p.add_argument("--pp", type=devices, default=1, help="pipeline stages; the batch runs as min(pp, batch) "
                   "micro-batches (default: 1)")
    p.add_argument("--ep", type=devices, default=1, help="expert parallelism (MoE, with tp=pp=1): ep devices each "
                   "serve batch/ep sequences and hold E/ep experts (default: 1)")
    p.add_argument("--dtype", choices=DTYPES, default="bf16",
                   help="weights, activations and KV cache (default: bf16)")
    p.add_argument("--plot", metavar="OUT.png", type=output_file(PLOT_SUFFIXES), default=None,
                   help="write tokens/s per device against TPOT over the batches, or with --trace/--qps the latency "
                        "CDFs and batch size and KV use over time; needs matplotlib (default: none)")
    p.add_argument("--json", action="store_true", help="machine-readable output (default: off, tables)")
    add_simulation_flags(p)
    p.set_defaults(handler=_run)
