"""`coda predict`: the latency of one op on one device, with its breakdown."""

from __future__ import annotations

import argparse
from typing import Any

import pandas as pd

from coda.cli._args import int_range, text
from coda.cli._output import print_json, print_table
from coda.errors import ConfigError, UnknownNameError
from coda.models import ops
from coda.models.config import MAX_HEADS, MAX_WIDTH
from coda.placement.rules import divisors
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
        kv_heads = a.heads if a.kv_heads is None else a.kv_heads
        if a.heads % kv_heads:
            raise ConfigError(f"--kv-heads {kv_heads} must divide --heads {a.heads} (grouped-query attention); "
                              f"valid: {', '.join(str(d) for d in divisors(a.heads) if d <= 2 * kv_heads)}")
        return ops.attention(a.batch, a.heads, kv_heads, a.q_len, a.q_len if a.kv_len is None else a.kv_len,
                             a.head_dim, causal=a.causal, dtype=a.dtype)
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


MAX_OP_DIM = 2**24
"""Largest matmul, sequence or row/column extent `coda predict` takes (16777216): a dimension
beyond it gives a single kernel of more than 10^21 FLOPs or 2^48 elements."""
MAX_ELEMENTS = 2**40
"""Most elements of one elementwise op (a 2 TiB bf16 tensor, beyond any device memory)."""


def register(sub: argparse._SubParsersAction) -> None:
    dim = int_range(1, MAX_OP_DIM, " (the largest op extent modelled)")
    count = int_range(1, MAX_HEADS, " (heads)")
    p = sub.add_parser("predict", help="latency of one op on a GPU or an accelerator, with its breakdown")
    p.add_argument("op", choices=OP_KINDS, help="the op to time")
    p.add_argument("--device", type=text("device"), default="h100-sxm",
                   help="GPU name (`coda hardware gpus`) or accelerator preset (default: h100-sxm)")
    p.add_argument("--dtype", type=text("dtype"), default="bf16", help="element type: bf16, fp16, fp32, tf32, fp8 "
                   "(default: bf16)")
    p.add_argument("--m", type=dim, default=4096, help="matmul rows of A and C, elements (default: 4096)")
    p.add_argument("--k", type=dim, default=4096, help="matmul reduction dimension, elements (default: 4096)")
    p.add_argument("--n", type=dim, default=4096, help="matmul columns of B and C, elements (default: 4096)")
    p.add_argument("--batch", type=dim, default=1, help="batched matmuls, or sequences for attention (default: 1)")
    p.add_argument("--heads", type=count, default=32, help="attention query heads (default: 32)")
    p.add_argument("--kv-heads", type=count, default=None,
                   help="attention key/value heads, dividing --heads (default: --heads, i.e. multi-head)")
    p.add_argument("--q-len", type=dim, default=2048, help="attention query length, tokens (default: 2048)")
    p.add_argument("--kv-len", type=dim, default=None, help="attention key/value length, tokens (default: --q-len)")
    p.add_argument("--head-dim", type=int_range(1, MAX_WIDTH, " (the widest head modelled)"), default=128,
                   help="attention head width, elements (default: 128)")
    p.add_argument("--causal", action=argparse.BooleanOptionalAction, default=True,
                   help="causal attention mask (default: on)")
    p.add_argument("--n-elements", type=int_range(1, MAX_ELEMENTS, " (a tensor beyond any device memory)"),
                   default=1 << 24, help="elementwise op size, elements (default: 2^24 = 16777216)")
    p.add_argument("--rows", type=dim, default=4096, help="layernorm/softmax rows (default: 4096)")
    p.add_argument("--cols", type=dim, default=4096, help="layernorm/softmax columns, elements (default: 4096)")
    p.add_argument("--json", action="store_true",
                   help="machine-readable output, schema coda.predict/1 (default: off, a table)")
    p.set_defaults(handler=_run)
