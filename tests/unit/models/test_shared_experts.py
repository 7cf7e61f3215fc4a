"""Shared experts (`ModelConfig.shared_ffn_hidden`, Qwen2-MoE): parameters, closed-form FLOPs,
the tensor- and expert-parallel split, serving reads and activation memory."""

import pytest

from coda.arch.clusters import cluster
from coda.errors import ConfigError
from coda.evaluate import training
from coda.models import build, from_hf_config, get
from coda.placement import Plan
from coda.placement.costs import _expert_params, block_activation_bytes


@pytest.fixture
def qwen(fixtures_dir):
    return from_hf_config(fixtures_dir / "hf_configs" / "qwen1_5_moe_a2_7b.json")


def test_params_match_the_model_card(qwen):
    assert qwen.shared_ffn_hidden == 5632 and qwen.n_experts == 60 and qwen.experts_per_token == 4
    assert qwen.param_count() == pytest.approx(14.3e9, rel=0.002)  # Qwen1.5-MoE-A2.7B: 14.3B, 2.7B activated
    assert qwen.active_param_count() == pytest.approx(2.69e9, rel=0.002)
    assert qwen.block_params() - qwen.replace(shared_ffn_hidden=0).block_params() == 3 * 2048 * 5632


def test_config_errors():
    with pytest.raises(ConfigError, match="MoE"):
        get("llama2-7b").replace(shared_ffn_hidden=1024)
    with pytest.raises(ConfigError, match="non-negative"):
        get("mixtral-8x7b").replace(shared_ffn_hidden=-1)
    with pytest.raises(ConfigError, match="shared_ffn_hidden"):
        build(get("mixtral-8x7b").replace(shared_ffn_hidden=1000), "forward", 1, 64, tp=16)


def test_block_matmul_flops_closed_form(qwen):
    s = 240  # s*k divisible by E: every expert gets exactly s*k/E tokens
    h, q, kv, f, fs, E, k = 2048, 2048, 2048, 1408, 5632, 60, 4
    block = build(qwen, "forward", 1, s).layers[1][0]
    expected = 2 * s * (h * (q + 2 * kv) + q * h + h * E + k * 3 * h * f + 3 * h * fs)
    assert block.flops(("matmul",)) == expected
    # tensor parallelism splits the shared MLP like a dense one: the ranks' matmul FLOPs sum to tp = 1
    tp2 = build(qwen, "forward", 1, s, tp=2).layers[1][0]
    assert tp2.by_name("shared_up").dims["n"] == 2 * fs // 2
    assert 2 * tp2.flops(("matmul",)) == pytest.approx(expected + 2 * s * h * E)  # the router is replicated


def test_expert_parallel_keeps_the_shared_mlp_tensor_parallel(qwen):
    block = build(qwen, "forward", 1, 256, tp=2, sequence_parallel=True, ep=4).layers[1][0]
    names = {op.name for op in block.nodes}
    assert {"shared.all_gather", "shared.reduce_scatter", "ep_dispatch", "ep_combine"} <= names
    assert _expert_params(block) == 60 // 4 * qwen.mlp_params()  # the shared MLP is not an expert: not EP-sharded
    r = training(qwen, cluster("dgx-h100", 8), Plan(tp=2, pp=1, dp=4, micro_batch=1, global_batch=8,
                                                    sequence_parallel=True, ep=4, zero=1), 2048)
    assert r.fits and r.step_time_s > 0


def test_decode_reads_the_shared_experts(qwen):
    one = build(qwen, "decode", 1, 1, context_len=100).layers[1][0]
    h, k = 2048, 4
    attn = qwen.attention_params()
    assert one.param_count() == attn + k * qwen.mlp_params() + qwen.mlp_params(5632) + h * 60 + 2 * h


def test_activation_bytes_add_the_shared_mlp(qwen):
    s, b, t, fs = 2048, 2, 2, 5632
    with_shared = block_activation_bytes(qwen, s, b, t, True, "none", "fused", "bf16")[0]
    without = block_activation_bytes(qwen.replace(shared_ffn_hidden=0), s, b, t, True, "none", "fused", "bf16")[0]
    assert with_shared - without == pytest.approx(s * b * (2 * fs * 2 + 2 * fs) / t)
