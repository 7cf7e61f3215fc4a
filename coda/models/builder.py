"""Build a model's operator graphs for one phase: `build(cfg, phase, batch, seq_len, ...)`.

Dimension legend: b = batch (sequences), s = query tokens per sequence, c = keys attended to,
T = b*s tokens, h = hidden, e = embedding width (h unless projected), a/g = query/kv heads,
d = head dim, f = FFN width, V = vocabulary, E/k = experts / experts per token, t = tensor-
parallel width. A suffix `_t` is the per-device share after the Megatron split: column-parallel
QKV and MLP-up (a_t = a/t, g_t = g/t or 1 when kv heads are replicated, f_t = f/t), row-parallel
output and MLP-down, vocabulary-parallel embedding and LM head (V_t = ceil(V/t)).

Per transformer block, forward (Shoeybi et al. 2019, fig. 3; Korthikanti et al. 2022, fig. 5
for sequence parallelism):
  ln1 -> [all_gather] -> qkv -> [rope] -> attention (fused, or bmm/mask/softmax/bmm) -> out_proj
  -> [all_reduce | reduce_scatter] -> add -> ln2 -> [all_gather] -> mlp_up -> act -> mlp_down
  -> [all_reduce | reduce_scatter] -> add
A parallel block (`cfg.parallel_block`: GPT-J, Falcon, GPT-NeoX, PaLM) feeds one normed input
(or, with `norms_per_block` = 2, two norms of the same input) to both attention and MLP:
  ln1 [ln2] -> [all_gather] -> qkv -> ... -> out_proj  |  mlp_up -> act -> mlp_down
  -> add (the two tensor-parallel partial sums, tp > 1 or dropout) -> [all_reduce | reduce_scatter]
  -> residual add
so one TP exit instead of two (vLLM's Falcon reduces `attn + mlp` once), one residual add (at
tp = 1 without dropout a single three-input add: x + attn + mlp), and no norm between them.
Positions: RoPE rotates `rotary_dim` (default head_dim) of each query and key head; ALiBi
(`position="alibi"`, BLOOM, MPT) adds a per-head linear bias to the scores: inside fused
attention it is computed in-kernel from the slopes (FlashAttention-2 `alibi_slopes`; no memory
traffic, and its ~2 FLOPs per score are left out of the attention FLOPs like the causal mask);
unfused attention adds it as an elementwise op over the b*a*s*c scores (`attn_alibi`), as the
Hugging Face eager MPT code does. A norm after the token embedding (`embedding_norm`, BLOOM)
ends the embedding layer.
MoE blocks replace the MLP by a router and E grouped expert GEMMs with balanced routing
(ceil(T*k/E) tokens per expert; when serving fewer than E token copies, as in decode, only the
T*k experts that receive one run and have their weights read). With expert parallelism (`ep`,
Megatron-Core's alltoall token dispatcher with "MoE parallel folding": expert layers are laid
out over the tp*cp*dp devices independently of attention, experts whole, not tensor-split; with
tp > 1 the MoE layer works on the sequence-parallel shard of T/t tokens, so it needs sequence
parallelism and has no TP collectives of its own) a device holds E/ep experts: an all-to-all
over the ep group sends each of its T*k routed token copies (h wide) to the device of its
expert, the device regroups them by local expert (a permutation, when it holds more than one),
runs its E/ep experts on ceil(T*ep*k/E) tokens each, restores the order and a second all-to-all
returns the outputs (FLOPs per device are those of ep = 1; the GEMMs are ep times taller).
Shared experts (`cfg.shared_ffn_hidden`, Qwen2-MoE) are an MLP of width f_s that every token
runs beside its routed experts, split over tp like a dense MLP; their output joins the gated sum.
A causal sliding window (`cfg.sliding_window`, W) limits fused attention to the last W
positions per query (`coda.models.ops.attention`); unfused attention computes the full score
matrix and masks it, as Hugging Face eager and SDPA-with-mask implementations do.
Dropout (`dropout=True`, training phases; off by default: 0 in current LLM pre-training) as
Megatron-LM applies it: on the attention probabilities (a kernel of its own when attention is
unfused; inside the fused kernel, not modelled, otherwise) and on both residual branches, fused
with the residual add (`bias_dropout_add`); each writes a 1-byte mask.
"""

from __future__ import annotations

import math

from coda.errors import ConfigError
from coda.models import ops as O
from coda.models.backward import backward_graph
from coda.models.config import BlockKind, ModelConfig
from coda.models.dims import PHASES, TRAINING_PHASES, GraphSplit, _Dims, activation_dtype, tp_reasons
from coda.models.graph import ModelGraph, OpGraph
from coda.models.ops import Op
from coda.units import dtype_bytes

ATTENTION_IMPLS = ("fused", "unfused")

# Approximate FLOPs per element of the MLP activation (vector-unit work only).
ACTIVATION_FLOPS = {"gelu": 8, "relu": 1, "swiglu": 5, "geglu": 9}  # gelu: tanh form; swiglu: sigmoid, 2 mul;
# geglu: gelu of the gate times the up projection
ROPE_FLOPS_PER_ELEMENT = 3  # x*cos + rotate(x)*sin
# Mixed-precision Adam (Megatron style, fp32 main gradients): per parameter, read fp32 weight,
# m, v and gradient (16 B); write fp32 weight, m, v (12 B) and the low-precision copy.
ADAM_FLOPS_PER_PARAM = 12  # m, v updates (7), bias-corrected step with sqrt and divide (5)


def _gemm(g: OpGraph, x: _Dims, m: int, k: int, n: int, name: str, after: list[Op], batch: int = 1,
          weight: bool = True, bias: bool = False, after_norm: bool = False) -> Op:
    """A block GEMM; in FP8, preceded by the cast of its activation input (`batch*m*k` elements),
    except after a norm, whose kernel writes the FP8 cast itself (Transformer Engine's
    LayerNormLinear / LayerNormMLP, which Megatron-Core uses for QKV and the MLP input)."""
    if x.gemm_dt == "fp8" and not after_norm:
        after = [g.add(O.cast(batch * m * k, "bf16", "fp8", name=f"{name}.cast"), after=after)]
    return g.add(O.matmul(m, k, n, batch=batch, dtype=x.gemm_dt, name=name, weight=weight, bias=bias), after=after)


def _tp_exit(g: OpGraph, x: _Dims, name: str, n_bytes: float, dtype: str, prev: Op) -> Op:
    """End of a tensor-parallel region: all-reduce, or reduce-scatter with sequence parallelism."""
    if x.t == 1:
        return prev
    kind = "reduce_scatter" if x.sp else "all_reduce"
    return g.add(O.collective(kind, n_bytes, x.t, dtype, name=f"{name}.{kind}"), after=[prev])


def _tp_entry(g: OpGraph, x: _Dims, name: str, n_bytes: float, dtype: str, prev: Op) -> Op:
    """Start of a tensor-parallel region: all-gather with sequence parallelism, else nothing."""
    if not x.sp:
        return prev
    return g.add(O.collective("all_gather", n_bytes, x.t, dtype, name=f"{name}.all_gather"), after=[prev])


def _attention(g: OpGraph, cfg: ModelConfig, x: _Dims, impl: str, dt: str, prev: Op, dropout: bool,
               window: int | None) -> Op:
    d = cfg.head_dim
    assert d is not None
    if impl == "fused":
        return g.add(O.attention(x.b, x.a_t, x.g_t, x.s, x.c, d, cfg.causal, x.attn_dt, name="attention",
                                 kernel=x.attention_kernel, window=window), after=[prev])
    bh = x.b * x.a_t
    scores = g.add(O.matmul(x.s, d, x.c, batch=bh, dtype=dt, name="attn_scores"), after=[prev])
    if cfg.position == "alibi":  # scores + slope_head * (key position - query position), a bias of a*c read once
        scores = g.add(O.elementwise(bh * x.s * x.c, 1, 1, dt, name="attn_alibi", fn="add_bias"), after=[scores])
    mask = g.add(O.elementwise(bh * x.s * x.c, 2 if cfg.causal else 1, 1, dt, name="attn_scale_mask", fn="scale_mask"),
                 after=[scores])
    probs = g.add(O.softmax(bh * x.s, x.c, dt, name="attn_softmax"), after=[mask])
    if dropout:
        probs = g.add(O.dropout(bh * x.s * x.c, dt, name="attn_dropout"), after=[probs])
    return g.add(O.matmul(x.s, x.c, d, batch=bh, dtype=dt, name="attn_context"), after=[probs, prev])


def _latent_attention(g: OpGraph, cfg: ModelConfig, x: _Dims, impl: str, dt: str, prev: Op,
                      window: int | None) -> Op:
    """Multi-head latent attention (DeepSeek-V2, Liu et al. 2024, section 2.1.2), up to the output
    projection. Queries: `q_down` (h -> c_q, replicated over tp), `q_norm`, `q_up` (c_q -> a_t*(d +
    d_r)), or one `q_proj`; keys and values: `kv_down` (h -> c_kv + d_r, replicated), `kv_norm`.
    Training and prefill expand the latent, `kv_up` (c_kv -> a_t*(d + d_v)), and run attention over
    a_t heads of mean width (d + d_r + d_v)/2. Decode absorbs the up-projection into the queries
    and outputs as inference engines do: `q_absorb` (per head d -> c_kv), attention of a_t heads on
    one latent head of c_kv + d_r read once as key and value (mean width c_kv + d_r/2), `v_absorb`
    (per head c_kv -> d_v); the KV cache holds the latent."""
    h, d, r, v, cq, ckv = (cfg.hidden, cfg.head_dim, cfg.qk_rope_head_dim, cfg.v_head_dim, cfg.q_lora_rank,
                           cfg.kv_lora_rank)
    assert d is not None
    if cq:
        q = _gemm(g, x, x.T, h, cq, "q_down", [prev], after_norm=not x.sp)
        q = g.add(O.norm(x.T, cq, dt, cfg.norm, name="q_norm"), after=[q])
        q = _gemm(g, x, x.T, cq, x.a_t * (d + r), "q_up", [q])
    else:
        q = _gemm(g, x, x.T, h, x.a_t * (d + r), "q_proj", [prev], after_norm=not x.sp)
    kv = _gemm(g, x, x.T, h, ckv + r, "kv_down", [prev], after_norm=not x.sp)
    kv = g.add(O.norm(x.T, ckv, dt, cfg.norm, name="kv_norm"), after=[kv])
    rope = g.add(O.elementwise(x.T * (x.a_t + 1) * r, ROPE_FLOPS_PER_ELEMENT, 1, dt, name="rope", fn="rope"),
                 after=[q, kv])
    if not x.decode:
        kv = _gemm(g, x, x.T, ckv, x.a_t * (d + v), "kv_up", [kv])
        if impl == "unfused":
            raise ConfigError(f"{cfg.name}: multi-head latent attention is modelled with fused attention only")
        return g.add(O.attention(x.b, x.a_t, x.a_t, x.s, x.c, (d + r + v) // 2, cfg.causal, x.attn_dt,
                                 name="attention", kernel=x.attention_kernel, window=window), after=[rope, kv])
    q = _gemm(g, x, x.T, d, ckv, "q_absorb", [rope], batch=x.a_t)
    attn = g.add(O.attention(x.b, x.a_t, 1, x.s, x.c, ckv + r // 2, cfg.causal, x.attn_dt, name="attention",
                             kernel=x.attention_kernel, window=window, kv_width=ckv + r), after=[q, kv])
    return _gemm(g, x, x.T, ckv, v, "v_absorb", [attn], batch=x.a_t)


def _mlp(g: OpGraph, cfg: ModelConfig, x: _Dims, dt: str, prev: Op, moe: bool) -> Op:
    f_t = x.fd_t if cfg.is_moe else x.f_t  # a dense layer of an MoE model has its own width
    h, width = cfg.hidden, (2 if cfg.gated else 1) * f_t
    act_inputs = 2 if cfg.gated else 1
    if not moe:
        up = _gemm(g, x, x.T, h, width, "mlp_up", [prev], bias=cfg.bias, after_norm=not x.sp)
        act = g.add(O.elementwise(x.T * f_t, ACTIVATION_FLOPS[cfg.mlp], act_inputs, dt, name="mlp_act", fn=cfg.mlp),
                    after=[up])
        return _gemm(g, x, x.T, f_t, h, "mlp_down", [act], bias=cfg.bias)
    E, k, ep = cfg.n_experts, cfg.experts_per_token, x.ep
    T, f = (x.T_sp, cfg.ffn_hidden) if x.moe_folded else (x.T, x.f_t)  # tokens routed here, expert width
    width = (2 if cfg.gated else 1) * f
    local = E // ep  # experts on this device
    if x.serving:  # few tokens: only the experts that receive one are read (balanced: min(E/ep, T*k))
        local = min(local, T * k)
    per_expert = math.ceil(T * k / local)  # T*k routed slots arrive per device, spread evenly
    router = g.add(O.matmul(T, h, E, dtype=dt, name="router", weight=True), after=[prev])
    gates = g.add(O.softmax(T, E, dt, name="router_softmax"), after=[router])
    dispatch = g.add(O.elementwise(T * k * h, 0, 1, dt, name="moe_dispatch", fn="permute"), after=[prev, gates])
    if ep > 1:
        dispatch = g.add(O.collective("all_to_all", T * k * h * dtype_bytes(dt), ep, dt, name="ep_dispatch"),
                         after=[dispatch])
        if local > 1:  # received tokens arrive grouped by source device; regroup them by local expert
            dispatch = g.add(O.elementwise(T * k * h, 0, 1, dt, name="moe_sort", fn="permute"), after=[dispatch])
    up = _gemm(g, x, per_expert, h, width, "expert_up", [dispatch], batch=local, bias=cfg.bias)
    act = g.add(O.elementwise(local * per_expert * f, ACTIVATION_FLOPS[cfg.mlp], act_inputs, dt,
                              name="expert_act", fn=cfg.mlp), after=[up])
    down = _gemm(g, x, per_expert, f, h, "expert_down", [act], batch=local, bias=cfg.bias)
    if ep > 1:
        if local > 1:
            down = g.add(O.elementwise(T * k * h, 0, 1, dt, name="moe_unsort", fn="permute"), after=[down])
        down = g.add(O.collective("all_to_all", T * k * h * dtype_bytes(dt), ep, dt, name="ep_combine"),
                     after=[down])
    parts = [down, gates]
    if cfg.shared_ffn_hidden:
        parts.append(_shared_experts(g, cfg, x, dt, prev))
    n_in = k + (1 if cfg.shared_ffn_hidden else 0)  # routed outputs weighted by their gates, plus the shared one
    return g.add(O.elementwise(T * h, 2 * n_in, n_in, dt, name="moe_combine", fn="weighted_sum"), after=parts)


def _shared_experts(g: OpGraph, cfg: ModelConfig, x: _Dims, dt: str, prev: Op) -> Op:
    """The shared experts' MLP (width f_s, split over tp like a dense MLP) that every token runs:
    inside the MLP's TP region, or, when the routed experts are folded onto the sequence-parallel
    shard (ep > 1), in a TP region of its own, as Megatron-Core's SharedExpertMLP."""
    h, width = cfg.hidden, (2 if cfg.gated else 1) * x.fs_t
    act_bytes = x.T * h * dtype_bytes(dt)
    if x.moe_folded:
        prev = _tp_entry(g, x, "shared", act_bytes, dt, prev)
    up = _gemm(g, x, x.T, h, width, "shared_up", [prev], bias=cfg.bias, after_norm=not x.sp)
    act = g.add(O.elementwise(x.T * x.fs_t, ACTIVATION_FLOPS[cfg.mlp], 2 if cfg.gated else 1, dt, name="shared_act",
                              fn=cfg.mlp), after=[up])
    down = _gemm(g, x, x.T, x.fs_t, h, "shared_down", [act], bias=cfg.bias)
    return _tp_exit(g, x, "shared", act_bytes, dt, down) if x.moe_folded else down


def _residual(x: _Dims, h: int, dt: str, name: str, dropout: bool) -> Op:
    if dropout:
        return O.dropout(x.T_sp * h, dt, name=name, residual=True)
    return O.elementwise(x.T_sp * h, 1, 2, dt, name=name, fn="add")


def _attention_branch(g: OpGraph, cfg: ModelConfig, x: _Dims, impl: str, dt: str, dropout: bool, window: int | None,
                      pre: Op) -> Op:
    """Attention from its (gathered) normed input to the output projection, before the TP exit."""
    d = cfg.head_dim
    assert d is not None
    if cfg.mla:
        attn = _latent_attention(g, cfg, x, impl, dt, pre, window)
        out_width = x.a_t * cfg.v_head_dim
    else:
        qkv = _gemm(g, x, x.T, cfg.hidden, (x.a_t + 2 * x.g_t) * d, "qkv", [pre], bias=cfg.bias, after_norm=not x.sp)
        q = qkv
        if cfg.position == "rope":  # the rotated part of each query and key head
            rot = cfg.rotary_dim or d
            q = g.add(O.elementwise(x.T * (x.a_t + x.g_t) * rot, ROPE_FLOPS_PER_ELEMENT, 1, dt, name="rope",
                                    fn="rope"), after=[qkv])
        attn = _attention(g, cfg, x, impl, dt, q, dropout, window)
        out_width = x.a_t * d
    return _gemm(g, x, x.T, out_width, cfg.hidden, "out_proj", [attn], bias=cfg.bias)


def _parallel_block(g: OpGraph, cfg: ModelConfig, x: _Dims, impl: str, dt: str, dropout: bool, kind: BlockKind,
                    act_bytes: float) -> None:
    """x + attn(n1(x)) + mlp(n2(x)) (module doc): one shared input, one TP exit, one residual add."""
    window, moe = kind
    h = cfg.hidden
    ln1 = g.add(O.norm(x.T_sp, h, dt, cfg.norm, name="ln1"))
    ln2 = g.add(O.norm(x.T_sp, h, dt, cfg.norm, name="ln2")) if cfg.norms_per_block == 2 else ln1
    attn_in = _tp_entry(g, x, "attn", act_bytes, dt, ln1)
    mlp_in = attn_in if ln2 is ln1 else _tp_entry(g, x, "mlp", act_bytes, dt, ln2)
    proj = _attention_branch(g, cfg, x, impl, dt, dropout, window, attn_in)
    if x.moe_folded and moe:  # experts on the sequence-parallel shard: their output is already whole
        out = _mlp(g, cfg, x, dt, ln2, moe)
        proj = _tp_exit(g, x, "attn", act_bytes, dt, proj)
        branches = [proj, out]
    else:
        branches = [proj, _mlp(g, cfg, x, dt, mlp_in, moe)]
        if x.t > 1 or dropout:  # sum the two partial outputs, then reduce them once
            both = g.add(O.elementwise(x.T * h, 1, 2, dt, name="parallel_sum", fn="add"), after=branches)
            branches = [_tp_exit(g, x, "block", act_bytes, dt, both)]
    if len(branches) == 1:
        g.add(_residual(x, h, dt, "residual", dropout), after=branches)
    else:
        g.add(O.elementwise(x.T_sp * h, 2, 3, dt, name="residual", fn="add"), after=branches)


def _block(cfg: ModelConfig, x: _Dims, impl: str, dt: str, dropout: bool,
           kind: BlockKind) -> tuple[OpGraph, dict[str, list[Op]]]:
    """One transformer block's forward graph, and the backward all-reduces of its TP inputs. A
    dense block of an MoE model is named ``block.dense``, a full-attention block of a model whose
    other blocks slide ``block.full`` (or ``block.dense.full``)."""
    window, moe = kind
    name = "block" + (".dense" if cfg.is_moe and not moe else "") + (
        ".full" if window is None and cfg.sliding_window is not None else "")
    g = OpGraph(name=name)
    h, d, e = cfg.hidden, cfg.head_dim, dtype_bytes(dt)
    assert d is not None
    act_bytes = x.T * h * e
    if cfg.parallel_block:
        _parallel_block(g, cfg, x, impl, dt, dropout, kind, act_bytes)
    else:
        ln1 = g.add(O.norm(x.T_sp, h, dt, cfg.norm, name="ln1"))
        pre = _tp_entry(g, x, "attn", act_bytes, dt, ln1)
        proj = _tp_exit(g, x, "attn", act_bytes, dt, _attention_branch(g, cfg, x, impl, dt, dropout, window, pre))
        add1 = g.add(_residual(x, h, dt, "attn_residual", dropout), after=[proj])
        ln2 = g.add(O.norm(x.T_sp, h, dt, cfg.norm, name="ln2"), after=[add1])
        if x.moe_folded and moe:  # expert layers on the sequence-parallel shard: no TP region around them
            out = _mlp(g, cfg, x, dt, ln2, moe)
        else:
            out = _tp_exit(g, x, "mlp", act_bytes, dt,
                           _mlp(g, cfg, x, dt, _tp_entry(g, x, "mlp", act_bytes, dt, ln2), moe))
        g.add(_residual(x, h, dt, "mlp_residual", dropout), after=[out, add1])
    bwd_reduce: dict[str, list[Op]] = {}
    if x.t > 1 and not x.sp:  # Megatron's f operator: identity forward, all-reduce backward
        first_mlp = "router" if moe else "mlp_up"
        regions = [("attn", "kv_down" if cfg.mla else "qkv"), ("mlp", first_mlp)]
        if cfg.parallel_block and cfg.norms_per_block == 1 and not (x.moe_folded and moe):
            regions = regions[:1]  # one shared input: the two dgrads are summed and reduced once
        for region, first in regions:
            bwd_reduce[first] = [O.collective("all_reduce", act_bytes, x.t, dt, name=f"{region}.input_all_reduce")]
    return g, bwd_reduce


def _embedding(cfg: ModelConfig, x: _Dims, dt: str) -> OpGraph:
    g = OpGraph(name="embedding")
    emb_w, h, el = cfg.embed_dim or cfg.hidden, cfg.hidden, dtype_bytes(dt)
    out = g.add(O.embedding(x.T, emb_w, x.V_t, dt, name="token_embedding"))
    if cfg.embed_dim is not None:
        out = g.add(O.matmul(x.T, emb_w, h, dtype=dt, name="project_in", weight=True), after=[out])
    out = _tp_exit(g, x, "embedding", x.T * h * el, dt, out)
    if cfg.embedding_norm:
        out = g.add(O.norm(x.T_sp, h, dt, cfg.norm, name="embedding_norm"), after=[out])
    if cfg.position == "learned":
        pos = g.add(O.embedding(x.T_sp, h, cfg.max_seq_len, dt, name="position_embedding"))
        g.add(O.elementwise(x.T_sp * h, 1, 2, dt, name="embedding_add", fn="add"), after=[out, pos])
    return g


def _head(cfg: ModelConfig, x: _Dims, phase: str, dt: str) -> OpGraph:
    g = OpGraph(name="head")
    h, emb_w = cfg.hidden, cfg.embed_dim or cfg.hidden
    out = g.add(O.norm(x.T_sp, h, dt, cfg.norm, name="final_norm"))
    training = phase == "forward"
    rows = x.T if training else x.b  # inference computes logits of the last position only
    out = _tp_entry(g, x, "head", rows * h * dtype_bytes(dt), dt, out)
    if cfg.embed_dim is not None:
        out = g.add(O.matmul(rows, h, emb_w, dtype=dt, name="project_out", weight=True), after=[out])
    logits = g.add(O.matmul(rows, emb_w, x.V_t, dtype=dt, name="lm_head", weight=not cfg.tied_embeddings),
                   after=[out])
    if training:
        loss = g.add(O.softmax(rows, x.V_t, dt, name="cross_entropy"), after=[logits])
        if x.t > 1:  # vocab-parallel cross entropy: max, target logit and sum of exp, fp32 per row
            g.add(O.collective("all_reduce", 3 * rows * 4, x.t, dt, name="cross_entropy.all_reduce"), after=[loss])
    return g


def _optimizer(fwd: OpGraph, name: str, dt: str) -> OpGraph:
    """Adam over the parameters the forward graph owns on this device (ZeRO sharding is placement's)."""
    g = OpGraph(name=name)
    n = int(round(fwd.param_count()))
    low = dtype_bytes(dt) if dt != "fp32" else 0
    g.add(Op(f"{name}.adam", "elementwise", (("n_elements", n), ("n_inputs", 4), ("n_outputs", 3), ("fn", "adam")),
             flops=float(ADAM_FLOPS_PER_PARAM * n), bytes_read=16.0 * n, bytes_written=float((12 + low) * n),
             param_bytes=0.0, dtype="fp32"))
    return g


def build(cfg: ModelConfig, phase: str, batch: int, seq_len: int, tp: int = 1, sequence_parallel: bool = False,
          context_len: int | None = None, dtype: str = "bf16", attention: str = "fused",
          dropout: bool = False, cp: int = 1, attention_kernel: str = "fa2", ep: int = 1, *,
          layout: GraphSplit | None = None) -> ModelGraph:
    """Operator graphs of one device's share of `cfg` in one phase.

    Args:
        cfg: the model.
        phase: ``forward`` (training forward with loss), ``backward``, ``optimizer`` (Adam step),
            ``prefill`` (prompt of `seq_len` tokens after `context_len` cached ones; logits of
            the last position) or ``decode`` (one token per sequence attending to itself and a
            KV cache of `context_len` tokens, default `seq_len - 1`: the token at position `seq_len`).
        batch: sequences, b.
        seq_len: tokens per sequence, s (for decode: the new token's position when `context_len` is None).
        tp: tensor-parallel width, t.
        sequence_parallel: Megatron sequence parallelism (needs t to divide b*s).
        context_len: cached tokens before this step (prefill and decode only).
        dtype: element type of weights and activations.
        attention: ``fused`` (one FlashAttention op) or ``unfused`` (bmm, mask, softmax, bmm).
        dropout: training dropout kernels (module doc); forward, backward and optimizer phases only.
        cp: context-parallel width (training phases): one device's share is `seq_len/cp` tokens of
            each sequence (Megatron-Core's load-balanced split into 2*cp chunks, so seq_len must be
            a multiple of 2*cp) whose queries attend to all `seq_len` keys; the ring exchange of
            keys and values is timed by `coda.placement`, not a graph op.
        attention_kernel: ``fa2`` or ``fa3`` (`coda.models.ops.attention`), fused attention only.
        ep: expert-parallel width (MoE models; must divide the experts; with tp > 1 it needs
            sequence parallelism): the device holds E/ep whole experts and exchanges routed
            tokens with two all-to-alls over ep devices (module doc).
        layout: the parallel layout (`coda.placement.Layout`, or anything with tp, cp, ep and
            sequence_parallel); when given it replaces the four keywords of the same names.

    Returns:
        ModelGraph with layers ``[(embedding, 1), (block, n_layers), (head, 1)]``; with several
        kinds of block (`cfg.block_kinds`: full-attention or dense layers), one entry per kind
        with its count, e.g. ``[(embedding, 1), (block, 21), (block.full, 21), (head, 1)]``
        (`cfg.block_pattern` orders them).

    Raises:
        ConfigError: unknown phase or attention, non-positive sizes, t not dividing the heads
            or the FFN width, sequences beyond a learned position table, ep not dividing the experts.
    """
    if attention not in ATTENTION_IMPLS:
        raise ConfigError(f"attention={attention!r} must be one of {', '.join(ATTENTION_IMPLS)}")
    dtype_bytes(dtype)
    if layout is not None:
        tp, cp, ep, sequence_parallel = layout.tp, layout.cp, layout.ep, layout.sequence_parallel
    x = _Dims(cfg, phase, batch, seq_len, tp, sequence_parallel, context_len, cp, dtype, attention_kernel, ep)
    act = activation_dtype(dtype)
    if dropout and phase in ("prefill", "decode"):
        raise ConfigError(f"dropout is a training op; the {phase} phase runs without it (pass dropout=False)")
    graph_phase = "forward" if phase in ("backward", "optimizer") else phase
    emb = _embedding(cfg, x, act)
    blocks = [_block(cfg, x, attention, act, dropout, k) for k in cfg.block_kinds]
    head = _head(cfg, x, graph_phase, act)
    if phase == "backward":
        emb, head = backward_graph(emb), backward_graph(head)
        body = [backward_graph(b, reduce) for b, reduce in blocks]
    elif phase == "optimizer":
        emb, head = _optimizer(emb, "embedding", act), _optimizer(head, "head", act)
        body = [_optimizer(b, b.name, act) for b, _ in blocks]
    else:
        body = [b for b, _ in blocks]
    layers = ((emb, 1), *zip(body, cfg.block_counts), (head, 1))
    return ModelGraph(cfg, phase, batch, seq_len, x.c - x.s, tp, x.sp, dtype, attention, layers)


__all__ = ["ATTENTION_IMPLS", "PHASES", "TRAINING_PHASES", "GraphSplit", "activation_dtype", "build", "tp_reasons"]
