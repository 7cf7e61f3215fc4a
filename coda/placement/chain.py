"""Cost arrays of one plan over the layer chain, and the cost model that builds them.

The chain has n = l + 2 units: embedding, l blocks, head. `ChainCosts` holds, per unit and per
micro-batch on one device, everything the pipeline model and the stage-split DP need; `PlanTerms`
adds the plan-level communication constants. `CostModel.terms(plan)` builds both
(`coda.placement.terms`, step by step) from the layer profile (`costs.layer_profile`), the
cluster's collective model and the `Software` in use. The DP and its brute-force check only
ever see these arrays, so tests can feed synthetic ones.

Memory per parameter (Rajbhandari et al. SC'20, ZeRO, section 3): weights e bytes, gradients
e bytes, optimizer states 12 bytes for mixed-precision Adam (fp32 master weights, m, v; e = 2)
or 8 bytes (m, v) in fp32 training, i.e. 16 bytes per parameter in both cases. ZeRO-1 divides
the optimizer states by dp, ZeRO-3 all three (and gathers one unit's weights at a time).
Gradients kept wider than the weights (`Software.grad_dtype`, e.g. Megatron-LM's fp32 gradients of
a bf16 model) take their own width: 2 + 4 + 12/dp bytes with ZeRO-1, the "bf16 param, fp32 grads"
row of Megatron-LM's `docs/source/distrib_optimizer.md`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from coda.arch.clusters import Cluster, CollectiveCost
from coda.arch.device import Device
from coda.caches import memoize
from coda.errors import ConfigError
from coda.models.builder import activation_dtype
from coda.models.config import ModelConfig
from coda.placement import costs as C
from coda.placement import rules as R
from coda.placement.layout import Layout
from coda.placement.software import ATTENTION_IMPLS, DEEPSPEED_2021, FSDP, MEGATRON_2021, MEGATRON_CORE, Software
from coda.units import dtype_bytes


@dataclass(frozen=True, eq=False)
class ChainCosts:
    """Per-unit costs (arrays of length n = layers + 2) per micro-batch on one device.

    Times in seconds, memory in bytes: fwd_s, bwd_s (compute), rec_s (recomputation), tp_s (TP
    collectives of forward, backward and recomputed forward), ep_s / ep_hidden_s (the
    expert-parallel all-to-alls, likewise, exposed / hidden by `Software.ep_overlap`; zeros by
    default), z3_s / z3_hidden_s (ZeRO-3 gathers and reduce-scatters exposed / hidden behind
    compute), weight_bytes, grad_bytes,
    optim_bytes (static), act_bytes (stashed per in-flight micro-batch), work_bytes (transient
    while the unit runs), sync_bytes (gradients to reduce over dp at the end of the step; expert
    gradients, reduced over the smaller expert-data-parallel group, count at that group's cost per
    byte relative to dp's), opt_s (optimizer step), model_flops (3x forward) and hw_flops
    (executed, with recomputation).
    """

    fwd_s: np.ndarray
    bwd_s: np.ndarray
    rec_s: np.ndarray
    tp_s: np.ndarray
    z3_s: np.ndarray
    z3_hidden_s: np.ndarray
    weight_bytes: np.ndarray
    grad_bytes: np.ndarray
    optim_bytes: np.ndarray
    act_bytes: np.ndarray
    work_bytes: np.ndarray
    sync_bytes: np.ndarray
    opt_s: np.ndarray
    model_flops: np.ndarray
    hw_flops: np.ndarray
    ep_s: np.ndarray = None  # type: ignore[assignment]  # zeros when not given
    ep_hidden_s: np.ndarray = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        for name in ("ep_s", "ep_hidden_s"):
            if getattr(self, name) is None:
                object.__setattr__(self, name, np.zeros(len(self.fwd_s)))

    @property
    def n(self) -> int:
        return len(self.fwd_s)

    @property
    def time_s(self) -> np.ndarray:
        """Pipeline time of each unit per micro-batch: compute, recompute, TP and EP collectives, exposed
        ZeRO-3 comm."""
        return self.fwd_s + self.bwd_s + self.rec_s + self.tp_s + self.ep_s + self.z3_s

    @property
    def static_bytes(self) -> np.ndarray:
        return self.weight_bytes + self.grad_bytes + self.optim_bytes

    @property
    def window_s(self) -> np.ndarray:
        """Backward work of one micro-batch that a gradient reduction can hide behind."""
        return self.bwd_s + self.rec_s


@dataclass(frozen=True, eq=False)
class PlanTerms:
    """Costs of one plan shape: the chain arrays plus plan-level constants.

    Attributes:
        chain: per-unit arrays.
        p2p_s: exposed pipeline send/recv per stage per micro-batch (2v transfers; 0 if pp = 1).
        p2p_hidden_s: the part hidden behind compute (pp_overlap).
        dp_sync: per stage, the cost of the end-of-step gradient reduction (all-reduce, or
            reduce-scatter with ZeRO-1) as `CollectiveCost` over its data-parallel group.
        dp_gather: per stage, the ZeRO-1 all-gather of updated weights (zero cost otherwise).
        dp_overlap: the gradient reduction may hide behind the last micro-batch's backward.
        emb_sync_s: all-reduce of tied embedding gradients between first and last stage.
        memory_limit: usable bytes per device.
        gather_bucket_bytes: with the weight all-gather overlapped with the next forward
            (`Software.dp_gather_overlap`), the bytes of its first bucket, which nothing hides; None:
            the gather is not overlapped.
    """

    chain: ChainCosts
    p2p_s: float
    p2p_hidden_s: float
    dp_sync: tuple[CollectiveCost, ...]
    dp_gather: tuple[CollectiveCost, ...]
    dp_overlap: bool
    emb_sync_s: float
    memory_limit: float
    gather_bucket_bytes: float | None = None


def dp_group(plan: Layout, stage: int, tp_rank: int = 0) -> list[int]:
    """Ranks that hold the same weights in `stage` and reduce their gradients together: the
    data-parallel group, times the context-parallel one (Megatron layout: stride tp inside the stage)."""
    base = stage * plan.tp * plan.cp * plan.dp + tp_rank
    return [base + k * plan.tp for k in range(plan.cp * plan.dp)]


def ep_groups(plan: Layout, stage: int) -> tuple[list[int], list[int]]:
    """The expert-parallel group of `stage`'s first rank and its expert-data-parallel group, which
    reduces the expert gradients. Expert layers are laid out over the stage's tp*cp*dp ranks on
    their own (Megatron-Core's MoE parallel folding, experts not tensor-split): ep consecutive
    ranks hold different experts, ranks ep apart the same ones."""
    base, size = stage * plan.tp * plan.cp * plan.dp, plan.tp * plan.cp * plan.dp
    return list(range(base, base + plan.ep)), list(range(base, base + size, plan.ep))


optimizer_bytes_per_param = R.optimizer_bytes_per_param


@dataclass(frozen=True)
class CostModel:
    """Everything a plan's cost depends on besides the plan: model, cluster, sequence, dtype, software.

    Attributes:
        cfg: the model.
        cluster: the cluster (its device: a GPU or an Accelerator).
        seq_len: tokens per sequence.
        dtype: element type of weights and activations.
        software: framework behaviour (`Software`).
        layer_time: layer timer; None picks `costs.default_layer_time(device)`.
    """

    cfg: ModelConfig
    cluster: Cluster
    seq_len: int
    dtype: str = "bf16"
    software: Software = Software()
    layer_time: Any = None

    def __post_init__(self) -> None:
        dtype_bytes(self.dtype)
        if isinstance(self.seq_len, bool) or not isinstance(self.seq_len, int) or self.seq_len < 1:
            raise ConfigError(f"seq_len={self.seq_len!r} must be a positive integer")
        if isinstance(self.cluster.device, str):
            raise ConfigError(f"cluster {self.cluster.name!r} names its device {self.cluster.device!r} but gives no "
                              "model of it; pass one, e.g. cluster('tpuv4-pod', n, device=tpuv4_like())")
        if self.layer_time is None:
            object.__setattr__(self, "layer_time", C.default_layer_time(self.cluster.device))

    @property
    def device(self) -> Device:
        """The cluster's device (`__post_init__` refused a bare name)."""
        return self.cluster.device

    @property
    def storage_dtype(self) -> str:
        """Element type of stored weights, gradients, activations and messages: bf16 when training
        in FP8 (only the block GEMMs run in FP8, `coda.models.builder.activation_dtype`)."""
        return activation_dtype(self.dtype)

    @property
    def memory_limit(self) -> float:
        return C.device_memory_bytes(self.device) - self.software.reserved_bytes

    def profile(self, layout: Layout | int, micro_batch: int = 1, sequence_parallel: bool = False, cp: int = 1,
                ep: int = 1) -> C.LayerProfile:
        """The cached layer profile of a layout (or of tp, micro-batch, SP, cp, ep given one by one)."""
        if not isinstance(layout, Layout):
            layout = Layout(tp=layout, micro_batch=micro_batch, sequence_parallel=sequence_parallel, cp=cp, ep=ep)
        hit = C.cached_profile(self.profile_key, layout)
        if hit is not None:
            return hit
        return C.layer_profile_of(self.cfg, self.device, layout, self.seq_len, self.dtype,
                                  self.software.graph_options, self.layer_time, self.profile_key)

    @cached_property
    def profile_key(self) -> C.ProfileKey:
        """What this model's layer profiles depend on besides the layout, hashed once (`costs.ProfileKey`)."""
        return C.profile_key(self.cfg, self.device, self.seq_len, self.dtype, self.software.graph_options,
                             self.layer_time)

    def graph_reasons(self, layout: Layout) -> list[str]:
        """Why the graph builder would reject `layout` for this model and sequence (empty = it builds)."""
        return R.graph_reasons(self.cfg, layout, self.seq_len)

    def prefetch(self, layouts: Iterable[Layout]) -> None:
        """Profile several layouts in one batch (one predictor call on GPUs); the ones whose graphs
        cannot be built (`graph_reasons`) are left out."""
        unique = dict.fromkeys(lay.graph_layout for lay in layouts)
        ok = [lay for lay in unique if not self.graph_reasons(lay)]
        C.layer_profiles(self.cfg, self.device, ok, self.seq_len, self.dtype, self.software.graph_options,
                         self.layer_time, self.profile_key)

    def terms(self, plan: Layout) -> PlanTerms:
        """Chain arrays and communication constants of a (validated) plan or layout."""
        reasons = R.cp_needs_fused_attention(plan.cp, self.software.attention)
        if reasons:
            raise ConfigError(f"{reasons[0]}; software {self.software.name!r}")
        from coda.placement.terms import plan_terms  # the steps build on this module's types

        return plan_terms(self, plan.layout)


@memoize("placement.collective_cost", 65536)
def collective_cost(cluster: Cluster, kind: str, group: int | tuple[int, ...]) -> CollectiveCost:
    """`Cluster.collective_cost`, cached (groups as an int or a tuple of ranks)."""
    return cluster.collective_cost(kind, group)


def collectives_time(cluster: Cluster, colls: tuple[tuple[str, float], ...], group: int | tuple[int, ...]) -> float:
    """Seconds of the (kind, n_bytes) collectives, one after another, on a group of `group` devices
    (or on those ranks)."""
    return sum(collective_cost(cluster, kind, group).time(n_bytes) for kind, n_bytes in colls)


__all__ = [
    "ATTENTION_IMPLS", "DEEPSPEED_2021", "FSDP", "MEGATRON_2021", "MEGATRON_CORE", "ChainCosts", "CostModel",
    "PlanTerms", "Software", "collective_cost", "collectives_time", "dp_group", "ep_groups",
    "optimizer_bytes_per_param",
]
