"""Latency of one op on one device: `latency(op, device)` and `explain(op, device)`.

Dispatch: a `GPU` uses the calibrated `GPUTileModel`, an `Accelerator` the analytical
`AcceleratorTileModel`; pass `model=` to choose (e.g. `Roofline()` for the baseline).
"""

from __future__ import annotations

from typing import Any

from coda.arch.accelerators import Accelerator
from coda.arch.gpus import GPU
from coda.models.graph import OpGraph
from coda.models.ops import Op
from coda.predictor.accel_tiles import AcceleratorTileModel
from coda.predictor.base import BasePredictor, Estimate, OpLatency
from coda.predictor.gpu_tiles import GPUTileModel
from coda.predictor.roofline import Roofline


def default_model(device: Any) -> BasePredictor:
    """The default predictor for a device: `GPUTileModel.default()` for a GPU (or a GPU name),
    `AcceleratorTileModel()` for an `Accelerator`."""
    if isinstance(device, Accelerator):
        return AcceleratorTileModel()
    if isinstance(device, (GPU, str)):
        return GPUTileModel.default()
    return Roofline()


def explain(op: Op, device: Any, model: BasePredictor | None = None) -> Estimate:
    """Latency of `op` on `device` with its breakdown (tiles, waves, utilisation, bound)."""
    return (model or default_model(device)).estimate(op, device)


def latency(op: Op, device: Any, model: BasePredictor | None = None) -> float:
    """Predicted seconds of `op` on `device`."""
    return explain(op, device, model).latency_s


def op_latencies(ops: list[Op], device: Any, model: BasePredictor | None = None) -> list[float]:
    """Seconds of each op on `device` (vectorised for the GPU tile model); collectives get 0,
    since a single device does not time them (use `Cluster.collective_time`)."""
    model = model or default_model(device)
    compute = [op for op in ops if op.kind != "collective"]
    if hasattr(model, "predict") and compute:
        times = iter(model.predict(compute, device).tolist())
    else:
        times = iter(model.latency(op, device) for op in compute)
    return [0.0 if op.kind == "collective" else next(times) for op in ops]


def graph_latency(graph: OpGraph, device: Any, model: BasePredictor | None = None) -> float:
    """Seconds to run a layer graph's compute ops one after another on one device (a GPU runs
    one kernel at a time in eager execution); collectives excluded."""
    return float(sum(op_latencies(graph.ops(), device, model)))


__all__ = ["AcceleratorTileModel", "BasePredictor", "Estimate", "GPUTileModel", "OpLatency", "Roofline",
           "default_model", "explain", "graph_latency", "latency", "op_latencies"]
