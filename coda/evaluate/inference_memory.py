"""Memory of static-batched serving: KV cache, weights and workspace per device, the largest
batch that fits, and the message (with nearby fixes) when a batch does not (`coda.evaluate.inference`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from coda.arch.clusters import Cluster
from coda.caches import memoize
from coda.errors import ConfigError, InfeasibleDesign
from coda.evaluate.context_parallel import cp_reasons, local_tokens, ring_buffer_bytes
from coda.models.builder import build
from coda.models.config import ModelConfig
from coda.models.dims import tp_reasons
from coda.placement.layout import Layout
from coda.placement.plan import balanced_stage_layers
from coda.units import dtype_bytes, fmt_bytes


def serving_layout(tp: int = 1, pp: int = 1, ep: int = 1, cp: int = 1) -> Layout:
    """The `Layout` of one serving replica: t-way tensor parallelism in each of P pipeline stages,
    each stage `cp` such groups that split every sequence (context parallelism,
    `coda.evaluate.context_parallel`), or (ep > 1, with tp = pp = cp = 1) ep devices that each
    serve b/ep sequences with the whole attention (data-parallel, dp = ep) and hold E/ep experts.
    `n_devices` = tp * cp * pp * ep."""
    return Layout(tp=tp, pp=pp, dp=ep, ep=ep, cp=cp)


def _sizes(lay: Layout) -> dict[str, int]:
    return dict(tp=lay.tp, pp=lay.pp, ep=lay.ep, cp=lay.cp)


def _kv_per_layer(cfg: ModelConfig, batch: int, contexts: Any, tp: int, dtype: str) -> list[float]:
    """KV-cache bytes of one layer of each distinct block (`cfg.block_kinds`), averaged over
    `contexts`: `2 * max(g/t, 1) * d * e * b * mean(min(context, W))` (no cap without a window);
    with multi-head latent attention the latent, `(c_kv + d_r) * e * b` per position, on every
    tensor-parallel rank (DeepSeek-V2, section 2.1.2)."""
    g, d = cfg.n_kv_heads, cfg.head_dim
    assert g is not None and d is not None
    width = cfg.kv_lora_rank + cfg.qk_rope_head_dim if cfg.mla else 2 * max(g // tp, 1) * d
    per_token = width * dtype_bytes(dtype) * batch
    ctx = np.asarray(contexts, dtype=float)
    return [per_token * float(np.mean(ctx if w is None else np.minimum(ctx, w))) for w, _ in cfg.block_kinds]


def kv_cache_bytes(cfg: ModelConfig, batch: int, context: int, tp: int = 1, dtype: str = "bf16") -> float:
    """KV-cache bytes per device: `2 * l * max(g/t, 1) * d * e * b * context` (K and V, every
    layer); a layer with a sliding window of W positions keeps a rolling buffer of the last W."""
    return float(sum(n * kv for n, kv in zip(cfg.block_counts, _kv_per_layer(cfg, batch, [context], tp, dtype))))


def weight_bytes(cfg: ModelConfig, tp: int = 1, dtype: str = "bf16") -> float:
    """Weight bytes per device, `param_count * e / t` (norms counted as split too; < 0.01% off)."""
    return cfg.param_count() * dtype_bytes(dtype) / tp


def stage_weight_bytes(cfg: ModelConfig, blocks: int | Sequence[int], first: bool, last: bool, tp: int = 1,
                       dtype: str = "bf16", ep: int = 1) -> float:
    """Weight bytes per device of a pipeline stage of `blocks` blocks (or of that many of each of
    `cfg.block_kinds`): the first stage holds the embedding, the last the final norm and LM head,
    and with pp > 1 a copy of a tied embedding table, as Megatron-LM keeps; split over t; with
    expert parallelism E/ep whole experts per MoE block."""
    counts = (blocks,) if isinstance(blocks, int) else tuple(blocks)
    if len(counts) != len(cfg.block_kinds):
        raise ConfigError(f"{cfg.name} has {len(cfg.block_kinds)} kinds of block; give a count of each")
    n = sum(c * (cfg.block_params(k) - (cfg.n_experts - cfg.n_experts // ep) * cfg.mlp_params() * k.moe)
            for c, k in zip(counts, cfg.block_kinds))
    n += (cfg.embedding_params() if first else 0) + (cfg.head_params() if last else 0)
    if last and not first and cfg.tied_embeddings:
        n += cfg.vocab_size * (cfg.embed_dim or cfg.hidden)
    return n * dtype_bytes(dtype) / tp


@memoize("evaluate.workspace_bytes", 256)
def workspace_bytes_per_sequence(cfg: ModelConfig, prompt_len: int, tp: int = 1, dtype: str = "bf16") -> float:
    """Activation workspace per prompt: the live bytes (non-weight inputs + outputs) of the largest
    op of a batch-1 prefill graph; every activation is linear in the batch, so b prompts need b times it."""
    g = build(cfg, "prefill", 1, prompt_len, tp=tp, dtype=dtype)
    return max(op.bytes_written + max(op.bytes_read - op.param_bytes, 0.0)
               for op, _ in g.ops() if op.kind != "collective")


@dataclass(frozen=True)
class _Pipeline:
    """Blocks per stage and micro-batching of a pp-stage pipeline serving a batch of b sequences."""

    kinds: tuple[tuple[int, ...], ...]  # per stage, its blocks of each distinct kind (`block_kinds`)
    micro_batches: int  # m = min(pp, b): micro-batches in flight
    micro_batch: int  # sequences of the largest one, ceil(b/m)

    @classmethod
    def of(cls, cfg: ModelConfig, pp: int, batch: int) -> _Pipeline:
        m = min(pp, batch)
        starts = np.cumsum((0, *balanced_stage_layers(cfg.n_layers, pp)))
        pattern = np.asarray(cfg.block_pattern)
        kinds = tuple(tuple(int(c) for c in np.bincount(pattern[a:b], minlength=len(cfg.block_kinds)))
                      for a, b in zip(starts[:-1], starts[1:]))
        return cls(kinds, m, -(-batch // m))

    @property
    def pp(self) -> int:
        return len(self.kinds)

    def stage(self, per_layer: list[tuple[float, float, float]], field: int) -> list[float]:
        """A quantity of each distinct layer (embedding, blocks..., head) summed over each stage's layers."""
        return [sum(n * per_layer[1 + k][field] for k, n in enumerate(counts))
                + (per_layer[0][field] if s == 0 else 0.0) + (per_layer[-1][field] if s == self.pp - 1 else 0.0)
                for s, counts in enumerate(self.kinds)]


def _valid_tps(cfg: ModelConfig, n_devices: int) -> list[int]:
    """Tensor-parallel widths that divide the devices and split the model (`coda.models.dims.tp_reasons`)."""
    return [t for t in range(1, n_devices + 1) if n_devices % t == 0 and not tp_reasons(cfg, t)]


def _need(cfg: ModelConfig, batch: int, ctx: int, prompt_len: int, lay: Layout,
          dtype: str) -> tuple[float, float, float]:
    """(weights, KV cache, workspace) bytes of the device with the most to hold; with context
    parallelism (cp > 1) its ceil(ctx/cp) tokens of KV cache, the workspace of its share of the
    prompt and two ring buffers (`coda.evaluate.context_parallel`)."""
    local = -(-batch // lay.ep)  # sequences on one device of an expert-parallel group
    pipe = _Pipeline.of(cfg, lay.pp, local)
    kv = _kv_per_layer(cfg, local, [-(-ctx // lay.cp)], lay.tp, dtype)
    ws = pipe.micro_batch * workspace_bytes_per_sequence(cfg, local_tokens(cfg, prompt_len, lay.cp), lay.tp, dtype)
    ws += ring_buffer_bytes(cfg, pipe.micro_batch, prompt_len, lay.tp, dtype, lay.cp)
    return max(((stage_weight_bytes(cfg, counts, s == 0, s == lay.pp - 1, lay.tp, dtype, lay.ep),
                 sum(c * k for c, k in zip(counts, kv)), ws)
                for s, counts in enumerate(pipe.kinds)), key=sum)


def _max_batch(cfg: ModelConfig, ctx: int, prompt_len: int, lay: Layout, dtype: str, limit: float) -> int:
    """Largest batch whose memory fits (the need grows with the batch; a multiple of ep):
    doubling, then bisection."""
    def fits(b: int) -> bool:
        return sum(_need(cfg, b * lay.ep, ctx, prompt_len, lay, dtype)) <= limit

    if not fits(1):
        return 0
    hi = 2
    while fits(hi):
        hi *= 2
    lo = hi // 2  # fits(lo), not fits(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if fits(mid) else (lo, mid)
    return lo * lay.ep


def _infeasible(cfg: ModelConfig, cluster: Cluster, batch: int, prompt_len: int, ctx: int, lay: Layout,
                dtype: str, parts: tuple[float, float, float], limit: float, max_batch: int) -> InfeasibleDesign:
    w, kv, ws = parts
    hints = [f"largest batch that fits: {max_batch}" if max_batch else
             "the weights alone do not fit" if w > limit else "not even one sequence fits"]
    others = cluster.n_devices // lay.n_devices
    for name, values in (("tp", [t for t in _valid_tps(cfg, cluster.n_devices // (lay.pp * lay.ep * lay.cp))
                                 if t > lay.tp]),
                         ("pp", [q for q in range(lay.pp + 1, cfg.n_layers + 1) if others * lay.pp % q == 0]),
                         ("cp", [c for c in range(lay.cp + 1, others * lay.cp + 1) if others * lay.cp % c == 0
                                 and not cp_reasons(cfg, c, prompt_len, lay.tp, lay.ep)]),
                         ("ep", [e for e in range(lay.ep + 1, cfg.n_experts + 1)
                                 if cfg.is_moe and cfg.n_experts % e == 0 and batch % e == 0
                                 and lay.tp == lay.pp == 1 and cluster.n_devices % e == 0])):
        for v in values:
            if sum(_need(cfg, batch, ctx, prompt_len, serving_layout(**{**_sizes(lay), name: v}), dtype)) <= limit:
                hints.append(f"or {name}={v}")
                break
    return InfeasibleDesign(
        f"{cfg.name} at batch {batch}, {ctx} tokens per sequence, tp={lay.tp}, pp={lay.pp}"
        + (f", ep={lay.ep}" if lay.ep > 1 else "") + (f", cp={lay.cp}" if lay.cp > 1 else "") + f", {dtype}: needs "
        f"{fmt_bytes(w + kv + ws)} per device (weights {fmt_bytes(w)}, KV cache {fmt_bytes(kv)}, workspace "
        f"{fmt_bytes(ws)}) but {cluster.device_name} offers {fmt_bytes(limit)} (HBM minus reserve); "
        + ", ".join(hints))


__all__ = ["kv_cache_bytes", "serving_layout", "stage_weight_bytes", "weight_bytes", "workspace_bytes_per_sequence"]
