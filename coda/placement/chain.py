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

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import numpy as np

from coda.arch.clusters import Cluster, CollectiveCost
from coda.errors import ConfigError
from coda.models.builder import activation_dtype
from coda.models.config import ModelConfig
from coda.models.ops import ATTENTION_KERNELS
from coda.placement import costs as C
from coda.placement.plan import Plan
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


def dp_group(plan: Plan, stage: int, tp_rank: int = 0) -> list[int]:
    """Ranks that hold the same weights in `stage` and reduce their gradients together: the
    data-parallel group, times the context-parallel one (Megatron layout: stride tp inside the stage)."""
    base = stage * plan.tp * plan.cp * plan.dp + tp_rank
    return [base + k * plan.tp for k in range(plan.cp * plan.dp)]


def ep_groups(plan: Plan, stage: int) -> tuple[list[int], list[int]]:
    """The expert-parallel group of `stage`'s first rank and its expert-data-parallel group, which
    reduces the expert gradients. Expert layers are laid out over the stage's tp*cp*dp ranks on
    their own (Megatron-Core's MoE parallel folding, experts not tensor-split): ep consecutive
    ranks hold different experts, ranks ep apart the same ones."""
    base, size = stage * plan.tp * plan.cp * plan.dp, plan.tp * plan.cp * plan.dp
    return list(range(base, base + plan.ep)), list(range(base, base + size, plan.ep))


def optimizer_bytes_per_param(dtype: str) -> int:
    """Optimizer-state bytes per parameter: 12 (fp32 master, m, v) with low-precision weights, 8 (m, v) in fp32."""
    return 12 if dtype_bytes(dtype) < 4 else 8


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

    def profile(self, tp: int, micro_batch: int, sequence_parallel: bool, cp: int = 1, ep: int = 1) -> C.LayerProfile:
        """The cached layer profile for (tp, micro-batch, SP, cp, ep)."""
        return C.layer_profile(self.cfg, self.device, tp, micro_batch, self.seq_len, self.dtype, sequence_parallel,
                               self.software.graph_options, self.layer_time, cp, ep)

    def prefetch(self, keys: list[tuple[int, int, bool, int, int]]) -> None:
        """Profile several (tp, micro-batch, SP, cp, ep) keys in one batch (one predictor call on GPUs);
        keys the builder rejects are skipped."""
        ok = []
        for tp, mb, sp, cp, ep in keys:
            try:
                build_check(self.cfg, tp, mb, self.seq_len, sp, cp, ep)
            except ConfigError:
                continue
            ok.append((tp, mb, sp, cp, ep))
        C.layer_profiles(self.cfg, self.device, ok, self.seq_len, self.dtype, self.software.graph_options,
                         self.layer_time)

    def terms(self, plan: Plan) -> PlanTerms:
        """Chain arrays and communication constants of a (validated) plan."""
        if plan.cp > 1 and self.software.attention != "fused":
            raise ConfigError(f"context parallelism (cp={plan.cp}) needs fused attention (Megatron-Core runs it in "
                              f"Transformer Engine's kernels); software {self.software.name!r} has "
                              f"{self.software.attention!r} attention")
        return _terms(self, plan.tp, plan.pp, plan.dp, plan.micro_batch, plan.recompute, plan.sequence_parallel,
                      plan.zero, plan.virtual_stages, plan.cp, plan.ep)


@lru_cache(maxsize=65536)
def collective_cost(cluster: Cluster, kind: str, group: int | tuple[int, ...]) -> CollectiveCost:
    """`Cluster.collective_cost`, cached (groups as an int or a tuple of ranks)."""
    return cluster.collective_cost(kind, group)


def build_check(cfg: ModelConfig, tp: int, micro_batch: int, seq_len: int, sp: bool, cp: int = 1, ep: int = 1) -> None:
    """Raise `ConfigError` if the graph builder would reject (tp, micro-batch, SP, cp, ep) for `cfg`."""
    if ep > 1 and cfg.n_experts % ep:
        raise ConfigError(f"{cfg.name}: ep={ep} does not divide its {cfg.n_experts} experts")
    if cfg.n_heads % tp or cfg.ffn_hidden % tp or ((cfg.n_kv_heads or 1) % tp and tp % (cfg.n_kv_heads or 1)):
        raise ConfigError(f"{cfg.name}: tp={tp} does not divide its heads / FFN width")
    if cp > 1 and seq_len % (2 * cp):
        raise ConfigError(f"context parallelism needs seq_len={seq_len} to be a multiple of 2*cp = {2 * cp}")
    if sp and tp > 1 and (micro_batch * (seq_len // cp)) % tp:
        raise ConfigError(f"sequence parallelism needs tp={tp} to divide {micro_batch * (seq_len // cp)} tokens")


def collectives_time(cluster: Cluster, colls: tuple[tuple[str, float], ...], group: int | tuple[int, ...]) -> float:
    """Seconds of the (kind, n_bytes) collectives, one after another, on a group of `group` devices
    (or on those ranks)."""
    return sum(collective_cost(cluster, kind, group).time(n_bytes) for kind, n_bytes in colls)


def _worst_cost(costs: list[CollectiveCost]) -> CollectiveCost:
    return CollectiveCost(max(c.latency_s for c in costs), max(c.s_per_byte for c in costs))


def _cp_ring_exposed_s(model: CostModel, plan: Plan, attention_fwd_s: float) -> float:
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


def _expert_sync_ratio(cluster: Cluster, plan: Plan, kind: str) -> float:
    """Cost per byte of reducing gradients over the expert-data-parallel group relative to the
    data-parallel group (worst stage of each; 0 when each expert lives on one device). Expert
    gradient bytes times this ratio, added to the dense ones, give the bandwidth term of the two
    reductions on the data-parallel group's `CollectiveCost` (the second latency is left out)."""
    if plan.ep == 1 or plan.tp * plan.cp * plan.dp == plan.ep:
        return 0.0
    dense = max(collective_cost(cluster, kind, tuple(dp_group(plan, s))).s_per_byte for s in range(plan.pp))
    expert = max(collective_cost(cluster, kind, tuple(ep_groups(plan, s)[1])).s_per_byte for s in range(plan.pp))
    return expert / dense if dense > 0 else 0.0


@lru_cache(maxsize=2048)
def _terms(model: CostModel, tp: int, pp: int, dp: int, mb: int, recompute: str, sp: bool, zero: int,
           v: int, cp: int = 1, ep: int = 1) -> PlanTerms:
    cfg, cl, sw, e = model.cfg, model.cluster, model.software, dtype_bytes(model.storage_dtype)
    prof = model.profile(tp, mb, sp, cp, ep)
    plan = Plan(tp=tp, pp=pp, dp=dp, micro_batch=mb, global_batch=dp * mb, recompute=recompute,
                sequence_parallel=sp, zero=zero, cp=cp, ep=ep)
    L = cfg.n_layers
    s_local = model.seq_len // cp  # tokens of each sequence on one device
    shard = dp * cp  # devices holding the same weights (ZeRO shards over all of them)
    e_shard = tp * shard // ep  # devices holding the same experts (the expert-data-parallel group)

    n = len(prof.fwd_s)  # distinct layers: the embedding, each distinct block, the head
    layer_kind = np.concatenate(([0], 1 + np.asarray(cfg.block_pattern, dtype=int), [n - 1]))

    def expand(values: Sequence[float]) -> np.ndarray:
        """Per-distinct-layer values laid out over the chain of L + 2 units."""
        return np.asarray(values, dtype=float)[layer_kind]

    def blocks(fn: Callable[[int], float]) -> np.ndarray:
        """`fn` of each distinct block laid out over the chain, zero on the embedding and head."""
        return expand((0.0, *(fn(i) for i in range(1, n - 1)), 0.0))

    fwd, bwd = expand(prof.fwd_s), expand(prof.bwd_s)
    tp_f = [collectives_time(cl, prof.fwd_coll[i], tp) for i in range(n)]
    tp_b = [collectives_time(cl, prof.bwd_coll[i], tp) for i in range(n)]
    is_block = np.zeros(L + 2, dtype=bool)
    is_block[1:-1] = True
    if recompute == "full":
        rec = np.where(is_block, fwd, 0.0)
        tp_rec = blocks(lambda i: tp_f[i])
        rec_flops = blocks(lambda i: prof.fwd_flops[i])
    elif recompute == "selective":
        rec = blocks(lambda i: prof.selective_s[i])
        tp_rec = np.zeros(L + 2)
        rec_flops = blocks(lambda i: prof.selective_flops[i])
    else:
        rec, tp_rec, rec_flops = np.zeros(L + 2), np.zeros(L + 2), np.zeros(L + 2)
    tp_s = expand([tp_f[i] + tp_b[i] for i in range(n)]) + tp_rec
    if cp > 1:
        tp_s = tp_s + blocks(lambda i: _cp_ring_exposed_s(model, plan, prof.selective_s[i]))
    ep_s, ep_hidden = np.zeros(L + 2), np.zeros(L + 2)
    if ep > 1:  # dispatch and combine all-to-alls, forward, backward and a fully recomputed forward
        a2a_group = tuple(ep_groups(plan, 0)[0])

        def a2a(i: int) -> float:
            a2a_f = collectives_time(cl, prof.ep_fwd_coll[i], a2a_group)
            return a2a_f + collectives_time(cl, prof.ep_bwd_coll[i], a2a_group) + (a2a_f if recompute == "full"
                                                                                  else 0.0)

        a2a_s = blocks(a2a)
        ep_s = np.maximum(0.0, a2a_s - fwd - bwd) if sw.ep_overlap else a2a_s
        ep_hidden = a2a_s - ep_s

    params = list(prof.params)
    if pp > 1 and cfg.tied_embeddings:
        params[-1] += prof.table_params  # the last stage keeps a copy of the tied embedding (Megatron-LM)
    P = expand(params)
    # with ep > 1 the (whole) experts are sharded and reduced over the expert-data-parallel group
    P_e = expand(prof.expert_params) if ep > 1 else np.zeros(L + 2)
    P_d = P - P_e
    P_w = P_d / shard + P_e / e_shard if zero == 3 else P  # weight (and gradient) params held
    weight_b, grad_b = e * P_w, e * P_w
    P_opt = P_d / (shard if zero >= 1 else 1) + P_e / (e_shard if zero >= 1 else 1)  # optimizer-state params
    optim_b = optimizer_bytes_per_param(model.dtype) * P_opt

    act_dt = model.storage_dtype
    blk = [C.block_activation_bytes(cfg, s_local, mb, tp, sp, recompute, sw.attention, act_dt, model.dtype, kind)
           for kind in cfg.block_kinds]  # (stored, full) of each distinct block
    emb_act = C.embedding_activation_bytes(cfg, s_local, mb, tp, sp, act_dt)
    head_act, head_work = C.head_activation_bytes(cfg, s_local, mb, tp, sp, act_dt)
    act = expand((emb_act, *(stored for stored, _ in blk), head_act))
    work = expand((0.0, *(full - stored for stored, full in blk), head_work))

    z3, z3_hidden = np.zeros(L + 2), np.zeros(L + 2)
    if zero == 3 and (shard > 1 or (ep > 1 and e_shard > 1)):
        # dense weights are gathered over the data-parallel group, experts over the expert-data-parallel one
        ag_t, rs_t = np.zeros(L + 2), np.zeros(L + 2)
        for groups, part in (([tuple(dp_group(plan, s)) for s in range(pp)], P_d),
                             ([tuple(ep_groups(plan, s)[1]) for s in range(pp)], P_e)):
            if part.any() and len(groups[0]) > 1:
                ag = _worst_cost([collective_cost(cl, "all_gather", g) for g in groups])
                rs = _worst_cost([collective_cost(cl, "reduce_scatter", g) for g in groups])
                ag_t += np.array([ag.time(x) if x else 0.0 for x in e * part])
                rs_t += np.array([rs.time(x) if x else 0.0 for x in e * part])
        # FSDP prefetches the next unit's weights while this one computes: per micro-batch one
        # all-gather in forward, one all-gather + one reduce-scatter in backward.
        exp_f = np.maximum(0.0, ag_t - fwd)
        exp_b = np.maximum(0.0, ag_t + rs_t - (bwd + rec))
        z3 = exp_f + exp_b
        z3_hidden = 2 * ag_t + rs_t - z3
        work = work + 2 * e * P  # gathered weights of this unit and the prefetched next one
        sync = np.zeros(L + 2)
    else:
        sync = e * (P_d + P_e * _expert_sync_ratio(cl, plan, "reduce_scatter" if zero == 1 else "all_reduce"))
    opt_s = prof.adam_s_per_param * P_opt
    fwd_flops = expand(prof.fwd_flops)
    hw_flops = fwd_flops + expand(prof.bwd_flops) + rec_flops
    chain = ChainCosts(fwd, bwd, rec, tp_s, z3, z3_hidden, weight_b, grad_b, optim_b, act, work, sync, opt_s,
                       3.0 * fwd_flops, hw_flops, ep_s, ep_hidden)

    # pipeline messages: b*s*h activations (or their gradients), 2 per micro-batch per chunk
    p2p_total = 0.0
    if pp > 1:
        msg = mb * s_local * cfg.hidden * e
        split = tp > 1 and (sp or sw.scatter_gather)
        per = msg / tp if split else msg
        pairs = [(s * tp * cp * dp, (s + 1) * tp * cp * dp) for s in range(pp - 1)]
        one = max(collective_cost(cl, "send_recv", pair).time(per) for pair in pairs)
        if split and not sp:
            one += collective_cost(cl, "all_gather", tp).time(msg)
        p2p_total = 2 * v * one
    p2p_s, p2p_hidden = (0.0, p2p_total) if sw.pp_overlap else (p2p_total, 0.0)

    zero_cost = CollectiveCost(0.0, 0.0)
    if zero == 3 or shard == 1:
        dp_sync = dp_gather = tuple(zero_cost for _ in range(pp))
    else:
        kind = "reduce_scatter" if zero == 1 else "all_reduce"
        dp_sync = tuple(collective_cost(cl, kind, tuple(dp_group(plan, s))) for s in range(pp))
        dp_gather = tuple(collective_cost(cl, "all_gather", tuple(dp_group(plan, s))) if zero == 1 else zero_cost
                          for s in range(pp))
    emb_sync = 0.0
    if pp > 1 and cfg.tied_embeddings:
        emb_sync = collective_cost(cl, "all_reduce", (0, (pp - 1) * tp * cp * dp)).time(e * prof.table_params)
    return PlanTerms(chain, p2p_s, p2p_hidden, dp_sync, dp_gather, sw.dp_overlap, emb_sync, model.memory_limit)
