"""Read Hugging Face `config.json` files into `ModelConfig`.

Supported `model_type`s and what each maps from (HF key -> ModelConfig field). Features that do
not change matmul shapes are not modelled and are listed per family: Qwen2's QKV biases, phi's
LM-head bias, Qwen2-MoE's shared-expert gate (`h` weights per block), OLMo-2's QK norms and
post-norms, Granite's scaling multipliers, Gemma's embedding scale, partial rotary of phi3.
Their parameter effect is under 0.1% for the public checkpoints. phi3 (Phi-3, Phi-4-mini),
olmo2 and granite read as llama (their weights have llama's shapes).
Parallel blocks (attention and MLP on the same input, one residual add) are read into
`parallel_block` and `norms_per_block`: GPT-J and Falcon-7B (one shared norm), Falcon-40B/180B
(`new_decoder_architecture`: two norms), GPT-NeoX (`use_parallel_residual`, two norms), phi-1/2
(one norm). Partial rotary embeddings into `rotary_dim`: GPT-J's `rotary_dim`, GPT-NeoX's
`rotary_pct`, phi's `partial_rotary_factor`. ALiBi (`position="alibi"`): BLOOM, MPT
(`attn_config.alibi`), Falcon with `alibi`.
Sliding-window attention is read into `ModelConfig.sliding_window` and, where some layers attend
fully (Gemma 2/3, GPT-OSS, Qwen2 with `max_window_layers`), `full_attention_layers`; dense
layers of MoE models (GLM-4.5's and DeepSeek's first ones, Qwen MoE's `mlp_only_layers`) into
`dense_layers`; DeepSeek's multi-head latent attention into `kv_lora_rank` and its siblings.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from coda.errors import ConfigError
from coda.models.config import ModelConfig, read_json_object
from coda.models.hf_keys import HF_KEYS, check_keys
from coda.models.hf_keys import get_or as _get
from coda.models.hf_keys import require as _require

_GATED_ACTS = {"silu", "swiglu", "swish"}


def _mlp_kind(act: str) -> str:
    """Non-gated activations all share the two-matrix shape; relu is kept apart for the FLOP count."""
    return "relu" if act == "relu" else "gelu"


def _gpt2(c: Mapping[str, Any], r: Callable[[str], Any]) -> dict[str, Any]:
    h = r("n_embd")
    return dict(n_layers=r("n_layer"), hidden=h, n_heads=r("n_head"), ffn_hidden=c.get("n_inner") or 4 * h,
                vocab_size=r("vocab_size"), max_seq_len=r("n_positions"),
                mlp=_mlp_kind(c.get("activation_function", "gelu_new")), norm="layernorm", position="learned",
                causal=True, tied_embeddings=c.get("tie_word_embeddings", True), bias=True)


def _opt(c: Mapping[str, Any], r: Callable[[str], Any]) -> dict[str, Any]:
    return dict(n_layers=r("num_hidden_layers"), hidden=r("hidden_size"), n_heads=r("num_attention_heads"),
                ffn_hidden=r("ffn_dim"), vocab_size=r("vocab_size"), max_seq_len=r("max_position_embeddings"),
                mlp=_mlp_kind(c.get("activation_function", "relu")), norm="layernorm", position="learned",
                causal=True, tied_embeddings=c.get("tie_word_embeddings", True), bias=c.get("enable_bias", True),
                embed_dim=c.get("word_embed_proj_dim"))


def _bert(c: Mapping[str, Any], r: Callable[[str], Any]) -> dict[str, Any]:
    return dict(n_layers=r("num_hidden_layers"), hidden=r("hidden_size"), n_heads=r("num_attention_heads"),
                ffn_hidden=r("intermediate_size"), vocab_size=r("vocab_size"),
                max_seq_len=r("max_position_embeddings"), mlp=_mlp_kind(c.get("hidden_act", "gelu")),
                norm="layernorm", position="learned", causal=False, tied_embeddings=True, bias=True)


def _windows(c: Mapping[str, Any], r: Callable[[str], Any]) -> dict[str, Any]:
    """`sliding_window` and `full_attention_layers` from `layer_types` (recent transformers:
    ``sliding_attention`` / ``full_attention`` per layer), else Qwen2's `use_sliding_window` +
    `max_window_layers` (the layers from that index on slide), else a plain `sliding_window` in
    every layer (Mistral-7B-v0.1, Mixtral, Phi-3, StarCoder2)."""
    layers = r("num_hidden_layers")
    if c.get("layer_types") is not None:
        types = list(c["layer_types"])
        unknown = set(types) - {"sliding_attention", "full_attention"}
        if unknown or len(types) != layers:
            raise ConfigError(f"layer_types must give sliding_attention or full_attention for each of the {layers} "
                              f"layers (got {len(types)} entries: {', '.join(sorted(set(types)))})")
        sliding = [t == "sliding_attention" for t in types]
    elif "use_sliding_window" in c:
        first = _get(c, "max_window_layers", layers)
        on = bool(c["use_sliding_window"]) and c.get("sliding_window") is not None
        sliding = [on and i >= first for i in range(layers)]
    else:
        sliding = [c.get("sliding_window") is not None] * layers
    if not any(sliding):
        return dict(sliding_window=None)
    return dict(sliding_window=int(r("sliding_window")),
                full_attention_layers=tuple(i for i, slides in enumerate(sliding) if not slides))


def _llama_like(c: Mapping[str, Any], r: Callable[[str], Any], mlp: str = "swiglu",
                tied: bool = False) -> dict[str, Any]:
    """Llama's layout (RMSNorm, RoPE, gated MLP, optional biases); `tied`: the default of
    `tie_word_embeddings`."""
    act = c.get("hidden_act", "silu")
    if mlp == "swiglu" and act not in _GATED_ACTS:
        raise ConfigError(f"hidden_act={act!r}: coda models this family's MLP as gated SiLU (SwiGLU) only")
    heads = r("num_attention_heads")
    return dict(n_layers=r("num_hidden_layers"), hidden=r("hidden_size"), n_heads=heads,
                n_kv_heads=c.get("num_key_value_heads") or heads, head_dim=c.get("head_dim"),
                ffn_hidden=r("intermediate_size"), vocab_size=r("vocab_size"),
                max_seq_len=r("max_position_embeddings"), mlp=mlp, norm="rmsnorm", position="rope",
                causal=True, tied_embeddings=c.get("tie_word_embeddings", tied),
                bias=bool(c.get("attention_bias", False)) and bool(c.get("mlp_bias", False)), **_windows(c, r))


def _mixtral(c: Mapping[str, Any], r: Callable[[str], Any]) -> dict[str, Any]:
    return {**_llama_like(c, r), "n_experts": r("num_local_experts"), "experts_per_token": r("num_experts_per_tok")}


def _dense_layers(layers: tuple[int, ...], r: Callable[[str], Any]) -> dict[str, Any]:
    """`dense_layers` of an MoE model and their width, `intermediate_size` (nothing if none)."""
    return dict(dense_layers=layers, dense_ffn_hidden=r("intermediate_size")) if layers else {}


def _qwen_moe(c: Mapping[str, Any], r: Callable[[str], Any]) -> dict[str, Any]:
    """qwen2_moe (with shared experts) and qwen3_moe: MoE layers, except those in `mlp_only_layers`
    or off the `decoder_sparse_step`, which have a dense MLP of `intermediate_size`."""
    step, only = _get(c, "decoder_sparse_step", 1), set(_get(c, "mlp_only_layers", ()))
    dense = tuple(i for i in range(r("num_hidden_layers")) if i in only or (i + 1) % step)
    return {**_llama_like(c, r), "ffn_hidden": r("moe_intermediate_size"), "n_experts": r("num_experts"),
            "experts_per_token": r("num_experts_per_tok"),
            "shared_ffn_hidden": c.get("shared_expert_intermediate_size") or 0, **_dense_layers(dense, r)}


def _glm4_moe(c: Mapping[str, Any], r: Callable[[str], Any]) -> dict[str, Any]:
    """GLM-4.5 (glm4_moe): llama's attention, the first `first_k_dense_replace` layers dense
    (`intermediate_size`), the others `n_routed_experts` experts and `n_shared_experts` shared ones
    of `moe_intermediate_size`. Its multi-token-prediction layer (`num_nextn_predict_layers`) is
    not part of the model run here."""
    first, width = _get(c, "first_k_dense_replace", 0), r("moe_intermediate_size")
    return {**_llama_like(c, r), "ffn_hidden": width, "n_experts": r("n_routed_experts"),
            "experts_per_token": r("num_experts_per_tok"),
            "shared_ffn_hidden": int(c.get("n_shared_experts") or 0) * width, **_dense_layers(tuple(range(first)), r)}


def _deepseek(c: Mapping[str, Any], r: Callable[[str], Any]) -> dict[str, Any]:
    """DeepSeek-V2/V3 (and Kimi-K2, a deepseek_v3): multi-head latent attention, the first
    `first_k_dense_replace` layers dense (`intermediate_size`), the others `n_routed_experts`
    experts and `n_shared_experts` shared ones of `moe_intermediate_size`. Expert groups limit
    routing, not shapes; the multi-token-prediction layers are not part of the model run here."""
    if _get(c, "moe_layer_freq", 1) != 1:
        raise ConfigError("moe_layer_freq != 1: coda reads DeepSeek's dense layers as the first ones only")
    heads = r("num_attention_heads")
    return {**_glm4_moe({**c, "head_dim": r("qk_nope_head_dim")}, r), "n_kv_heads": heads,
            "kv_lora_rank": r("kv_lora_rank"), "q_lora_rank": c.get("q_lora_rank") or 0,
            "qk_rope_head_dim": r("qk_rope_head_dim"), "v_head_dim": r("v_head_dim"), "bias": False}


def _gemma(c: Mapping[str, Any], r: Callable[[str], Any]) -> dict[str, Any]:
    """Gemma (v1): llama's layout with a GeGLU MLP, head_dim 256 apart from the width, tied embeddings."""
    act = c.get("hidden_activation") or c.get("hidden_act") or "gelu_pytorch_tanh"
    if not str(act).startswith("gelu"):
        raise ConfigError(f"hidden_activation={act!r}: coda models Gemma's MLP as gated GELU (GeGLU) only")
    return _llama_like(c, r, mlp="geglu", tied=True)


def _gemma2(c: Mapping[str, Any], r: Callable[[str], Any]) -> dict[str, Any]:
    """Gemma 2 and Gemma 3 (text): Gemma's layout with sliding-window layers interleaved with
    full ones. Without `layer_types`, every `sliding_window_pattern`-th layer is full (Gemma 2:
    every second, Gemma 3: every sixth), as transformers lays them out."""
    period = 2 if c.get("model_type") == "gemma2" else _get(c, "sliding_window_pattern", 6)
    if c.get("layer_types") is None:
        c = {**c, "layer_types": ["full_attention" if (i + 1) % period == 0 else "sliding_attention"
                                  for i in range(r("num_hidden_layers"))]}
    return _gemma(c, r)


def _gpt_oss(c: Mapping[str, Any], r: Callable[[str], Any]) -> dict[str, Any]:
    """GPT-OSS: MoE blocks (SwiGLU experts with biases) whose attention alternates a short sliding
    window with full attention (`layer_types`); attention sinks (one scalar per head) are not
    modelled."""
    return {**_llama_like(c, r), "bias": bool(c.get("attention_bias", True)), "n_experts": r("num_local_experts"),
            "experts_per_token": r("num_experts_per_tok")}


def _starcoder2(c: Mapping[str, Any], r: Callable[[str], Any]) -> dict[str, Any]:
    """StarCoder2: GQA, LayerNorm, a two-matrix GELU MLP with biases, a sliding window."""
    heads = r("num_attention_heads")
    return dict(n_layers=r("num_hidden_layers"), hidden=r("hidden_size"), n_heads=heads,
                n_kv_heads=c.get("num_key_value_heads") or heads, ffn_hidden=r("intermediate_size"),
                vocab_size=r("vocab_size"), max_seq_len=r("max_position_embeddings"),
                mlp=_mlp_kind(c.get("hidden_act", "gelu_pytorch_tanh")), norm="layernorm", position="rope",
                causal=True, tied_embeddings=c.get("tie_word_embeddings", True), bias=bool(c.get("use_bias", True)),
                **_windows(c, r))


def _fraction(c: Mapping[str, Any], key: str, default: float) -> float:
    """A fraction in (0, 1] (`rotary_pct`, `partial_rotary_factor`), named in the error."""
    v = _get(c, key, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v <= 1:
        raise ConfigError(f"{key}={v!r} must be a number in (0, 1]")
    return float(v)


def _rotary_dim(head_dim: int, rotated: int) -> int:
    """`ModelConfig.rotary_dim` of `rotated` rotated dimensions per head: 0 (the whole head) when
    they cover it."""
    return 0 if rotated >= head_dim else rotated


def _rotary(head_dim: int, fraction: float) -> int:
    """`rotary_dim` of a partial rotary fraction of each head (0 = the whole head), as transformers
    computes it: `int(head_dim * fraction)`."""
    return _rotary_dim(head_dim, int(head_dim * fraction))


def _gpt_neox(c: Mapping[str, Any], r: Callable[[str], Any]) -> dict[str, Any]:
    """GPT-NeoX / Pythia: `use_parallel_residual` (default true) is a parallel block with two norms;
    `rotary_pct` (default 0.25) of each head is rotated."""
    h, a = r("hidden_size"), r("num_attention_heads")
    return dict(n_layers=r("num_hidden_layers"), hidden=h, n_heads=a,
                ffn_hidden=r("intermediate_size"), vocab_size=r("vocab_size"),
                max_seq_len=r("max_position_embeddings"), mlp=_mlp_kind(c.get("hidden_act", "gelu")),
                norm="layernorm", position="rope", causal=True,
                tied_embeddings=c.get("tie_word_embeddings", False), bias=True,
                parallel_block=bool(_get(c, "use_parallel_residual", True)),
                rotary_dim=_rotary(h // a if h % a == 0 else 0, _fraction(c, "rotary_pct", 0.25)))


def _phi(c: Mapping[str, Any], r: Callable[[str], Any]) -> dict[str, Any]:
    """phi-1/1.5/2: a parallel block with one shared LayerNorm; `partial_rotary_factor` (default
    0.5) of each head rotated."""
    h, heads = r("hidden_size"), r("num_attention_heads")
    return dict(n_layers=r("num_hidden_layers"), hidden=h, n_heads=heads,
                n_kv_heads=c.get("num_key_value_heads") or heads, ffn_hidden=r("intermediate_size"),
                vocab_size=r("vocab_size"), max_seq_len=r("max_position_embeddings"),
                mlp=_mlp_kind(c.get("hidden_act", "gelu_new")), norm="layernorm", position="rope", causal=True,
                tied_embeddings=c.get("tie_word_embeddings", False), bias=True, parallel_block=True,
                norms_per_block=1,
                rotary_dim=_rotary(h // heads if h % heads == 0 else 0, _fraction(c, "partial_rotary_factor", 0.5)))


def _falcon(c: Mapping[str, Any], r: Callable[[str], Any]) -> dict[str, Any]:
    """Falcon (transformers `FalconConfig`; the legacy RefinedWeb keys `n_head`, `n_layer`,
    `n_head_kv` too). Key/value heads as `FalconAttention` builds its fused QKV: with
    `new_decoder_architecture` (Falcon-40B/180B) `num_kv_heads` groups; otherwise one shared key
    and value head if `multi_query` (default true, Falcon-7B; its config's `num_kv_heads` is then
    ignored), else one per query head. Blocks: `parallel_attn` (default true) with one shared
    LayerNorm, or with `new_decoder_architecture` `num_ln_in_parallel_attn` of them (default 2:
    `ln_attn`, `ln_mlp`). LayerNorms keep their biases when `bias` (linear biases) is false;
    coda counts LayerNorm gain and bias either way. MLP `ffn_hidden_size` (default 4h), GELU;
    rotary positions unless `alibi`; embeddings tied unless `tie_word_embeddings` is false."""
    layers = c.get("num_hidden_layers", c.get("n_layer"))
    heads = c.get("num_attention_heads", c.get("n_head"))
    if layers is None or heads is None:
        raise ConfigError("falcon config lacks num_hidden_layers (n_layer) or num_attention_heads (n_head)")
    h = r("hidden_size")
    new_arch = bool(_get(c, "new_decoder_architecture", False))
    if new_arch:
        kv = c.get("num_kv_heads", c.get("n_head_kv")) or heads
    else:
        kv = 1 if _get(c, "multi_query", True) else heads
    parallel = bool(_get(c, "parallel_attn", True)) or new_arch
    norms = (_get(c, "num_ln_in_parallel_attn", 2) if new_arch else 1) if parallel else 2
    if norms not in (1, 2):
        raise ConfigError(f"num_ln_in_parallel_attn={norms} must be 1 or 2")
    if _get(c, "apply_residual_connection_post_layernorm", False):
        raise ConfigError("apply_residual_connection_post_layernorm=true (the residual taken after the norm) is not "
                          "modelled; coda models pre-norm residuals")
    act = _get(c, "activation", "gelu")
    return dict(n_layers=layers, hidden=h, n_heads=heads, n_kv_heads=kv,
                ffn_hidden=_get(c, "ffn_hidden_size", 4 * h), vocab_size=r("vocab_size"),
                max_seq_len=_get(c, "max_position_embeddings", 2048), mlp=_mlp_kind(act), norm="layernorm",
                position="alibi" if _get(c, "alibi", False) else "rope", causal=True,
                tied_embeddings=c.get("tie_word_embeddings", True), bias=bool(_get(c, "bias", False)),
                parallel_block=parallel, norms_per_block=norms)


def _gptj(c: Mapping[str, Any], r: Callable[[str], Any]) -> dict[str, Any]:
    """GPT-J: a parallel block with one shared LayerNorm (`ln_1`), RoPE on the first `rotary_dim`
    of each head (GPT-J-6B: 64 of 256), MLP `n_inner` (default 4h) with biases, q/k/v/out
    projections without (coda's one `bias` flag counts them: +4h per block, 0.008% of GPT-J-6B),
    an untied LM head with a bias (not counted)."""
    h, heads = r("n_embd"), r("n_head")
    head_dim = h // heads if h % heads == 0 else 0
    rot = _get(c, "rotary_dim", head_dim)
    return dict(n_layers=r("n_layer"), hidden=h, n_heads=heads, ffn_hidden=c.get("n_inner") or 4 * h,
                vocab_size=r("vocab_size"), max_seq_len=r("n_positions"),
                mlp=_mlp_kind(c.get("activation_function", "gelu_new")), norm="layernorm", position="rope",
                causal=True, tied_embeddings=c.get("tie_word_embeddings", False), bias=True,
                parallel_block=True, norms_per_block=1, rotary_dim=_rotary_dim(head_dim, rot))


def _bloom(c: Mapping[str, Any], r: Callable[[str], Any]) -> dict[str, Any]:
    """BLOOM: ALiBi, a LayerNorm after the word embeddings, GELU MLP of 4h with biases, tied
    embeddings; `hidden_size` or `n_embed`, `n_layer`, `n_head`. Its 2048-token training length is
    not a limit of ALiBi; `seq_length` is read when present."""
    h = c.get("hidden_size", c.get("n_embed"))
    if h is None:
        raise ConfigError("bloom config lacks hidden_size (n_embed)")
    layers = c.get("n_layer", c.get("num_hidden_layers"))
    heads = c.get("n_head", c.get("num_attention_heads"))
    if layers is None or heads is None:
        raise ConfigError("bloom config lacks n_layer or n_head")
    seq = c.get("seq_length", 2048)
    if isinstance(seq, bool) or not isinstance(seq, int) or seq < 1:
        raise ConfigError(f"seq_length={seq!r} must be a positive whole number")
    return dict(n_layers=layers, hidden=h, n_heads=heads, ffn_hidden=c.get("n_inner") or 4 * h,
                vocab_size=r("vocab_size"), max_seq_len=seq, mlp="gelu", norm="layernorm", position="alibi",
                causal=True, tied_embeddings=c.get("tie_word_embeddings", True), bias=True, embedding_norm=True)


def _mpt(c: Mapping[str, Any], r: Callable[[str], Any]) -> dict[str, Any]:
    """MPT (MosaicML): `d_model`, `n_heads`, `n_layers`, an MLP of `expansion_ratio` x d_model,
    LayerNorm (`no_bias`: no linear biases), tied embeddings, and `attn_config.alibi` (MPT-7B/30B:
    true; no position table then) or learned positions (`learned_pos_emb`)."""
    attn = _get(c, "attn_config", {})
    if not isinstance(attn, Mapping):
        raise ConfigError(f"attn_config={str(attn)[:40]} must be an object")
    h = r("d_model")
    ratio = _get(c, "expansion_ratio", 4)
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or ratio <= 0 or int(ratio * h) < 1:
        raise ConfigError(f"expansion_ratio={ratio!r} must be a positive number")
    kinds = {"multihead_attention": None, "multiquery_attention": 1, "grouped_query_attention": attn.get("kv_n_heads")}
    kind = attn.get("attn_type", "multihead_attention")
    if kind not in kinds:
        raise ConfigError(f"attn_config.attn_type={kind!r} must be one of {', '.join(kinds)}")
    alibi = bool(attn.get("alibi", False))
    position = "alibi" if alibi else ("learned" if _get(c, "learned_pos_emb", True) else "rope")
    return dict(n_layers=r("n_layers"), hidden=h, n_heads=r("n_heads"), n_kv_heads=kinds[kind],
                ffn_hidden=int(ratio * h), vocab_size=r("vocab_size"), max_seq_len=r("max_seq_len"), mlp="gelu",
                norm="layernorm", position=position, causal=True, tied_embeddings=True,
                bias=not _get(c, "no_bias", False))


_FAMILIES: dict[str, Callable[[Mapping[str, Any], Callable[[str], Any]], dict[str, Any]]] = {
    "gpt2": _gpt2, "opt": _opt, "bert": _bert, "llama": _llama_like, "mistral": _llama_like, "qwen2": _llama_like,
    "qwen3": _llama_like, "qwen2_moe": _qwen_moe, "qwen3_moe": _qwen_moe, "mixtral": _mixtral, "gpt_neox": _gpt_neox,
    "phi": _phi, "phi3": _llama_like, "olmo2": _llama_like, "granite": _llama_like, "gemma": _gemma,
    "gemma2": _gemma2, "gemma3_text": _gemma2, "gpt_oss": _gpt_oss, "glm4_moe": _glm4_moe, "starcoder2": _starcoder2,
    "deepseek_v2": _deepseek, "deepseek_v3": _deepseek, "falcon": _falcon, "RefinedWeb": _falcon,
    "RefinedWebModel": _falcon, "gptj": _gptj, "bloom": _bloom, "mpt": _mpt,
}


def supported_model_types() -> list[str]:
    return sorted(_FAMILIES)


def from_hf_config(path_or_dict: str | os.PathLike[str] | Mapping[str, Any], name: str | None = None) -> ModelConfig:
    """A `ModelConfig` from a Hugging Face `config.json` (a path or the parsed dict).

    Args:
        path_or_dict: the file, or its contents.
        name: model name; default `_name_or_path`, else the file's stem, else the model_type.

    Raises:
        ConfigError: an unreadable, non-UTF-8 or malformed file, JSON that is not an object, an
            unsupported or missing `model_type`, a required key missing, or a key of the wrong
            type or out of range; the message names the file (or "config dict") and the key.
    """
    if isinstance(path_or_dict, Mapping):
        cfg, source = path_or_dict, "config dict"
    elif isinstance(path_or_dict, (str, os.PathLike)):
        path = Path(path_or_dict)
        cfg, source = read_json_object(path, "Hugging Face config"), str(path)
        name = name or path.stem
    else:
        raise ConfigError(f"from_hf_config takes a config.json path or its parsed dict, got "
                          f"{type(path_or_dict).__name__} {str(path_or_dict)[:40]!r}")
    try:
        return _from_mapping(cfg, name)
    except ConfigError as err:
        raise ConfigError(f"{source}: {err}") from None


def _from_mapping(cfg: Mapping[str, Any], name: str | None) -> ModelConfig:
    model_type = cfg.get("model_type")
    if model_type is None:
        raise ConfigError(f"no model_type key; a Hugging Face config.json names its family there (supported: "
                          f"{', '.join(supported_model_types())})")
    if not isinstance(model_type, str) or model_type not in _FAMILIES:
        raise ConfigError(f"unsupported model_type {model_type!r}; supported: {', '.join(supported_model_types())}")
    check_keys(cfg)
    fields = _FAMILIES[model_type](cfg, lambda key: _require(cfg, key, model_type))
    name = name or cfg.get("_name_or_path") or model_type
    return ModelConfig(name=str(name), **fields)


def load_config_file(path: str | os.PathLike[str]) -> ModelConfig:
    """A JSON file that is either a Hugging Face `config.json` (has `model_type`) or a coda ModelConfig.

    Raises:
        ConfigError: see `from_hf_config` and `ModelConfig.from_dict`; a file with Hugging Face
            keys but no `model_type` is told so.
    """
    path = Path(path)
    data = read_json_object(path, "model config")
    if "model_type" in data:
        return _from_file_mapping(data, path)
    coda_fields = {f.name for f in dataclasses.fields(ModelConfig)}
    if not set(data) <= coda_fields and set(data) & HF_KEYS:
        raise ConfigError(f"{path}: no model_type key; a Hugging Face config.json names its family there "
                          f"(supported: {', '.join(supported_model_types())}); a coda model file has the keys "
                          f"of ModelConfig ({', '.join(sorted(coda_fields))})")
    return ModelConfig.from_dict(data, source=str(path))


def _from_file_mapping(data: Mapping[str, Any], path: Path) -> ModelConfig:
    try:
        return _from_mapping(data, path.stem)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from None
