"""`Software`: what the training framework does, where frameworks differ, and presets of it."""

from __future__ import annotations

from dataclasses import dataclass, field

from coda.errors import ConfigError
from coda.models.ops import ATTENTION_KERNELS
from coda.placement import costs as C

ATTENTION_IMPLS = ("fused", "unfused")


@dataclass(frozen=True)
class Software:
    """What the training framework does, where frameworks differ (each choice is documented in docs/training.md).

    Attributes:
        attention: ``fused`` (FlashAttention: scores never stored, backward recomputes them) or
            ``unfused`` (bmm, scale+mask, softmax, bmm: Megatron-LM before FlashAttention).
        dp_overlap: the data-parallel gradient reduction overlaps with the backward pass of the
            last micro-batch (PyTorch DDP buckets, Megatron `--overlap-grad-reduce`); False: it
            starts after the backward pass (Megatron-LM 2021 local DDP).
        pp_overlap: pipeline send/recv overlaps with compute (False: blocking, as in Megatron-LM 2021).
        scatter_gather: Megatron's scatter/gather optimisation: each of the t ranks sends 1/t of
            a pipeline message, then an NVLink all-gather rebuilds it (Narayanan et al. SC'21 section 4.1).
        attention_kernel: fused attention kernel generation: ``fa2`` (FlashAttention-2) or ``fa3``
            (FlashAttention-3 / cuDNN fused attention on Hopper); see `coda.models.ops.attention`.
        dropout: training dropout kernels (attention probabilities when unfused; residual branches
            fused with their adds), as Megatron-LM's defaults (0.1) apply them; see `coda.models.build`.
        ep_overlap: the expert-parallel all-to-alls of one micro-batch run while another computes
            (Megatron-Core's combined 1F1B schedule, `overlap_moe_expert_parallel_comm`): per block
            only the excess over the block's forward and backward compute is exposed.
        reserved_bytes: device memory the framework keeps for itself (CUDA context, allocator slack).
        name: label for tables.
    """

    attention: str = field(default="fused", metadata={"help": "fused | unfused attention kernels"})
    dp_overlap: bool = field(default=True, metadata={"help": "overlap DP gradient sync with the last backward"})
    pp_overlap: bool = field(default=False, metadata={"help": "overlap pipeline send/recv with compute"})
    scatter_gather: bool = field(default=True, metadata={"help": "Megatron scatter/gather for pipeline messages"})
    dropout: bool = field(default=False, metadata={"help": "model training dropout kernels"})
    ep_overlap: bool = field(default=False, metadata={"help": "hide MoE all-to-alls behind other micro-batches"})
    attention_kernel: str = field(default="fa2", metadata={"help": "fused attention generation: fa2 | fa3"})
    reserved_bytes: float = field(default=0.0, metadata={"help": "device memory unavailable to training, bytes"})
    name: str = field(default="default", metadata={"help": "label"})

    def __post_init__(self) -> None:
        if self.attention not in ATTENTION_IMPLS:
            raise ConfigError(f"Software.attention={self.attention!r} must be one of {', '.join(ATTENTION_IMPLS)}")
        if self.attention_kernel not in ATTENTION_KERNELS:
            raise ConfigError(f"Software.attention_kernel={self.attention_kernel!r} must be one of "
                              f"{', '.join(ATTENTION_KERNELS)}")
        if not self.reserved_bytes >= 0:
            raise ConfigError(f"Software.reserved_bytes={self.reserved_bytes!r} must be >= 0")

    @property
    def graph_options(self) -> C.GraphOptions:
        """The graph-building choices of this software (`costs.GraphOptions`)."""
        return C.GraphOptions(self.attention, self.dropout, self.attention_kernel)


# Megatron-LM as benchmarked in Narayanan et al. SC'21 (no FlashAttention, which appeared in
# 2022; gradient all-reduce after the backward pass; blocking pipeline p2p; scatter/gather on).
MEGATRON_2021 = Software(attention="unfused", dp_overlap=False, pp_overlap=False, scatter_gather=True, dropout=True,
                         name="megatron-lm-2021")
# Megatron-Core as in NVIDIA's 2025 performance runs: cuDNN fused attention (FA3-class on Hopper),
# --overlap-grad-reduce, overlapped pipeline p2p, scatter/gather; no dropout (Llama).
MEGATRON_CORE = Software(attention="fused", dp_overlap=True, pp_overlap=True, scatter_gather=True,
                         attention_kernel="fa3", name="megatron-core")
# PyTorch FSDP as in MosaicML llm-foundry (FlashAttention, prefetching all-gathers).
FSDP = Software(attention="fused", dp_overlap=True, pp_overlap=False, scatter_gather=False, name="pytorch-fsdp")


__all__ = ["ATTENTION_IMPLS", "FSDP", "MEGATRON_2021", "MEGATRON_CORE", "Software"]
