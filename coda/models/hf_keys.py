"""The keys of a Hugging Face `config.json` that `coda.models.hf` reads: which are sizes, counts,
flags and names, their type and range checks (naming the key), and how one is read (`get_or`,
`require`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from coda.errors import ConfigError
from coda.models.config import size_problem

SIZE_KEYS: dict[str, str] = {
    "n_embd": "hidden", "n_layer": "n_layers", "n_head": "n_heads", "n_inner": "ffn_hidden",
    "n_positions": "max_seq_len", "vocab_size": "vocab_size", "num_hidden_layers": "n_layers",
    "hidden_size": "hidden", "num_attention_heads": "n_heads", "ffn_dim": "ffn_hidden",
    "intermediate_size": "ffn_hidden", "max_position_embeddings": "max_seq_len", "num_key_value_heads": "n_kv_heads",
    "head_dim": "head_dim", "num_local_experts": "n_experts", "num_experts_per_tok": "experts_per_token",
    "moe_intermediate_size": "ffn_hidden", "num_experts": "n_experts", "n_routed_experts": "n_experts",
    "word_embed_proj_dim": "embed_dim", "sliding_window": "sliding_window", "qk_rope_head_dim": "qk_rope_head_dim",
    "qk_nope_head_dim": "head_dim", "v_head_dim": "v_head_dim", "decoder_sparse_step": "n_layers",
    "moe_layer_freq": "n_layers", "sliding_window_pattern": "n_layers", "num_kv_heads": "n_kv_heads",
    "n_head_kv": "n_kv_heads", "ffn_hidden_size": "ffn_hidden", "rotary_dim": "rotary_dim", "n_embed": "hidden",
    "d_model": "hidden", "n_heads": "n_heads", "n_layers": "n_layers", "max_seq_len": "max_seq_len",
    "num_ln_in_parallel_attn": "n_layers",
}
"""Integer keys of Hugging Face configs that must be positive (None = absent), and the
`ModelConfig` field whose bounds they share."""
COUNT_KEYS: dict[str, str] = {
    "shared_expert_intermediate_size": "shared_ffn_hidden", "n_shared_experts": "n_experts",
    "first_k_dense_replace": "n_layers", "max_window_layers": "n_layers", "kv_lora_rank": "kv_lora_rank",
    "q_lora_rank": "q_lora_rank",
}
"""Integer keys that may also be 0 (none)."""
BOOL_KEYS = ("tie_word_embeddings", "attention_bias", "mlp_bias", "use_bias", "enable_bias", "use_sliding_window",
              "parallel_attn", "new_decoder_architecture", "multi_query", "alibi", "bias", "no_bias",
              "use_parallel_residual", "apply_residual_connection_post_layernorm")
STR_KEYS = ("model_type", "hidden_act", "activation_function", "hidden_activation", "activation")
HF_KEYS = {*SIZE_KEYS, *COUNT_KEYS, *BOOL_KEYS, *STR_KEYS, "layer_types", "mlp_only_layers", "architectures",
            "_name_or_path", "torch_dtype", "transformers_version", "attn_config", "expansion_ratio", "rotary_pct",
            "partial_rotary_factor"}
"""Keys that mark a file as a Hugging Face config (to tell a missing `model_type` apart)."""


def check_keys(cfg: Mapping[str, Any]) -> None:
    """Refuse a present (non-None) key of the wrong type or out of range, naming the key."""
    for key, fld in (*SIZE_KEYS.items(), *COUNT_KEYS.items()):
        problem = size_problem(fld, cfg.get(key), optional=True, label=key, lo=0 if key in COUNT_KEYS else 1)
        if problem:
            raise ConfigError(problem)
    for key in BOOL_KEYS:
        if cfg.get(key) is not None and not isinstance(cfg[key], bool):
            raise ConfigError(f"{key}={cfg[key]!r} must be true or false")
    for key in STR_KEYS:
        if cfg.get(key) is not None and not isinstance(cfg[key], str):
            raise ConfigError(f"{key}={cfg[key]!r} must be a string")
    for key, kind in (("layer_types", str), ("mlp_only_layers", int)):
        v = cfg.get(key)
        if v is not None and (not isinstance(v, list) or any(isinstance(x, bool) or not isinstance(x, kind)
                                                             for x in v)):
            raise ConfigError(f"{key}={str(v)[:60]} must be a list of "
                              + ("layer kinds (sliding_attention, full_attention)" if kind is str
                                 else "layer indices"))


def get_or(c: Mapping[str, Any], key: str, default: Any) -> Any:
    """`c[key]`, or `default` when it is absent or null."""
    v = c.get(key)
    return default if v is None else v


def require(cfg: Mapping[str, Any], key: str, model_type: str) -> Any:
    """`cfg[key]`; a `ConfigError` naming the family and the key when it is absent or null."""
    if key not in cfg or cfg[key] is None:
        raise ConfigError(f"{model_type} config lacks required key {key!r}")
    return cfg[key]



__all__ = ["BOOL_KEYS", "COUNT_KEYS", "HF_KEYS", "SIZE_KEYS", "STR_KEYS", "check_keys", "get_or", "require"]
