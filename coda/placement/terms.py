"""The plan terms of one layout: the chain arrays (compute, communication, memory) and the
plan-level communication constants, built step by step from the layer profile.

`plan_terms(model, layout)` (cached) is what `CostModel.terms` returns. Each step below computes
one group of `ChainCosts` / `PlanTerms` fields; the formulas are those of `coda.placement.chain`'s
module docstring (ZeRO memory), Korthikanti et al. 2022 (recomputation, activations) and
Narayanan et al. SC'21 (pipeline messages, scatter/gather).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from coda.arch.clusters import Cluster, CollectiveCost
from coda.caches import memoize
from coda.models.config import BlockKind
from coda.placement import costs as C
from coda.placement import rules as R
from coda.placement import tp_overlap
from coda.placement.chain import (
    ChainCosts,
    PlanTerms,
    collective_cost,
    collectives_time,
    dp_group,
    ep_groups,
    optimizer_bytes_per_param,
)
from coda.placement.layout import Layout
from coda.units import dtype_bytes

if TYPE_CHECKING:
    from coda.placement.chain import CostModel


def _worst_cost(costs: list[CollectiveCost]) -> CollectiveCost:
    return CollectiveCost(max(c.latency_s for c in costs), max(c.s_per_byte for c in costs))


def _grad_bytes(model: CostModel) -> int:
    """Bytes per gradient element: `Software.grad_dtype`, or the weights' storage dtype."""
    return dtype_bytes(model.software.grad_dtype or model.storage_dtype)


def _per_weight_byte(model: CostModel, reduce: CollectiveCost) -> CollectiveCost:
    """A gradient reduction's cost per byte of the weights it reduces the gradients of: the
    chain counts weight bytes, the collective moves gradient bytes (`Software.grad_dtype`)."""
    ratio = _grad_bytes(model) / dtype_bytes(model.storage_dtype)
    return reduce if ratio == 1 else CollectiveCost(reduce.latency_s, reduce.s_per_byte * ratio)


def _cp_ring_exposed_s(model: CostModel, plan: Layout, attention_fwd_s: float, recomputed: bool) -> float:
    """Exposed context-parallel communication of one block and micro-batch (ring attention, as in
    Megatron-Core / Transformer Engine): each of the `cp - 1` steps passes a device's keys and
    values, `b * s/cp * 2 * g_t * d` elements, to the next device of its CP group (ranks `tp`
    apart), overlapped with the attention of the block in hand. Forward sends K and V once, the
    backward K, V and their gradients (twice the bytes), a full recomputation once more; only
    the excess over the attention compute it overlaps (forward `attention_fwd_s`, backward 2.5x,
    the FlashAttention-2 backward's work) is exposed. `recomputed`: the block's forward runs again.
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
    return fwd + bwd + (fwd if recomputed else 0.0)


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

    @property
    def recomputed(self) -> np.ndarray:
        """Units whose forward runs again in the backward (full recomputation): every block, or with
        `Layout.recompute_every` = k the blocks 0, k, 2k, ... of the model (torchtitan's `ac_freq`)."""
        mask = np.zeros(self.units, dtype=bool)
        if self.lay.recompute == "full":
            mask[1:-1] = np.arange(self.units - 2) % self.lay.recompute_every == 0
        return mask

    def where_recomputed(self, fn: Callable[[int, bool], float]) -> np.ndarray:
        """`fn(block, recomputed)` of each distinct block over the chain, per unit as `recomputed` says."""
        return np.where(self.recomputed, self.blocks(lambda i: fn(i, True)), self.blocks(lambda i: fn(i, False)))

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
    if recompute == "full":  # every block, or every k-th (`_Chain.recomputed`)
        mask = c.recomputed
        return _Compute(fwd, bwd, np.where(mask, fwd, 0.0), np.where(mask, c.blocks(lambda i: tp_f[i]), 0.0),
                        np.where(mask, c.blocks(lambda i: prof.fwd_flops[i]), 0.0))
    if recompute == "selective":
        return _Compute(fwd, bwd, c.blocks(lambda i: prof.selective_s[i]), c.zeros(),
                        c.blocks(lambda i: prof.selective_flops[i]))
    return _Compute(fwd, bwd, c.zeros(), c.zeros(), c.zeros())


def _tp_comm(c: _Chain, comp: _Compute, tp_f: list[float], tp_b: list[float]) -> np.ndarray:
    """Tensor-parallel collectives per unit (forward `tp_f`, backward `tp_b`, recomputed forward), and
    the exposed context-parallel ring exchange."""
    tp_s = c.expand([tp_f[i] + tp_b[i] for i in range(c.n)]) + comp.tp_rec
    if c.lay.cp > 1:
        tp_s = tp_s + c.where_recomputed(lambda i, rec: _cp_ring_exposed_s(c.model, c.lay, c.prof.selective_s[i],
                                                                             rec))
    return tp_s


def _ep_comm(c: _Chain, comp: _Compute) -> tuple[np.ndarray, np.ndarray]:
    """Expert-parallel dispatch and combine all-to-alls per unit (forward, backward and a fully
    recomputed forward): (exposed, hidden by `Software.ep_overlap`)."""
    if c.lay.ep == 1:
        return c.zeros(), c.zeros()
    cl, prof, a2a_group = c.model.cluster, c.prof, tuple(ep_groups(c.lay, 0)[0])

    def a2a(i: int, recomputed: bool) -> float:
        a2a_f = collectives_time(cl, prof.ep_fwd_coll[i], a2a_group)
        return a2a_f + collectives_time(cl, prof.ep_bwd_coll[i], a2a_group) + (a2a_f if recomputed else 0.0)

    a2a_s = c.where_recomputed(a2a)
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
    shard, e_shard, zero = lay.shard_replicas, lay.expert_replicas, lay.zero
    params = list(prof.params)
    if lay.pp > 1 and cfg.tied_embeddings:
        params[-1] += prof.table_params  # the last stage keeps a copy of the tied embedding (Megatron-LM)
    P = c.expand(params)
    # with ep > 1 the (whole) experts are sharded and reduced over the expert-data-parallel group
    P_e = c.expand(prof.expert_params) if lay.ep > 1 else c.zeros()
    P_d = P - P_e
    P_sharded = P_d / shard + P_e / e_shard
    shard_w, shard_g, shard_opt = R.zero_sharded(zero)
    P_w = P_sharded if shard_w else P  # weight params held
    P_g = P_sharded if shard_g else P  # gradient params held
    P_opt = P_sharded if shard_opt else P  # params whose optimizer states are held
    optim_b = optimizer_bytes_per_param(c.model.dtype) * P_opt
    return _Static(P, P_d, P_e, e * P_w, _grad_bytes(c.model) * P_g, optim_b, P_opt)


def _activation_memory(c: _Chain) -> tuple[np.ndarray, np.ndarray]:
    """Activations stashed per in-flight micro-batch and the transient working set, per unit; with
    `Layout.recompute_every` = k > 1 only the checkpointed blocks (`_Chain.recomputed`) store their
    input alone and rebuild the rest in the backward, the others store everything."""
    cfg, lay, model = c.model.cfg, c.lay, c.model
    s_local, mb, tp, sp = model.seq_len // lay.cp, lay.micro_batch, lay.tp, lay.sequence_parallel
    act_dt = model.storage_dtype

    def per_block(recompute: str) -> tuple[np.ndarray, np.ndarray]:  # (stored, transient) over the chain
        blk = [C.block_activation_bytes(cfg, s_local, mb, tp, sp, recompute, model.software.attention, act_dt,
                                        model.dtype, kind)
               for kind in cfg.block_kinds]  # (stored, full) of each distinct block
        return (c.expand((0.0, *(stored for stored, _ in blk), 0.0)),
                c.expand((0.0, *(full - stored for stored, full in blk), 0.0)))

    act, work = per_block(lay.recompute)
    if lay.recompute == "full" and lay.recompute_every > 1:
        kept, kept_work = per_block("none")
        act, work = np.where(c.recomputed, act, kept), np.where(c.recomputed, work, kept_work)
    emb_act = C.embedding_activation_bytes(cfg, s_local, mb, tp, sp, act_dt)
    head_act, head_work = C.head_activation_bytes(cfg, s_local, mb, tp, sp, act_dt)
    act[0], act[-1], work[-1] = emb_act, head_act, head_work
    return act, work


def _unit_tensors(c: _Chain) -> np.ndarray:
    """Weight tensors per unit that ZeRO-3 gathers one by one (`Software.zero3_granularity="tensor"`),
    in Megatron-LM's fused layout: a dense block has four (fused QKV, attention output, MLP up
    with its gate fused, MLP down); an MoE block three (QKV, output, router) plus two per local
    expert and two for a shared expert; the embedding and the head one each (the table). Biases
    and norm weights (under DeepSpeed's persistence threshold of 1e5 elements) are not gathered."""
    cfg, lay = c.model.cfg, c.lay

    def block(kind: BlockKind) -> float:
        if not kind.moe:
            return 4.0
        return 3.0 + 2.0 * (cfg.n_experts // lay.ep) + (2.0 if cfg.shared_ffn_hidden else 0.0)

    return c.expand((1.0, *(block(k) for k in cfg.block_kinds), 1.0))


def _rank_copies_s(c: _Chain, shard_bytes: np.ndarray, n: int, e: int) -> np.ndarray:
    """Seconds of the n copy kernels a tensor-list collective runs per call (one per rank's
    `shard_bytes` chunk, `Software.zero3_rank_copies`), timed by the predictor as element copies."""
    from coda.models.ops import elementwise
    from coda.predictor import op_latencies

    sizes = sorted({max(1, int(round(x / e))) for x in shard_bytes if x > 0})
    dt = c.model.storage_dtype
    times = dict(zip(sizes, op_latencies([elementwise(k, 0.0, 1, dt, name="copy") for k in sizes],
                                         c.model.device)))
    return np.array([n * times[max(1, int(round(x / e)))] if x > 0 else 0.0 for x in shard_bytes])


def _stage_dense_costs(c: _Chain, stage: int) -> tuple[CollectiveCost, CollectiveCost]:
    """How stage `stage`'s dense ZeRO shards move, per byte of full weights or gradients: (gather,
    reduce). Gather: an all-gather over the shard group, the first `n = dp*cp/hsdp` members of the
    data-parallel group (all of it without hybrid sharding). Reduce: a reduce-scatter over the
    shard group, then, with hybrid sharding (`Layout.hsdp` > 1), an all-reduce of each device's 1/n
    shard over its replica group (the members n apart), as PyTorch FSDP's `HYBRID_SHARD` does:
    `CollectiveCost(rs.latency + ar.latency, rs.s_per_byte + ar.s_per_byte / n)`; per weight byte
    when the gradients are wider than the weights (`_per_weight_byte`)."""
    lay, cl, n = c.lay, c.model.cluster, c.lay.shard_replicas
    g = dp_group(lay, stage)
    ag, rs = (collective_cost(cl, kind, tuple(g[:n])) for kind in ("all_gather", "reduce_scatter"))
    if lay.hsdp > 1:
        ar = collective_cost(cl, "all_reduce", tuple(g[::n]))
        rs = CollectiveCost(rs.latency_s + ar.latency_s, rs.s_per_byte + ar.s_per_byte / n)
    return ag, _per_weight_byte(c.model, rs)


def _dense_costs(c: _Chain) -> tuple[CollectiveCost, CollectiveCost, int]:
    """`_stage_dense_costs` of the worst stage, and the devices n of a shard group."""
    per = [_stage_dense_costs(c, s) for s in range(c.lay.pp)]
    return _worst_cost([a for a, _ in per]), _worst_cost([r for _, r in per]), c.lay.shard_replicas


def _zero3_per_tensor(c: _Chain, part: np.ndarray, costs: tuple[CollectiveCost, CollectiveCost, int],
                      comp: _Compute, e: int) -> tuple[np.ndarray, np.ndarray]:
    """ZeRO-3 traffic of `part` parameters per unit, one collective per weight tensor
    (`Software.zero3_granularity="tensor"`), (exposed, hidden), per micro-batch: 2 gathers (3 where
    a recomputed forward gathers again) and one gradient reduction per tensor, each the
    `CollectiveCost.time` of the tensor's bytes (`costs` = (gather, reduce, devices n) of the
    group; the ring latency `(n-1) alpha` paid per call), plus n rank copies per call with
    `Software.zero3_rank_copies`."""
    sw = c.model.software
    ag, red, n = costs
    k = _unit_tensors(c)
    tensor_b = np.where(part > 0, e * part / k, 0.0)
    copies = _rank_copies_s(c, tensor_b / n, n, e) if sw.zero3_rank_copies and n > 1 else c.zeros()
    ag_t = k * (np.array([ag.time(x) for x in tensor_b]) + copies)
    rs_t = k * (np.array([red.time(x) for x in tensor_b]) + copies)
    gathers = 2 + (c.recomputed if sw.zero3_recompute_gather else c.zeros())  # 3 where the forward runs again
    if not sw.zero3_prefetch:
        return gathers * ag_t + rs_t, c.zeros()
    exp_f = np.maximum(0.0, ag_t - comp.fwd)
    exp_b = np.maximum(0.0, (gathers - 1) * ag_t + rs_t - (comp.bwd + comp.rec))
    return exp_f + exp_b, gathers * ag_t + rs_t - exp_f - exp_b


def _zero3(c: _Chain, st: _Static, comp: _Compute, e: int) -> tuple[np.ndarray, np.ndarray] | None:
    """ZeRO-3 gathers and gradient reductions per unit, (exposed, hidden), or None without ZeRO-3
    sharding: dense weights over the shard group (`_dense_costs`: the data-parallel group, or its
    first dp*cp/hsdp members with hybrid sharding), experts over the expert-data-parallel group.
    FSDP (`Software.zero3_granularity="unit"`) prefetches the next unit's weights while this one
    computes: per micro-batch one all-gather in forward, one all-gather + one reduction in
    backward; per weight tensor: `_zero3_per_tensor`."""
    lay, cl, sw = c.lay, c.model.cluster, c.model.software
    if not (lay.zero == 3 and (lay.replicas > 1 or (lay.ep > 1 and lay.expert_replicas > 1))):
        return None
    ag_t, rs_t = c.zeros(), c.zeros()
    exposed, hidden = c.zeros(), c.zeros()
    parts = [(_dense_costs(c), st.P_d)] if lay.replicas > 1 else []
    if lay.ep > 1 and lay.expert_replicas > 1:
        groups = [tuple(ep_groups(lay, s)[1]) for s in range(lay.pp)]
        parts.append(((_worst_cost([collective_cost(cl, "all_gather", g) for g in groups]),
                       _per_weight_byte(c.model, _worst_cost([collective_cost(cl, "reduce_scatter", g)
                                                              for g in groups])), len(groups[0])),
                      st.P_e))
    for costs, part in parts:
        if not part.any():
            continue
        if sw.zero3_granularity == "tensor":
            x, h = _zero3_per_tensor(c, part, costs, comp, e)
            exposed, hidden = exposed + x, hidden + h
            continue
        ag, red, _ = costs
        ag_t += np.array([ag.time(x) if x else 0.0 for x in e * part])
        rs_t += np.array([red.time(x) if x else 0.0 for x in e * part])
    exp_f = np.maximum(0.0, ag_t - comp.fwd)
    exp_b = np.maximum(0.0, ag_t + rs_t - (comp.bwd + comp.rec))
    z3 = exp_f + exp_b
    return z3 + exposed, 2 * ag_t + rs_t - z3 + hidden


def _zero2(c: _Chain, st: _Static, comp: _Compute, e: int) -> tuple[np.ndarray, np.ndarray]:
    """ZeRO-2 gradient reduce-scatters per unit and micro-batch, (exposed, hidden): a device keeps
    only its shard of the gradients, so every micro-batch's gradients are reduce-scattered as
    its backward produces them (DeepSpeed stage 2's `reduce_ready_partitions_and_remove_grads`)
    over the data-parallel group (`_dense_costs`: over the shard group, then across replica groups
    with hybrid sharding; experts at the expert-data-parallel group's cost per byte,
    `_expert_sync_ratio`), instead of once per step as with ZeRO-1. With `Software.dp_overlap`
    a unit's reduce-scatter hides behind its own backward (and recomputation); without, all of
    it is exposed."""
    lay, cl = c.lay, c.model.cluster
    rs = _dense_costs(c)[1]
    nbytes = e * (st.P_d + st.P_e * _expert_sync_ratio(cl, lay, "reduce_scatter"))
    rs_t = np.array([rs.time(x) for x in nbytes])
    if not c.model.software.dp_overlap:
        return rs_t, c.zeros()
    exposed = np.maximum(0.0, rs_t - (comp.bwd + comp.rec))
    return exposed, rs_t - exposed


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
    """Per stage, the end-of-step gradient reduction and the ZeRO-1/2 all-gather of updated weights,
    each per byte of weights (ZeRO-2 reduces each micro-batch's gradients in the chain, `_zero2`: no
    end-of-step reduction)."""
    lay, cl = c.lay, c.model.cluster
    zero_cost = CollectiveCost(0.0, 0.0)
    none = tuple(zero_cost for _ in range(lay.pp))
    if lay.zero == 3 or lay.replicas == 1:
        return none, none
    if lay.zero == 0:
        return tuple(_per_weight_byte(c.model, collective_cost(cl, "all_reduce", tuple(dp_group(lay, s))))
                     for s in range(lay.pp)), none
    per = [_stage_dense_costs(c, s) for s in range(lay.pp)]  # (gather, reduce) over the shard groups
    return (none if lay.zero == 2 else tuple(red for _, red in per)), tuple(ag for ag, _ in per)


@memoize("placement.terms", 2048)
def plan_terms(model: CostModel, lay: Layout) -> PlanTerms:
    """The plan terms of a layout: compute, communication, memory (each a step above)."""
    cfg, cl, e = model.cfg, model.cluster, dtype_bytes(model.storage_dtype)
    c = _Chain.of(model, lay)
    if tp_overlap.applies(model, lay):  # exposed part of the TP collectives (Software.tp_comm_overlap)
        tp_f, tp_b = map(list, tp_overlap.exposed_tp_times(model, lay))
    else:
        tp_f, tp_b = c.tp_times(c.prof.fwd_coll), c.tp_times(c.prof.bwd_coll)
    comp = _compute(c, tp_f)
    tp_s = _tp_comm(c, comp, tp_f, tp_b)
    ep_s, ep_hidden = _ep_comm(c, comp)
    st = _static_memory(c, e)
    act, work = _activation_memory(c)
    z3 = _zero3(c, st, comp, e)
    if z3 is not None:
        work = work + 2 * e * st.P  # gathered weights of this unit and the prefetched next one
        sync = c.zeros()
    else:
        kind = "reduce_scatter" if lay.zero in (1, 2) else "all_reduce"
        sync = e * (st.P_d + st.P_e * _expert_sync_ratio(cl, lay, kind))  # ZeRO-2: the bytes its gather moves
        z3 = (c.zeros(), c.zeros())
        if lay.zero == 2 and lay.replicas > 1:
            z3 = _zero2(c, st, comp, e)
            work = work + _grad_bytes(c.model) * st.P  # the unit's gradient before its reduce-scatter
    fwd_flops = c.expand(c.prof.fwd_flops)
    hw_flops = fwd_flops + c.expand(c.prof.bwd_flops) + comp.rec_flops
    chain = ChainCosts(comp.fwd, comp.bwd, comp.rec, tp_s, z3[0], z3[1], st.weight_b, st.grad_b, st.optim_b, act,
                       work, sync, c.prof.adam_s_per_param * st.P_opt, 3.0 * c.expand(c.prof.model_fwd_flops), hw_flops,
                       ep_s, ep_hidden)
    p2p_s, p2p_hidden = _p2p(c, e)
    dp_sync, dp_gather = _dp_costs(c)
    emb_sync = 0.0
    if lay.pp > 1 and cfg.tied_embeddings:
        emb_sync = collective_cost(cl, "all_reduce", (0, (lay.pp - 1) * lay.stage_devices)).time(
            e * c.prof.table_params)
    # Megatron-Core's DDP buckets hold max(4e7, 1e6 * dp) parameters (`distributed_data_parallel.py`)
    bucket = e * max(4e7, 1e6 * lay.dp) if model.software.dp_gather_overlap else None
    return PlanTerms(chain, p2p_s, p2p_hidden, dp_sync, dp_gather, model.software.dp_overlap, emb_sync,
                     model.memory_limit, bucket)


_terms = plan_terms

__all__ = ["plan_terms"]
