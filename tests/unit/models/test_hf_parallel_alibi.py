"""Falcon, GPT-J, BLOOM and MPT configs: parameter counts against published counts, FLOPs per
token against closed forms, and what parallel blocks, partial rotary and ALiBi do to the graph.

Published counts (sources in tests/fixtures/hf_configs/README.md):
- falcon-7b 6.92B (tied LM head); falcon-40b: its checkpoint stores 83,671,941,120 bytes of bf16
  (`pytorch_model.bin.index.json`), 41,835,970,560 parameters, which counts the LM head that the
  model ties to the word embeddings; ~41.8B is that stored count, 41.30B the distinct weights;
- gpt-j-6b 6,053,381,344 (model card);
- bloom-7b1 7,069,016,064 (model card);
- mpt-7b 6.65B (Hugging Face model page; MosaicML's 6.7B rounded).
"""

import json

import pytest

from coda.errors import ConfigError
from coda.models import ModelConfig, build, from_hf_config

BLOCK_GEMM_KINDS = ("matmul", "attention")


def _load(fixtures_dir, name: str) -> ModelConfig:
    return from_hf_config(fixtures_dir / "hf_configs" / f"{name}.json")


def _raw(fixtures_dir, name: str) -> dict:
    return json.loads((fixtures_dir / "hf_configs" / f"{name}.json").read_text())


@pytest.mark.parametrize("name,published,rel", [
    ("falcon_7b", 6.92e9, 0.001),
    ("gptj_6b", 6_053_381_344, 0.0005),   # coda: 6,051,291,136 (attention biases counted, LM-head bias not)
    ("bloom_7b1", 7_069_016_064, 0.0),    # exact: word-embedding LayerNorm included
    ("mpt_7b", 6.65e9, 0.001),
])
def test_published_parameter_counts(fixtures_dir, name, published, rel):
    assert _load(fixtures_dir, name).param_count() == pytest.approx(published, rel=rel, abs=0)


def test_falcon_40b_counts_checkpoint_exactly(fixtures_dir):
    """The stored checkpoint (41.836B) is coda's count plus the tied LM head, to the parameter."""
    c = _load(fixtures_dir, "falcon_40b")
    assert c.tied_embeddings
    assert c.param_count() + c.vocab_size * c.hidden == 83_671_941_120 // 2
    assert c.param_count() == pytest.approx(41.30e9, rel=0.001)


def test_falcon_heads_and_blocks(fixtures_dir):
    """Falcon-7B: multi_query overrides num_kv_heads=71 (one K/V head, fused QKV of h + 2*64 =
    4672 outputs); Falcon-40B (new_decoder_architecture): 8 KV groups (QKV 9216 outputs), two
    norms per block."""
    f7, f40 = _load(fixtures_dir, "falcon_7b"), _load(fixtures_dir, "falcon_40b")
    assert (f7.n_kv_heads, f7.parallel_block, f7.norms_per_block, f7.bias) == (1, True, 1, False)
    assert f7.q_dim + 2 * f7.kv_dim == 4672
    assert (f40.n_kv_heads, f40.parallel_block, f40.norms_per_block) == (8, True, 2)
    assert f40.q_dim + 2 * f40.kv_dim == 9216
    raw = _raw(fixtures_dir, "falcon_7b")
    assert from_hf_config({**raw, "multi_query": False}).n_kv_heads == 71
    seq = from_hf_config({**raw, "parallel_attn": False})
    assert (seq.parallel_block, seq.norms_per_block) == (False, 2)
    assert from_hf_config({**raw, "alibi": True}).position == "alibi"
    legacy = {k: v for k, v in _raw(fixtures_dir, "falcon_40b").items()
              if k not in ("num_attention_heads", "num_hidden_layers", "num_kv_heads")}
    legacy.update(model_type="RefinedWeb", n_head=128, n_layer=60, n_head_kv=8)
    assert from_hf_config(legacy).param_count() == f40.param_count()


def test_gptj_partial_rotary(fixtures_dir):
    c = _load(fixtures_dir, "gptj_6b")
    assert (c.head_dim, c.rotary_dim, c.parallel_block, c.norms_per_block) == (256, 64, True, 1)
    g = build(c, "forward", 1, 128)
    rope = next(op for op, _ in g.ops() if op.name == "rope")
    assert rope.dims["n_elements"] == 128 * (16 + 16) * 64  # a quarter of each head rotates
    full = build(c.replace(rotary_dim=0), "forward", 1, 128)
    assert next(op for op, _ in full.ops() if op.name == "rope").flops == 4 * rope.flops


def test_alibi_models(fixtures_dir):
    bloom, mpt = _load(fixtures_dir, "bloom_7b1"), _load(fixtures_dir, "mpt_7b")
    assert (bloom.position, mpt.position, bloom.embedding_norm, mpt.bias) == ("alibi", "alibi", True, False)
    for c in (bloom, mpt):
        assert c.embedding_params() == c.vocab_size * c.hidden + (c.norm_params if c.embedding_norm else 0)
        fused = {op.name for op, _ in build(c, "prefill", 1, 4096).ops()}  # no position limit
        assert "rope" not in fused and "position_embedding" not in fused and "attn_alibi" not in fused
    b, s = 2, 64
    unfused = build(mpt, "forward", b, s, attention="unfused")
    alibi = next(op for op, _ in unfused.ops() if op.name == "attn_alibi")
    assert alibi.kind == "elementwise" and alibi.dims["n_elements"] == b * mpt.n_heads * s * s
    assert alibi.bytes == 2 * b * mpt.n_heads * s * s * 2  # read and write the bf16 scores once
    assert "embedding_norm" in {op.name for op, _ in build(bloom, "forward", 1, 16).ops()}


def _closed_form_flops_per_token(c: ModelConfig, s: int) -> float:
    """Training-forward GEMM + attention FLOPs per token: 2 x block weights (QKV, out, MLP) per
    layer, full-matrix attention 4*a*d*s per layer, LM head 2*h*V."""
    h, a, d, g, f = c.hidden, c.n_heads, c.head_dim, c.n_kv_heads, c.ffn_hidden
    weights = h * (a + 2 * g) * d + a * d * h + (3 if c.gated else 2) * h * f
    return c.n_layers * (2 * weights + 4 * a * d * s) + 2 * h * c.vocab_size


@pytest.mark.parametrize("name", ["falcon_7b", "falcon_40b", "gptj_6b", "bloom_7b1", "mpt_7b"])
def test_flops_per_token_closed_form(fixtures_dir, name):
    c, b, s = _load(fixtures_dir, name), 2, 256
    g = build(c, "forward", b, s)
    assert g.flops(BLOCK_GEMM_KINDS) / (b * s) == pytest.approx(_closed_form_flops_per_token(c, s), rel=1e-12)


def test_parallel_block_graph(fixtures_dir):
    """One shared norm, one residual add: 9 ops instead of the sequential block's 11 at tp=1; with
    tp > 1 one all-reduce of attn + mlp instead of two, and one backward input all-reduce."""
    par = _load(fixtures_dir, "gptj_6b")
    seq = par.replace(parallel_block=False, norms_per_block=2)
    gp, gs = build(par, "forward", 1, 64), build(seq, "forward", 1, 64)
    bp = next(layer for layer, _ in gp.layers if layer.name == "block")
    bs = next(layer for layer, _ in gs.layers if layer.name == "block")
    assert len(bp.ops()) == len(bs.ops()) - 2 == 9
    ln1, qkv, up = bp.by_name("ln1"), bp.by_name("qkv"), bp.by_name("mlp_up")
    assert list(bp.predecessors(qkv)) == [ln1] and list(bp.predecessors(up)) == [ln1]
    residual = bp.by_name("residual")
    assert residual.dims["n_inputs"] == 3 and set(bp.predecessors(residual)) == {bp.by_name("out_proj"),
                                                                                  bp.by_name("mlp_down")}
    assert gp.flops(BLOCK_GEMM_KINDS) == gs.flops(BLOCK_GEMM_KINDS)  # same GEMMs, fewer vector ops
    assert gp.param_count() == pytest.approx(par.param_count(), rel=1e-4)

    def collectives(cfg: ModelConfig, phase: str) -> list[str]:
        blk = next(layer for layer, _ in build(cfg, phase, 1, 64, tp=2).layers if layer.name.startswith("block"))
        return sorted(op.dims["collective"] for op in blk.ops() if op.kind == "collective")

    assert collectives(par, "forward") == ["all_reduce"] and collectives(seq, "forward") == ["all_reduce"] * 2
    assert collectives(par, "backward") == ["all_reduce"] and collectives(seq, "backward") == ["all_reduce"] * 2
    two_norms = _load(fixtures_dir, "falcon_40b")
    assert collectives(two_norms, "backward") == ["all_reduce"] * 2  # two normed inputs, two gradients
    blk = next(layer for layer, _ in build(two_norms, "forward", 2, 64, tp=8, sequence_parallel=True).layers
               if layer.name == "block")
    kinds = sorted(op.dims["collective"] for op in blk.ops() if op.kind == "collective")
    assert kinds == ["all_gather", "all_gather", "reduce_scatter"]


def test_parallel_block_backward_and_decode(fixtures_dir):
    c = _load(fixtures_dir, "falcon_40b")
    fwd, bwd = build(c, "forward", 1, 64, tp=4), build(c, "backward", 1, 64, tp=4)
    assert bwd.flops(["matmul"]) == pytest.approx(2 * fwd.flops(["matmul"]))
    dec = build(c, "decode", 8, 512, tp=4)
    assert dec.flops(BLOCK_GEMM_KINDS) > 0


@pytest.mark.parametrize("change,field", [
    (dict(norms_per_block=1), "norms_per_block"),
    (dict(norms_per_block=3, parallel_block=True), "norms_per_block"),
    (dict(parallel_block=1), "parallel_block"),
    (dict(rotary_dim=7), "rotary_dim"),
    (dict(rotary_dim=512), "rotary_dim"),
    (dict(rotary_dim=64, position="alibi"), "rotary_dim"),
    (dict(embedding_norm="yes"), "embedding_norm"),
])
def test_new_fields_validated(change, field):
    base = dict(name="m", n_layers=2, hidden=1024, n_heads=4, ffn_hidden=4096, vocab_size=100, max_seq_len=64,
                position="rope")
    with pytest.raises(ConfigError, match=field):
        ModelConfig(**{**base, **change})


@pytest.mark.parametrize("name,key,value,match", [
    ("mpt_7b", "attn_config", {"attn_type": "sparse"}, "attn_type"),
    ("mpt_7b", "expansion_ratio", 0, "expansion_ratio"),
    ("falcon_40b", "num_ln_in_parallel_attn", 3, "num_ln_in_parallel_attn"),
    ("falcon_7b", "apply_residual_connection_post_layernorm", True, "post_layernorm"),
    ("falcon_7b", "multi_query", "yes", "multi_query"),
    ("bloom_7b1", "n_layer", None, "n_layer"),
])
def test_loader_errors_name_the_key(fixtures_dir, name, key, value, match):
    with pytest.raises(ConfigError, match=match):
        from_hf_config({**_raw(fixtures_dir, name), key: value})
