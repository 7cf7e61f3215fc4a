"""Operator graphs: closed-form FLOPs, backward, tensor/sequence parallelism, decode, coverage."""

from pathlib import Path

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coda import models
from coda.errors import ConfigError
from coda.models import ModelConfig, build, from_hf_config

GEMMS = ("matmul", "attention")


def megatron_forward_flops(c: ModelConfig, b: int, s: int) -> float:
    """Narayanan et al. SC'21 eq. (3) forward part: 24*b*s*l*h^2*(1 + s/(6h)) + 2*b*s*h*V."""
    l, h, V = c.n_layers, c.hidden, c.vocab_size
    return 24 * b * s * l * h**2 * (1 + s / (6 * h)) + 2 * b * s * h * V


@pytest.mark.parametrize("name", ["gpt3-175b", "gpt2-xl", "megatron-18.4b", "bert-large"])
@pytest.mark.parametrize("attention", ["fused", "unfused"])
def test_forward_flops_closed_form(name, attention):
    c = models.get(name)
    b, s = 3, min(512, c.max_seq_len)
    g = build(c, "forward", b, s, attention=attention)
    assert g.flops(GEMMS) == megatron_forward_flops(c, b, s)


def test_swiglu_gqa_flops_closed_form():
    c = models.get("llama2-70b")
    b, s, l, h, f, V = 2, 1024, c.n_layers, c.hidden, c.ffn_hidden, c.vocab_size
    kv = c.kv_dim
    per_layer = 2 * b * s * (h * h + 2 * h * kv + h * h + 3 * h * f) + 4 * b * s * s * h
    assert build(c, "forward", b, s).flops(GEMMS) == l * per_layer + 2 * b * s * h * V


@pytest.mark.parametrize("attention", ["fused", "unfused"])
def test_backward_matmuls_twice_forward(attention):
    c = models.get("llama2-7b")
    fwd, bwd = build(c, "forward", 2, 256, attention=attention), build(c, "backward", 2, 256, attention=attention)
    assert bwd.flops(("matmul",)) == 2 * fwd.flops(("matmul",))
    if attention == "fused":  # FlashAttention-2 backward recomputes QK^T: 5 GEMMs for 2
        assert bwd.flops(("attention_bwd",)) == 2.5 * fwd.flops(("attention",))


@pytest.mark.parametrize("t", [1, 8])
def test_dropout_adds_mask_traffic_only(t):
    """Megatron-style dropout (unfused attention): an attention-probability dropout of b*a/t*s^2
    elements (reads 2 B, writes 2 B + a 1-byte mask; backward reads dY and the mask) and the two
    residual adds become dropout-adds (+1 mask byte per element); GEMM FLOPs are unchanged."""
    c = models.get("megatron-18.4b")
    b, s, e = 2, 512, 2
    kw = dict(tp=t, dtype="fp16", attention="unfused")
    off = {ph: dict(build(c, ph, b, s, **kw).layers)  for ph in ("forward", "backward")}
    on = {ph: dict(build(c, ph, b, s, dropout=True, **kw).layers) for ph in ("forward", "backward")}
    (blk_off,), (blk_on,) = [[g for g in d if g.name == "block"] for d in (off["forward"], on["forward"])]
    n_attn, n_res = b * (c.n_heads // t) * s * s, b * s * c.hidden
    assert blk_on.flops(GEMMS) == blk_off.flops(GEMMS)
    assert blk_on.by_name("attn_dropout").bytes == n_attn * (2 * e + 1)
    assert blk_on.bytes() - blk_off.bytes() == pytest.approx(n_attn * (2 * e + 1) + 2 * n_res)
    (bwd_off,), (bwd_on,) = [[g for g in d if g.name.startswith("block")] for d in (off["backward"], on["backward"])]
    assert bwd_on.bytes() - bwd_off.bytes() == pytest.approx(n_attn * (2 * e + 1) + 2 * n_res)
    with pytest.raises(ConfigError, match="dropout"):
        build(c, "prefill", b, s, dropout=True)


def test_backward_separates_dgrad_and_wgrad():
    g = build(models.get("gpt2"), "backward", 1, 64)
    block = dict(g.layers[1:2])
    names = {op.name for op in list(block)[0].nodes}
    assert {"qkv.dgrad", "qkv.wgrad", "mlp_down.dgrad", "mlp_down.wgrad"} <= names
    # wgrad is a leaf: nothing waits for a weight gradient inside the layer
    bg = list(block)[0]
    assert bg.out_degree(bg.by_name("qkv.wgrad")) == 0


@pytest.mark.parametrize("t", [2, 4, 8])
def test_tp_divides_matmul_flops_and_adds_allreduces(t):
    c = models.get("gpt3-175b")
    b, s = 1, 2048
    block1 = build(c, "forward", b, s).layers[1][0]
    blockt = build(c, "forward", b, s, tp=t).layers[1][0]
    assert blockt.flops(GEMMS) * t == block1.flops(GEMMS)
    colls = [op for op in blockt.nodes if op.kind == "collective"]
    assert sorted(op.dims["collective"] for op in colls) == ["all_reduce", "all_reduce"]
    assert all(op.dims["n_bytes"] == b * s * c.hidden * 2 and op.dims["group"] == t for op in colls)
    # backward: the conjugate all-reduces of the column-parallel inputs
    bwd = build(c, "backward", b, s, tp=t).layers[1][0]
    assert sum(op.kind == "collective" for op in bwd.nodes) == 2


def test_tp_head_and_embedding_split_vocab():
    c = models.get("gpt3-175b")
    g1, g8 = build(c, "forward", 1, 2048), build(c, "forward", 1, 2048, tp=8)
    assert g8.layers[2][0].by_name("lm_head").flops * 8 == g1.layers[2][0].by_name("lm_head").flops * 50264 / 50257
    assert any(op.kind == "collective" for op in g8.layers[0][0].nodes)


def test_sequence_parallel_swaps_collectives_and_shrinks_norms():
    c = models.get("megatron-18.4b")
    b, s, t = 1, 2048, 8
    plain = build(c, "forward", b, s, tp=t).layers[1][0]
    sp = build(c, "forward", b, s, tp=t, sequence_parallel=True).layers[1][0]
    kinds = sorted(op.dims["collective"] for op in sp.nodes if op.kind == "collective")
    assert kinds == ["all_gather", "all_gather", "reduce_scatter", "reduce_scatter"]
    assert sp.by_name("ln1").flops * t == plain.by_name("ln1").flops
    assert sp.flops(GEMMS) == plain.flops(GEMMS)
    bwd = build(c, "backward", b, s, tp=t, sequence_parallel=True).layers[1][0]
    assert sorted(op.dims["collective"] for op in bwd.nodes if op.kind == "collective") == kinds


def test_decode_kv_bytes_linear_in_context():
    c = models.get("llama2-7b")

    def attn_bytes(ctx):
        return build(c, "decode", 4, 1, context_len=ctx).layers[1][0].by_name("attention").bytes_read

    b1, b2, b3 = attn_bytes(1000), attn_bytes(2000), attn_bytes(3000)
    assert b3 - b2 == b2 - b1 > 0
    # the per-token slope is exactly the K and V rows of every head: 2 * b * g * d * bytes
    assert (b2 - b1) / 1000 == 2 * 4 * c.n_kv_heads * c.head_dim * 2


def test_gqa_shrinks_kv_bytes():
    c = models.get("llama2-70b")
    mha = c.replace(n_kv_heads=c.n_heads)

    def kv(cfg):
        op = build(cfg, "decode", 8, 1, context_len=4096).layers[1][0].by_name("attention")
        return op.bytes_read - 8 * cfg.n_heads * cfg.head_dim * 2  # minus Q

    assert kv(mha) / kv(c) == c.n_heads / c.n_kv_heads


def test_decode_one_token_per_sequence():
    c = models.get("llama3-8b")
    g = build(c, "decode", 16, 1, context_len=100)
    assert g.layers[1][0].by_name("qkv").dims["m"] == 16
    assert g.layers[2][0].by_name("lm_head").dims["m"] == 16


def test_optimizer_covers_every_parameter():
    c = models.get("llama2-7b")
    g = build(c, "optimizer", 1, 16)
    assert sum(op.dims["n_elements"] * n for op, n in g.ops()) == c.param_count()


def test_depth_does_not_add_layers():
    g = build(models.get("llama3.1-405b"), "forward", 1, 128)
    assert [(layer.name, n) for layer, n in g.layers] == [("embedding", 1), ("block", 126), ("head", 1)]


def _fixture_configs():
    d = Path(__file__).parents[2] / "fixtures" / "hf_configs"
    return [p for p in sorted(d.glob("*.json")) if "switch" not in p.name]


@pytest.mark.parametrize("source", models.list_presets() + _fixture_configs(), ids=str)
def test_every_model_builds_every_phase(source):
    c = from_hf_config(source) if isinstance(source, Path) else models.get(source)
    for t in (1, 2, 4, 8):
        if c.n_heads % t or c.ffn_hidden % t or (c.n_kv_heads % t and t % c.n_kv_heads):
            with pytest.raises(ConfigError):
                build(c, "forward", 1, 8, tp=t)
            continue
        for phase in models.PHASES:
            g = build(c, phase, 2, 8, tp=t, context_len=8 if phase in ("prefill", "decode") else None)
            for layer, _ in g.layers:
                assert nx.is_directed_acyclic_graph(layer)
                assert layer.number_of_nodes() > 0


@pytest.mark.parametrize("kwargs,match", [
    (dict(phase="training"), "phase"),
    (dict(batch=0), "batch"),
    (dict(seq_len=-4), "seq_len"),
    (dict(tp=5), "tp=5"),
    (dict(attention="flash"), "attention"),
    (dict(dtype="fp64"), "dtype"),
    (dict(seq_len=4096), "position"),
    (dict(tp=2, sequence_parallel=True, batch=1, seq_len=3), "sequence parallel"),
    (dict(context_len=5), "context_len"),
])
def test_bad_build_input(kwargs, match):
    args = dict(cfg=models.get("gpt2"), phase="forward", batch=1, seq_len=16, **{})
    args.update(kwargs)
    with pytest.raises(ConfigError, match=match):
        build(**args)


@settings(max_examples=40, deadline=None)
@given(b=st.integers(1, 8), s=st.integers(1, 256), t=st.sampled_from([1, 2, 4]))
def test_flops_scale_with_tokens(b, s, t):
    """Matmul FLOPs are linear in tokens; attention quadratic in s; both split exactly by t."""
    c = models.get("gpt3-125m")
    g = build(c, "forward", b, s, tp=t).layers[1][0]
    h, f = c.hidden, c.ffn_hidden
    linear = 2 * b * s * (4 * h * h + 2 * h * f) / t
    assert g.flops(("matmul",)) == pytest.approx(linear, rel=1e-12)
    assert g.flops(("attention",)) == pytest.approx(4 * b * s * s * h / t, rel=1e-12)
    assert g.signature() == build(c, "forward", b, s, tp=t).layers[1][0].signature()


@pytest.mark.parametrize("cp", [2, 4])
def test_context_parallel_share_of_a_device(cp):
    """With cp, a device holds seq_len/cp tokens of each sequence whose queries attend to all
    seq_len keys: every GEMM and the attention do exactly 1/cp of the work."""
    c = models.get("llama3-8b")
    full, part = build(c, "forward", 2, 4096), build(c, "forward", 2, 4096, cp=cp)
    assert part.flops() * cp == pytest.approx(full.flops())
    att = next(op for g, _ in part.layers for op in g.nodes if op.kind == "attention")
    assert (att.dims["q_len"], att.dims["kv_len"]) == (4096 // cp, 4096)
    assert build(c, "backward", 2, 4096, cp=cp).flops(("matmul",)) == 2 * part.flops(("matmul",))
    with pytest.raises(ConfigError, match="2\\*cp"):
        build(c, "forward", 1, 4096 + 2, cp=cp)
    with pytest.raises(ConfigError, match="training phases"):
        build(c, "decode", 1, 4096, cp=cp)


def test_fp8_runs_block_gemms_in_fp8_and_the_rest_in_bf16():
    """FP8 as Transformer Engine runs it: the four block GEMMs in FP8 on inputs cast just before
    them (the cast fused into the norm for QKV and MLP-up), every other op in bf16; the backward
    casts each GEMM's output gradient; FLOPs and parameters equal the bf16 build's."""
    c = models.get("llama2-7b")
    f8, b16 = build(c, "forward", 2, 512, dtype="fp8"), build(c, "forward", 2, 512, dtype="bf16")
    block = f8.layers[1][0]
    gemms = {op.name: op.dtype for op in block.nodes if op.kind == "matmul"}
    assert gemms == {"qkv": "fp8", "out_proj": "fp8", "mlp_up": "fp8", "mlp_down": "fp8"}
    assert {op.dtype for op in block.nodes if op.kind != "matmul" and op.dims.get("fn") != "cast"} == {"bf16"}
    casts = {op.name: op for op in block.nodes if op.dims.get("fn") == "cast"}
    assert set(casts) == {"out_proj.cast", "mlp_down.cast"}
    assert casts["mlp_down.cast"].bytes == 2 * 512 * c.ffn_hidden * (2 + 1)
    assert f8.flops(("matmul",)) == b16.flops(("matmul",)) and f8.param_count() == pytest.approx(b16.param_count())
    bwd = build(c, "backward", 2, 512, dtype="fp8").layers[1][0]
    assert {op.name for op in bwd.nodes if op.name.endswith("cast_grad")} == {f"{g}.cast_grad" for g in gemms}
    head = f8.layers[2][0]
    assert {op.dtype for op in head.nodes} == {"bf16"}  # the LM head stays in bf16
