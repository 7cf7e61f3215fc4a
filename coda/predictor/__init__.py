"""Latency of one op on one device: `latency(op, device)` and `explain(op, device)`.

Dispatch: a `GPU` uses the calibrated `GPUTileModel`, an `Accelerator` the analytical
`AcceleratorTileModel`; pass `model=` to choose (e.g. `Roofline()` for the baseline).
"""

from __future__ import annotations

from typing import Any

from coda.models.ops import Op
from coda.predictor.base import BasePredictor, Estimate
from coda.predictor.roofline import Roofline


def default_model(device: Any) -> BasePredictor:
    """The default predictor for a device type."""
    from coda.arch.accelerators import Accelerator
    from coda.arch.gpus import GPU

    if isinstance(device, GPU):
        from coda.predictor.gpu_tiles import GPUTileModel

        return GPUTileModel.default()
    if isinstance(device, Accelerator):
        from coda.predictor.accel_tiles import AcceleratorTileModel

        return AcceleratorTileModel()
    return Roofline()


def explain(op: Op, device: Any, model: BasePredictor | None = None) -> Estimate:
    """Latency of `op` on `device` with its breakdown (tiles, waves, utilisation, bound)."""
    return (model or default_model(device)).estimate(op, device)


def latency(op: Op, device: Any, model: BasePredictor | None = None) -> float:
    """Predicted seconds of `op` on `device`."""
    return explain(op, device, model).latency_s


__all__ = ["BasePredictor", "Estimate", "Roofline", "explain", "latency", "default_model"]
