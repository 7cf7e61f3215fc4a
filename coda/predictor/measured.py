"""Measured kernel latencies shipped with coda, as one tidy table of ops.

Sources (MIT; see `coda/data/DATA_LICENSES.md`):
- NeuSight FP32 kernels (PyTorch 2.1, no TF32): `bmm`, `linear` (output B x M x K, reduction
  N), elementwise `B x H` ops, LayerNorm and softmax over rows of H. Latency: mean of the 5
  fastest of 25 runs, in ms.
- Vidur FP16 per-layer profiles of Llama-2-7B/70B, Llama-3-8B and phi-2 on A100-80GB and
  H100-SXM: each GEMM is `num_tokens x n_embd` times the layer's weight shard (`/ tp`); median ms.

`kernels()` returns one row per measurement with the coda `Op` that reproduces it, the
catalog GPU name and the latency in seconds, plus the grouping columns used to split fitting
from held-out data (`source`, `gpu`, `model`, `family`).
"""

from __future__ import annotations

import gzip
import hashlib
import math
from functools import lru_cache
from importlib import resources
from typing import Any

import pandas as pd

from coda.arch.gpus import gpu as lookup_gpu
from coda.models import ops as O

NEUSIGHT_FILES = ("bmm", "linear", "elem", "ln", "softmax")
VIDUR_FILE = "vidur/compute/mlp.csv.gz"
VIDUR_ATTENTION_FILE = "vidur/attention/attention.csv.gz"
# NeuSight elementwise OPName -> (tensor inputs, FLOPs per element); "u" = unary (tensor op scalar)
NEUSIGHT_ELEMENTWISE = {
    "add": (2, 1), "mul": (2, 1), "div": (2, 1), "pow": (2, 1), "addu": (1, 1), "mulu": (1, 1), "divu": (1, 1),
    "powu": (1, 1), "relu": (1, 1), "tanh": (1, 1), "gelu": (1, 8),
}
# Vidur directory name -> catalog GPU (A100-80GB SXM4 and H100 SXM, per Vidur's profiling setup)
VIDUR_GPUS = {"a100": "a100-sxm4-80gb", "h100": "h100-sxm"}


def _data_path(rel: str) -> Any:
    return resources.files("coda").joinpath("data").joinpath(rel)


def data_files() -> list[str]:
    """The shipped files the predictor is calibrated on, relative to `coda/data`."""
    return [f"neusight/kernels/{n}.csv.gz" for n in NEUSIGHT_FILES] + [VIDUR_FILE, VIDUR_ATTENTION_FILE]


def data_sha256() -> str:
    """SHA-256 over the uncompressed contents of `data_files()`, in order."""
    h = hashlib.sha256()
    for rel in data_files():
        h.update(rel.encode())
        h.update(gzip.decompress(_data_path(rel).read_bytes()))
    return h.hexdigest()


def _read(rel: str) -> pd.DataFrame:
    """A shipped CSV with its column names made attribute-safe (`Kernel Name` -> `Kernel_Name`,
    `time_stats.add.median` -> `add`)."""
    with _data_path(rel).open("rb") as f:
        df = pd.read_csv(f, compression="gzip")
    return df.rename(columns=lambda c: c.removeprefix("time_stats.").removesuffix(".median").replace(" ", "_"))


def _neusight_rows() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for name in NEUSIGHT_FILES:
        df = _read(f"neusight/kernels/{name}.csv.gz")
        gpus = {d: lookup_gpu(d).name for d in df["Device"].unique()}
        for r in df.itertuples(index=False):
            op_name = r.OPName
            if name in ("bmm", "linear"):
                op = O.matmul(int(r.M), int(r.N), int(r.K), batch=int(r.B), dtype="fp32", name=op_name)
                family = "gemm"
            elif name == "ln":
                op, family = O.layernorm(int(r.B), int(r.H), "fp32", name="ln"), "norm"
            elif name == "softmax":
                op, family = O.softmax(int(r.B), int(r.H), "fp32", name="softmax"), "softmax"
            else:
                n_in, fpe = NEUSIGHT_ELEMENTWISE[op_name]
                op = O.elementwise(int(r.B) * int(r.H), fpe, n_in, "fp32", name=op_name, fn=op_name)
                family = "elementwise"
            rows.append(dict(source="neusight", gpu=gpus[r.Device], model="", layer_op=op_name, family=family, tp=1,
                             tokens=0, op=op, latency_s=float(r.Latency) * 1e-3, kernel=r.Kernel_Name))
    return rows


def _vidur_ops(r: Any) -> dict[str, Any]:
    """The coda ops of one Vidur row (fp16), keyed by Vidur's operator name."""
    T, tp, h = int(r.num_tokens), int(r.num_tensor_parallel_workers), int(r.n_embd)
    a, g, f = int(r.n_head), int(r.n_kv_head), int(r.n_expanded_embd)
    d = h // a
    a_t, g_t, f_t = a // tp, max(g // tp, 1), f // tp
    gated = bool(r.use_gated_mlp)
    dt = "fp16"
    return {
        "attn_pre_proj": O.matmul(T, h, (a_t + 2 * g_t) * d, dtype=dt, name="attn_pre_proj"),
        "attn_post_proj": O.matmul(T, a_t * d, h, dtype=dt, name="attn_post_proj"),
        "mlp_up_proj": O.matmul(T, h, (2 if gated else 1) * f_t, dtype=dt, name="mlp_up_proj"),
        "mlp_down_proj": O.matmul(T, f_t, h, dtype=dt, name="mlp_down_proj"),
        "mlp_act": O.elementwise(T * f_t, 5 if gated else 8, 2 if gated else 1, dt, name="mlp_act",
                                 fn="swiglu" if gated else "gelu"),
        "input_layernorm": O.norm(T, h, dt, "rmsnorm" if gated else "layernorm", name="input_layernorm"),
        "post_attention_layernorm": O.norm(T, h, dt, "rmsnorm" if gated else "layernorm",
                                           name="post_attention_layernorm"),
        "add": O.elementwise(T * h, 1, 2, dt, name="add", fn="add"),
        "attn_rope": O.elementwise(T * (a_t + g_t) * d, 3, 1, dt, name="attn_rope", fn="rope"),
        "emb": O.embedding(T, h, -(-int(r.vocab_size) // tp), dt, name="emb"),
    }


_VIDUR_FAMILY = {"attn_pre_proj": "gemm", "attn_post_proj": "gemm", "mlp_up_proj": "gemm", "mlp_down_proj": "gemm",
                 "mlp_act": "elementwise", "add": "elementwise", "attn_rope": "elementwise",
                 "input_layernorm": "norm", "post_attention_layernorm": "norm", "emb": "embedding"}


def _vidur_rows() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    df = _read(VIDUR_FILE)
    for r in df.itertuples(index=False):
        for name, op in _vidur_ops(r).items():
            value = getattr(r, name, None)
            if value is None or math.isnan(value):
                continue
            rows.append(dict(source="vidur", gpu=VIDUR_GPUS[r.gpu], model=r.model, layer_op=name,
                             family=_VIDUR_FAMILY[name], tp=int(r.num_tensor_parallel_workers),
                             tokens=int(r.num_tokens), op=op, latency_s=float(value) * 1e-3, kernel=""))
    return rows


def _vidur_attention_rows() -> list[dict[str, Any]]:
    """FlashAttention prefill (causal, a chunk of `prefill_chunk_size` after `kv_cache_size`
    cached tokens) and decode (one token per sequence against its cache) on A100, FP16."""
    rows: list[dict[str, Any]] = []
    df = _read(VIDUR_ATTENTION_FILE)
    for r in df.itertuples(index=False):
        tp = int(r.num_tensor_parallel_workers)
        heads, kv_heads = int(r.n_q_head) // tp, max(int(r.n_kv_head) // tp, 1)
        d = int(r.n_embd) // int(r.n_q_head)
        if r.is_prefill:
            q, value, name = int(r.prefill_chunk_size), r.attn_prefill, "attn_prefill"
            kv = int(r.kv_cache_size) + q
        else:
            q, kv, value, name = 1, int(r.kv_cache_size) + 1, r.attn_decode, "attn_decode"
        if math.isnan(value):
            continue
        op = O.attention(int(r.batch_size), heads, kv_heads, q, kv, d, causal=True, dtype="fp16", name=name)
        rows.append(dict(source="vidur", gpu=VIDUR_GPUS[r.gpu], model="meta-llama/Llama-2-70b-hf", layer_op=name,
                         family="attention", tp=tp, tokens=int(r.batch_size) * q, op=op,
                         latency_s=float(value) * 1e-3, kernel=""))
    return rows


@lru_cache(maxsize=1)
def _kernels() -> pd.DataFrame:
    df = pd.DataFrame(_neusight_rows() + _vidur_rows() + _vidur_attention_rows())
    df["kind"] = [op.kind for op in df["op"]]
    df["dtype"] = [op.dtype for op in df["op"]]
    return df


def kernels() -> pd.DataFrame:
    """All shipped measurements: columns source, gpu, model, layer_op, family, kind, dtype, tp,
    tokens, op (a coda `Op`), latency_s, kernel (NeuSight's cuBLAS kernel name, else "")."""
    return _kernels().copy()
