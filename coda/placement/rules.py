"""Whether a parallel training layout is valid: one small pure function per fact.

Every rule returns the reasons it fails, as a list of one-line strings (empty = the fact holds),
naming the values, the fact and a nearby valid choice. The same rules serve three callers, so a
message always names the rule that actually fails:

- `Plan.__post_init__` (`layout_reasons`: facts about the plan alone, a `ConfigError`);
- `validate_plan` (`plan_reasons`: facts about the plan against a model and a device count, an
  `InfeasibleDesign`);
- `optimize`'s enumeration, which drops the values a rule refuses and, when nothing is left,
  reports the reasons it dropped them for (`explain`).

Rules marked *enumeration* describe choices the optimiser never makes although a `Plan` may
hold them (sequence parallelism without tensor parallelism is a no-op, ZeRO without replicas is
stage 0, interleaving one chunk is 1F1B): asking `optimize` for only such values is refused
with that reason.

The pipeline's facts (schedule, virtual stages, stage split) are in `coda.placement.pipeline_rules`
and the arithmetic of the messages (`divisors`, `nearest`) in `coda.placement.divisors`; both are
re-exported here, so `rules` remains the one name callers use.

Bounds: `MAX_DEVICES` (from `coda.arch.clusters`) and `MAX_GLOBAL_BATCH_TOKENS` are physical
sanity limits; above them a request is a typo, and refusing it keeps every enumeration small.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING

from coda.arch.clusters import MAX_DEVICES
from coda.models.config import ModelConfig
from coda.models.dims import tp_reasons
from coda.placement.divisors import divisors, nearest
from coda.placement.pipeline_rules import (
    chunks_divide_layers,
    interleaved_micro_batches,
    interleaving_needs_chunks,
    interleaving_needs_pipeline,
    pp_within_layers,
    stage_layers_count,
    stage_layers_interleaved_shape,
    stage_layers_middle,
    stage_layers_sum,
    virtual_stages_need_interleaving,
)
from coda.units import dtype_bytes

if TYPE_CHECKING:
    from coda.placement.layout import Layout
    from coda.placement.plan import Plan

MAX_GLOBAL_BATCH_TOKENS = 2**30
"""Most tokens per optimizer step (global batch x sequence length): 2^30 = 1073741824, some 16
times the largest published batch (DeepSeek-V3: 15360 sequences of 4096 tokens, 6.3e7)."""


# -------------------------------------------------------------------------------------- bounds


def devices_bound(n_devices: int) -> list[str]:
    """The device count is at most `MAX_DEVICES`."""
    if n_devices > MAX_DEVICES:
        return [f"n_devices={n_devices} exceeds the {MAX_DEVICES} (2^20) devices of the largest cluster coda "
                f"models; use at most {MAX_DEVICES}"]
    return []


def batch_tokens_bound(global_batch: int, seq_len: int) -> list[str]:
    """Tokens per step, global_batch * seq_len, are at most `MAX_GLOBAL_BATCH_TOKENS`."""
    if global_batch * seq_len > MAX_GLOBAL_BATCH_TOKENS:
        return [f"global_batch * seq_len = {global_batch} * {seq_len} = {global_batch * seq_len} tokens per step "
                f"exceed the limit of {MAX_GLOBAL_BATCH_TOKENS} (2^30); use global_batch <= "
                f"{max(1, MAX_GLOBAL_BATCH_TOKENS // seq_len)} at this seq_len"]
    return []


# ----------------------------------------------------------------------------- the plan alone


ZERO_STAGES = (0, 1, 2, 3)


def positive_size(name: str, value: object) -> list[str]:
    """A size of the layout (tp, pp, dp, micro-batch, ...) is a positive integer."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        return [f"{name}={value!r} must be a positive integer"]
    return []


def zero_stage(zero: object) -> list[str]:
    """The ZeRO stage is 0, 1, 2 or 3."""
    if isinstance(zero, bool) or zero not in ZERO_STAGES:
        return [f"zero={zero!r} must be one of {ZERO_STAGES}"]
    return []


def boolean(name: str, value: object) -> list[str]:
    """An on/off choice is True or False."""
    if not isinstance(value, bool):
        return [f"{name}={value!r} must be True or False"]
    return []


def layout_value_reasons(layout: Layout, sizes: Iterable[str]) -> list[str]:
    """Each size of the layout a positive integer, the ZeRO stage valid, sequence parallelism a bool."""
    out = []
    for name in sizes:
        v = getattr(layout, name)
        if type(v) is not int or v < 1:  # fast path: a plain positive int passes `positive_size`
            out += positive_size(name, v)
    if type(layout.zero) is not int or layout.zero not in ZERO_STAGES:
        out += zero_stage(layout.zero)
    if type(layout.sequence_parallel) is not bool:
        out += boolean("sequence_parallel", layout.sequence_parallel)
    return out


def recompute_every_needs_full(recompute: str, recompute_every: int) -> list[str]:
    """Checkpointing every k-th block (k > 1) is a form of full recomputation."""
    if recompute_every > 1 and recompute != "full":
        return [f"recompute_every={recompute_every} checkpoints every {recompute_every}-th block, a form of full "
                f"recomputation; use recompute='full', or recompute_every=1 with recompute={recompute!r}"]
    return []


def recompute_every_within_layers(cfg: ModelConfig, recompute_every: int) -> list[str]:
    """k is at most the blocks of the model (k = layers checkpoints the first block alone)."""
    if recompute_every > cfg.n_layers:
        return [f"recompute_every={recompute_every} exceeds the {cfg.n_layers} layers of {cfg.name}; use "
                f"1..{cfg.n_layers}"]
    return []


def hsdp_divides_replicas(hsdp: int, dp: int, cp: int) -> list[str]:
    """Hybrid sharding splits the dp*cp replicas into hsdp equal groups."""
    if hsdp > 1 and (dp * cp) % hsdp:
        return [f"hsdp={hsdp} replica groups must divide the dp*cp = {dp * cp} replicas; valid hsdp: "
                f"{nearest(divisors(dp * cp), hsdp)}"]
    return []


def hsdp_needs_zero(zero: int, hsdp: int) -> list[str]:
    """Hybrid sharding shards ZeRO states within a group: it needs a ZeRO stage."""
    if hsdp > 1 and zero == 0:
        return [f"hsdp={hsdp} shards ZeRO states within groups of replicas; it needs zero >= 1 (or use hsdp=1)"]
    return []


def hsdp_without_experts(ep: int, hsdp: int) -> list[str]:
    """Hybrid sharding of expert weights is not modelled."""
    if hsdp > 1 and ep > 1:
        return [f"hsdp={hsdp} with ep={ep}: hybrid sharding of expert-parallel weights is not modelled; use hsdp=1"]
    return []


def layout_reasons(layout: Layout) -> list[str]:
    """Every fact a `Layout` (or `Plan`) must satisfy by itself, after its sizes and options have
    been checked (`Layout.__post_init__`)."""
    return [*virtual_stages_need_interleaving(layout.schedule, layout.virtual_stages),
            *interleaving_needs_pipeline(layout.schedule, layout.pp),
            *recompute_every_needs_full(layout.recompute, layout.recompute_every),
            *hsdp_divides_replicas(layout.hsdp, layout.dp, layout.cp), *hsdp_needs_zero(layout.zero, layout.hsdp),
            *hsdp_without_experts(layout.ep, layout.hsdp)]


# ------------------------------------------------------------------- the plan, model, devices


def devices_match(tp: int, cp: int, pp: int, dp: int, n_devices: int) -> list[str]:
    """tp * cp * pp * dp equals the devices."""
    used = tp * cp * pp * dp
    if used == n_devices:
        return []
    inner = tp * cp
    other = n_devices // (inner * pp) if n_devices % (inner * pp) == 0 else None
    name = "tp*cp" if cp > 1 else "tp"
    if other:
        hint = f"use dp={other}"
    elif n_devices % inner == 0:
        hint = f"{name}*pp must divide {n_devices}; e.g. pp in {{{nearest(divisors(n_devices // inner), pp)}}}"
    else:
        hint = f"{name} must divide {n_devices}"
    sizes = f"tp*cp*pp*dp = {tp}*{cp}*" if cp > 1 else f"tp*pp*dp = {tp}*"
    return [f"{sizes}{pp}*{dp} = {used} devices, but the cluster has {n_devices}; {hint}"]


def tp_divides_devices(tp: int, n_devices: int) -> list[str]:
    """*enumeration*: a tensor-parallel group of tp devices tiles the devices."""
    if n_devices % tp:
        return [f"tp={tp} must divide the {n_devices} devices; valid tp: {nearest(divisors(n_devices), tp)}"]
    return []


def cp_divides_devices(tp: int, cp: int, n_devices: int) -> list[str]:
    """*enumeration*: tp*cp devices (a tensor- and context-parallel group) tile the devices."""
    if n_devices % cp:
        return [f"cp={cp} must divide the {n_devices} devices; valid cp: {nearest(divisors(n_devices), cp)}"]
    if n_devices % (tp * cp):
        ok = nearest(divisors(n_devices // tp), cp) if n_devices % tp == 0 else "none"
        return [f"tp*cp = {tp}*{cp} must divide the {n_devices} devices; valid cp with tp={tp}: {ok}"]
    return []


def pp_divides_devices(tp: int, cp: int, pp: int, n_devices: int) -> list[str]:
    """*enumeration*: pipelines of pp stages, each tp*cp devices wide, tile the devices."""
    if n_devices % pp:
        return [f"pp={pp} must divide the {n_devices} devices; valid pp: {nearest(divisors(n_devices), pp)}"]
    if n_devices % (tp * cp * pp):
        ok = nearest(divisors(n_devices // (tp * cp)), pp) if n_devices % (tp * cp) == 0 else "none"
        inner = f"tp*cp*pp = {tp}*{cp}*{pp}" if cp > 1 else f"tp*pp = {tp}*{pp}"
        return [f"{inner} must divide the {n_devices} devices; valid pp with tp={tp}: {ok}"]
    return []


def tp_divides_model(cfg: ModelConfig, tp: int) -> list[str]:
    """tp splits the model: it divides the attention heads, the kv heads (or is a multiple of them) and
    every MLP width (`coda.models.builder.tp_reasons`, the graph builder's own check)."""
    return tp_reasons(cfg, tp)


def whole_micro_batches(global_batch: int, dp: int, micro_batch: int) -> list[str]:
    """Micro-batches per pipeline, global_batch / (dp * micro_batch), are a positive integer."""
    per_replica, rem = divmod(global_batch, dp * micro_batch)
    if not rem and per_replica >= 1:
        return []
    per_dp = global_batch / dp
    mbs = divisors(global_batch // dp) if global_batch % dp == 0 else []
    below, above = (global_batch // dp) * dp or dp, (global_batch // dp + 1) * dp
    hint = (f"micro_batch must divide {global_batch}/{dp} = {global_batch // dp}; nearest: "
            f"{nearest(mbs, micro_batch)}" if mbs else
            f"dp={dp} must divide global_batch={global_batch}; nearest global batches: {below}, {above}")
    return [f"micro-batches per pipeline = global_batch/(dp*micro_batch) = {global_batch}/({dp}*{micro_batch}) = "
            f"{per_dp / micro_batch:g} is not a positive integer; {hint}"]


def ep_needs_moe(cfg: ModelConfig, ep: int) -> list[str]:
    """Expert parallelism needs experts."""
    if ep > 1 and not cfg.is_moe:
        return [f"{cfg.name}: ep={ep} needs an MoE model (expert parallelism spreads experts); {cfg.name} is dense "
                "(n_experts=1): use ep=1"]
    return []


def ep_divides_experts(cfg: ModelConfig, ep: int) -> list[str]:
    """ep divides the experts of an MoE model."""
    if ep > 1 and cfg.is_moe and cfg.n_experts % ep:
        return [f"{cfg.name}: ep={ep} must divide its {cfg.n_experts} experts; valid ep: "
                f"{nearest(divisors(cfg.n_experts), ep)}"]
    return []


def ep_divides_stage(cfg: ModelConfig, tp: int, cp: int, dp: int, ep: int) -> list[str]:
    """ep divides tp*cp*dp, the devices of a pipeline stage over which the experts are laid out."""
    inner = tp * cp * dp
    if ep > 1 and inner % ep:
        return [f"ep={ep} must divide tp*cp*dp = {inner} (the devices of a pipeline stage, over which the expert "
                f"layers are laid out); valid ep: {[e for e in divisors(inner) if cfg.n_experts % e == 0]}"]
    return []


def ep_needs_sequence_parallel(tp: int, ep: int, sequence_parallel: bool) -> list[str]:
    """With tp > 1, the MoE layer routes each device's sequence-parallel shard."""
    if ep > 1 and tp > 1 and not sequence_parallel:
        return [f"expert parallelism with tp={tp} needs sequence_parallel=True (Megatron-Core: the MoE layer routes "
                "each device's sequence-parallel shard)"]
    return []


def cp_needs_fused_attention(cp: int, attention: str) -> list[str]:
    """*enumeration*: context parallelism runs in fused (ring) attention kernels."""
    if cp > 1 and attention != "fused":
        return [f"context parallelism (cp={cp}) needs fused attention; this software runs {attention!r} attention "
                "(use e.g. software=MEGATRON_CORE)"]
    return []


def cp_splits_sequence(cp: int, seq_len: int) -> list[str]:
    """Context parallelism splits each sequence into 2*cp chunks (load-balanced causal attention)."""
    if cp > 1 and seq_len % (2 * cp):
        return [f"context parallelism splits each sequence into 2*cp chunks: seq_len={seq_len} is not a multiple "
                f"of 2*cp = {2 * cp}; change seq_len or cp"]
    return []


def sp_divides_tokens(tp: int, sequence_parallel: bool, micro_batch: int, seq_len: int, cp: int) -> list[str]:
    """Sequence parallelism splits a micro-batch's tokens on one device, b * s/cp, over the tp devices."""
    tokens = micro_batch * (seq_len // cp)
    if sequence_parallel and tp > 1 and tokens % tp:
        return [f"sequence parallelism needs tp={tp} to divide the micro-batch's {tokens} tokens per device "
                f"(micro_batch * seq_len/cp = {micro_batch} * {seq_len}/{cp}); turn it off or change micro_batch"]
    return []


def graph_reasons(cfg: ModelConfig, layout: Layout, seq_len: int) -> list[str]:
    """Every fact the graph builder needs of a layout (`coda.models.build`): tp splits the model, ep
    divides the experts, cp splits the sequence, sequence parallelism splits the tokens."""
    lay = layout
    return [*tp_divides_model(cfg, lay.tp), *ep_needs_moe(cfg, lay.ep), *ep_divides_experts(cfg, lay.ep),
            *cp_splits_sequence(lay.cp, seq_len),
            *sp_divides_tokens(lay.tp, lay.sequence_parallel, lay.micro_batch, seq_len, lay.cp)]


def sequence_parallel_needs_tp(sequence_parallel: bool, tp: int) -> list[str]:
    """*enumeration*: sequence parallelism splits the tensor-parallel group's activations."""
    if sequence_parallel and tp == 1:
        return ["sequence_parallel=True needs tp > 1 (it splits activations over the tensor-parallel group)"]
    return []


def zero_needs_replicas(zero: int, dp: int, cp: int) -> list[str]:
    """*enumeration*: ZeRO shards over the dp*cp replicas; with one it is stage 0."""
    if zero and dp * cp == 1:
        return [f"zero={zero} shards over dp*cp replicas; with dp*cp = 1 it is zero=0 (use dp > 1 or zero=0)"]
    return []


def plan_reasons(plan: Plan, cfg: ModelConfig, n_devices: int | None = None) -> list[str]:
    """Every fact a plan must satisfy against a model (and a device count, if given), in order:
    devices, tensor parallelism, micro-batches, expert parallelism, pipeline depth, interleaving,
    stage_layers. Empty = valid."""
    p = plan
    out = devices_match(p.tp, p.cp, p.pp, p.dp, n_devices) if n_devices is not None else []
    out += tp_divides_model(cfg, p.tp)
    out += whole_micro_batches(p.global_batch, p.dp, p.micro_batch)
    out += ep_needs_moe(cfg, p.ep) + ep_divides_experts(cfg, p.ep)
    if cfg.is_moe and not ep_divides_experts(cfg, p.ep):
        out += ep_divides_stage(cfg, p.tp, p.cp, p.dp, p.ep) + ep_needs_sequence_parallel(p.tp, p.ep,
                                                                                          p.sequence_parallel)
    out += pp_within_layers(cfg, p.pp) + recompute_every_within_layers(cfg, p.recompute_every)
    out += chunks_divide_layers(cfg, p.schedule, p.pp, p.virtual_stages, p.stage_layers)
    if p.global_batch % (p.dp * p.micro_batch) == 0:
        out += interleaved_micro_batches(p.schedule, p.pp, p.micro_batches)
    out += stage_layers_count(p.stage_layers, p.schedule, p.chunks)
    if not stage_layers_count(p.stage_layers, p.schedule, p.chunks):
        out += stage_layers_sum(cfg, p.stage_layers) + stage_layers_middle(p.stage_layers)
        out += stage_layers_interleaved_shape(p.schedule, p.stage_layers)
    return out


# --------------------------------------------------------------------------------- memory


def optimizer_bytes_per_param(dtype: str) -> int:
    """Optimizer-state bytes per parameter: 12 (fp32 master, m, v) with low-precision weights, 8 (m, v) in fp32."""
    return 12 if dtype_bytes(dtype) < 4 else 8


def zero_sharded(zero: int) -> tuple[bool, bool, bool]:
    """Which of (weights, gradients, optimizer states) ZeRO stage `zero` shards over the replicas
    (Rajbhandari et al. SC'20, section 5): stage 1 the optimizer states, 2 also the gradients, 3
    also the weights; stage 0 none."""
    return zero >= 3, zero >= 2, zero >= 1


def zero_shards(zero: int, replicas: int) -> tuple[int, int, int]:
    """(weight, state, gradient) shard counts of ZeRO stage `zero` over `replicas` devices, in the
    order `static_bytes_per_param` takes them (1 = held whole)."""
    weights, grads, states = zero_sharded(zero)
    return (replicas if weights else 1, replicas if states else 1, replicas if grads else 1)


def static_bytes_per_param(storage_dtype: str, dtype: str, weight_shards: int = 1, state_shards: int = 1,
                           grad_shards: int | None = None) -> float:
    """Weight, gradient and optimizer bytes of one parameter (Rajbhandari et al. SC'20, ZeRO section 3):
    `e / weight_shards + e / grad_shards + optimizer / state_shards` with e the stored element size,
    i.e. 16 bytes unsharded in mixed precision (2 + 2 + 12) and in fp32 (4 + 4 + 8). ZeRO-1 shards
    the optimizer states, ZeRO-2 also the gradients, ZeRO-3 all three; `grad_shards` defaults to
    `weight_shards`."""
    e = dtype_bytes(storage_dtype)
    grads = weight_shards if grad_shards is None else grad_shards
    return e / weight_shards + e / grads + optimizer_bytes_per_param(dtype) / state_shards


def explain(rejected: Counter[str], limit: int = 3) -> str:
    """The most frequent reasons a search dropped candidates for, as one clause."""
    if not rejected:
        return "no combination of the choices is left to try"
    top = [reason for reason, _ in rejected.most_common(limit)]
    more = len(rejected) - len(top)
    return "; ".join(top) + (f" (and {more} other reason{'s' * (more > 1)})" if more > 0 else "")


__all__ = [
    "MAX_DEVICES", "MAX_GLOBAL_BATCH_TOKENS", "ZERO_STAGES", "batch_tokens_bound", "boolean", "chunks_divide_layers",
    "cp_divides_devices", "cp_needs_fused_attention", "cp_splits_sequence", "devices_bound", "devices_match",
    "divisors", "ep_divides_experts", "ep_divides_stage", "ep_needs_moe", "ep_needs_sequence_parallel", "explain",
    "graph_reasons", "hsdp_divides_replicas", "hsdp_needs_zero", "hsdp_without_experts", "interleaved_micro_batches",
    "interleaving_needs_chunks", "interleaving_needs_pipeline",
    "layout_reasons", "layout_value_reasons", "nearest", "optimizer_bytes_per_param", "plan_reasons", "positive_size",
    "pp_divides_devices", "pp_within_layers", "recompute_every_needs_full", "recompute_every_within_layers",
    "sequence_parallel_needs_tp", "sp_divides_tokens", "stage_layers_count",
    "stage_layers_interleaved_shape", "stage_layers_middle", "stage_layers_sum", "static_bytes_per_param",
    "tp_divides_devices", "tp_divides_model", "virtual_stages_need_interleaving", "whole_micro_batches",
    "zero_needs_replicas", "zero_shards", "zero_sharded", "zero_stage",
]
