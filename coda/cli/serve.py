"""`coda serve`: TTFT, TPOT, throughput and memory of serving a static batch.

    coda serve --model llama2-70b --cluster dgx-h100 --devices 8 --batch 64 --prompt-len 2048 \\
        --output-len 2048 --tp 2 --dtype fp8

Tensor parallelism over `--tp` devices in each of `--pp` pipeline stages; the other devices are
independent replicas (`coda.evaluate.inference.inference` documents the model).
"""

from __future__ import annotations

import argparse

import pandas as pd

from coda.cli._output import print_json, print_table
from coda.cli.train import _cluster
from coda.units import GiB

DTYPES = ("bf16", "fp16", "fp8")


def _run(args: argparse.Namespace) -> int:
    from coda.evaluate.inference import inference
    from coda.models import get

    r = inference(get(args.model), _cluster(args), args.tp, args.batch, args.prompt_len, args.output_len,
                  dtype=args.dtype, pp=args.pp)
    if args.json:
        print_json(r.to_dict())
        return 0
    perf = [("TTFT_ms", r.ttft_s * 1e3), ("TTFT_comm_ms", r.ttft_comm_s * 1e3), ("TPOT_ms", r.tpot_s * 1e3),
            ("TPOT_comm_ms", r.tpot_comm_s * 1e3), ("batch_latency_s", r.e2e_s),
            ("tokens_per_s", r.tokens_per_s), ("tokens_per_s_per_replica", r.tokens_per_s_per_replica),
            ("tokens_per_s_per_device", r.tokens_per_s_per_device), ("replicas", r.replicas), ("decode_mbu", r.mbu)]
    print_table(pd.DataFrame(perf, columns=["field", "value"]),
                title=f"{r.model} on {r.n_devices} x {r.device}, tp={r.tp}"
                      + (f", pp={r.pp} ({r.micro_batches} micro-batches)" if r.pp > 1 else "")
                      + f", {r.dtype}, batch {r.batch}, {r.prompt_len} in / {r.output_len} out")
    print()
    mem = [("weights", r.weights_bytes), ("kv_cache", r.kv_cache_bytes), ("workspace", r.workspace_bytes),
           ("free", r.free_bytes), ("limit (HBM - reserve)", r.memory_limit_bytes)]
    print_table(pd.DataFrame([(k, v / GiB) for k, v in mem], columns=["memory per device", "GiB"]))
    print(f"largest batch that fits: {r.max_batch}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="TTFT, TPOT, tokens/s and memory of serving a static batch",
                       description="Evaluate static-batched inference of a model on a cluster.")
    p.add_argument("--model", required=True, help="preset name or config.json")
    p.add_argument("--cluster", required=True, help="cluster preset: dgx-a100, dgx-h100, vidur-a100, vidur-h100 "
                   "(`coda hardware clusters`)")
    p.add_argument("--devices", type=int, required=True, help="devices in the cluster (tp*pp per replica, the rest "
                   "replicas)")
    p.add_argument("--device", default=None, help="replace the cluster's device: a GPU preset name")
    p.add_argument("--batch", type=int, required=True, help="sequences served together")
    p.add_argument("--prompt-len", dest="prompt_len", type=int, required=True, help="input tokens per sequence")
    p.add_argument("--output-len", dest="output_len", type=int, required=True, help="generated tokens per sequence")
    p.add_argument("--tp", type=int, default=1, help="tensor-parallel width (default 1)")
    p.add_argument("--pp", type=int, default=1, help="pipeline stages (default 1); the batch runs as min(pp, batch) "
                   "micro-batches")
    p.add_argument("--dtype", choices=DTYPES, default="bf16", help="weights, activations and KV cache")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=_run)
