"""One training step of a model on a cluster under a parallel plan: `training(cfg, cluster, plan, seq_len)`.

    result = coda.evaluate.training("gpt3-175b", cluster("dgx-a100", 1024),
                                    Plan(tp=8, pp=16, dp=8, micro_batch=1, global_batch=1536,
                                         recompute="full", schedule="interleaved", virtual_stages=2),
                                    seq_len=2048)
    result.step_time_s, result.tokens_per_s, result.mfu, result.hfu
    result.breakdown_frame(), result.stages_frame()     # components of the step; per-stage memory

The model behind it lives in `coda.placement` (layer costs, pipeline timing, memory,
collectives); every modelling choice and its source is listed in docs/training.md.
"""

from __future__ import annotations

from typing import Any

from coda.arch.clusters import Cluster
from coda.errors import ConfigError
from coda.models.config import ModelConfig
from coda.placement import CostModel, Plan, Software, TrainingResult, evaluate_plan
from coda.placement.rules import batch_tokens_bound


def training(cfg: ModelConfig | str, cluster: Cluster, plan: Plan, seq_len: int, dtype: str = "bf16",
             software: Software | None = None, layer_time: Any = None, check_memory: bool = True) -> TrainingResult:
    """Step time with its breakdown, memory per device, tokens/s, TFLOP/s per device, MFU and HFU.

    Args:
        cfg: the model (or a preset name / config.json path).
        cluster: the cluster; every device is used (`plan.tp * plan.pp * plan.dp` must equal
            `cluster.n_devices`). Its device is a GPU (layer times from the calibrated predictor)
            or an `Accelerator` (layer times from the on-chip ILP schedule).
        plan: the parallel plan (`coda.placement.Plan`).
        seq_len: tokens per sequence.
        dtype: element type of weights and activations (``bf16``, ``fp16``, ``fp32``, ...).
        software: framework behaviour (`coda.placement.Software`; default: FlashAttention,
            gradient reduction overlapped with the last backward, blocking pipeline p2p).
        layer_time: override the layer timer (see `coda.placement.costs`).
        check_memory: raise if a device runs out of memory (else report `fits=False`).

    Returns:
        `TrainingResult`. MFU and HFU follow the one definition of `coda.placement.flops`, the same
        for GPUs and accelerators: model FLOPs are PaLM's matmul and attention count with causal
        attention at the entries its mask keeps, hardware FLOPs what the kernels execute
        (recomputation included), so `0 < mfu <= hfu <= 1`.

    Raises:
        InfeasibleDesign: a plan that does not match the model or cluster, or does not fit in
            memory; the message gives the numbers and the nearest valid choices.
        ConfigError: unknown preset or dtype, a cluster without a device model, a seq_len that
            is not a positive integer, or more than 2^30 tokens per step (`MAX_GLOBAL_BATCH_TOKENS`).
    """
    if not isinstance(cfg, ModelConfig):
        from coda.models import get

        cfg = get(cfg)
    if not isinstance(cluster, Cluster):
        raise ConfigError(f"cluster={cluster!r} must be a Cluster (e.g. coda.arch.clusters.cluster('dgx-a100', 8))")
    if not isinstance(plan, Plan):
        raise ConfigError(f"plan={plan!r} must be a coda.placement.Plan")
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1:
        raise ConfigError(f"seq_len={seq_len!r} must be a positive integer (tokens per sequence)")
    too_many = batch_tokens_bound(plan.global_batch, seq_len)
    if too_many:
        raise ConfigError(too_many[0])
    model = CostModel(cfg, cluster, seq_len, dtype, software or Software(), layer_time)
    return evaluate_plan(model, plan, check_memory=check_memory)


__all__ = ["training"]
