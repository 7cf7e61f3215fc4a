"""Cost arrays of one plan over the layer chain, and the cost model that builds them.

The chain has n = l + 2 units: embedding, l blocks, head. `ChainCosts` holds, per unit and per
micro-batch on one device, everything the pipeline model and the stage-split DP need; `PlanTerms`
adds the plan-level communication constants. `CostModel.terms(plan)` builds both from the layer
profile (`costs.layer_profile`), the cluster's collective model and the `Software` in use. The
DP and its brute-force check only ever see these arrays, so tests can feed synthetic ones.

Memory per parameter (Rajbhandari et al. SC'20, ZeRO, section 3): weights e bytes, gradients
e bytes, optimizer states 12 bytes for mixed-precision Adam (fp32 master weights, m, v; e = 2)
or 8 bytes (m, v) in fp32 training, i.e. 16 bytes per parameter in both cases. ZeRO-1 divides
the optimizer states by dp, ZeRO-3 all three (and gathers one unit's weights at a time).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from coda.arch.clusters import Cluster, CollectiveCost
from coda.caches import memoize
from coda.errors import ConfigError
from coda.models.builder import activation_dtype
from coda.models.config import ModelConfig
from coda.models.ops import ATTENTION_KERNELS
from coda.placement import costs as C
from coda.placement import rules as R
from coda.placement.layout import Layout
from coda.units import dtype_bytes

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
    """

    chain: ChainCosts
    p2p_s: float
    p2p_hidden_s: float
    dp_sync: tuple[CollectiveCost, ...]
    dp_gather: tuple[CollectiveCost, ...]
    dp_overlap: bool
    emb_sync_s: float
    memory_limit: float


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
    def device(self) -> Any:
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
        return C.layer_profiles(self.cfg, self.device, [layout], self.seq_len, self.dtype,
                                self.software.graph_options, self.layer_time)[0]

    def graph_reasons(self, layout: Layout) -> list[str]:
        """Why the graph builder would reject `layout` for this model and sequence (empty = it builds)."""
        return R.graph_reasons(self.cfg, layout, self.seq_len)

    def prefetch(self, layouts: Iterable[Layout]) -> None:
        """Profile several layouts in one batch (one predictor call on GPUs); the ones whose graphs
        cannot be built (`graph_reasons`) are left out."""
        ok = list(dict.fromkeys(lay.graph_layout for lay in layouts if not self.graph_reasons(lay)))
        C.layer_profiles(self.cfg, self.device, ok, self.seq_len, self.dtype, self.software.graph_options,
                         self.layer_time)

    def terms(self, plan: Layout) -> PlanTerms:
        """Chain arrays and communication constants of a (validated) plan or layout."""
        reasons = R.cp_needs_fused_attention(plan.cp, self.software.attention)
        if reasons:
            raise ConfigError(f"{reasons[0]}; software {self.software.name!r}")
        return _terms(self, plan.layout)


@memoize("placement.collective_cost", 65536)
def collective_cost(cluster: Cluster, kind: str, group: int | tuple[int, ...]) -> CollectiveCost:
    """`Cluster.collective_cost`, cached (groups as an int or a tuple of ranks)."""
    return cluster.collective_cost(kind, group)


def collectives_time(cluster: Cluster, colls: tuple[tuple[str, float], ...], group: int | tuple[int, ...]) -> float:
    """Seconds of the (kind, n_bytes) collectives, one after another, on a group of `group` devices
    (or on those ranks)."""
    return sum(collective_cost(cluster, kind, group).time(n_bytes) for kind, n_bytes in colls)


def _worst_cost(costs: list[CollectiveCost]) -> CollectiveCost:
    return CollectiveCost(max(c.latency_s for c in costs), max(c.s_per_byte for c in costs))


def _cp_ring_exposed_s(model: CostModel, plan: Layout, attention_fwd_s: float) -> float:
    """Exposed context-parallel communication of one block and micro-batch (ring attention, as in
    Megatron-Core / Transformer Engine): each of the `cp - 1` steps passes a device's keys and
    values, `b * s/cp * 2 * g_t * d` elements, to the next device of its CP group (ranks `tp`
    apart), overlapped with the attention of the block in hand. Forward sends K and V once, the
    backward K, V and their gradients (twice the bytes), a full recomputation once more; only
    the excess over the attention compute it overlaps (forward `attention_fwd_s`, backward 2.5x,
    the FlashAttention-2 backward's work) is exposed.
    """
    cfg, cp, tp = model.cfg, plan.cp, plan.tp
    g_t = max((cfg.n_kv_heads or cfg.n_heads) // tp, 1)
    e = dtype_bytes(model.storage_dtype)
    kv_bytes = plan.micro_batch * (model.seq_len // cp) * 2 * g_t * (cfg.head_dim or 0) * e
    step = max(collective_cost(model.cluster, "send_recv", (k * tp, ((k + 1) % cp) * tp)).time(kv_bytes)
               for k in range(cp))
    ring = (cp - 1) * step
    fwd = max(0.0, ring - attention_fwd_s)
    bwd = max(0.0, 2 * ring - 2.5 * attention_fwd_s)
    return fwd + bwd + (fwd if plan.recompute == "full" else 0.0)


def _expert_sync_ratio(cluster: Cluster, plan: Layout, kind: str) -> float:
    """Cost per byte of reducing gradients over the expert-data-parallel group relative to the
    data-parallel group (worst stage of each; 0 when each expert lives on one device). Expert
    gradient bytes times this ratio, added to the dense ones, give the bandwidth term of the two
    reductions on the data-parallel group's `CollectiveCost` (the second latency is left out)."""
    if plan.ep == 1 or plan.tp * plan.cp * plan.dp == plan.ep:
        return 0.0
    dense = max(collective_cost(cluster, kind, tuple(dp_group(plan, s))).s_per_byte for s in range(plan.pp))
    expert = max(collective_cost(cluster, kind, tuple(ep_groups(plan, s)[1])).s_per_byte for s in range(plan.pp))
    return expert / dense if dense > 0 else 0.0


@dataclass(frozen=True, eq=False)
class _Chain:
    """One layout's profile laid over the chain of L + 2 units (embedding, L blocks, head)."""

    model: CostModel
    lay: Layout
    prof: C.LayerProfile
    layer_kind: np.ndarray  # distinct-layer index of each unit
    n: int  # distinct layers: the embedding, each distinct block, the head

    @classmethod
    def of(cls, model: CostModel, lay: Layout) -> _Chain:
        prof = model.profile(lay)
        n = len(prof.fwd_s)
        kinds = np.concatenate(([0], 1 + np.asarray(model.cfg.block_pattern, dtype=int), [n - 1]))
        return cls(model, lay, prof, kinds, n)

    @property
    def units(self) -> int:
        return self.model.cfg.n_layers + 2

    def zeros(self) -> np.ndarray:
        return np.zeros(self.units)

    def expand(self, values: Sequence[float]) -> np.ndarray:
        """Per-distinct-layer values laid out over the chain of L + 2 units."""
        return np.asarray(values, dtype=float)[self.layer_kind]

    def blocks(self, fn: Callable[[int], float]) -> np.ndarray:
        """`fn` of each distinct block laid out over the chain, zero on the embedding and head."""
        return self.expand((0.0, *(fn(i) for i in range(1, self.n - 1)), 0.0))

    def tp_times(self, colls: tuple[tuple[tuple[str, float], ...], ...]) -> list[float]:
        """Seconds of each distinct layer's tensor-parallel collectives."""
        return [collectives_time(self.model.cluster, colls[i], self.lay.tp) for i in range(self.n)]


class _Compute(NamedTuple):
    fwd: np.ndarray
    bwd: np.ndarray
    rec: np.ndarray
    tp_rec: np.ndarray  # TP collectives of the recomputed forward
    rec_flops: np.ndarray


def _compute(c: _Chain, tp_f: list[float]) -> _Compute:
    """Forward, backward and recomputation time per unit (Korthikanti et al. 2022, section 5)."""
    prof, recompute = c.prof, c.lay.recompute
    fwd, bwd = c.expand(prof.fwd_s), c.expand(prof.bwd_s)
    if recompute == "full":
        is_block = np.zeros(c.units, dtype=bool)
        is_block[1:-1] = True
        return _Compute(fwd, bwd, np.where(is_block, fwd, 0.0), c.blocks(lambda i: tp_f[i]),
                        c.blocks(lambda i: prof.fwd_flops[i]))
    if recompute == "selective":
        return _Compute(fwd, bwd, c.blocks(lambda i: prof.selective_s[i]), c.zeros(),
                        c.blocks(lambda i: prof.selective_flops[i]))
    return _Compute(fwd, bwd, c.zeros(), c.zeros(), c.zeros())


def _tp_comm(c: _Chain, comp: _Compute, tp_f: list[float]) -> np.ndarray:
    """Tensor-parallel collectives per unit (forward, backward, recomputed forward), and the
    exposed context-parallel ring exchange."""
    tp_b = c.tp_times(c.prof.bwd_coll)
    tp_s = c.expand([tp_f[i] + tp_b[i] for i in range(c.n)]) + comp.tp_rec
    if c.lay.cp > 1:
        tp_s = tp_s + c.blocks(lambda i: _cp_ring_exposed_s(c.model, c.lay, c.prof.selective_s[i]))
    return tp_s


def _ep_comm(c: _Chain, comp: _Compute) -> tuple[np.ndarray, np.ndarray]:
    """Expert-parallel dispatch and combine all-to-alls per unit (forward, backward and a fully
    recomputed forward): (exposed, hidden by `Software.ep_overlap`)."""
    if c.lay.ep == 1:
        return c.zeros(), c.zeros()
    cl, prof, a2a_group = c.model.cluster, c.prof, tuple(ep_groups(c.lay, 0)[0])

    def a2a(i: int) -> float:
        a2a_f = collectives_time(cl, prof.ep_fwd_coll[i], a2a_group)
        return a2a_f + collectives_time(cl, prof.ep_bwd_coll[i], a2a_group) + (a2a_f if c.lay.recompute == "full"
                                                                              else 0.0)

    a2a_s = c.blocks(a2a)
    ep_s = np.maximum(0.0, a2a_s - comp.fwd - comp.bwd) if c.model.software.ep_overlap else a2a_s
    return ep_s, a2a_s - ep_s


class _Static(NamedTuple):
    P: np.ndarray  # parameters per unit on one device (after the TP and EP split)
    P_d: np.ndarray  # dense part
    P_e: np.ndarray  # expert part (ep > 1)
    weight_b: np.ndarray
    grad_b: np.ndarray
    optim_b: np.ndarray
    P_opt: np.ndarray  # parameters whose optimizer states the device holds


def _static_memory(c: _Chain, e: int) -> _Static:
    """Weights, gradients and optimizer states per unit (module docstring: ZeRO)."""
    cfg, lay, prof = c.model.cfg, c.lay, c.prof
    shard, e_shard, zero = lay.replicas, lay.expert_replicas, lay.zero
    params = list(prof.params)
    if lay.pp > 1 and cfg.tied_embeddings:
        params[-1] += prof.table_params  # the last stage keeps a copy of the tied embedding (Megatron-LM)
    P = c.expand(params)
    # with ep > 1 the (whole) experts are sharded and reduced over the expert-data-parallel group
    P_e = c.expand(prof.expert_params) if lay.ep > 1 else c.zeros()
    P_d = P - P_e
    P_w = P_d / shard + P_e / e_shard if zero == 3 else P  # weight (and gradient) params held
    P_opt = P_d / (shard if zero >= 1 else 1) + P_e / (e_shard if zero >= 1 else 1)  # optimizer-state params
    optim_b = optimizer_bytes_per_param(c.model.dtype) * P_opt
    return _Static(P, P_d, P_e, e * P_w, e * P_w, optim_b, P_opt)


def _activation_memory(c: _Chain) -> tuple[np.ndarray, np.ndarray]:
    """Activations stashed per in-flight micro-batch and the transient working set, per unit."""
    cfg, lay, model = c.model.cfg, c.lay, c.model
    s_local, mb, tp, sp = model.seq_len // lay.cp, lay.micro_batch, lay.tp, lay.sequence_parallel
    act_dt = model.storage_dtype
    blk = [C.block_activation_bytes(cfg, s_local, mb, tp, sp, lay.recompute, model.software.attention, act_dt,
                                    model.dtype, kind)
           for kind in cfg.block_kinds]  # (stored, full) of each distinct block
    emb_act = C.embedding_activation_bytes(cfg, s_local, mb, tp, sp, act_dt)
    head_act, head_work = C.head_activation_bytes(cfg, s_local, mb, tp, sp, act_dt)
    act = c.expand((emb_act, *(stored for stored, _ in blk), head_act))
    work = c.expand((0.0, *(full - stored for stored, full in blk), head_work))
    return act, work


def _zero3(c: _Chain, st: _Static, comp: _Compute, e: int) -> tuple[np.ndarray, np.ndarray] | None:
    """ZeRO-3 gathers and reduce-scatters per unit, (exposed, hidden), or None without ZeRO-3
    sharding: dense weights are gathered over the data-parallel group, experts over the
    expert-data-parallel one. FSDP prefetches the next unit's weights while this one computes: per
    micro-batch one all-gather in forward, one all-gather + one reduce-scatter in backward."""
    lay, cl = c.lay, c.model.cluster
    if not (lay.zero == 3 and (lay.replicas > 1 or (lay.ep > 1 and lay.expert_replicas > 1))):
        return None
    ag_t, rs_t = c.zeros(), c.zeros()
    for groups, part in (([tuple(dp_group(lay, s)) for s in range(lay.pp)], st.P_d),
                         ([tuple(ep_groups(lay, s)[1]) for s in range(lay.pp)], st.P_e)):
        if part.any() and len(groups[0]) > 1:
            ag = _worst_cost([collective_cost(cl, "all_gather", g) for g in groups])
            rs = _worst_cost([collective_cost(cl, "reduce_scatter", g) for g in groups])
            ag_t += np.array([ag.time(x) if x else 0.0 for x in e * part])
            rs_t += np.array([rs.time(x) if x else 0.0 for x in e * part])
    exp_f = np.maximum(0.0, ag_t - comp.fwd)
    exp_b = np.maximum(0.0, ag_t + rs_t - (comp.bwd + comp.rec))
    z3 = exp_f + exp_b
    return z3, 2 * ag_t + rs_t - z3


def _p2p(c: _Chain, e: int) -> tuple[float, float]:
    """Pipeline messages per stage and micro-batch, (exposed, hidden by `Software.pp_overlap`): b*s*h
    activations (or their gradients), 2 per micro-batch per chunk."""
    lay, cl, sw = c.lay, c.model.cluster, c.model.software
    tp, pp = lay.tp, lay.pp
    total = 0.0
    if pp > 1:
        msg = lay.micro_batch * (c.model.seq_len // lay.cp) * c.model.cfg.hidden * e
        split = tp > 1 and (lay.sequence_parallel or sw.scatter_gather)
        per = msg / tp if split else msg
        pairs = [(s * lay.stage_devices, (s + 1) * lay.stage_devices) for s in range(pp - 1)]
        one = max(collective_cost(cl, "send_recv", pair).time(per) for pair in pairs)
        if split and not lay.sequence_parallel:
            one += collective_cost(cl, "all_gather", tp).time(msg)
        total = 2 * lay.virtual_stages * one
    return (0.0, total) if sw.pp_overlap else (total, 0.0)


def _dp_costs(c: _Chain) -> tuple[tuple[CollectiveCost, ...], tuple[CollectiveCost, ...]]:
    """Per stage, the end-of-step gradient reduction and the ZeRO-1 all-gather of updated weights."""
    lay, cl = c.lay, c.model.cluster
    zero_cost = CollectiveCost(0.0, 0.0)
    if lay.zero == 3 or lay.replicas == 1:
        none = tuple(zero_cost for _ in range(lay.pp))
        return none, none
    kind = "reduce_scatter" if lay.zero == 1 else "all_reduce"
    sync = tuple(collective_cost(cl, kind, tuple(dp_group(lay, s))) for s in range(lay.pp))
    gather = tuple(collective_cost(cl, "all_gather", tuple(dp_group(lay, s))) if lay.zero == 1 else zero_cost
                   for s in range(lay.pp))
    return sync, gather


@memoize("placement.terms", 2048)
def _terms(model: CostModel, lay: Layout) -> PlanTerms:
    """The plan terms of a layout: compute, communication, memory (each a step above)."""
    cfg, cl, e = model.cfg, model.cluster, dtype_bytes(model.storage_dtype)
    c = _Chain.of(model, lay)
    tp_f = c.tp_times(c.prof.fwd_coll)
    comp = _compute(c, tp_f)
    tp_s = _tp_comm(c, comp, tp_f)
    ep_s, ep_hidden = _ep_comm(c, comp)
    st = _static_memory(c, e)
    act, work = _activation_memory(c)
    z3 = _zero3(c, st, comp, e)
    if z3 is not None:
        work = work + 2 * e * st.P  # gathered weights of this unit and the prefetched next one
        sync = c.zeros()
    else:
        kind = "reduce_scatter" if lay.zero == 1 else "all_reduce"
        sync = e * (st.P_d + st.P_e * _expert_sync_ratio(cl, lay, kind))
        z3 = (c.zeros(), c.zeros())
    fwd_flops = c.expand(c.prof.fwd_flops)
    hw_flops = fwd_flops + c.expand(c.prof.bwd_flops) + comp.rec_flops
    chain = ChainCosts(comp.fwd, comp.bwd, comp.rec, tp_s, z3[0], z3[1], st.weight_b, st.grad_b, st.optim_b, act,
                       work, sync, c.prof.adam_s_per_param * st.P_opt, 3.0 * fwd_flops, hw_flops, ep_s, ep_hidden)
    p2p_s, p2p_hidden = _p2p(c, e)
    dp_sync, dp_gather = _dp_costs(c)
    emb_sync = 0.0
    if lay.pp > 1 and cfg.tied_embeddings:
        emb_sync = collective_cost(cl, "all_reduce", (0, (lay.pp - 1) * lay.stage_devices)).time(
            e * c.prof.table_params)
    return PlanTerms(chain, p2p_s, p2p_hidden, dp_sync, dp_gather, model.software.dp_overlap, emb_sync,
                     model.memory_limit)
