"""Presets, Hugging Face loading, validation and round trips."""

import json

import pytest

from coda import models
from coda.errors import CodaError, ConfigError
from coda.models import ModelConfig, from_hf_config

REQUIRED_PRESETS = (
    "bert-base bert-large gpt2 gpt2-medium gpt2-large gpt2-xl gpt3-125m gpt3-350m gpt3-760m gpt3-1.3b "
    "gpt3-2.7b gpt3-6.7b gpt3-13b gpt3-175b opt-125m opt-350m opt-1.3b opt-2.7b opt-6.7b opt-13b opt-30b "
    "opt-66b opt-175b llama2-7b llama2-13b llama2-70b llama3-8b llama3-70b llama3.1-405b mixtral-8x7b "
    "megatron-1.7b megatron-3.6b megatron-7.5b megatron-18.4b megatron-39.1b megatron-76.1b megatron-145.6b "
    "megatron-310.1b megatron-529.6b megatron-1t"
).split()


def test_required_presets_exist():
    assert set(REQUIRED_PRESETS) <= set(models.list_presets())
    assert all(n == n.lower() for n in models.list_presets())


def test_unknown_preset_suggests():
    with pytest.raises(CodaError, match="llama2-7b"):
        models.get("llama-2-7b")


@pytest.mark.parametrize("name", REQUIRED_PRESETS)
def test_round_trip(name, tmp_path):
    c = models.get(name)
    assert ModelConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    path = tmp_path / "m.json"
    path.write_text(json.dumps(c.to_dict()))
    assert models.get(str(path)) == c


HF_EXPECTED = {  # fixture -> (layers, hidden, heads, kv heads, ffn, vocab, mlp, causal, params or None)
    "bert_large.json": (24, 1024, 16, 16, 4096, 30522, "gelu", False, 334.09e6),
    "gpt2_large.json": (36, 1280, 20, 20, 5120, 50257, "gelu", True, 774.03e6),
    "opt_13.json": (24, 2048, 32, 32, 8192, 50272, "relu", True, 1.3158e9),
    "llama3_8b.json": (32, 4096, 32, 8, 14336, 128256, "swiglu", True, 8.0303e9),
    "mistral_7b.json": (32, 4096, 32, 8, 14336, 32000, "swiglu", True, 7.2417e9),
    "mixtral_8x7b.json": (32, 4096, 32, 8, 14336, 32000, "swiglu", True, 46.703e9),
    "qwen2_7b.json": (28, 3584, 28, 4, 18944, 152064, "swiglu", True, 7.6156e9),
    "pythia_1b.json": (16, 2048, 8, 8, 8192, 50304, "gelu", True, 1.0117e9),
    "phi2.json": (32, 2560, 32, 32, 10240, 51200, "gelu", True, 2.7795e9),
    "qwen3_30b_a3b.json": (48, 2048, 32, 4, 768, 151936, "swiglu", True, 30.53e9),  # model card: 30.5B, 3.3B active
    "gemma_7b.json": (28, 3072, 16, 16, 24576, 256000, "geglu", True, 8.54e9),  # model card: 8.54B
    "olmo2_7b.json": (32, 4096, 32, 32, 11008, 100352, "swiglu", True, 7.30e9),  # model card: 7.3B
    "starcoder2_7b.json": (32, 4608, 36, 4, 18432, 49152, "gelu", True, 7.17e9),  # model card: 7.17B
}


@pytest.mark.parametrize("fixture,expected", HF_EXPECTED.items())
def test_hf_configs(fixtures_dir, fixture, expected):
    c = from_hf_config(fixtures_dir / "hf_configs" / fixture)
    layers, h, a, g, f, V, mlp, causal, params = expected
    assert (c.n_layers, c.hidden, c.n_heads, c.n_kv_heads, c.ffn_hidden, c.vocab_size, c.mlp, c.causal) == (
        layers, h, a, g, f, V, mlp, causal)
    # Published totals (model cards): qwen2-7b 7.62B incl. QKV biases we omit, phi-2 2.78B, pythia-1b 1.01B.
    assert c.param_count() == pytest.approx(params, rel=0.002)


def test_hf_qwen3_moe(fixtures_dir):
    """Qwen3-30B-A3B: head_dim 128 != hidden/heads, 128 experts top-8; 3.3B active (model card).
    A dense layer among the MoE ones (`mlp_only_layers`) takes `intermediate_size`."""
    c = from_hf_config(fixtures_dir / "hf_configs" / "qwen3_30b_a3b.json")
    assert (c.head_dim, c.q_dim, c.n_experts, c.experts_per_token) == (128, 4096, 128, 8)
    assert c.active_param_count() == pytest.approx(3.3e9, rel=0.02)
    cfg = json.loads((fixtures_dir / "hf_configs" / "qwen3_30b_a3b.json").read_text())
    one = from_hf_config({**cfg, "mlp_only_layers": [0]})
    assert one.dense_layers == (0,) and one.dense_ffn_hidden == cfg["intermediate_size"]
    assert one.param_count() - c.param_count() == one.mlp_params(cfg["intermediate_size"]) - (
        128 * c.mlp_params() + 128 * c.hidden)


def test_hf_matches_preset(fixtures_dir):
    hf = from_hf_config(fixtures_dir / "hf_configs" / "llama3_8b.json")
    assert hf.param_count() == models.get("llama3-8b").param_count()


def test_hf_opt_projection(fixtures_dir):
    c = from_hf_config(fixtures_dir / "hf_configs" / "opt.json")
    assert c.embed_dim == 2048 and c.hidden == 512
    for phase in models.PHASES:
        models.build(c, phase, 2, 64)


def test_hf_unsupported_type(fixtures_dir):
    with pytest.raises(ConfigError, match="switch_transformers"):
        from_hf_config(fixtures_dir / "hf_configs" / "switchxl4.json")


def test_hf_missing_field():
    with pytest.raises(ConfigError, match="num_hidden_layers"):
        from_hf_config({"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4,
                        "intermediate_size": 128, "vocab_size": 100, "max_position_embeddings": 64})


def test_hf_unreadable(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match="bad.json"):
        from_hf_config(bad)


BASE = dict(name="m", n_layers=2, hidden=64, n_heads=4, ffn_hidden=256, vocab_size=100, max_seq_len=128)


@pytest.mark.parametrize("change,field", [
    (dict(n_heads=5), "n_heads"),
    (dict(n_kv_heads=3), "n_kv_heads"),
    (dict(hidden=0), "hidden"),
    (dict(n_layers=-1), "n_layers"),
    (dict(vocab_size=1.5), "vocab_size"),
    (dict(n_experts=2, experts_per_token=3), "experts_per_token"),
    (dict(mlp="swish"), "mlp"),
    (dict(norm="batchnorm"), "norm"),
    (dict(position="sinusoidal"), "position"),
])
def test_validation_names_field(change, field):
    with pytest.raises(ConfigError, match=field):
        ModelConfig(**{**BASE, **change})


def test_head_dim_given_allows_non_dividing_heads():
    c = ModelConfig(**{**BASE, "n_heads": 3, "head_dim": 32})
    assert c.q_dim == 96


def test_strict_loader():
    with pytest.raises(ConfigError, match="hiden"):
        ModelConfig.from_dict({**BASE, "hiden": 3})
    d = dict(BASE)
    del d["vocab_size"]
    with pytest.raises(ConfigError, match="vocab_size"):
        ModelConfig.from_dict(d)


def test_gemma_geglu_graph_and_timing(fixtures_dir):
    from coda.models import build
    from coda.models import ops as O
    from coda.predictor import latency

    c = from_hf_config(fixtures_dir / "hf_configs" / "gemma_7b.json")
    assert c.gated and c.q_dim == 16 * 256 != c.hidden and c.tied_embeddings and not c.bias
    block = build(c, "forward", 1, 128).layers[1][0]
    assert block.by_name("mlp_up").dims["n"] == 2 * 24576 and block.by_name("mlp_act").dims["fn"] == "geglu"
    # a GeGLU kernel is timed with the fitted SwiGLU kernel parameters (same inputs and output)
    geglu, swiglu = (O.elementwise(1 << 22, 9, 2, "bf16", fn=fn) for fn in ("geglu", "swiglu"))
    assert latency(geglu, "h100-sxm") == latency(swiglu, "h100-sxm")
