"""`ModelConfig`: the architecture of a decoder-only or encoder-only transformer LLM."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, NamedTuple

from coda.errors import ConfigError
from coda.fields import help_meta as _help

MLP_KINDS = ("gelu", "relu", "swiglu", "geglu")
NORM_KINDS = ("layernorm", "rmsnorm")
POSITION_KINDS = ("learned", "rope", "alibi")

MAX_LAYERS = 2**14
"""Most transformer blocks a model may have (the deepest trained, DeepNet, has 1,000)."""
MAX_WIDTH = 2**20
"""Widest hidden, FFN, head or latent dimension (published models stay below 2^17 = 131072)."""
MAX_HEADS = 2**16
"""Most attention heads (or experts) per layer (published models stay below 2^10)."""
MAX_VOCAB = 2**24
"""Largest vocabulary (published tokenizers stay below 2^19 = 524288)."""
MAX_SEQ_LEN = 2**27
"""Longest sequence, in tokens (published context windows stay below 2^24, 16M tokens)."""

SIZE_BOUNDS: dict[str, tuple[int, int, str]] = {
    "n_layers": (1, MAX_LAYERS, "layers"), "hidden": (1, MAX_WIDTH, ""), "n_heads": (1, MAX_HEADS, "heads"),
    "ffn_hidden": (1, MAX_WIDTH, ""), "vocab_size": (1, MAX_VOCAB, "tokens"),
    "max_seq_len": (1, MAX_SEQ_LEN, "tokens"), "n_experts": (1, MAX_HEADS, "experts"),
    "experts_per_token": (1, MAX_HEADS, "experts"), "n_kv_heads": (1, MAX_HEADS, "heads"),
    "head_dim": (1, MAX_WIDTH, ""), "embed_dim": (1, MAX_WIDTH, ""),
    "sliding_window": (1, MAX_SEQ_LEN, "tokens"), "shared_ffn_hidden": (0, MAX_WIDTH, ""),
    "dense_ffn_hidden": (0, MAX_WIDTH, ""), "kv_lora_rank": (0, MAX_WIDTH, ""),
    "q_lora_rank": (0, MAX_WIDTH, ""), "qk_rope_head_dim": (0, MAX_WIDTH, ""),
    "v_head_dim": (0, MAX_WIDTH, ""), "rotary_dim": (0, MAX_WIDTH, ""),
}
"""Each integer size field: (least, largest, what it counts). The upper bounds are physical
sanity limits far above any published model, so a typo (a vocabulary of 10^12) is refused."""


def size_problem(field_name: str, value: object, optional: bool = False, label: str | None = None,
                 lo: int | None = None) -> str | None:
    """Why `value` is not a valid `field_name` (see `SIZE_BOUNDS`), or None if it is.

    Args:
        field_name: a key of `SIZE_BOUNDS`.
        value: the value given (any type: a float, a bool or a string is refused).
        optional: None is allowed (the field then takes its default).
        label: the name to give in the message (default `field_name`; a loader passes its file's key).
        lo: replaces the field's least value (a file key where 0 means "none").
    """
    least, hi, unit = SIZE_BOUNDS[field_name]
    lo = least if lo is None else lo
    field_name = label or field_name
    if value is None and optional:
        return None
    span = f"[{lo}, 2^{hi.bit_length() - 1} = {hi}]{' ' + unit if unit else ''}"
    if isinstance(value, bool) or not isinstance(value, int):
        shown = repr(value) if len(repr(value)) < 40 else repr(value)[:37] + "..."
        kind = "a whole number" if lo else "a non-negative whole number"
        return (f"{field_name}={shown} ({type(value).__name__}) must be {kind} in {span}"
                + (" or null" if optional and label is None else ""))
    if value < lo:
        sign = "non-negative" if lo == 0 else "positive"
        return f"{field_name}={value} must be {sign}, in {span}; nearest valid: {lo}"
    if value > hi:
        return f"{field_name}={value} is outside {span} (a physical sanity limit); nearest valid: {hi}"
    return None


_OPTIONAL_SIZES = ("n_kv_heads", "head_dim", "embed_dim", "sliding_window")


def read_json_object(path: str | Path, what: str) -> dict[str, Any]:
    """The JSON object in the file `path` (`what` names the file's role in messages).

    Raises:
        ConfigError: a missing file, a directory, unreadable or non-UTF-8 bytes, malformed or
            truncated JSON, or JSON whose top level is not an object; the message names the file.
    """
    path = Path(path)
    try:
        is_dir, exists = path.is_dir(), path.exists()
    except (OSError, ValueError) as err:  # a name too long for a path, or with a NUL byte
        raise ConfigError(f"{what} path {str(path)[:80]!r} is not a valid path ({err})") from None
    if is_dir:
        raise ConfigError(f"{what} {path} is a directory; give the path of its config.json")
    if not exists:
        raise ConfigError(f"{what} {path} does not exist; check the path")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"cannot read {what} {path}: {err.strerror or err}") from None
    try:
        data = json.loads(raw.decode("utf-8-sig"))
    except UnicodeDecodeError as err:
        raise ConfigError(f"{what} {path} is not UTF-8 text (byte {err.object[err.start]:#04x} at offset {err.start}); "
                          "JSON files must be UTF-8: re-save it as UTF-8") from None
    except json.JSONDecodeError as err:
        raise ConfigError(f"{what} {path} is not valid JSON ({err.msg} at line {err.lineno} column {err.colno}); "
                          "is it truncated?") from None
    except RecursionError:
        raise ConfigError(f"{what} {path} nests JSON too deeply to be a config") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {path} holds a JSON {type(data).__name__}; it must be an object "
                          "({\"key\": value, ...})")
    return data


class BlockKind(NamedTuple):
    """What sets one transformer block apart from another of the same model."""

    window: int | None  # causal sliding window of its attention, None = all positions
    moe: bool  # its MLP is the routed experts' (else a dense MLP)


@dataclass(frozen=True)
class ModelConfig:
    """A transformer LLM, described by the sizes that decide its FLOPs, bytes and parameters.

    Dimension legend used throughout `coda.models`: l = `n_layers`, h = `hidden`,
    a = `n_heads`, g = `n_kv_heads`, d = `head_dim`, f = `ffn_hidden`, V = `vocab_size`,
    E = `n_experts`, k = `experts_per_token`, f_s = `shared_ffn_hidden`, W = `sliding_window`.

    Blocks differ at most in their attention window and in a dense MLP in place of the experts:
    `block_kinds` lists the distinct blocks and `block_pattern` which of them each layer is.

    `n_kv_heads` and `head_dim` may be left as None: they then resolve to `n_heads` and
    `hidden // n_heads` (which must divide). Invalid values raise `ConfigError` naming the field.
    """

    name: str = field(metadata=_help("model name"))
    n_layers: int = field(metadata=_help("transformer blocks, l"))
    hidden: int = field(metadata=_help("model width, h"))
    n_heads: int = field(metadata=_help("query heads, a"))
    ffn_hidden: int = field(metadata=_help("MLP inner width per expert, f"))
    vocab_size: int = field(metadata=_help("vocabulary, V"))
    max_seq_len: int = field(metadata=_help("longest sequence (learned position table size)"))
    n_kv_heads: int | None = field(default=None, metadata=_help("key/value heads, g (GQA/MQA); None = n_heads"))
    head_dim: int | None = field(default=None, metadata=_help("per-head width, d; None = hidden / n_heads"))
    mlp: str = field(default="gelu", metadata=_help("gelu | relu (two matrices) or swiglu | geglu (gated, three)"))
    norm: str = field(default="layernorm", metadata=_help("layernorm | rmsnorm"))
    position: str = field(default="learned", metadata=_help(
        "learned (table of max_seq_len x h) | rope | alibi (a per-head linear bias on the attention scores, no "
        "parameters: BLOOM, MPT)"))
    causal: bool = field(default=True, metadata=_help("causal (decoder) or bidirectional (encoder) attention"))
    tied_embeddings: bool = field(default=True, metadata=_help("LM head shares the input embedding"))
    bias: bool = field(default=True, metadata=_help("linear layers and norms have biases"))
    n_experts: int = field(default=1, metadata=_help("MoE experts per block, E (1 = dense)"))
    experts_per_token: int = field(default=1, metadata=_help("experts each token is routed to, k"))
    shared_ffn_hidden: int = field(default=0, metadata=_help(
        "MLP width of the shared experts every token runs beside its k routed ones, f_s (Qwen2-MoE); 0 = none"))
    embed_dim: int | None = field(default=None,
                                  metadata=_help("embedding width if projected to hidden (OPT-350m); None = hidden"))
    sliding_window: int | None = field(
        default=None, metadata=_help("causal sliding-window attention: each query attends to the W most recent "
                                     "positions, itself included (Mistral-7B-v0.1, Phi-3); None = all"))
    full_attention_layers: tuple[int, ...] = field(
        default=(), metadata=_help("layers (0-based) that attend to all positions although sliding_window is set "
                                   "(Gemma 2/3, GPT-OSS interleave the two); () = the window in every layer"))
    dense_layers: tuple[int, ...] = field(
        default=(), metadata=_help("layers (0-based) of an MoE model with a dense MLP of width dense_ffn_hidden "
                                   "instead of experts (GLM-4.5's first layers); () = every layer MoE"))
    dense_ffn_hidden: int = field(default=0, metadata=_help("MLP width of the dense_layers, f_d"))
    kv_lora_rank: int = field(default=0, metadata=_help(
        "multi-head latent attention (DeepSeek-V2/V3): width of the latent keys and values are compressed to, "
        "c_kv; 0 = standard attention"))
    q_lora_rank: int = field(default=0, metadata=_help("MLA: width of the latent queries, c_q; 0 = queries "
                                                       "projected directly"))
    qk_rope_head_dim: int = field(default=0, metadata=_help("MLA: rotary part of each query and key head, d_r "
                                                            "(head_dim is the rest, d)"))
    v_head_dim: int = field(default=0, metadata=_help("MLA: width of each value head, d_v"))
    rotary_dim: int = field(default=0, metadata=_help(
        "partial rotary embedding: RoPE rotates the first d_rot of each query and key head's d dimensions (GPT-J: "
        "64 of 256); 0 = all of them"))
    parallel_block: bool = field(default=False, metadata=_help(
        "attention and MLP read the same block input and add into one residual, x + attn(n1(x)) + mlp(n2(x)) "
        "(GPT-J, Falcon, PaLM); False = sequential, x' = x + attn(n1(x)), x' + mlp(n2(x'))"))
    norms_per_block: int = field(default=2, metadata=_help(
        "norms per block: 2, or 1 for a parallel block whose attention and MLP share one norm (GPT-J, Falcon-7B)"))
    embedding_norm: bool = field(default=False, metadata=_help(
        "a norm right after the token embedding (BLOOM's word_embeddings_layernorm)"))

    def __post_init__(self) -> None:
        """Validate in named steps: sizes, heads, options, layer lists, attention variants."""
        self._check_sizes()
        self._resolve_heads()
        self._check_options()
        for f, needs, what in (("full_attention_layers", self.sliding_window is not None, "sliding_window set"),
                               ("dense_layers", self.n_experts > 1 and self.dense_ffn_hidden > 0,
                                "an MoE model and dense_ffn_hidden > 0")):
            self._check_layer_list(f, needs, what)
        self._check_attention_variants()

    def _check_sizes(self) -> None:
        if not isinstance(self.name, str):
            raise ConfigError(f"ModelConfig.name={self.name!r} must be a string")
        for f in SIZE_BOUNDS:
            problem = size_problem(f, getattr(self, f), optional=f in _OPTIONAL_SIZES)
            if problem:
                raise ConfigError(f"{self.name}: {problem}")

    def _resolve_heads(self) -> None:
        """head_dim = hidden / n_heads and n_kv_heads = n_heads unless given; kv heads divide the heads."""
        if self.head_dim is None:
            if self.hidden % self.n_heads:
                raise ConfigError(
                    f"{self.name}: n_heads={self.n_heads} does not divide hidden={self.hidden}; "
                    "give head_dim explicitly or change n_heads"
                )
            object.__setattr__(self, "head_dim", self.hidden // self.n_heads)
        if self.n_kv_heads is None:
            object.__setattr__(self, "n_kv_heads", self.n_heads)
        assert self.n_kv_heads is not None
        if self.n_heads % self.n_kv_heads:
            raise ConfigError(f"{self.name}: n_kv_heads={self.n_kv_heads} must divide n_heads={self.n_heads}")
        if self.embed_dim == self.hidden:
            object.__setattr__(self, "embed_dim", None)

    def _check_options(self) -> None:
        """String options from their lists, booleans, shared experts only on MoE models."""
        for f, allowed in (("mlp", MLP_KINDS), ("norm", NORM_KINDS), ("position", POSITION_KINDS)):
            if not isinstance(getattr(self, f), str) or getattr(self, f) not in allowed:
                raise ConfigError(f"{self.name}: {f}={getattr(self, f)!r} must be one of {', '.join(allowed)}")
        for f in ("causal", "tied_embeddings", "bias", "parallel_block", "embedding_norm"):
            if not isinstance(getattr(self, f), bool):
                raise ConfigError(f"{self.name}: {f}={getattr(self, f)!r} must be true or false")
        if isinstance(self.norms_per_block, bool) or self.norms_per_block not in (1, 2):
            raise ConfigError(f"{self.name}: norms_per_block={self.norms_per_block!r} must be 1 or 2")
        if self.norms_per_block == 1 and not self.parallel_block:
            raise ConfigError(f"{self.name}: norms_per_block=1 needs parallel_block=True (a sequential block "
                              "normalises the attention output before its MLP); set both, or use 2")
        if self.rotary_dim and (self.position != "rope" or self.rotary_dim > (self.head_dim or 0)
                                or self.rotary_dim % 2):
            raise ConfigError(f"{self.name}: rotary_dim={self.rotary_dim} must be an even number in [2, head_dim="
                              f"{self.head_dim}] with position='rope' (0 = the whole head)")
        if self.shared_ffn_hidden and self.n_experts == 1:
            raise ConfigError(f"{self.name}: shared_ffn_hidden={self.shared_ffn_hidden} needs an MoE model "
                              "(n_experts > 1); a dense model's MLP is ffn_hidden")

    def _check_layer_list(self, f: str, needs: bool, what: str) -> None:
        """A list of layer indices (full-attention or dense layers): increasing, in range, not all."""
        layers = getattr(self, f)
        if not isinstance(layers, (list, tuple)):
            raise ConfigError(f"{self.name}: {f}={layers!r} must be a list of layer indices in "
                              f"[0, {self.n_layers})")
        if isinstance(layers, list):
            object.__setattr__(self, f, layers := tuple(layers))  # from JSON
        if layers and (not needs or any(isinstance(i, bool) or not isinstance(i, int) for i in layers)
                       or list(layers) != sorted(set(layers)) or layers[0] < 0
                       or layers[-1] >= self.n_layers or len(layers) == self.n_layers):
            raise ConfigError(f"{self.name}: {f}={layers!r} must be increasing layer indices in "
                              f"[0, {self.n_layers}), not all of them, with {what}")

    def _check_attention_variants(self) -> None:
        """Multi-head latent attention's sizes, sliding windows only causal, experts per token."""
        if self.mla and (not self.qk_rope_head_dim or not self.v_head_dim or self.n_kv_heads != self.n_heads):
            raise ConfigError(f"{self.name}: multi-head latent attention (kv_lora_rank={self.kv_lora_rank}) needs "
                              "qk_rope_head_dim, v_head_dim and n_kv_heads = n_heads")
        if not self.mla and (self.q_lora_rank or self.qk_rope_head_dim or self.v_head_dim):
            raise ConfigError(f"{self.name}: q_lora_rank, qk_rope_head_dim and v_head_dim describe multi-head latent "
                              "attention; set kv_lora_rank too")
        if self.sliding_window is not None and not self.causal:
            raise ConfigError(f"{self.name}: sliding_window needs causal attention (a bidirectional window is not "
                              "modelled)")
        if self.experts_per_token > self.n_experts:
            raise ConfigError(
                f"{self.name}: experts_per_token={self.experts_per_token} exceeds n_experts={self.n_experts}"
            )

    # -- derived sizes ---------------------------------------------------------------------

    @property
    def mla(self) -> bool:
        """Multi-head latent attention (`kv_lora_rank` > 0)."""
        return self.kv_lora_rank > 0

    @property
    def q_dim(self) -> int:
        """Width of all query heads, a*d (equals h unless head_dim is set independently; MLA:
        a*(d + d_r))."""
        return self.n_heads * (self.head_dim + self.qk_rope_head_dim)  # type: ignore[operator]

    @property
    def kv_dim(self) -> int:
        """Width of all key (or value) heads, g*d (MLA: the mean of key and value heads,
        a*(d + d_r + d_v)/2)."""
        if self.mla:
            return self.n_heads * (self.head_dim + self.qk_rope_head_dim + self.v_head_dim) // 2  # type: ignore
        return self.n_kv_heads * self.head_dim  # type: ignore[operator]

    def layer_kind(self, i: int) -> BlockKind:
        """The block of layer `i`: its attention window and whether its MLP is the MoE one."""
        return BlockKind(None if i in self.full_attention_layers else self.sliding_window,
                         self.is_moe and i not in self.dense_layers)

    @cached_property
    def block_kinds(self) -> tuple[BlockKind, ...]:
        """The distinct blocks, in the order their first layer comes: one for most models; more
        when some layers attend fully (`full_attention_layers`) or are dense (`dense_layers`)."""
        return tuple(dict.fromkeys(self.layer_kind(i) for i in range(self.n_layers)))

    @cached_property
    def block_pattern(self) -> tuple[int, ...]:
        """For each layer, its index into `block_kinds`."""
        index = {k: j for j, k in enumerate(self.block_kinds)}
        return tuple(index[self.layer_kind(i)] for i in range(self.n_layers))

    @cached_property
    def block_counts(self) -> tuple[int, ...]:
        """Layers of each distinct block, in `block_kinds` order."""
        pattern = self.block_pattern
        return tuple(pattern.count(j) for j in range(len(self.block_kinds)))

    @property
    def is_moe(self) -> bool:
        return self.n_experts > 1

    @property
    def gated(self) -> bool:
        """Gated MLP (SwiGLU, GeGLU): gate and up projections, then down."""
        return self.mlp in ("swiglu", "geglu")

    @property
    def norm_params(self) -> int:
        """Parameters of one norm: gain (+ bias for LayerNorm)."""
        return 2 * self.hidden if self.norm == "layernorm" else self.hidden

    # -- parameter counts --------------------------------------------------------------------

    def attention_params(self) -> int:
        """Q, K, V and output projections: `h*(a*d) + 2*h*(g*d) + (a*d)*h` (+ biases). MLA (DeepSeek-V2,
        Liu et al. 2024, section 2.1.2): queries `h*c_q + c_q + c_q*a*(d + d_r)` (or `h*a*(d + d_r)`
        without c_q), the latent `h*(c_kv + d_r) + c_kv` (with its norm), its up-projection to keys
        and values `c_kv*a*(d + d_v)`, the output `a*d_v*h`."""
        if self.mla:
            h, a, d, r, v, cq, ckv = (self.hidden, self.n_heads, self.head_dim, self.qk_rope_head_dim,
                                      self.v_head_dim, self.q_lora_rank, self.kv_lora_rank)
            assert d is not None
            q = h * cq + cq + cq * a * (d + r) if cq else h * a * (d + r)
            return q + h * (ckv + r) + ckv + ckv * a * (d + v) + a * v * h
        h, q, kv = self.hidden, self.q_dim, self.kv_dim
        n = h * q + 2 * h * kv + q * h
        if self.bias:
            n += q + 2 * kv + h
        return n

    def mlp_params(self, width: int | None = None) -> int:
        """One expert's MLP of inner width f (default `ffn_hidden`): `2*h*f` (gelu/relu) or
        `3*h*f` (gated: swiglu, geglu), plus biases."""
        h, f = self.hidden, self.ffn_hidden if width is None else width
        n = (3 if self.gated else 2) * h * f
        if self.bias:
            n += (2 if self.gated else 1) * f + h
        return n

    def block_params(self, kind: BlockKind | None = None) -> int:
        """One transformer block (default: an MoE one in an MoE model): attention, `norms_per_block` norms and
        either E expert MLPs, the router (`h*E`) and the shared experts' MLP of width f_s (if any),
        or, in a dense layer of an MoE model, one MLP of width f_d."""
        moe = self.is_moe if kind is None else kind.moe
        if not moe:
            mlp = self.mlp_params(self.dense_ffn_hidden if self.is_moe else None)
        else:
            shared = self.mlp_params(self.shared_ffn_hidden) if self.shared_ffn_hidden else 0
            mlp = self.n_experts * self.mlp_params() + self.hidden * self.n_experts + shared
        return self.attention_params() + mlp + self.norms_per_block * self.norm_params

    def embedding_params(self) -> int:
        """Token table `V*e` (e = embed_dim or h), learned positions `max_seq_len*h`, input/output projections,
        the embedding norm (BLOOM). RoPE and ALiBi have no parameters."""
        e = self.embed_dim or self.hidden
        n = self.vocab_size * e
        if self.position == "learned":
            n += self.max_seq_len * self.hidden
        if self.embed_dim is not None:
            n += 2 * e * self.hidden  # project_in and project_out (OPT-350m), no bias
        if self.embedding_norm:
            n += self.norm_params
        return n

    def head_params(self) -> int:
        """Final norm plus the LM head (`V*e` unless tied to the embedding)."""
        return self.norm_params + (0 if self.tied_embeddings else self.vocab_size * (self.embed_dim or self.hidden))

    def param_count(self) -> int:
        """Exact parameter count: embeddings + l blocks + final norm + untied LM head.

        Not modelled (each under 0.01% of the total for the presets): BERT's token-type
        table and pooler, OPT's position offset of 2 rows.
        """
        blocks = sum(n * self.block_params(k) for k, n in zip(self.block_kinds, self.block_counts))
        return self.embedding_params() + blocks + self.head_params()

    def active_param_count(self) -> int:
        """Parameters touched per token: with MoE only k of the E experts count."""
        moe_layers = self.n_layers - len(self.dense_layers) if self.is_moe else 0
        inactive = (self.n_experts - self.experts_per_token) * self.mlp_params() * moe_layers
        return self.param_count() - inactive

    # -- serialisation -----------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> ModelConfig:
        """Strict loader: unknown or missing keys raise `ConfigError` naming them."""
        if not isinstance(data, dict):
            raise ConfigError(f"{source}: a model config must be a JSON object of ModelConfig fields, got "
                              f"{type(data).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(map(str, data)) - set(fields))
        if unknown:
            raise ConfigError(
                f"{source}: unknown ModelConfig key(s) {', '.join(unknown)}; allowed: {', '.join(fields)}"
            )
        required = [n for n, f in fields.items() if f.default is dataclasses.MISSING]
        missing = [n for n in required if n not in data]
        if missing:
            raise ConfigError(f"{source}: missing ModelConfig key(s) {', '.join(missing)}")
        try:
            return cls(**data)
        except ConfigError as err:
            raise ConfigError(f"{source}: {err}") from None

    @classmethod
    def from_json(cls, path: str | Path) -> ModelConfig:
        """A coda ModelConfig JSON file (strict, see `from_dict`)."""
        return cls.from_dict(read_json_object(path, "model config"), source=str(path))

    def replace(self, **changes: Any) -> ModelConfig:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)
