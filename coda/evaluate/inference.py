"""Serving a model with static batching: `inference(cfg, cluster, plan, batch, prompt_len, output_len)`.

    r = coda.evaluate.inference("llama2-70b", cluster("dgx-h100", 8), 2, batch=64, prompt_len=2048,
                                output_len=2048, dtype="fp8")
    r.ttft_s, r.tpot_s, r.tokens_per_s_per_device, r.kv_cache_bytes, r.max_batch

Model (b = batch, p = prompt_len, O = output_len, t = tp, P = pp, l = layers, g = kv heads, d = head dim):

- Parallelism: tensor parallelism of width t (Megatron split, `coda.models.build`) inside each
  of P pipeline stages of `balanced_stage_layers(l, P)` blocks (the embedding on the first, the
  head on the last) over the first t*P devices; the other devices hold `n_devices // (t*P)`
  independent replicas (throughput multiplies, per-request latency is unchanged). The batch
  runs as m = min(P, b) micro-batches of (at most) ceil(b/m) sequences, each stage timed on the
  largest (exact when m divides b); a micro-batch's activations (`mb*tokens*h` elements) pass
  between adjacent stages (send/recv from rank s*t to (s+1)*t, `Cluster.collective_time`).
- Context parallelism (`cp` > 1, for long prompts): each of cp tensor-parallel groups (ranks t
  apart) holds 1/cp of every sequence: the prefill runs ring attention over the cp groups and
  every other op on the group's share of the prompt; decode attends each group's 1/cp of the KV
  cache and merges the partial results with an all-gather (`coda.evaluate.context_parallel`
  gives the formulas and sources). A replica is t*cp*P devices, stage s starting at rank s*t*cp.
- Expert parallelism (MoE, `ep` > 1, with t = P = 1; DeepSeek-style serving with data-parallel
  attention): each of ep devices serves b/ep of the sequences with the whole attention and E/ep
  whole experts; its graphs are `build(..., ep=ep)` (the routed tokens' dispatch and combine
  all-to-alls over ranks 0..ep-1); a replica is the ep devices.
- Stage s of a graph takes t_s: the predictor's time of its layers' compute ops, kernels back to
  back, plus their TP collectives over ranks 0..t-1.
- TTFT = the prefill of p-token prompts through the pipeline, the last micro-batch's first token:
  `sum_s t_s + (P-1)*hop + (m-1)*max_s t_s` on `build(cfg, "prefill", mb, p, tp=t)` graphs
  (P = 1: one pass over the model).
- TPOT = mean decode-step time over the generation, a step (one token for every sequence) at
  context c being, on `build(cfg, "decode", mb, 1, tp=t, context_len=c)`,
  `max(m * max_s t_s, sum_s t_s + P*hop)` for P > 1 (the busiest stage serves m micro-batches,
  or a micro-batch's next token waits for its previous one to go around the P stages), `t_0`
  for P = 1; for c = p .. p+O-1. The step time is evaluated at up to `TPOT_POINTS` evenly spaced
  contexts and linearly interpolated to every integer context before averaging (the trapezoid
  rule; exact when the step time is linear in c, as the KV-cache reads are).
- Throughput (static batching, as TensorRT-LLM's performance tables): per replica
  b*O / (TTFT + O*TPOT) generated tokens/s; per device that over t*P; total that x replicas.
- Memory per device (the stage with the most to hold): its weights (`stage_weight_bytes`: its
  blocks, the embedding on the first stage, the head on the last, which with P > 1 also keeps a
  copy of a tied embedding table; / t; N*e/t in all for P = 1, N = `param_count()`, e = dtype
  bytes), its blocks' share of the KV cache `2*l*g_t*d*e*b*(p+O)` with g_t = max(g/t, 1) (Pope
  et al. 2022, "Efficiently Scaling Transformer Inference", sec. 2; with a sliding window of W
  positions the rolling buffer of `min(p+O, W)` tokens of Jiang et al. 2023, "Mistral 7B",
  sec. 2; with multi-head latent attention the latent, `(c_kv + d_r)*e*b` per position and
  layer on every rank, DeepSeek-V2 sec. 2.1.2), and an activation workspace: the live
  activations of the largest op of the prefill graph (its non-weight inputs + outputs) for one
  micro-batch, linear in its size. They must fit
  in HBM minus `reserve_bytes` (CUDA context, cuBLAS/NCCL workspaces; default 2 GiB, an
  estimate). `max_batch` is the largest b that fits.
- MoE models: a decode step (or a prefill of few tokens) with T tokens runs and reads only the
  `min(E, T*k)` experts its tokens are routed to (balanced routing, the fewest possible; random
  routing would touch more), while memory holds all E.
- MBU (model-bandwidth utilisation, Databricks 2023): (weight bytes a decode step reads + mean KV
  bytes) on the busiest device / TPOT / HBM bandwidth; a step reads a stage's weights once per
  micro-batch, all of them for a dense model, and for an MoE model only the experts its tokens
  are routed to (`coda.models.build`).

Not modelled: in-flight (continuous) batching, paged-KV fragmentation, CUDA graphs and
TensorRT-LLM's fused kernels (the predictor times eager kernels), speculative decoding.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from coda.arch.clusters import MAX_DEVICES, Cluster
from coda.errors import ConfigError, InfeasibleDesign
from coda.evaluate.context_parallel import cp_reasons, decode_combine_s, local_tokens, ring_cost, ring_ops
from coda.evaluate.inference_memory import (
    _infeasible,
    _kv_per_layer,
    _max_batch,
    _need,
    _Pipeline,
    _valid_tps,
    kv_cache_bytes,
    serving_layout,
    stage_weight_bytes,
    weight_bytes,
    workspace_bytes_per_sequence,
)
from coda.models.builder import activation_dtype, build
from coda.models.config import MAX_SEQ_LEN, ModelConfig
from coda.models.graph import ModelGraph
from coda.placement.chain import collectives_time
from coda.placement.costs import device_memory_bytes, graph_collectives, predictor_layer_time, time_graphs
from coda.placement.layout import Layout
from coda.placement.plan import Plan
from coda.predictor import op_latencies
from coda.units import GiB, dtype_bytes

TPOT_POINTS = 8  # decode contexts evaluated for TPOT (interpolated in between)
MAX_BATCH = 2**24
"""Most sequences served together (16777216; device memory runs out long before)."""
DEFAULT_RESERVE_BYTES = 2 * GiB  # CUDA context + library workspaces + NCCL buffers (estimate)


@dataclass(frozen=True)
class InferenceResult:
    """Latency, throughput and memory of serving one static batch (SI units: s, bytes, tokens/s).

    Attributes:
        pp, micro_batches: pipeline stages P and micro-batches m in flight; ep: expert parallelism.
        ttft_s: time to first token (prefill), of which `ttft_comm_s` is collectives (TP and
            pipeline send/recv, counted by the same formula).
        tpot_s: mean time per output token over the generation, of which `tpot_comm_s` is
            collectives; `tpot_first_s` / `tpot_last_s` at the first / last context.
        e2e_s: TTFT + O * TPOT, the time of the whole batch.
        tokens_per_s: generated tokens/s of all replicas; `_per_replica`, `_per_device` likewise.
        weights_bytes, kv_cache_bytes, workspace_bytes: memory per device.
        memory_limit_bytes: HBM minus the reserve; `free_bytes` = limit - the three above.
        max_batch: largest batch whose memory fits (0 if the weights alone do not).
        mbu: model-bandwidth utilisation of decode, (weights read + mean KV) / TPOT / HBM bandwidth.
        cp: context-parallel width; ring: the ring-attention variant of the prefill (``pass-kv`` or
            ``pass-q``, the faster; empty at cp = 1).
    """

    model: str
    cluster: str
    device: str
    n_devices: int
    tp: int
    pp: int
    ep: int
    micro_batches: int
    replicas: int
    batch: int
    prompt_len: int
    output_len: int
    dtype: str
    ttft_s: float
    ttft_comm_s: float
    tpot_s: float
    tpot_comm_s: float
    tpot_first_s: float
    tpot_last_s: float
    e2e_s: float
    tokens_per_s: float
    tokens_per_s_per_replica: float
    tokens_per_s_per_device: float
    weights_bytes: float
    kv_cache_bytes: float
    workspace_bytes: float
    memory_limit_bytes: float
    free_bytes: float
    max_batch: int
    fits: bool
    mbu: float
    cp: int = 1
    ring: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _layer_times(graphs: list[ModelGraph], cluster: Cluster, lay: Layout) -> list[list[tuple[float, float, float]]]:
    """Per model graph, per layer kind (embedding, block, head): seconds of one layer (compute +
    collectives: tensor-parallel over ranks 0..t-1, expert all-to-alls over 0..ep-1), of its
    collectives, and its weight bytes; compute timed in one batch."""
    layers = [lg for mg in graphs for lg, _ in mg.layers]
    times = iter(time_graphs(predictor_layer_time, layers, cluster.device))
    out = []
    for mg in graphs:
        rows = []
        for lg, _ in mg.layers:
            comm = (collectives_time(cluster, graph_collectives(lg, expert=False), lay.tp)
                    + collectives_time(cluster, graph_collectives(lg, expert=True), lay.ep))
            rows.append((next(times) + comm, comm, lg.param_bytes()))
        out.append(rows)
    return out


def _hop_s(cluster: Cluster, pipe: _Pipeline, tp: int, n_bytes: float, ring: bool, cp: int = 1) -> float:
    """Worst send/recv of one micro-batch's activations between adjacent stages (their first
    ranks, t*cp apart); with `ring` also from the last stage back to the first (the next token)."""
    if pipe.pp == 1:
        return 0.0
    w = tp * cp
    pairs = [(s * w, (s + 1) * w) for s in range(pipe.pp - 1)] + ([((pipe.pp - 1) * w, 0)] if ring else [])
    return max(cluster.collective_time("send_recv", n_bytes, pair) for pair in pairs)


def inference(cfg: ModelConfig | str, cluster: Cluster, plan: Plan | int, batch: int, prompt_len: int,
              output_len: int, dtype: str = "bf16", reserve_bytes: float = DEFAULT_RESERVE_BYTES,
              check_memory: bool = True, pp: int = 1, ep: int = 1, cp: int = 1) -> InferenceResult:
    """TTFT, TPOT, tokens/s, memory per device and the largest batch of static-batched serving.

    Formulas and modelling choices are in the module docstring.

    Args:
        cfg: the model (or a preset name / config.json path).
        cluster: the cluster; its device is a GPU (or an Accelerator, timed by the predictor).
        plan: the tensor-parallel width t, or a `Plan` of which `tp` and `pp` are read; t*pp must
            divide `cluster.n_devices`; the rest are `n_devices / (t*pp)` replicas.
        batch: sequences served together, b.
        prompt_len: input tokens per sequence, p.
        output_len: generated tokens per sequence, O.
        dtype: weights, activations and KV cache (``bf16``, ``fp16``, ``fp8`` where the GPU has it).
        reserve_bytes: device memory not available to the model (default 2 GiB).
        check_memory: raise if a device runs out of memory (else report `fits=False`).
        pp: pipeline stages (when `plan` is an int).
        ep: expert parallelism of an MoE model (with tp = pp = 1): ep devices each serve b/ep of
            the sequences with the whole attention and E/ep experts, exchanging routed tokens.
        cp: context parallelism (when `plan` is an int): cp tensor-parallel groups each hold 1/cp
            of every sequence (ring-attention prefill, KV cache sharded for decode).

    Raises:
        ConfigError: bad sizes, tp not dividing the heads/FFN, a dtype the GPU lacks, sequences
            beyond a learned position table, more stages than layers, ep on a dense model, with
            tp or pp, not dividing the experts or the batch; cp > 1 with a sliding window, latent
            attention, ep > 1, or a prompt shorter than 2*cp tokens.
        InfeasibleDesign: t*cp*pp*ep does not divide the devices, or the batch does not fit in memory
            (the message gives the bytes, the largest batch that fits and a tp, pp or ep that would).
    """
    cfg, tp, pp, ep, cp = _checked_inputs(cfg, cluster, plan, batch, prompt_len, output_len, dtype, reserve_bytes,
                                          pp, ep, cp)
    lay = serving_layout(tp, pp, ep, cp)
    ctx = prompt_len + output_len
    pipe = _Pipeline.of(cfg, pp, batch // ep)
    mb = pipe.micro_batch
    local_p = local_tokens(cfg, prompt_len, cp)  # the prompt tokens of one context-parallel rank
    prefill = build(cfg, "prefill", mb, local_p, tp=tp, dtype=dtype, ep=ep)  # validates tp against the heads
    if cluster.n_devices % lay.n_devices:
        name = "tp*cp*pp*ep" if cp > 1 else "tp*pp*ep"
        sizes = f"{tp}*{cp}*{pp}*{ep}" if cp > 1 else f"{tp}*{pp}*{ep}"
        raise InfeasibleDesign(f"{name}={sizes} = {lay.n_devices} must divide the cluster's {cluster.n_devices} "
                               f"devices; valid tp: {_valid_tps(cfg, cluster.n_devices // (cp * pp * ep))}")

    # memory (before timing: fail fast)
    parts = _need(cfg, batch, ctx, prompt_len, lay, dtype)
    limit = device_memory_bytes(cluster.device) - reserve_bytes
    max_batch = _max_batch(cfg, ctx, prompt_len, lay, dtype, limit)
    fits = batch <= max_batch
    if check_memory and not fits:
        raise _infeasible(cfg, cluster, batch, prompt_len, ctx, lay, dtype, parts, limit, max_batch)

    # time: prefill, then decode at evenly spaced contexts p .. p+O-1, each of m micro-batches
    contexts = _decode_contexts(cfg, prompt_len, output_len)
    decodes = [build(cfg, "decode", mb, 1, tp=tp, context_len=-(-c // cp), dtype=dtype, ep=ep) for c in contexts]
    per_graph = _layer_times([prefill, *decodes], cluster, lay)
    ring = _context_parallel(cfg, cluster, [prefill, *decodes], per_graph, tp, cp)
    act = dtype_bytes(activation_dtype(dtype)) * cfg.hidden * mb
    tm = _Timing(pipe, _hop_s(cluster, pipe, tp, act * local_p, ring=False, cp=cp),
                 _hop_s(cluster, pipe, tp, act, ring=True, cp=cp))
    every = np.arange(prompt_len, ctx)
    steps = [tm.step_s(g, 0) for g in per_graph[1:]]
    tpot = float(np.mean(np.interp(every, contexts, steps)))
    tpot_comm = float(np.mean(np.interp(every, contexts, [tm.step_s(g, 1) for g in per_graph[1:]])))
    ttft = tm.prefill_s(per_graph[0], 0)
    e2e = ttft + output_len * tpot
    per_replica = batch * output_len / e2e
    devices = lay.n_devices
    replicas = cluster.n_devices // devices
    return InferenceResult(
        model=cfg.name, cluster=cluster.name, device=cluster.device_name, n_devices=cluster.n_devices, tp=tp,
        pp=pp, ep=ep, micro_batches=pipe.micro_batches, replicas=replicas, batch=batch, prompt_len=prompt_len,
        output_len=output_len, dtype=dtype, ttft_s=ttft, ttft_comm_s=tm.prefill_s(per_graph[0], 1), tpot_s=tpot,
        tpot_comm_s=tpot_comm, tpot_first_s=steps[0], tpot_last_s=steps[-1], e2e_s=e2e,
        tokens_per_s=per_replica * replicas, tokens_per_s_per_replica=per_replica,
        tokens_per_s_per_device=per_replica / devices, weights_bytes=parts[0], kv_cache_bytes=parts[1],
        workspace_bytes=parts[2], memory_limit_bytes=limit, free_bytes=limit - sum(parts), max_batch=max_batch,
        fits=fits, mbu=_mbu(cfg, cluster, pipe, per_graph[1], batch // ep, prompt_len, ctx, tp, dtype, tpot, cp),
        cp=cp, ring=ring)


def _context_parallel(cfg: ModelConfig, cluster: Cluster, graphs: list[ModelGraph],
                      per_graph: list[list[tuple[float, float, float]]], tp: int, cp: int) -> str:
    """With cp > 1, add to each block of the prefill (`graphs[0]`) the rest of its ring attention
    (the step-0 op is in the graph) and to each block of the decodes the all-gather that merges the
    partial outputs, in place (time and collectives); returns the prefill's ring variant."""
    if cp == 1:
        return ""
    variants = set()
    attn = [[op for op in lg.nodes if op.kind == "attention"] for lg, _ in graphs[0].layers]
    rings = {i: ring_ops(ops[0], cfg, 0, cp) for i, ops in enumerate(attn) if ops}
    times = iter(op_latencies([o for r in rings.values() for o in (r.diagonal, r.off_diagonal)], cluster.device))
    for i, r in rings.items():
        diag, off = next(times), next(times)
        rc = ring_cost(cluster, r, diag, off, tp, cp)
        variants.add(rc.variant)
        t, comm, w = per_graph[0][i]
        per_graph[0][i] = (t - diag + rc.seconds, comm + rc.exposed_comm_s, w)
    for mg, rows in zip(graphs[1:], per_graph[1:]):
        for i, (lg, _) in enumerate(mg.layers):
            for op in (o for o in lg.nodes if o.kind == "attention"):
                extra = decode_combine_s(cluster, op, tp, cp)
                t, comm, w = rows[i]
                rows[i] = (t + extra, comm + extra, w)
    return "/".join(sorted(variants))


def _checked_inputs(cfg: ModelConfig | str, cluster: Cluster, plan: Plan | int, batch: int, prompt_len: int,
                    output_len: int, dtype: str, reserve_bytes: float, pp: int,
                    ep: int, cp: int = 1) -> tuple[ModelConfig, int, int, int, int]:
    """The model, and (tp, pp, ep, cp) after every check of `inference`'s arguments that needs no graph."""
    if not isinstance(cfg, ModelConfig):
        from coda.models import get

        cfg = get(cfg)
    if not isinstance(cluster, Cluster):
        raise ConfigError(f"cluster={cluster!r} must be a Cluster (e.g. coda.arch.clusters.cluster('dgx-h100', 8))")
    tp, pp, ep, cp = (plan.tp, plan.pp, plan.ep, plan.cp) if isinstance(plan, Plan) else (plan, pp, ep, cp)
    for name, v, hi in (("tp", tp, MAX_DEVICES), ("pp", pp, MAX_DEVICES), ("ep", ep, MAX_DEVICES),
                        ("cp", cp, MAX_DEVICES),
                        ("batch", batch, MAX_BATCH), ("prompt_len", prompt_len, MAX_SEQ_LEN),
                        ("output_len", output_len, MAX_SEQ_LEN)):
        if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= hi:
            raise ConfigError(f"{name}={v!r} must be an integer in [1, 2^{hi.bit_length() - 1} = {hi}]")
    if isinstance(reserve_bytes, bool) or not isinstance(reserve_bytes, (int, float)) \
            or not 0 <= reserve_bytes < math.inf:
        raise ConfigError(f"reserve_bytes={reserve_bytes!r} must be a finite number of bytes >= 0")
    if pp > cfg.n_layers:
        raise ConfigError(f"pp={pp} stages exceed {cfg.name}'s {cfg.n_layers} layers")
    if ep > 1 and (not cfg.is_moe or cfg.n_experts % ep or tp > 1 or pp > 1 or batch % ep):
        raise ConfigError(f"ep={ep}: expert-parallel serving needs an MoE model whose {cfg.n_experts} expert(s) ep "
                          f"divides, tp=1 and pp=1 (attention is data-parallel), and a batch ({batch}) that ep divides")
    reasons = cp_reasons(cfg, cp, prompt_len, tp, ep)
    if reasons:
        raise ConfigError("; ".join(reasons))
    _check_device(cfg, cluster, dtype, prompt_len + output_len)
    return cfg, tp, pp, ep, cp


def _check_device(cfg: ModelConfig, cluster: Cluster, dtype: str, ctx: int) -> None:
    """The dtype exists and the device runs it; the positions fit a learned position table."""
    dtype_bytes(dtype)
    if isinstance(cluster.device, str):
        raise ConfigError(f"cluster {cluster.name!r} gives no model of its device {cluster.device!r}")
    supports = getattr(cluster.device, "supports", None)
    if supports is not None and not supports(dtype):
        raise ConfigError(f"{cluster.device_name} has no {dtype} support; use bf16 or fp16")
    if cfg.position == "learned" and ctx > cfg.max_seq_len:
        raise ConfigError(f"{cfg.name}: prompt_len + output_len = {ctx} positions exceed its learned "
                          f"position table of {cfg.max_seq_len}")


def _decode_contexts(cfg: ModelConfig, prompt_len: int, output_len: int) -> list[int]:
    """The decode contexts timed: evenly spaced over p .. p+O-1, plus a sliding window's kink."""
    ctx = prompt_len + output_len
    points = {int(round(c)) for c in np.linspace(prompt_len, ctx - 1, min(output_len, TPOT_POINTS))}
    if cfg.sliding_window is not None and prompt_len < cfg.sliding_window < ctx - 1:
        points.add(cfg.sliding_window)  # the step time stops growing there: keep the kink exact
    return sorted(points)


@dataclass(frozen=True)
class _Timing:
    """Prefill and decode-step times of a pipeline from per-layer times (module docstring)."""

    pipe: _Pipeline
    hop_prefill: float
    hop_decode: float

    def prefill_s(self, graph: list[tuple[float, float, float]], field: int) -> float:
        """The last micro-batch's first token."""
        pipe, m = self.pipe, self.pipe.micro_batches
        st, total = pipe.stage(graph, field), pipe.stage(graph, 0)
        return sum(st) + (pipe.pp - 1) * self.hop_prefill + (m - 1) * st[int(np.argmax(total))]

    def step_s(self, graph: list[tuple[float, float, float]], field: int) -> float:
        """One token for all m micro-batches: the busiest stage, else the ring, bounds it."""
        pipe, m = self.pipe, self.pipe.micro_batches
        st, total = pipe.stage(graph, field), pipe.stage(graph, 0)
        if pipe.pp == 1:
            return st[0]
        busiest = int(np.argmax(total))
        if m * total[busiest] >= sum(total) + pipe.pp * self.hop_decode:
            return m * st[busiest]
        return sum(st) + pipe.pp * self.hop_decode


def _mbu(cfg: ModelConfig, cluster: Cluster, pipe: _Pipeline, first_decode: list[tuple[float, float, float]],
         local_batch: int, prompt_len: int, ctx: int, tp: int, dtype: str, tpot: float, cp: int = 1) -> float:
    """Memory-bandwidth utilisation of decode: bytes the busiest device reads per step (its weights
    once per micro-batch, all of a dense model's, the routed experts' of an MoE model, and its share
    of the KV cache) over TPOT times the HBM bandwidth (NaN without one)."""
    bw = getattr(cluster.device, "hbm_bw_bytes_per_s", None)
    mean_kv = _kv_per_layer(cfg, local_batch, -(-np.arange(prompt_len, ctx) // cp), tp, dtype)  # what a step reads
    read = max(pipe.micro_batches * w + sum(c * k for c, k in zip(counts, mean_kv))
               for w, counts in zip(pipe.stage(first_decode, 2), pipe.kinds))
    return read / tpot / bw if bw else math.nan


def inference_sweep(cfg: ModelConfig | str, cluster: Cluster, plan: Plan | int, batches: Iterable[int],
                    prompt_len: int, output_len: int, dtype: str = "bf16", pp: int = 1, ep: int = 1,
                    reserve_bytes: float = DEFAULT_RESERVE_BYTES, cp: int = 1) -> pd.DataFrame:
    """The latency-throughput trade-off of static batching: one row (`InferenceResult.to_dict()`)
    per batch size, in the order given; a batch that does not fit is kept with ``fits`` False."""
    return pd.DataFrame([inference(cfg, cluster, plan, b, prompt_len, output_len, dtype, reserve_bytes,
                                   check_memory=False, pp=pp, ep=ep, cp=cp).to_dict() for b in batches])


__all__ = ["DEFAULT_RESERVE_BYTES", "InferenceResult", "inference", "inference_sweep", "kv_cache_bytes",
           "serving_layout", "stage_weight_bytes", "weight_bytes", "workspace_bytes_per_sequence"]
