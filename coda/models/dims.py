"""Per-device sizes of one graph build, validated once (`coda.models.build`'s first step).

Dimension legend as in `coda.models.builder`: b = batch, s = query tokens per sequence, c = keys
attended to, T = b*s tokens, t = tensor-parallel width, `_t` = per-device share after the
Megatron split.
"""

from __future__ import annotations

import math
from typing import Protocol

from coda.errors import ConfigError
from coda.models.config import ModelConfig

PHASES = ("forward", "backward", "optimizer", "prefill", "decode")
TRAINING_PHASES = ("forward", "backward", "optimizer")


def activation_dtype(dtype: str) -> str:
    """Element type of activations, norms and stored weights for a build `dtype`: bf16 for FP8
    (only the block GEMMs run in FP8), else `dtype` itself."""
    return "bf16" if dtype == "fp8" else dtype


class GraphSplit(Protocol):
    """What graph building needs of a parallel layout (`coda.placement.Layout` is one): the
    tensor-, context- and expert-parallel widths and sequence parallelism."""

    @property
    def tp(self) -> int: ...

    @property
    def cp(self) -> int: ...

    @property
    def ep(self) -> int: ...

    @property
    def sequence_parallel(self) -> bool: ...


def tp_reasons(cfg: ModelConfig, tp: int) -> list[str]:
    """Why tensor parallelism of width `tp` cannot split `cfg` (empty = it can): tp divides the
    attention heads, divides the kv heads or is a multiple of them (replicated kv heads), and
    divides every MLP width (Megatron splits heads and FFN columns over the group). The one home
    of this fact: graph building, plan validation and the plan enumeration all ask it."""
    a, g = cfg.n_heads, cfg.n_kv_heads or cfg.n_heads
    out = []
    if a % tp:
        ok = sorted(sorted((d for d in range(1, a + 1) if a % d == 0 and d <= max(tp * 2, 8)),
                           key=lambda d: (abs(d - tp), d))[:3])
        out.append(f"{cfg.name}: tp={tp} must divide its {a} attention heads; nearest valid tp: "
                   f"{', '.join(map(str, ok))}")
    if g != a and g % tp and tp % g:
        out.append(f"{cfg.name}: tp={tp} must divide n_kv_heads={g} or be a multiple of it (to replicate)")
    for f in ("ffn_hidden", "shared_ffn_hidden", "dense_ffn_hidden"):
        if getattr(cfg, f) % tp:
            out.append(f"{cfg.name}: tp={tp} must divide {f}={getattr(cfg, f)}")
    return out


def _check_sizes(cfg: ModelConfig, phase: str, batch: int, seq_len: int, tp: int, context_len: int | None,
                 cp: int, ep: int) -> None:
    """Phase, positive sizes, context length, and the context- and expert-parallel facts of a build."""
    if phase not in PHASES:
        raise ConfigError(f"phase {phase!r} must be one of {', '.join(PHASES)}")
    for name, v in (("batch", batch), ("seq_len", seq_len), ("tp", tp), ("cp", cp), ("ep", ep)):
        if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
            raise ConfigError(f"{name}={v!r} must be a positive integer")
    if context_len is not None and (not isinstance(context_len, int) or context_len < 0):
        raise ConfigError(f"context_len={context_len!r} must be a non-negative integer")
    if phase in TRAINING_PHASES and context_len:
        raise ConfigError(f"context_len applies to prefill and decode, not to the {phase} phase")
    if cp > 1 and phase not in TRAINING_PHASES:
        raise ConfigError(f"context parallelism (cp={cp}) is modelled for training phases, not {phase}")
    if seq_len % (2 * cp) and cp > 1:
        raise ConfigError(f"context parallelism splits each sequence into 2*cp = {2 * cp} chunks; seq_len="
                          f"{seq_len} is not a multiple of {2 * cp}")
    if ep > 1 and cfg.n_experts % ep:
        raise ConfigError(f"{cfg.name}: ep={ep} must divide its {cfg.n_experts} experts"
                          + ("" if cfg.is_moe else " (expert parallelism needs an MoE model)"))


class _Dims:
    """Resolved per-device sizes of one build, validated once: sizes (`_check_sizes`), tokens and
    keys, the tensor-parallel split (`tp_reasons`), then sequence and expert parallelism."""

    def __init__(self, cfg: ModelConfig, phase: str, batch: int, seq_len: int, tp: int, sp: bool,
                 context_len: int | None, cp: int = 1, dtype: str = "bf16", attention_kernel: str = "fa2",
                 ep: int = 1) -> None:
        _check_sizes(cfg, phase, batch, seq_len, tp, context_len, cp, ep)
        self.ep = ep
        self.b = batch
        # FP8 (Transformer Engine / TensorRT-LLM recipe): the block GEMMs run in FP8 on inputs cast
        # just before them; activations, norms, the embedding and the LM head stay in bf16, and so
        # does attention in training (its KV cache is FP8 when serving).
        self.gemm_dt = dtype
        self.attention_kernel = attention_kernel
        self.attn_dt = activation_dtype(dtype) if phase in TRAINING_PHASES else dtype
        self._tokens(cfg, phase, seq_len, context_len, cp)
        self._tensor_split(cfg, tp)
        self._sequence_split(tp, sp, ep, cfg.is_moe)
        self.serving = phase in ("prefill", "decode")
        self.decode = phase == "decode"

    def _tokens(self, cfg: ModelConfig, phase: str, seq_len: int, context_len: int | None, cp: int) -> None:
        """Queries s and keys c per sequence, T = b*s tokens."""
        if phase == "decode":
            self.s = 1
            self.c = (seq_len - 1 if context_len is None else context_len) + 1
        else:  # with context parallelism a device holds seq_len/cp queries and attends to all keys
            self.s = seq_len // cp
            self.c = seq_len + (context_len or 0)
        if cfg.position == "learned" and self.c > cfg.max_seq_len:
            raise ConfigError(
                f"{cfg.name}: {self.c} positions exceed its learned position table of {cfg.max_seq_len}; "
                f"use seq_len + context_len <= {cfg.max_seq_len}"
            )
        self.T = self.b * self.s

    def _tensor_split(self, cfg: ModelConfig, tp: int) -> None:
        """Per-device heads, FFN widths and vocabulary under the Megatron split."""
        reasons = tp_reasons(cfg, tp)
        if reasons:
            raise ConfigError("; ".join(reasons))
        self.t = tp
        a, g = cfg.n_heads, cfg.n_kv_heads
        assert g is not None
        self.a_t, self.g_t, self.f_t = a // tp, max(g // tp, 1), cfg.ffn_hidden // tp
        self.fs_t, self.fd_t = cfg.shared_ffn_hidden // tp, cfg.dense_ffn_hidden // tp
        self.V_t = math.ceil(cfg.vocab_size / tp)

    def _sequence_split(self, tp: int, sp: bool, ep: int, moe: bool) -> None:
        """Sequence parallelism's token split, and the MoE layer's folding onto it."""
        self.sp = sp and tp > 1
        if self.sp and self.T % tp:
            raise ConfigError(f"sequence parallelism needs tp={tp} to divide the {self.T} tokens of the batch")
        self.T_sp = self.T // tp if self.sp else self.T  # rows of norms and residual adds
        if ep > 1 and tp > 1 and not self.sp:
            raise ConfigError(f"expert parallelism with tp={tp} needs sequence parallelism (Megatron-Core): the MoE "
                              "layer routes each device's sequence-parallel shard of the tokens")
        self.moe_folded = ep > 1 and moe  # expert layers: whole experts on the sequence-parallel shard


__all__ = ["PHASES", "TRAINING_PHASES", "GraphSplit", "activation_dtype", "tp_reasons"]
