"""`coda predict`: the latency of one op on one device, with its breakdown."""

from __future__ import annotations

import argparse
from typing import Any

import pandas as pd

from coda.cli._output import print_json, print_table
from coda.errors import ConfigError, UnknownNameError
from coda.models import ops
from coda.units import fmt_si

OP_KINDS = ("matmul", "attention", "elementwise", "layernorm", "softmax")


def _device(name: str) -> Any:
    """A GPU from the catalog, or an accelerator preset (`tpuv4-like`, ...)."""
    from coda.arch.accelerators import PRESETS, accelerator_preset
    from coda.arch.gpus import gpu, list_gpus

    if name.lower() in PRESETS:
        return accelerator_preset(name)
    try:
        return gpu(name)
    except UnknownNameError:
        raise UnknownNameError("device", name, [*list_gpus(), *PRESETS]) from None


def _op(a: argparse.Namespace) -> ops.Op:
    if a.op == "matmul":
        return ops.matmul(a.m, a.k, a.n, batch=a.batch, dtype=a.dtype)
    if a.op == "attention":
        return ops.attention(a.batch, a.heads, a.kv_heads or a.heads, a.q_len, a.kv_len or a.q_len, a.head_dim,
                             causal=a.causal, dtype=a.dtype)
    if a.op == "elementwise":
        return ops.elementwise(a.n_elements, 1, 2, a.dtype, fn="add")
    if a.op == "layernorm":
        return ops.layernorm(a.rows, a.cols, a.dtype)
    if a.op == "softmax":
        return ops.softmax(a.rows, a.cols, a.dtype)
    raise ConfigError(f"unknown op {a.op!r}")


def _run(a: argparse.Namespace) -> int:
    from coda.predictor import Roofline, default_model

    device = _device(a.device)
    op = _op(a)
    ours = default_model(device).estimate(op, device)
    roof = Roofline().estimate(op, device)
    if a.json:
        print_json({"schema": "coda.predict/1", "op": {"kind": op.kind, **op.dims}, "device": a.device,
                    "flops": op.flops, "bytes": op.bytes, "latency_s": ours.latency_s, "bound": ours.bound,
                    "model": ours.model, "details": ours.details, "roofline_s": roof.latency_s})
        return 0
    print(f"{op.kind} {op.dims} on {a.device}: {fmt_si(op.flops, 'FLOP')}, {fmt_si(op.bytes, 'B')}")
    rows = [{"model": ours.model, "latency": fmt_si(ours.latency_s, "s"), "bound": ours.bound,
             "achieved": fmt_si(op.flops / ours.latency_s, "FLOP/s")},
            {"model": roof.model, "latency": fmt_si(roof.latency_s, "s"), "bound": roof.bound,
             "achieved": fmt_si(op.flops / roof.latency_s, "FLOP/s")}]
    print_table(pd.DataFrame(rows))
    print("breakdown: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                    for k, v in ours.details.items()))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("predict", help="latency of one op on a GPU or an accelerator, with its breakdown")
    p.add_argument("op", choices=OP_KINDS)
    p.add_argument("--device", default="h100-sxm", help="GPU name (coda hardware gpus) or accelerator preset")
    p.add_argument("--dtype", default="bf16")
    p.add_argument("--m", type=int, default=4096)
    p.add_argument("--k", type=int, default=4096)
    p.add_argument("--n", type=int, default=4096)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--heads", type=int, default=32)
    p.add_argument("--kv-heads", type=int, default=None)
    p.add_argument("--q-len", type=int, default=2048)
    p.add_argument("--kv-len", type=int, default=None)
    p.add_argument("--head-dim", type=int, default=128)
    p.add_argument("--causal", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--n-elements", type=int, default=1 << 24)
    p.add_argument("--rows", type=int, default=4096)
    p.add_argument("--cols", type=int, default=4096)
    p.add_argument("--json", action="store_true", help="machine-readable output (schema coda.predict/1)")
    p.set_defaults(handler=_run)
