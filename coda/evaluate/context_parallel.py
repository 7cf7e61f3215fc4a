"""Context parallelism for serving long prompts: ring-attention prefill and KV-sharded decode.

A replica of width `cp` splits every sequence over `cp` context-parallel ranks (Megatron-Core's
rank order: the ranks of a CP group are `tp` apart, each a `tp`-wide tensor-parallel group; the
weights are replicated over the CP group and split over tp within it). Dimensions: p = prompt
tokens, c = tokens already cached before them, n = sequences, a_t / g_t = query / kv heads per
tensor-parallel rank, d = head dim, e = element bytes, q = p_cp = the queries a rank holds.

Prefill (Liu et al. 2023, "Ring Attention with Blockwise Transformers for Near-Infinite
Context"; Yang et al. 2024, "Context Parallelism for Scalable Million-Token Inference",
arXiv:2411.01783, sections 3.3-3.4):

- Load balance: a causal prompt is cut into 2*cp chunks and rank r keeps chunks r and
  2*cp-1-r (the zigzag split of Brandon et al. 2023, "Striped Attention", and of Megatron-Core
  / Transformer Engine), padded to a multiple of 2*cp: q = 2*ceil(p / (2*cp)) tokens per rank
  (p itself at cp = 1; ceil(p/cp) for bidirectional models, which need no balancing). Every
  rank then does 1/cp of the causal work, and all non-attention ops run on q tokens.
- Ring: cp steps. In step 0 a rank attends its q queries to its own shard (causal, the queries
  the last q of `c/cp + q` keys: `attention(n, q, ceil(c/cp) + q)`); in each of the other cp-1
  steps to another rank's shard, of which its queries see the cached part and half of the new
  part (`attention(n, q, ceil(c/cp) + q/2)`, no mask; the whole shard for bidirectional models),
  the same number of scores as step 0 when c = 0. During step j < cp-1 the ring passes the next
  block to its neighbour (send/recv between ranks tp apart, the worst pair), so a layer's
  attention takes `max(A_0, X) + (cp-2) max(A_1, X) + A_1` for a block transfer of X seconds.
- pass-KV sends a rank's key/value shard, `n (ceil(c/cp) + q) 2 g_t d e` bytes; pass-Q sends its
  queries, `n q a_t d e` bytes, and ends with an all-to-all that returns every partial output
  and its log-sum-exp (`n q a_t (d e + 4)` bytes per block) to the queries' owner. The cheaper
  of the two is taken, as the paper's heuristic (its algorithm 1) picks: pass-KV for a full
  prefill of a GQA model (2 g < a), pass-Q when most of the keys are cached (persistent KV).

Decode: each rank keeps ceil(c/cp) of the KV cache of every sequence; the new token's non-
attention ops are replicated on the cp ranks (weights replicated, so a decode step reads them
once per rank), each rank attends the token to its shard, and the partial outputs and their
log-sum-exps are all-gathered over the CP group and merged exactly (the Flash-Decoding
combine, Dao et al. 2023, "Flash-Decoding for long-context inference"; the paper's section 3.5
shards the decode KV cache the same way): `cp n a_t (d e + 4)` bytes per layer.

Memory: a rank holds 1/cp of the KV cache (ceil(context / cp) tokens) and, during prefill, two
ring buffers of one block each (double buffering: the block in use and the one arriving).
"""

from __future__ import annotations

from dataclasses import dataclass

from coda.arch.clusters import Cluster
from coda.models import ops as O
from coda.models.builder import activation_dtype
from coda.models.config import ModelConfig
from coda.units import dtype_bytes

LSE_BYTES = 4
"""Bytes of one log-sum-exp (fp32, per query and head) that travels with a partial attention output."""


def cp_reasons(cfg: ModelConfig, cp: int, prompt_len: int, tp: int = 1, ep: int = 1) -> list[str]:
    """Why context parallelism of width `cp` cannot serve this model and prompt (empty if it can)."""
    if cp == 1:
        return []
    out = []
    if cfg.mla:
        out.append(f"{cfg.name} uses multi-head latent attention, whose ring exchange is not modelled; use cp=1")
    if cfg.sliding_window is not None:
        out.append(f"{cfg.name} has a sliding window of {cfg.sliding_window} tokens, whose ring steps are not "
                   "modelled; use cp=1")
    if ep > 1:
        out.append(f"cp={cp} with ep={ep}: expert-parallel serving is data-parallel attention; use ep=1 with cp")
    if prompt_len < 2 * cp:
        out.append(f"cp={cp} splits each prompt into 2*cp = {2 * cp} chunks but the prompt has {prompt_len} "
                   f"token(s); use cp <= {max(prompt_len // 2, 1)}")
    return out


def local_tokens(cfg: ModelConfig, tokens: int, cp: int) -> int:
    """Queries q one rank holds of a prompt of `tokens`: the tokens at cp = 1, else the zigzag
    share 2*ceil(tokens / (2 cp)) (padded), or ceil(tokens / cp) for a bidirectional model."""
    if cp == 1:
        return tokens
    if not cfg.causal:
        return -(-tokens // cp)
    return 2 * -(-tokens // (2 * cp))


def cp_ranks(tp: int, cp: int) -> tuple[int, ...]:
    """Ranks of the first context-parallel group (Megatron-Core order: tp apart)."""
    return tuple(k * tp for k in range(cp))


@dataclass(frozen=True)
class RingOps:
    """The two attention ops of one layer's ring (module docstring) and the bytes of its transfers."""

    diagonal: O.Op
    off_diagonal: O.Op
    kv_bytes: float
    q_bytes: float
    out_bytes: float


def ring_ops(attention: O.Op, cfg: ModelConfig, cached: int, cp: int) -> RingOps:
    """The ring's ops from the step-0 op `attention` (the block's fused attention over a rank's
    q queries and its `ceil(cached/cp) + q` keys, as `coda.models.build` makes it)."""
    d = attention.dims
    n, q, hd = d["batch"], d["q_len"], d["head_dim"]
    kv_cached = d["kv_len"] - q
    keys = kv_cached + (max(q // 2, 1) if cfg.causal else q)
    off = O.attention(n, d["heads"], d["kv_heads"], q, keys, hd, False, attention.dtype, name=attention.name,
                      kernel=d.get("kernel", "fa2"), kv_width=d.get("kv_width"))
    e = dtype_bytes(attention.dtype)
    e_act = dtype_bytes(activation_dtype(attention.dtype))
    width = d.get("kv_width", 2 * hd)
    return RingOps(attention, off, float(n * d["kv_len"] * d["kv_heads"] * width * e),
                   float(n * q * d["heads"] * hd * e), float(n * q * d["heads"] * (hd * e_act + LSE_BYTES)))


def ring_time_s(diagonal_s: float, off_s: float, transfer_s: float, cp: int) -> float:
    """Seconds of one layer's ring attention: cp steps, the transfer of the next block overlapped
    with the current step, `max(A_0, X) + (cp-2) max(A_1, X) + A_1` (A_0 at cp = 1)."""
    if cp == 1:
        return diagonal_s
    return max(diagonal_s, transfer_s) + (cp - 2) * max(off_s, transfer_s) + off_s


@dataclass(frozen=True)
class RingCost:
    """One layer's ring attention on one rank: its seconds, the part no compute hides, and the variant."""

    seconds: float
    exposed_comm_s: float
    variant: str  # "pass-kv" or "pass-q" ("" at cp = 1)


def ring_cost(cluster: Cluster, ops: RingOps, diagonal_s: float, off_s: float, tp: int, cp: int) -> RingCost:
    """The faster of pass-KV and pass-Q for one layer (module docstring), transfers timed by the
    cluster's collective models over the CP ring (`Cluster.collective_cost`)."""
    if cp == 1:
        return RingCost(diagonal_s, 0.0, "")
    ranks = cp_ranks(tp, cp)
    hops = [cluster.collective_cost("send_recv", (ranks[k], ranks[(k + 1) % cp])) for k in range(cp)]
    compute = diagonal_s + (cp - 1) * off_s

    def hop(n_bytes: float) -> float:
        return max(h.time(n_bytes) for h in hops)

    kv = ring_time_s(diagonal_s, off_s, hop(ops.kv_bytes), cp)
    q = ring_time_s(diagonal_s, off_s, hop(ops.q_bytes), cp) \
        + cluster.collective_time("all_to_all", cp * ops.out_bytes, ranks)
    if kv <= q:
        return RingCost(kv, max(kv - compute, 0.0), "pass-kv")
    return RingCost(q, max(q - compute, 0.0), "pass-q")


def decode_combine_s(cluster: Cluster, attention: O.Op, tp: int, cp: int) -> float:
    """Seconds of the all-gather of partial decode outputs and log-sum-exps over the CP group
    (module docstring), for a decode attention op of one rank; 0 at cp = 1."""
    if cp == 1:
        return 0.0
    d = attention.dims
    e_act = dtype_bytes(activation_dtype(attention.dtype))
    n_bytes = cp * d["batch"] * d["q_len"] * d["heads"] * (d["head_dim"] * e_act + LSE_BYTES)
    return cluster.collective_time("all_gather", n_bytes, cp_ranks(tp, cp))


def ring_buffer_bytes(cfg: ModelConfig, batch: int, tokens: int, tp: int, dtype: str, cp: int) -> float:
    """Two ring buffers of one key/value block (q tokens of `batch` sequences), 0 at cp = 1."""
    if cp == 1:
        return 0.0
    g, d = cfg.n_kv_heads, cfg.head_dim
    assert g is not None and d is not None
    return 2.0 * batch * local_tokens(cfg, tokens, cp) * 2 * max(g // tp, 1) * d * dtype_bytes(dtype)


__all__ = ["LSE_BYTES", "RingCost", "RingOps", "cp_ranks", "cp_reasons", "decode_combine_s", "local_tokens",
           "ring_buffer_bytes", "ring_cost", "ring_time_s", "ring_ops"]
