"""Which FLOPs count: the one definition of model FLOPs (MFU) and hardware FLOPs (HFU).

Both are per device and come from the same operator graphs (`coda.models.build`), so GPUs and
accelerators, fused and unfused attention, dense and MoE models share them.

- **Model FLOPs** are what the model needs, independent of how it is run: the forward graph's
  matmul and attention FLOPs times 3 (the backward pass costs twice the forward), no
  recomputation; element-wise, norm, softmax and embedding-lookup FLOPs are not model FLOPs
  (PaLM's formula counts neither, and their backward is not twice their forward). For a dense
  transformer this is PaLM's `6*N + 12*L*s*d` per token (Chowdhery et al. 2022, appendix B; N
  the parameters in matmuls, L layers, s the sequence, d the attention width) with one change:
  causal attention counts only the score entries its mask keeps, `s*(s+1)/2` of the `s^2`
  (with a causal window W, the band of at most W keys per query), i.e. about `6*N + 6*L*s*d`.
  Megatron-LM counts causal attention the same way (`num_floating_point_operations` in
  `megatron/training/training.py`: "only half of the attention matrix is non-zero") and so do the
  FlashAttention benchmarks; Narayanan et al. (SC'21, eq. 3) and PaLM count the full matrix.
- **Hardware FLOPs** are what the kernels execute: forward and backward graphs (the
  FlashAttention backward recomputes the scores: 2.5x the forward's attention FLOPs), plus
  recomputed forwards (`recompute`). Fused (FlashAttention) kernels skip the fully masked
  tiles of causal attention: they count the kept entries, as the model FLOPs do (the lower
  bound of what they run: the masked half of the diagonal tiles, under `block/s` of the
  attention FLOPs, is computed too and not counted). Unfused attention (`attn_scores`,
  `attn_context` matmuls) multiplies the full matrix and counts it.
- MFU = model FLOPs / (step time * devices * peak), HFU = hardware FLOPs / (same), with the
  device's dense peak for the dtype (`costs.device_peak_flops`).

Why the causal half in the model FLOPs: with it, model FLOPs <= hardware FLOPs for every plan
(the hardware count adds the backward's score recomputation, recomputed forwards and unfused
kernels' masked entries to the same kept entries), and hardware FLOPs <= what the predictors'
times allow (they never time an attention kernel faster than its kept entries at peak), so
`0 < MFU <= HFU <= 1` holds and is tested. Counting the full matrix, as PaLM does, credits a
causal kernel with work it never does: MFU exceeded 1 on small accelerator designs and exceeded
HFU at long sequences. The cost: a published MFU that counts the full matrix (PaLM's 46.2%,
llm-foundry's tables) is higher than coda's for the same run by the share of attention in the
FLOPs, `6*L*s*d / (6*N + 12*L*s*d)` (about 2% for GPT-3 175B at s = 2048, 4% for PaLM 540B
at s = 2048); `3 * graph.flops()` of the forward graphs gives that count for comparisons with them.
"""

from __future__ import annotations

from coda.models.graph import OpGraph
from coda.models.ops import Op

UNFUSED_ATTENTION = ("attn_scores", "attn_context")
"""The matmuls of unfused attention that multiply the score matrix (`coda.models.builder`)."""


def causal_fraction(q_len: int, kv_len: int, window: int | None = None) -> float:
    """Share of an attention op's counted score entries that a causal mask keeps.

    The queries are the last `q_len` of `kv_len` positions; query i (0-based) at position
    `p = kv_len - q_len + i` keeps `min(p + 1, W)` keys. The op counts `q_len * min(kv_len, W)`
    entries (`coda.models.ops.attention`), so the fraction is `sum_p min(p + 1, W) / (q_len *
    min(kv_len, W))`: `(s + 1) / (2s)` for a square causal matrix of side s, 1 for a single
    decode query.

    Args:
        q_len: queries (positive).
        kv_len: keys (>= q_len).
        window: causal sliding window W, or None for all earlier positions.
    """
    lo, hi = kv_len - q_len + 1, kv_len  # keys kept by the first and the last query without a window
    width = kv_len if window is None else min(kv_len, window)
    if window is None or window >= hi:
        kept = (lo + hi) * q_len / 2
    elif window <= lo:
        kept = float(window * q_len)
    else:  # queries keeping lo..W keys, then the rest keeping W
        kept = (lo + window) * (window - lo + 1) / 2 + window * (hi - window)
    return kept / (q_len * width)


def _op_fraction(op: Op) -> float:
    d = op.dims
    return causal_fraction(int(d["q_len"]), int(d["kv_len"]), d.get("window")) if d.get("causal") else 1.0


def hardware_flops(graph: OpGraph) -> float:
    """FLOPs the kernels of `graph` execute (module docstring): fused causal attention, forward
    and backward, at its kept entries; everything else as counted by the op."""
    return sum(op.flops * _op_fraction(op) if op.kind in ("attention", "attention_bwd") else op.flops
               for op in graph.nodes)


def model_flops(graph: OpGraph, causal: bool, window: int | None = None) -> float:
    """Model FLOPs of a forward graph (module docstring; a training step counts 3x this): its
    matmuls and attention, causal attention at its kept entries, fused or not.

    Args:
        graph: a forward layer graph.
        causal: the model's attention is causal (`ModelConfig.causal`).
        window: the layer's causal sliding window (`BlockKind.window`), for unfused attention
            (a fused op carries its own).
    """
    total = 0.0
    for op in graph.nodes:
        if op.kind == "attention":
            total += op.flops * _op_fraction(op)
        elif causal and op.kind == "matmul" and op.name in UNFUSED_ATTENTION:
            d = op.dims  # scores [s x d] @ [d x c], context [s x c] @ [c x d]: queries m, keys n or k
            keys = int(d["n"] if op.name == "attn_scores" else d["k"])
            width = keys if window is None else min(keys, window)
            total += op.flops * width / keys * causal_fraction(int(d["m"]), keys, window)
        elif op.kind == "matmul":
            total += op.flops
    return total


def full_matrix_mfu(mfu: float, tokens_per_s_per_device: float, peak_flops: float, n_layers: int,
                    attention_width: int, seq_len: int) -> float:
    """MFU in the full-matrix convention of PaLM (Chowdhery et al. 2022, appendix B: `6N + 12LHQT`
    per token) and llm-foundry, for comparing coda's MFU (causal half) with their published figures.

    For causal attention without a window, the full matrix counts `12*L*H*Q*s` training FLOPs per
    token where coda counts the kept `(s + 1) / (2s)` of them; the difference is
    `12*L*H*Q*s*(1 - (s + 1)/(2s)) = 6*L*H*Q*(s - 1)` per token, so

        MFU_full = MFU + tokens/s per device * 6*L*H*Q*(s - 1) / peak.

    Args:
        mfu: coda's MFU (this module's definition).
        tokens_per_s_per_device: training tokens per second per device.
        peak_flops: the peak the MFU divides by.
        n_layers: L.
        attention_width: H*Q, heads times head width.
        seq_len: s.
    """
    return mfu + tokens_per_s_per_device * 6.0 * n_layers * attention_width * (seq_len - 1) / peak_flops


__all__ = ["UNFUSED_ATTENTION", "causal_fraction", "full_matrix_mfu", "hardware_flops", "model_flops"]
