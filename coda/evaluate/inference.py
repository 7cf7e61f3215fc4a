"""Serving a model with static batching: `inference(cfg, cluster, plan, batch, prompt_len, output_len)`.

    r = coda.evaluate.inference("llama2-70b", cluster("dgx-h100", 8), 2, batch=64, prompt_len=2048,
                                output_len=2048, dtype="fp8")
    r.ttft_s, r.tpot_s, r.tokens_per_s_per_device, r.kv_cache_bytes, r.max_batch

Model (b = batch, p = prompt_len, O = output_len, t = tp, l = layers, g = kv heads, d = head dim):

- Parallelism: tensor parallelism of width t (Megatron split, `coda.models.build`) over the
  first t devices; the other devices hold `n_devices // t` independent data-parallel replicas
  (throughput multiplies, per-request latency is unchanged). Pipeline parallelism for inference
  is not modelled (a plan with pp > 1 raises).
- TTFT = prefill of b prompts of p tokens in one pass: the predictor's time of the compute ops of
  `build(cfg, "prefill", b, p, tp=t)` (embedding + l x block + head, kernels back to back) plus
  its TP collectives timed by `Cluster.collective_time` over ranks 0..t-1.
- TPOT = mean decode-step time over the generation, the step at context c being
  `build(cfg, "decode", b, 1, tp=t, context_len=c)` (compute + collectives), for
  c = p .. p+O-1. The step time is evaluated at up to `TPOT_POINTS` evenly spaced contexts and
  linearly interpolated to every integer context before averaging (the trapezoid rule; exact
  when the step time is linear in c, as the KV-cache reads are).
- Throughput (static batching, as TensorRT-LLM's performance tables): per replica
  b*O / (TTFT + O*TPOT) generated tokens/s; per device that over t; total that x replicas.
- Memory per device: weights `N*e/t` (N = `param_count()`, e = dtype bytes, embeddings and head
  included), KV cache `2*l*g_t*d*e*b*(p+O)` with g_t = max(g/t, 1) (Pope et al. 2022, "Efficiently
  Scaling Transformer Inference", sec. 2; with a sliding window of W positions the rolling buffer
  of `min(p+O, W)` tokens of Jiang et al. 2023, "Mistral 7B", sec. 2), and an activation
  workspace: the live activations of the largest op of the prefill graph (its non-weight inputs
  + outputs), linear in b. They must fit in HBM minus `reserve_bytes` (CUDA context,
  cuBLAS/NCCL workspaces; default 2 GiB, an estimate).
  `max_batch = floor((limit - weights) / (kv_per_sequence + workspace_per_sequence))`.
- MBU (model-bandwidth utilisation, Databricks 2023): (weight bytes a decode step reads + mean KV
  bytes) per device / TPOT / HBM bandwidth; a step reads all the weights of a dense model, and of
  an MoE model only the experts its tokens are routed to (`coda.models.build`).

Not modelled: in-flight (continuous) batching, paged-KV fragmentation, CUDA graphs and
TensorRT-LLM's fused kernels (the predictor times eager kernels), speculative decoding.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from coda.arch.clusters import Cluster
from coda.errors import ConfigError, InfeasibleDesign
from coda.models.builder import build
from coda.models.config import ModelConfig
from coda.models.graph import ModelGraph
from coda.placement.chain import collectives_time
from coda.placement.costs import device_memory_bytes, graph_collectives, predictor_layer_time, time_graphs
from coda.placement.plan import Plan
from coda.units import GiB, dtype_bytes, fmt_bytes

TPOT_POINTS = 8  # decode contexts evaluated for TPOT (interpolated in between)
DEFAULT_RESERVE_BYTES = 2 * GiB  # CUDA context + library workspaces + NCCL buffers (estimate)


@dataclass(frozen=True)
class InferenceResult:
    """Latency, throughput and memory of serving one static batch (SI units: s, bytes, tokens/s).

    Attributes:
        ttft_s: time to first token (prefill), of which `ttft_comm_s` is TP collectives.
        tpot_s: mean time per output token over the generation, of which `tpot_comm_s` is TP
            collectives; `tpot_first_s` / `tpot_last_s` at the first / last context.
        e2e_s: TTFT + O * TPOT, the time of the whole batch.
        tokens_per_s: generated tokens/s of all replicas; `_per_replica`, `_per_device` likewise.
        weights_bytes, kv_cache_bytes, workspace_bytes: memory per device.
        memory_limit_bytes: HBM minus the reserve; `free_bytes` = limit - the three above.
        max_batch: largest batch whose memory fits (0 if the weights alone do not).
        mbu: model-bandwidth utilisation of decode, (weights read + mean KV) / TPOT / HBM bandwidth.
    """

    model: str
    cluster: str
    device: str
    n_devices: int
    tp: int
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

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def kv_cache_bytes(cfg: ModelConfig, batch: int, context: int, tp: int = 1, dtype: str = "bf16") -> float:
    """KV-cache bytes per device: `2 * l * max(g/t, 1) * d * e * b * min(context, W)` (K and V,
    every layer; a sliding window of W positions keeps a rolling buffer of the last W)."""
    g, d = cfg.n_kv_heads, cfg.head_dim
    assert g is not None and d is not None
    kept = context if cfg.sliding_window is None else min(context, cfg.sliding_window)
    return float(2 * cfg.n_layers * max(g // tp, 1) * d * dtype_bytes(dtype) * batch * kept)


def _mean_kv_read_bytes(cfg: ModelConfig, batch: int, prompt_len: int, output_len: int, tp: int, dtype: str) -> float:
    """KV-cache bytes a decode step reads per device, averaged over the generation (contexts
    p .. p+O-1; each step reads the cache it attends to, capped by the window)."""
    contexts = np.arange(prompt_len, prompt_len + output_len)
    if cfg.sliding_window is not None:
        contexts = np.minimum(contexts, cfg.sliding_window)
    return kv_cache_bytes(cfg.replace(sliding_window=None), batch, 1, tp, dtype) * float(contexts.mean())


def weight_bytes(cfg: ModelConfig, tp: int = 1, dtype: str = "bf16") -> float:
    """Weight bytes per device, `param_count * e / t` (norms counted as split too; < 0.01% off)."""
    return cfg.param_count() * dtype_bytes(dtype) / tp


def workspace_bytes_per_sequence(cfg: ModelConfig, prompt_len: int, tp: int = 1, dtype: str = "bf16") -> float:
    """Activation workspace per prompt: the live bytes (non-weight inputs + outputs) of the largest
    op of a batch-1 prefill graph; every activation is linear in the batch, so b prompts need b times it."""
    g = build(cfg, "prefill", 1, prompt_len, tp=tp, dtype=dtype)
    return max(op.bytes_written + max(op.bytes_read - op.param_bytes, 0.0)
               for op, _ in g.ops() if op.kind != "collective")


def _total_time(graphs: list[ModelGraph], cluster: Cluster, tp: int) -> tuple[list[float], list[float]]:
    """(compute + collectives, collectives) seconds of each model graph, compute timed in one batch."""
    layers = [lg for mg in graphs for lg, _ in mg.layers]
    times = iter(time_graphs(predictor_layer_time, layers, cluster.device))
    totals, comms = [], []
    for mg in graphs:
        comp = comm = 0.0
        for lg, n in mg.layers:
            comp += n * next(times)
            comm += n * collectives_time(cluster, graph_collectives(lg), tp)
        totals.append(comp + comm)
        comms.append(comm)
    return totals, comms


def _valid_tps(cfg: ModelConfig, n_devices: int) -> list[int]:
    g = cfg.n_kv_heads or 1
    return [t for t in range(1, n_devices + 1) if n_devices % t == 0 and cfg.n_heads % t == 0
            and cfg.ffn_hidden % t == 0 and (g % t == 0 or t % g == 0)]


def _need(cfg: ModelConfig, batch: int, ctx: int, prompt_len: int, tp: int, dtype: str) -> tuple[float, float, float]:
    return (weight_bytes(cfg, tp, dtype), kv_cache_bytes(cfg, batch, ctx, tp, dtype),
            batch * workspace_bytes_per_sequence(cfg, prompt_len, tp, dtype))


def _infeasible(cfg: ModelConfig, cluster: Cluster, batch: int, prompt_len: int, ctx: int, tp: int, dtype: str,
                parts: tuple[float, float, float], limit: float, max_batch: int) -> InfeasibleDesign:
    w, kv, ws = parts
    hints = [f"largest batch that fits: {max_batch}" if max_batch else "the weights alone do not fit"]
    for t in _valid_tps(cfg, cluster.n_devices):
        if t > tp and sum(_need(cfg, batch, ctx, prompt_len, t, dtype)) <= limit:
            hints.append(f"or tp={t}")
            break
    return InfeasibleDesign(
        f"{cfg.name} at batch {batch}, {ctx} tokens per sequence, tp={tp}, {dtype}: needs "
        f"{fmt_bytes(w + kv + ws)} per device (weights {fmt_bytes(w)}, KV cache {fmt_bytes(kv)}, workspace "
        f"{fmt_bytes(ws)}) but {cluster.device_name} offers {fmt_bytes(limit)} (HBM minus reserve); "
        + ", ".join(hints))


def inference(cfg: ModelConfig | str, cluster: Cluster, plan: Plan | int, batch: int, prompt_len: int,
              output_len: int, dtype: str = "bf16", reserve_bytes: float = DEFAULT_RESERVE_BYTES,
              check_memory: bool = True) -> InferenceResult:
    """TTFT, TPOT, tokens/s, memory per device and the largest batch of static-batched serving.

    Formulas and modelling choices are in the module docstring.

    Args:
        cfg: the model (or a preset name / config.json path).
        cluster: the cluster; its device is a GPU (or an Accelerator, timed by the predictor).
        plan: the tensor-parallel width t, or a `Plan` of which only `tp` is read (`pp` must be 1);
            t must divide `cluster.n_devices`; the rest are `n_devices / t` replicas.
        batch: sequences served together, b.
        prompt_len: input tokens per sequence, p.
        output_len: generated tokens per sequence, O.
        dtype: weights, activations and KV cache (``bf16``, ``fp16``, ``fp8`` where the GPU has it).
        reserve_bytes: device memory not available to the model (default 2 GiB).
        check_memory: raise if a device runs out of memory (else report `fits=False`).

    Raises:
        ConfigError: bad sizes, tp not dividing the heads/FFN, a dtype the GPU lacks, sequences
            beyond a learned position table, pp > 1.
        InfeasibleDesign: t does not divide the devices, or the batch does not fit in memory (the
            message gives the bytes, the largest batch that fits and a tp that would).
    """
    if isinstance(cfg, str):
        from coda.models import get

        cfg = get(cfg)
    tp = plan.tp if isinstance(plan, Plan) else plan
    if isinstance(plan, Plan) and plan.pp != 1:
        raise ConfigError(f"pipeline parallelism (pp={plan.pp}) is not modelled for inference; use pp=1")
    for name, v in (("tp", tp), ("batch", batch), ("prompt_len", prompt_len), ("output_len", output_len)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(f"{name}={v!r} must be a positive integer")
    dtype_bytes(dtype)
    if isinstance(cluster.device, str):
        raise ConfigError(f"cluster {cluster.name!r} gives no model of its device {cluster.device!r}")
    supports = getattr(cluster.device, "supports", None)
    if supports is not None and not supports(dtype):
        raise ConfigError(f"{cluster.device_name} has no {dtype} support; use bf16 or fp16")
    ctx = prompt_len + output_len
    if cfg.position == "learned" and ctx > cfg.max_seq_len:
        raise ConfigError(f"{cfg.name}: prompt_len + output_len = {ctx} positions exceed its learned "
                          f"position table of {cfg.max_seq_len}")
    prefill = build(cfg, "prefill", batch, prompt_len, tp=tp, dtype=dtype)  # validates tp against the heads
    if cluster.n_devices % tp:
        raise InfeasibleDesign(f"tp={tp} must divide the cluster's {cluster.n_devices} devices; valid tp: "
                               f"{_valid_tps(cfg, cluster.n_devices)}")

    # memory (before timing: fail fast)
    parts = _need(cfg, batch, ctx, prompt_len, tp, dtype)
    limit = device_memory_bytes(cluster.device) - reserve_bytes
    per_seq = kv_cache_bytes(cfg, 1, ctx, tp, dtype) + parts[2] / batch
    max_batch = max(int((limit - parts[0]) // per_seq), 0)
    while max_batch and parts[0] + max_batch * per_seq > limit:  # guard the float floor both ways
        max_batch -= 1
    while parts[0] + (max_batch + 1) * per_seq <= limit:
        max_batch += 1
    fits = batch <= max_batch
    if check_memory and not fits:
        raise _infeasible(cfg, cluster, batch, prompt_len, ctx, tp, dtype, parts, limit, max_batch)

    # time: prefill, then decode at evenly spaced contexts p .. p+O-1
    points = {int(round(c)) for c in np.linspace(prompt_len, ctx - 1, min(output_len, TPOT_POINTS))}
    if cfg.sliding_window is not None and prompt_len < cfg.sliding_window < ctx - 1:
        points.add(cfg.sliding_window)  # the step time stops growing there: keep the kink exact
    contexts = sorted(points)
    decodes = [build(cfg, "decode", batch, 1, tp=tp, context_len=c, dtype=dtype) for c in contexts]
    totals, comms = _total_time([prefill, *decodes], cluster, tp)
    every = np.arange(prompt_len, ctx)
    tpot = float(np.mean(np.interp(every, contexts, totals[1:])))
    tpot_comm = float(np.mean(np.interp(every, contexts, comms[1:])))
    ttft = totals[0]
    e2e = ttft + output_len * tpot
    per_replica = batch * output_len / e2e
    replicas = cluster.n_devices // tp
    bw = getattr(cluster.device, "hbm_bw_bytes_per_s", None)
    mean_kv = _mean_kv_read_bytes(cfg, batch, prompt_len, output_len, tp, dtype)
    read = decodes[0].param_bytes()  # weights one step reads: all of them, or the routed experts' (MoE)
    mbu = (read + mean_kv) / tpot / bw if bw else math.nan
    return InferenceResult(
        model=cfg.name, cluster=cluster.name, device=cluster.device_name, n_devices=cluster.n_devices, tp=tp,
        replicas=replicas, batch=batch, prompt_len=prompt_len, output_len=output_len, dtype=dtype,
        ttft_s=ttft, ttft_comm_s=comms[0], tpot_s=tpot, tpot_comm_s=tpot_comm, tpot_first_s=totals[1],
        tpot_last_s=totals[-1], e2e_s=e2e, tokens_per_s=per_replica * replicas,
        tokens_per_s_per_replica=per_replica, tokens_per_s_per_device=per_replica / tp,
        weights_bytes=parts[0], kv_cache_bytes=parts[1], workspace_bytes=parts[2], memory_limit_bytes=limit,
        free_bytes=limit - sum(parts), max_batch=max_batch, fits=fits, mbu=mbu)


__all__ = ["DEFAULT_RESERVE_BYTES", "InferenceResult", "inference", "kv_cache_bytes", "weight_bytes",
           "workspace_bytes_per_sequence"]
