"""Multi-head latent attention (DeepSeek-V2/V3): parameters, training and decode graphs (the
absorbed form), the latent KV cache, tensor parallelism and placement."""

import pytest

from coda.arch.clusters import cluster
from coda.errors import ConfigError
from coda.evaluate import inference
from coda.evaluate.inference import kv_cache_bytes
from coda.models import build, from_hf_config
from coda.placement import optimize


@pytest.fixture
def v3(fixtures_dir):
    return from_hf_config(fixtures_dir / "hf_configs" / "deepseek_v3.json")


@pytest.fixture
def lite(fixtures_dir):
    return from_hf_config(fixtures_dir / "hf_configs" / "deepseek_v2_lite.json")


def test_parameters_match_the_papers(v3, lite):
    h, a, d, r, v, cq, ckv = 7168, 128, 128, 64, 128, 1536, 512
    attn = h * cq + cq + cq * a * (d + r) + h * (ckv + r) + ckv + ckv * a * (d + v) + a * v * h
    assert v3.attention_params() == attn
    assert v3.param_count() == pytest.approx(671e9, rel=0.001)  # DeepSeek-V3: 671B, 37B activated
    assert v3.active_param_count() == pytest.approx(37.5e9, rel=0.01)
    assert lite.q_lora_rank == 0 and lite.param_count() == pytest.approx(15.7e9, rel=0.002)  # V2-Lite: 15.7B
    assert (v3.dense_layers, lite.dense_layers, lite.shared_ffn_hidden) == ((0, 1, 2), (0,), 2 * 1408)


def test_training_graph_expands_the_latent(v3):
    s = 1024
    block = build(v3, "forward", 1, s).layers[2][0]  # an MoE block (the dense ones come first)
    names = {op.name for op in block.nodes}
    assert {"q_down", "q_norm", "q_up", "kv_down", "kv_norm", "kv_up"} <= names and "qkv" not in names
    att = block.by_name("attention")
    assert (att.dims["heads"], att.dims["kv_heads"], att.dims["head_dim"]) == (128, 128, 160)
    assert att.flops == 2 * 128 * s * s * (192 + 128)  # QK^T over d + d_r, PV over d_v
    assert att.bytes == 2 * (2 * 128 * s * (192 + 128))  # Q + O and K + V, 2-byte elements
    tp = build(v3, "forward", 1, s, tp=8).layers[2][0]
    assert tp.by_name("kv_down").dims["n"] == 512 + 64 and tp.by_name("kv_up").dims["n"] == 16 * 256
    with pytest.raises(ConfigError, match="fused attention"):
        build(v3, "forward", 1, s, attention="unfused")


def test_decode_absorbs_the_up_projection(v3):
    b, c = 4, 8191
    step = build(v3, "decode", b, 1, context_len=c)
    block = step.layers[2][0]
    att = block.by_name("attention")
    assert (att.dims["kv_heads"], att.dims["kv_width"]) == (1, 576)
    assert att.flops == 2 * b * 128 * (c + 1) * (576 + 512)
    assert att.bytes_read == 2 * (b * 128 * 544 + b * (c + 1) * 576)  # queries, and the latent read once
    # the absorbed weights are the up-projection's, so a step reads the active parameters (batch 1)
    assert block.by_name("q_absorb").param_bytes + block.by_name("v_absorb").param_bytes == 2 * 512 * 128 * 256
    assert build(v3, "decode", 1, 1, context_len=100).param_count() == pytest.approx(v3.active_param_count())


def test_latent_kv_cache_and_serving(v3, lite):
    assert kv_cache_bytes(v3, 2, 4096) == 61 * 576 * 2 * 2 * 4096 == kv_cache_bytes(v3, 2, 4096, tp=8)
    r = inference(lite, cluster("dgx-h100", 1), 1, 8, 2048, 128)
    assert r.kv_cache_bytes == 27 * 576 * 2 * 8 * (2048 + 128) and r.fits and r.tpot_s > 0


def test_training_plan_with_expert_parallelism(lite):
    plan, r, _ = optimize(lite, cluster("dgx-h100", 8), 64, 2048, ep=(1, 8), micro_batch=1)
    assert r.fits and r.step_time_s > 0 and 0 < r.mfu < 1
    assert r.model_flops_per_s > 0 and plan.ep in (1, 8)
