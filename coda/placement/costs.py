"""Per-layer costs of training: compute time, collectives, parameters, FLOPs, activation bytes.

The layer chain is `embedding, block x l, head` (`coda.models.build`). For one choice of
(model, device, tp, micro-batch b, sequence s, dtype, sequence parallelism, attention kernel)
`layer_profile` times the forward and backward graph of each distinct layer once, with a
pluggable *layer timer*:

- GPUs: `predictor_layer_time`, the sum of the predictor's op latencies (a GPU runs one kernel
  at a time in eager execution; collectives are timed by the cluster, not here);
- accelerators: `IlpLayerTime`, the makespan of the on-chip ILP schedule (`coda.ilp.schedule`).

Activation memory follows Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large
Transformer Models", section 4), written per tensor so that it also covers GQA and gated MLPs.
At 2-byte activations and 1-byte dropout masks, per block (a = heads, t = tp):

    no recompute, no SP:   s*b*h*(10 + 24/t + 5*a*s/(h*t))
    no recompute, SP:      s*b*h*(34 + 5*a*s/h) / t
    selective recompute:   the 5*a*s^2*b attention-score term is dropped (recomputed)
    full recompute:        2*s*b*h (the block input), / t with SP

The 10*s*b*h replicated part: two LayerNorm inputs (4), QKV input (2), MLP input (2), two
dropout masks (2); the 24/t part: Q, K, V and the output-projection input (8), the MLP-up
output and the activation output (16 for a 4h GELU MLP). With fused (FlashAttention) kernels
the score matrix is never stored, so the `5*a*s/h` term is absent in every mode. Bytes scale
by `dtype_bytes / 2`. The head stores its LayerNorm and projection inputs (4*s*b*h) and the
fp32 logits (4*s*b*V/t); the embedding its output dropout mask (s*b*h) (section 4.3).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from coda.arch.device import Device
from coda.caches import lru
from coda.errors import ConfigError
from coda.models.builder import build
from coda.models.config import BlockKind, ModelConfig
from coda.models.graph import OpGraph
from coda.placement.flops import hardware_flops, model_flops
from coda.placement.layout import Layout
from coda.units import dtype_bytes

log = logging.getLogger(__name__)

LayerTimer = Callable[[OpGraph, Any], float]
# Ops that selective recomputation re-runs (Korthikanti et al. 2022, section 5: the
# "core attention" after the QKV projection and before the output projection).
ATTENTION_CORE = ("attention", "attn_scores", "attn_scale_mask", "attn_softmax", "attn_dropout", "attn_context")


@dataclass(frozen=True)
class PredictorLayerTime:
    """GPU layer time: the predictor's latencies of the graph's compute ops, summed (kernels run
    back to back; collectives excluded). `many` times several graphs in one vectorised call."""

    def __call__(self, graph: OpGraph, device: Any) -> float:
        return self.many([graph], device)[0]

    def many(self, graphs: list[OpGraph], device: Any) -> list[float]:
        from coda.predictor import op_latencies

        ops = [op for g in graphs for op in g.nodes]
        times = iter(op_latencies(ops, device)) if ops else iter(())
        return [float(sum(next(times) for _ in range(g.number_of_nodes()))) for g in graphs]


predictor_layer_time = PredictorLayerTime()


@dataclass(frozen=True)
class IlpLayerTime:
    """Accelerator layer time: makespan of the on-chip operator schedule (`coda.ilp.schedule`).

    Attributes:
        time_limit_s: ILP wall-time budget per layer graph.
        gap: relative optimality gap at which the solver may stop.
    """

    time_limit_s: float = 5.0
    gap: float = 0.01

    def __call__(self, graph: OpGraph, device: Any) -> float:
        from coda.ilp import schedule

        if graph.number_of_nodes() == 0:
            return 0.0
        return float(schedule(graph, device, time_limit_s=self.time_limit_s, gap=self.gap).makespan_s)

    def many(self, graphs: list[OpGraph], device: Any) -> list[float]:
        return [self(g, device) for g in graphs]


def time_graphs(layer_time: LayerTimer, graphs: list[OpGraph], device: Any) -> list[float]:
    """Times of several graphs, in one batch when the timer supports it (`many`)."""
    many = getattr(layer_time, "many", None)
    if many is not None:
        return list(many(graphs, device))
    return [float(layer_time(g, device)) if g.number_of_nodes() else 0.0 for g in graphs]


def default_layer_time(device: Any) -> LayerTimer:
    """The layer-time source for a device: ILP makespan on an `Accelerator` (the predictor sum
    if `coda.ilp` is not importable, logged), predictor sum otherwise."""
    from coda.arch.accelerators import Accelerator

    if isinstance(device, Accelerator):
        try:
            import coda.ilp  # noqa: F401
        except ImportError as err:  # the ILP package is optional for placement
            log.warning("coda.ilp unavailable (%s); accelerator layer times fall back to the predictor sum", err)
            return predictor_layer_time
        return IlpLayerTime()
    return predictor_layer_time


def device_memory_bytes(device: Device) -> float:
    """HBM capacity of a GPU or an Accelerator."""
    mem = getattr(device, "hbm_bytes", None)
    if mem is None:
        raise ConfigError(f"device {device!r} has no memory capacity; pass a GPU or an Accelerator "
                          "(e.g. cluster('tpuv4-pod', n, device=tpuv4_like()))")
    return float(mem)


def device_peak_flops(device: Device, dtype: str) -> float:
    """Dense peak FLOP/s of the device for `dtype` (GPU: tensor cores, else CUDA cores for fp32)."""
    from coda.arch.gpus import GPU

    if isinstance(device, GPU):
        if dtype == "fp32" and device.tensor_flops_per_s.fp32 is None:
            return device.peak_flops("fp32", tensor_core=False)
        return device.peak_flops(dtype)
    peak = getattr(device, "peak_flops", None)
    if peak is None:
        raise ConfigError(f"device {device!r} has no peak FLOP/s")
    return float(peak() if callable(peak) else peak)


@dataclass(frozen=True)
class LayerProfile:
    """Costs of the distinct layers on one device, per micro-batch: the embedding, each distinct
    block (`ModelConfig.block_kinds` order; one for most models) and the head, in that order.

    Attributes:
        fwd_s, bwd_s: compute time of the forward / backward graph (collectives excluded).
        selective_s: forward time of the attention core (re-run by selective recomputation).
        fwd_coll, bwd_coll: the graph's tensor-parallel collectives as (kind, n_bytes) pairs (nccl-tests sizes).
        ep_fwd_coll, ep_bwd_coll: its expert-parallel all-to-alls, likewise (MoE blocks with ep > 1).
        params: parameters held on one device (after the tensor- and expert-parallel split).
        expert_params: the part of `params` in expert weights (ZeRO shards them over tp*cp*dp/ep devices).
        fwd_flops, bwd_flops, selective_flops: hardware FLOPs per device, what the kernels execute
            (`coda.placement.flops.hardware_flops`).
        model_fwd_flops: model FLOPs of the forward per device (`coda.placement.flops.model_flops`;
            a training step counts 3x).
        model_flops_per_micro_batch: model FLOPs of one micro-batch through the whole chain, forward
            and backward, on one device of each stage summed over the stages:
            `3 * sum(repeats * model_fwd_flops)`.
        table_params: one device's share of the token-embedding table (the copy a last pipeline
            stage keeps when embeddings are tied).
        adam_s_per_param: optimizer step time per parameter (mixed-precision Adam graph).
    """

    fwd_s: tuple[float, ...]
    bwd_s: tuple[float, ...]
    selective_s: tuple[float, ...]
    fwd_coll: tuple[tuple[tuple[str, float], ...], ...]
    bwd_coll: tuple[tuple[tuple[str, float], ...], ...]
    params: tuple[float, ...]
    fwd_flops: tuple[float, ...]
    bwd_flops: tuple[float, ...]
    selective_flops: tuple[float, ...]
    table_params: float
    adam_s_per_param: float
    ep_fwd_coll: tuple[tuple[tuple[str, float], ...], ...] = ((), (), ())
    ep_bwd_coll: tuple[tuple[tuple[str, float], ...], ...] = ((), (), ())
    expert_params: tuple[float, ...] = (0.0, 0.0, 0.0)
    model_fwd_flops: tuple[float, ...] = ()
    model_flops_per_micro_batch: float = 0.0

    def __post_init__(self) -> None:
        if len(self.model_fwd_flops) != len(self.fwd_flops):
            raise ValueError("LayerProfile.model_fwd_flops needs one entry per distinct layer, like fwd_flops")


def _core(graph: OpGraph) -> OpGraph:
    """The attention-core subgraph of a block (empty for other layers)."""
    return graph.subgraph([op for op in graph.nodes if op.name in ATTENTION_CORE]).copy()


EP_COLLECTIVES = ("all_to_all",)  # expert-parallel token exchange; every other collective is tensor-parallel


def graph_collectives(graph: OpGraph, expert: bool | None = None) -> tuple[tuple[str, float], ...]:
    """The (kind, n_bytes) of the collective ops in `graph`, sorted: all of them, or only the
    expert-parallel (`expert=True`) or the tensor-parallel ones (`expert=False`)."""
    return tuple(sorted((str(op.dims["collective"]), float(op.dims["n_bytes"])) for op in graph.nodes
                        if op.kind == "collective"
                        and (expert is None or (op.dims["collective"] in EP_COLLECTIVES) == expert)))


def _expert_params(graph: OpGraph) -> float:
    return sum(op.param_bytes / dtype_bytes(op.dtype) for op in graph.nodes if op.name.startswith("expert_"))


@dataclass(frozen=True)
class GraphOptions:
    """How the framework builds a layer's graphs: the `coda.models.build` keywords that are not
    sizes (`Software.graph_options`)."""

    attention: str = "fused"
    dropout: bool = False
    attention_kernel: str = "fa2"


@dataclass(frozen=True, eq=False)
class LayerGraphs:
    """The graphs one layer profile times: forward, backward and attention cores (one per distinct
    layer each), the block optimizer."""

    fwd: tuple[OpGraph, ...]
    bwd: tuple[OpGraph, ...]
    cores: tuple[OpGraph, ...]
    block_opt: OpGraph

    def all(self) -> list[OpGraph]:
        return [*self.fwd, *self.bwd, *self.cores, self.block_opt]


def layer_graphs(cfg: ModelConfig, layout: Layout, seq_len: int, dtype: str, options: GraphOptions) -> LayerGraphs:
    """The operator graphs a layer profile of `cfg` under `layout` times (`LayerGraphs.all()` in a fixed order).

    Args:
        cfg: the model.
        layout: the parallel layout the graphs are built for (its micro-batch is the graphs' batch).
        seq_len: tokens per sequence.
        dtype: compute dtype of the graphs, e.g. ``"bf16"``.
        options: graph-building options (`GraphOptions`, from the software description).

    Returns:
        One forward and one backward graph per distinct layer (embedding, blocks, head), their
        attention cores (what selective recompute replays) and the block optimizer's graph.
    """
    kw: dict[str, Any] = dict(layout=layout, dtype=dtype, **asdict(options))
    mb = layout.micro_batch
    fwd = tuple(g for g, _ in build(cfg, "forward", mb, seq_len, **kw).layers)
    bwd = tuple(g for g, _ in build(cfg, "backward", mb, seq_len, **kw).layers)
    opt = build(cfg, "optimizer", mb, seq_len, **kw).layers[1][0]
    return LayerGraphs(fwd, bwd, tuple(_core(g) for g in fwd), opt)


def _make_profile(cfg: ModelConfig, tp: int, dtype: str, gr: LayerGraphs, times: list[float]) -> LayerProfile:
    n = len(gr.fwd)
    f_t, b_t, c_t, opt_t = times[0:n], times[n:2 * n], times[2 * n:3 * n], times[3 * n]
    block_params = gr.fwd[1].param_count()
    windows = (None, *(k.window for k in cfg.block_kinds), None)  # the embedding and the head attend to nothing

    def triple(fn: Callable[[int], Any]) -> tuple[Any, ...]:  # one entry per distinct layer
        return tuple(fn(i) for i in range(n))

    model_fwd = triple(lambda i: model_flops(gr.fwd[i], cfg.causal, windows[i]))

    return LayerProfile(
        fwd_s=triple(lambda i: f_t[i]), bwd_s=triple(lambda i: b_t[i]), selective_s=triple(lambda i: c_t[i]),
        fwd_coll=triple(lambda i: graph_collectives(gr.fwd[i], expert=False)),
        bwd_coll=triple(lambda i: graph_collectives(gr.bwd[i], expert=False)),
        ep_fwd_coll=triple(lambda i: graph_collectives(gr.fwd[i], expert=True)),
        ep_bwd_coll=triple(lambda i: graph_collectives(gr.bwd[i], expert=True)),
        expert_params=triple(lambda i: _expert_params(gr.fwd[i])),
        params=triple(lambda i: gr.fwd[i].param_count()),
        fwd_flops=triple(lambda i: hardware_flops(gr.fwd[i])), bwd_flops=triple(lambda i: hardware_flops(gr.bwd[i])),
        selective_flops=triple(lambda i: hardware_flops(gr.cores[i])),
        model_fwd_flops=model_fwd,
        model_flops_per_micro_batch=3.0 * sum(k * f for k, f in zip((1, *cfg.block_counts, 1), model_fwd)),
        table_params=float(math.ceil(cfg.vocab_size / tp) * (cfg.embed_dim or cfg.hidden)),
        adam_s_per_param=opt_t / block_params if block_params else 0.0)


class ProfileKey:
    """Everything a layer profile depends on besides its graph layout: (model, device, seq_len,
    dtype, graph options, layer timer), hashed once. A `CostModel` builds it once, so a profile
    lookup hashes two small values instead of the model's and the device's every field. Pickling
    rebuilds it (string hashes differ between processes)."""

    __slots__ = ("_hash", "parts")

    def __init__(self, parts: tuple[Any, ...]) -> None:
        self.parts = parts
        self._hash = hash(parts)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if self is other:
            return True
        return isinstance(other, ProfileKey) and self._hash == other._hash and self.parts == other.parts

    def __reduce__(self) -> tuple[Any, ...]:
        return ProfileKey, (self.parts,)


def profile_key(cfg: ModelConfig, device: Any, seq_len: int, dtype: str, options: GraphOptions,
                layer_time: LayerTimer) -> ProfileKey:
    """The `ProfileKey` of these arguments."""
    return ProfileKey((cfg, device, seq_len, dtype, options, layer_time))


_profiles = lru("placement.profiles", 4096)


def clear_profiles() -> None:
    """Empty the layer-profile cache (`coda.clear_caches()` empties every cache)."""
    _profiles.cache_clear()


def layer_profiles(cfg: ModelConfig, device: Any, layouts: list[Layout], seq_len: int, dtype: str,
                   options: GraphOptions, layer_time: LayerTimer, key: ProfileKey | None = None) -> list[LayerProfile]:
    """Profiles for several layouts (only their `Layout.graph_layout` fields matter); the missing
    ones are timed in one batch (`time_graphs`) and cached on all arguments (`key`, their
    `ProfileKey` if the caller has it, and the graph layout)."""
    pkey = key or profile_key(cfg, device, seq_len, dtype, options, layer_time)
    full = [(pkey, lay.graph_layout) for lay in layouts]
    missing = list(dict.fromkeys(k for k in full if _profiles.get(k) is None))
    if missing:
        graphs = [layer_graphs(cfg, k[1], seq_len, dtype, options) for k in missing]
        times = time_graphs(layer_time, [g for gr in graphs for g in gr.all()], device)
        per = 3 * len(cfg.block_kinds) + 7  # graphs of one profile: 3 per distinct layer and the optimizer
        for i, (k, gr) in enumerate(zip(missing, graphs)):
            _profiles.put(k, _make_profile(cfg, k[1].tp, dtype, gr, times[per * i: per * (i + 1)]))
    return [_profiles.get(k) for k in full]


def cached_profile(key: ProfileKey, layout: Layout) -> LayerProfile | None:
    """The cached profile of `layout` under `key`, or None (nothing is computed)."""
    return _profiles.get((key, layout.graph_layout))  # type: ignore[no-any-return]


def layer_profile_of(cfg: ModelConfig, device: Any, layout: Layout, seq_len: int, dtype: str, options: GraphOptions,
                     layer_time: LayerTimer, key: ProfileKey | None = None) -> LayerProfile:
    """The (cached) profile of one layout: `layer_profiles` for a single layout, with a direct cache hit."""
    pkey = key or profile_key(cfg, device, seq_len, dtype, options, layer_time)
    hit = _profiles.get((pkey, layout.graph_layout))
    if hit is not None:
        return hit  # type: ignore[no-any-return]
    return layer_profiles(cfg, device, [layout], seq_len, dtype, options, layer_time, pkey)[0]


def layer_profile(cfg: ModelConfig, device: Any, tp: int, micro_batch: int, seq_len: int, dtype: str,
                  sequence_parallel: bool, options: GraphOptions, layer_time: LayerTimer, cp: int = 1,
                  ep: int = 1) -> LayerProfile:
    """Time and size the embedding, block and head of `cfg` once (cached on all arguments).

    Args:
        cfg: the model.
        device: a GPU or an Accelerator (what `layer_time` understands).
        tp: tensor-parallel width t.
        micro_batch: sequences per micro-batch b.
        seq_len: tokens per sequence s.
        dtype: element type of weights and activations.
        sequence_parallel: Megatron sequence parallelism.
        options: attention implementation and kernel, dropout (`GraphOptions`).
        layer_time: the layer timer (`predictor_layer_time`, `IlpLayerTime`, ...).
        cp: context-parallel width: the graphs of one device's `seq_len/cp` tokens (`coda.models.build`).
        ep: expert-parallel width: the device's E/ep experts and their all-to-alls (`coda.models.build`).

    Raises:
        ConfigError: from the layout or the graph builder (t not dividing heads, tokens not divisible
            by t with SP, ...).
    """
    layout = Layout(tp=tp, micro_batch=micro_batch, sequence_parallel=sequence_parallel, cp=cp, ep=ep)
    return layer_profiles(cfg, device, [layout], seq_len, dtype, options, layer_time)[0]


def block_activation_bytes(cfg: ModelConfig, seq_len: int, micro_batch: int, tp: int, sequence_parallel: bool,
                           recompute: str, attention: str, dtype: str,
                           gemm_dtype: str | None = None, kind: BlockKind | None = None) -> tuple[float, float]:
    """Activation bytes one block keeps per in-flight micro-batch, and its full working set.

    Korthikanti et al. 2022, section 4.1 (see the module docstring), per tensor:
    replicated `10*s*b*h` (/t with SP); split by t: `s*b*(4*q + 4*kv + k*(2*f*(2 if gated else 1) + 2*f))`
    with q = a*d, kv = g*d, f the FFN width and k experts per token; attention scores `5*a*s^2*b / t`
    for unfused attention only; MoE blocks add the `2*k*s*b*h` routed token copies the expert
    GEMMs read (replicated, /t with SP) and, with shared experts of width f_s, their MLP's
    `s*b*(2*f_s*(2 if gated else 1) + 2*f_s)` (split by t); a dense block of an MoE model (`kind`,
    default the model's MoE block) has one MLP of width f_d. For GPT (q = kv = h, f = 4h) this is
    `s*b*h*(10 + 24/t + 5*a*s/(h*t))`.

    With FP8 GEMMs (`gemm_dtype="fp8"`) the inputs of the four block GEMMs (QKV, output
    projection, MLP up and down) are stashed as their FP8 casts, as Transformer Engine does: a
    factor `r = bytes(gemm_dtype) / bytes(dtype)` on those tensors.

    Returns:
        (stored, full): bytes stashed for the backward pass under `recompute`, and bytes with
        no recomputation (what a recomputed block materialises again during its backward).
    """
    s, b, t, h = seq_len, micro_batch, tp, cfg.hidden
    scale = dtype_bytes(dtype) / 2
    r = dtype_bytes(gemm_dtype or dtype) / dtype_bytes(dtype)
    moe = cfg.is_moe if kind is None else kind.moe
    k = cfg.experts_per_token if moe else 1
    # MoE: the k routed copies of each token that the expert GEMMs read are stashed too (the
    # permuted input of the grouped GEMM, in its FP8 cast under FP8), like the MLP input
    routed = 2.0 * r * k if moe else 0.0
    replicated = (6.0 + 4.0 * r + routed) * s * b * h / (t if sequence_parallel else 1)

    def mlp(f: int) -> float:  # an MLP of width f: up-projection output (+ gate), activation output
        return 2 * f * (2 if cfg.gated else 1) + 2 * r * f

    width = cfg.ffn_hidden if moe or not cfg.is_moe else cfg.dense_ffn_hidden
    split = s * b * ((2 + 2 * r) * cfg.q_dim + 4 * cfg.kv_dim + k * mlp(width)
                     + (mlp(cfg.shared_ffn_hidden) if moe else 0.0)) / t
    scores = 5.0 * cfg.n_heads * s * s * b / t if attention == "unfused" else 0.0
    full = (replicated + split + scores) * scale
    if recompute == "none":
        return full, full
    if recompute == "selective":
        return (replicated + split) * scale, full
    return 2.0 * s * b * h / (t if sequence_parallel else 1) * scale, full


def embedding_activation_bytes(cfg: ModelConfig, seq_len: int, micro_batch: int, tp: int, sequence_parallel: bool,
                               dtype: str) -> float:
    """The embedding's output dropout mask, `s*b*h` (/t with SP) (Korthikanti et al. section 4.3)."""
    return seq_len * micro_batch * cfg.hidden / (tp if sequence_parallel else 1) * dtype_bytes(dtype) / 2


def head_activation_bytes(cfg: ModelConfig, seq_len: int, micro_batch: int, tp: int, sequence_parallel: bool,
                          dtype: str) -> tuple[float, float]:
    """Head + loss: stored `4*s*b*h` (/t with SP, scaled by dtype) + fp32 logits `4*s*b*V/t`; and
    the transient fp32 logit gradient `4*s*b*V/t` (Korthikanti et al. section 4.3)."""
    s, b, t = seq_len, micro_batch, tp
    logits = 4.0 * s * b * math.ceil(cfg.vocab_size / t)
    stored = 4.0 * s * b * cfg.hidden / (t if sequence_parallel else 1) * dtype_bytes(dtype) / 2 + logits
    return stored, logits
