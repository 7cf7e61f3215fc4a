"""The chips of the serving design search (`coda.serving.design_search`) and what is computed per chip.

`Chip`: a design, a reference accelerator or a GPU, and the cluster it is deployed on; `layout_counts` and
`rough_linear_table`: the cheap roofline lower bound of a chip's token-level iteration times (the search's rough
bound); `evaluate_candidate`: one deployment's capacity, run in a worker.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from coda.arch.accelerators import Accelerator, tpuv4, tpuv4_like
from coda.arch.clusters import Cluster, cluster
from coda.arch.design_space import design_cluster
from coda.arch.gpus import GPU, gpu
from coda.caches import memoize
from coda.models.config import ModelConfig
from coda.models.ops import Op
from coda.predictor.base import BasePredictor, Estimate
from coda.predictor.roofline import TENSOR_KINDS, min_flops
from coda.serving.capacity import capacity_row
from coda.serving.costs import CostTable, IterationCost, linear_table
from coda.serving.deployment import Deployment
from coda.serving.metrics import SLO
from coda.serving.space import DeploymentSpec, dgx_preset
from coda.serving.trace import Trace

DEFAULT_GPUS = ("a100-sxm4-80gb", "h100-sxm")
"""GPU rows shown beside the designs (DGX nodes, calibrated GPU model)."""
_QUANTITIES = ("tensor_flops", "vector_flops", "bytes", "zero")


# --- chips ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Chip:
    """A device the search deploys on: a design, a reference accelerator, or a GPU (on its DGX preset)."""

    name: str
    kind: str  # "design", "reference" or "gpu"
    device: Accelerator | GPU

    @property
    def tdp_w(self) -> float:
        return float(self.device.tdp_w)

    def cluster(self, n: int) -> Cluster:
        """`n` of it: the TPU v4 torus with its links (`design_cluster`) or its DGX preset."""
        if isinstance(self.device, Accelerator):
            return design_cluster(self.device, n)
        return cluster(dgx_preset(self.device), n, device=self.device)

    def deployment(self, cfg: ModelConfig, spec: DeploymentSpec) -> Deployment:
        return Deployment(cfg, self.cluster(spec.n_devices), tp=spec.tp, pp=spec.pp, ep=spec.ep,
                          replicas=spec.replicas, dtype=spec.dtype, scheduler=spec.scheduler_config())

    def key(self) -> dict[str, Any]:
        """What a stored row of this chip depends on."""
        if isinstance(self.device, Accelerator):
            return {"accelerator": asdict(self.device)}
        return {"gpu": self.device.name}

    def describe(self) -> dict[str, Any]:
        """Template fields, area and TDP (NaN for a GPU's template fields; its die area)."""
        d = self.device
        names = ("n_tc", "tc_rows", "tc_cols", "n_vc", "vc_lanes", "glb_bytes")
        if isinstance(d, Accelerator):
            out: dict[str, Any] = {f: getattr(d, f) for f in names}
            peak, area = d.peak_flops, d.area_mm2
        else:
            out = dict.fromkeys(names, math.nan)
            peak, area = d.peak_flops("bf16", tensor_core=True), d.die_area_mm2
        out.update(hbm_bytes=float(d.hbm_bytes), hbm_bw_bytes_per_s=float(d.hbm_bw_bytes_per_s),
                   peak_flops=float(peak), area_mm2=float(area), tdp_w=self.tdp_w)
        return out


def reference_chips(references: bool, gpus: Sequence[str]) -> list[Chip]:
    """PHAZE's TPUv4-like chip and the faithful TPU v4 (when `references`), then the GPUs."""
    out = [Chip("tpuv4-like", "reference", tpuv4_like()), Chip("tpuv4", "reference", tpuv4())] if references else []
    return out + [Chip(g.name, "gpu", g) for g in dict.fromkeys(gpu(n) for n in gpus)]


# --- the rough bound -----------------------------------------------------------------------------
class _Counter(BasePredictor):
    """Not a latency model: each op's FLOPs on the tensor cores, on the vector units, or bytes moved (as
    seconds, so `IterationCost` sums them exactly as it sums times); `zero` leaves the collectives alone."""

    def __init__(self, quantity: str) -> None:
        self.quantity = quantity
        self.name = f"count:{quantity}"

    def estimate(self, op: Op, device: Any) -> Estimate:
        tensor = op.kind in TENSOR_KINDS
        v = {"tensor_flops": min_flops(op) if tensor else 0.0, "vector_flops": 0.0 if tensor else min_flops(op),
             "bytes": float(op.bytes), "zero": 0.0}[self.quantity]
        return Estimate(float(v), "compute", self.name)


def layout_counts(dep: Deployment, tokens: int) -> dict[str, np.ndarray]:
    """Per token count 0..tokens and stage, the token-level ops' tensor FLOPs, vector FLOPs and bytes
    (`tokens + 1, pp` arrays, at `linear_table`'s knots and linear between, as it is): device-independent."""
    tables = {q: linear_table(IterationCost(dep, _Counter(q)), tokens) for q in _QUANTITIES}
    return {q: np.maximum(tables[q] - tables["zero"], 0.0) for q in _QUANTITIES[:3]}


def rough_linear_table(counts: Mapping[str, np.ndarray], device: Accelerator | GPU) -> np.ndarray:
    """A lower bound of `linear_table` on `device`: the roofline of each stage's summed FLOPs and bytes,
    collectives left out (module docstring); slightly lowered so that rounding cannot lift it above."""
    if isinstance(device, Accelerator):
        p_t, p_v = device.peak_flops, device.vector_flops
    else:  # a GPU's roofline peak depends on the op's dtype: the highest of its peaks is below every op's time
        p_t = p_v = max(v for v in asdict(device.tensor_flops_per_s).values() if v is not None)
    compute = counts["tensor_flops"] / p_t + counts["vector_flops"] / p_v
    memory = counts["bytes"] / device.hbm_bw_bytes_per_s
    return np.asarray(np.maximum(compute, memory) * (1 - 1e-9))


# --- the worker ----------------------------------------------------------------------------------
@memoize("serving.design_search.tables", maxsize=16)
def chip_table(cfg: ModelConfig, chip: Chip, tp: int, pp: int, ep: int, dtype: str, max_tokens: int,
               max_sequences: int, max_context: int) -> CostTable:
    """The iteration-cost table of a layout on a chip (replicas and the scheduler do not change it)."""
    return CostTable.for_layout(Deployment(cfg, chip.cluster(tp * pp * ep), tp=tp, pp=pp, ep=ep, dtype=dtype),
                                max_tokens, max_sequences, max_context)


def evaluate_candidate(chip: Chip, spec: DeploymentSpec, cfg: ModelConfig, template: Trace, slo: SLO,
                       upper_qps: float, rel_tol: float, table_dims: tuple[int, int, int],
                       beat_qps: float = 0.0) -> dict[str, Any]:
    """The capacity row of one deployment on one chip (module-level, so a process pool can run it)."""
    table = chip_table(cfg, chip, spec.tp, spec.pp, spec.ep, spec.dtype, *table_dims)
    return capacity_row(chip.deployment(cfg, spec), template, slo, upper_qps, table, rel_tol, beat_qps)


__all__ = ["DEFAULT_GPUS", "Chip", "chip_table", "evaluate_candidate", "layout_counts", "reference_chips",
           "rough_linear_table"]
