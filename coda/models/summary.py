"""A model's headline numbers: parameters, FLOPs per token, training memory, layer structure."""

from __future__ import annotations

from typing import Any

from coda.errors import ConfigError
from coda.models.builder import build
from coda.models.config import ModelConfig

GEMM_KINDS = ("matmul", "attention", "attention_bwd")
# Mixed-precision Adam (Rajbhandari et al. 2020, ZeRO, section 3.1): 2 B bf16 weights,
# 2 B bf16 gradients, 12 B fp32 master weights, momentum and variance per parameter.
WEIGHT_BYTES, GRAD_BYTES, OPTIMIZER_BYTES = 2, 2, 12

SCHEMA = "coda.models.summary/1"


def summarize(cfg: ModelConfig, seq_len: int | None = None, source: str | None = None) -> dict[str, Any]:
    """Parameters, GEMM FLOPs per token and training memory of `cfg` at `seq_len` (default: its max).

    FLOPs per token count matmuls and attention (the terms of the Megatron closed form) for one
    sequence of `seq_len` tokens: ``training`` = forward + backward (fused attention backward at
    2.5x, as FlashAttention-2 executes it), ``prefill`` = forward over the prompt,
    ``decode`` = the token at position `seq_len` (a cache of `seq_len - 1`).
    """
    s = cfg.max_seq_len if seq_len is None else seq_len
    if isinstance(s, bool) or not isinstance(s, int) or s < 1:
        raise ConfigError(f"seq_len={seq_len!r} must be a positive integer number of tokens (default: the model's "
                          f"maximum, {cfg.max_seq_len})")
    fwd = build(cfg, "forward", 1, s)
    bwd = build(cfg, "backward", 1, s)
    prefill = build(cfg, "prefill", 1, s)
    decode = build(cfg, "decode", 1, s)
    n = cfg.param_count()
    return {
        "schema": SCHEMA,
        "name": cfg.name,
        "source": source,
        "seq_len": s,
        "config": cfg.to_dict(),
        "params": {
            "total": n,
            "active_per_token": cfg.active_param_count(),
            "embedding": cfg.embedding_params(),
            "per_block": cfg.block_params(),
            "head": cfg.head_params(),
        },
        "flops_per_token": {
            "forward": fwd.flops(GEMM_KINDS) / s,
            "training": (fwd.flops(GEMM_KINDS) + bwd.flops(GEMM_KINDS)) / s,
            "prefill": prefill.flops(GEMM_KINDS) / s,
            "decode": decode.flops(GEMM_KINDS),
        },
        "memory_bytes": {
            "weights_bf16": WEIGHT_BYTES * n,
            "gradients_bf16": GRAD_BYTES * n,
            "adam_states_fp32": OPTIMIZER_BYTES * n,
            "training_total": (WEIGHT_BYTES + GRAD_BYTES + OPTIMIZER_BYTES) * n,
        },
        "layers": [
            {"name": g.name, "repeat": r, "ops": g.number_of_nodes(), "forward_flops": g.flops(GEMM_KINDS),
             "param_bytes": g.param_bytes()}
            for g, r in fwd.layers
        ],
    }
