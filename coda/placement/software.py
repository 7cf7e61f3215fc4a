"""`Software`: what the training framework does, where frameworks differ, and presets of it."""

from __future__ import annotations

from dataclasses import dataclass, field

from coda.errors import ConfigError
from coda.models.ops import ATTENTION_KERNELS
from coda.placement import costs as C

ATTENTION_IMPLS = ("fused", "unfused")
ZERO3_GRANULARITIES = ("unit", "tensor")
GRAD_DTYPES = ("fp32", "bf16", "fp16")


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
        zero3_granularity: how ZeRO-3 gathers weights and reduces gradients: ``unit`` (one all-gather
            and one reduce-scatter of a layer's flat parameters, PyTorch FSDP) or ``tensor`` (one
            collective per weight tensor, DeepSpeed ZeRO-3 of 2021: `partition_parameters.py`
            `_allgather_param` and `_reduce_scatter_gradient`, one `torch.distributed` call per parameter).
        zero3_prefetch: ZeRO-3 gathers of the next unit run while this one computes, so only their
            excess over the unit's compute is exposed (FSDP); False: a module's gathers and its
            gradients' reduce-scatters are waited for in its hooks, so all of them are exposed.
        zero3_recompute_gather: a fully recomputed forward gathers the weights again (DeepSpeed
            releases them after every forward, recomputed or not: three gathers per step); False:
            the recomputation runs inside the unit's backward while its weights are gathered (FSDP).
        zero3_rank_copies: ZeRO-3 collectives go through the tensor-list `torch.distributed`
            calls of PyTorch <= 1.10 (`all_gather(list, t)`, `reduce_scatter(t, list)`), whose NCCL
            backend copies each of the n ranks' chunks out of (or into) a flat buffer with its own
            copy kernel (`ProcessGroupNCCL::allgather`): n copy kernels per collective, timed by the predictor.
        tp_comm_overlap: the sequence-parallel all-gathers and reduce-scatters of each block run
            beside the GEMMs of the same linear layers (Megatron-Core `--tp-comm-overlap`, Transformer
            Engine userbuffers; needs sequence parallelism): only what the decomposition cannot hide
            is exposed (`coda.placement.tp_overlap`). False: every TP collective is exposed.
        dp_gather_overlap: the ZeRO-1/2 all-gather of updated weights runs bucket by bucket beside the
            next step's first forward (Megatron-Core `--overlap-param-gather`: the first bucket's gather
            is waited for at once, each next one is launched from a forward pre-hook,
            `DistributedOptimizer._make_forward_pre_hook`): exposed is the first bucket's gather, or the
            excess of the whole gather over one micro-batch's forward. False: after the optimizer step.
        grad_dtype: element type of the gradients the framework accumulates and reduces over the
            data-parallel group (None: the weights' storage dtype). Megatron-LM makes it ``fp32`` for
            every bf16 run (`megatron/training/arguments.py`: "bfloat16 requires gradient accumulation
            and all-reduce to be done in fp32"; no way to turn it off until `--grad-reduce-in-bf16`,
            February 2025): 4 bytes of gradient per weight, and reduce-scatters of twice the bytes.
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
    zero3_granularity: str = field(default="unit", metadata={"help": "ZeRO-3 collectives per unit | per tensor"})
    zero3_prefetch: bool = field(default=True, metadata={"help": "hide ZeRO-3 gathers behind the previous unit"})
    zero3_recompute_gather: bool = field(default=False,
                                         metadata={"help": "gather weights again for a recomputed forward"})
    zero3_rank_copies: bool = field(default=False, metadata={"help": "one copy kernel per rank per ZeRO-3 collective"})
    tp_comm_overlap: bool = field(default=False, metadata={"help": "overlap sequence-parallel TP collectives with "
                                                                     "their GEMMs (TE userbuffers)"})
    dp_gather_overlap: bool = field(default=False, metadata={"help": "overlap the ZeRO-1/2 weight all-gather with "
                                                                         "the next step's first forward"})
    grad_dtype: str | None = field(default=None, metadata={"help": "gradient accumulation and reduction dtype "
                                                                    "(default: the weights' dtype)"})
    reserved_bytes: float = field(default=0.0, metadata={"help": "device memory unavailable to training, bytes"})
    name: str = field(default="default", metadata={"help": "label"})

    def __post_init__(self) -> None:
        if self.attention not in ATTENTION_IMPLS:
            raise ConfigError(f"Software.attention={self.attention!r} must be one of {', '.join(ATTENTION_IMPLS)}")
        if self.attention_kernel not in ATTENTION_KERNELS:
            raise ConfigError(f"Software.attention_kernel={self.attention_kernel!r} must be one of "
                              f"{', '.join(ATTENTION_KERNELS)}")
        if self.zero3_granularity not in ZERO3_GRANULARITIES:
            raise ConfigError(f"Software.zero3_granularity={self.zero3_granularity!r} must be one of "
                              f"{', '.join(ZERO3_GRANULARITIES)}")
        if self.grad_dtype is not None and self.grad_dtype not in GRAD_DTYPES:
            raise ConfigError(f"Software.grad_dtype={self.grad_dtype!r} must be one of {', '.join(GRAD_DTYPES)} "
                              "(or None: the weights' dtype)")
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
# --overlap-grad-reduce, overlapped pipeline p2p, scatter/gather; no dropout (Llama); gradients reduced in
# the weights' bf16 (Megatron-Bridge `scripts/performance`, `set_llama3_common_configs`: `grad_reduce_in_fp32 = False`).
MEGATRON_CORE = Software(attention="fused", dp_overlap=True, pp_overlap=True, scatter_gather=True,
                         attention_kernel="fa3", name="megatron-core")
# Megatron-Core as in the Megatron-LM README's H100 weak-scaling runs (`README.md`, "Training Speed and
# Scalability", `images/model_table.png`, commit f2e5db4 of July 2024): `MEGATRON_CORE`, plus the TP
# collectives overlapped with their GEMMs (`--tp-comm-overlap`, which the README names; Transformer Engine
# userbuffers, `coda.placement.tp_overlap`), the weight all-gather of the distributed optimizer overlapped
# with the next forward (`--overlap-param-gather`, also named there) and Megatron's default dropout of 0.1
# (`--hidden-dropout`, `--attention-dropout` in `megatron/training/arguments.py`), which the README does not change,
# and fp32 gradients: at that commit `arguments.py` sets `accumulate_allreduce_grads_in_fp32` for every bf16 run
# ("bfloat16 requires gradient accumulation and all-reduce to be done in fp32"), with no flag to turn it off.
MEGATRON_CORE_2024 = Software(attention="fused", dp_overlap=True, pp_overlap=True, scatter_gather=True,
                              attention_kernel="fa3", dropout=True, tp_comm_overlap=True, dp_gather_overlap=True,
                              grad_dtype="fp32", name="megatron-core-2024")
# PyTorch FSDP as in MosaicML llm-foundry (FlashAttention, prefetching all-gathers).
FSDP = Software(attention="fused", dp_overlap=True, pp_overlap=False, scatter_gather=False, name="pytorch-fsdp")
# DeepSpeed ZeRO-3 as benchmarked in Narayanan et al. SC'21 table 2 (DeepSpeed 0.3-0.5 on the Megatron
# GPT model, PyTorch 1.8, fp16), each choice from DeepSpeed's `runtime/zero/partition_parameters.py`
# and `stage3.py` of 2021 (docs/training.md, "DeepSpeed ZeRO-3 (2021)"):
# - the Megatron-LM kernels of 2021 (unfused attention, dropout), as `MEGATRON_2021`;
# - one all-gather per weight tensor (`_allgather_param`) and one reduce-scatter per gradient
#   (`_reduce_scatter_gradient`); tensors under `stage3_param_persistence_threshold` (1e5 elements:
#   biases, LayerNorms) stay whole on every device and are not gathered;
# - a submodule's gathers are waited for in its pre-forward / pre-backward hook and released in
#   its post hooks, so a checkpointed (recomputed) forward gathers again: three gathers per step;
#   the gradient reduce-scatters are waited for in the backward hooks (`overlap_comm` off, its
#   2021 default), so none of this traffic is counted as hidden;
# - PyTorch 1.8's tensor-list all_gather / reduce_scatter: one copy kernel per rank and collective.
DEEPSPEED_2021 = Software(attention="unfused", dp_overlap=False, pp_overlap=False, scatter_gather=False,
                          dropout=True, zero3_granularity="tensor", zero3_prefetch=False,
                          zero3_recompute_gather=True, zero3_rank_copies=True, name="deepspeed-zero3-2021")


__all__ = ["ATTENTION_IMPLS", "DEEPSPEED_2021", "FSDP", "MEGATRON_2021", "MEGATRON_CORE", "MEGATRON_CORE_2024",
           "ZERO3_GRANULARITIES", "Software"]
