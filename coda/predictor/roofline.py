"""Roofline: `latency = max(FLOPs / peak FLOP/s, bytes / memory bandwidth)`.

The baseline every validation table prints beside the tile models (Williams et al., "Roofline:
an insightful visual performance model", CACM 2009). It is also a lower bound: no predictor may
return less than it (tested).

Peaks used: on a GPU, tensor-core peak of the op's dtype for matmul/attention (CUDA-core peak
for fp32, which PyTorch runs without TF32 by default) and the CUDA-core peak for everything
else; on an accelerator, `peak_flops` (tensor cores) for matmul/attention and `vector_flops`
for everything else. Memory: HBM bandwidth.
"""

from __future__ import annotations

from typing import Any

from coda.arch.accelerators import Accelerator
from coda.arch.gpus import GPU
from coda.errors import ConfigError
from coda.models.ops import Op
from coda.predictor.base import BasePredictor, Estimate, reject_collective

TENSOR_KINDS = ("matmul", "attention", "attention_bwd")


def gpu_peak_flops(gpu: GPU, op: Op) -> float:
    """The compute ceiling of `op` on `gpu` (see module doc)."""
    if op.kind in TENSOR_KINDS and op.dtype != "fp32":
        return gpu.peak_flops(op.dtype, tensor_core=True)
    if getattr(gpu.simt_flops_per_s, op.dtype) is not None:
        return gpu.peak_flops(op.dtype, tensor_core=False)
    if op.kind in TENSOR_KINDS:
        return gpu.peak_flops(op.dtype, tensor_core=True)
    return gpu.peak_flops("fp32", tensor_core=False)


def peak_flops(device: Any, op: Op) -> float:
    """Compute ceiling of `op` on a GPU or an accelerator."""
    if isinstance(device, GPU):
        return gpu_peak_flops(device, op)
    if isinstance(device, Accelerator):
        return device.peak_flops if op.kind in TENSOR_KINDS else device.vector_flops
    raise ConfigError(f"no latency model for device of type {type(device).__name__}; use a GPU or an Accelerator")


def min_flops(op: Op) -> float:
    """FLOPs any implementation must execute: `op.flops`, except that causal attention needs only
    the unmasked scores. Query i of q (at position o + i, o = kv - q) sees `min(o + i + 1, W)`
    keys (W = the sliding window, else unbounded): with `n = clip(W - o - 1, 0, q)` queries short
    of the window the unmasked entries are `n*(o + 1) + n*(n - 1)/2 + (q - n)*W`, i.e.
    `q*o + q*(q + 1)/2` without a window, out of the `q * min(kv, W)` that `op.flops` counts
    (see `coda.models.ops`)."""
    if op.kind in ("attention", "attention_bwd") and op.dims["causal"]:
        q, kv = op.dims["q_len"], op.dims["kv_len"]
        w = op.dims.get("window") or kv
        if kv >= q:
            o = kv - q
            n = min(max(w - o - 1, 0), q)
            return op.flops * (n * (o + 1) + n * (n - 1) / 2 + (q - n) * w) / (q * min(kv, w))
    return op.flops


def roofline_time_s(op: Op, device: Any) -> tuple[float, float]:
    """(compute time, memory time) of `op` on `device` at peak, in seconds."""
    reject_collective(op)
    return min_flops(op) / peak_flops(device, op), op.bytes / device.hbm_bw_bytes_per_s


class Roofline(BasePredictor):
    """The roofline baseline (no fitted parameters)."""

    name = "roofline"

    def estimate(self, op: Op, device: Any) -> Estimate:
        compute_s, memory_s = roofline_time_s(op, device)
        bound = "compute" if compute_s >= memory_s else "memory"
        return Estimate(max(compute_s, memory_s), bound, self.name,
                        {"compute_s": compute_s, "memory_s": memory_s, "intensity_flop_per_byte": op.intensity})
