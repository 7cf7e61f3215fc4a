"""Causal sliding-window attention (`ModelConfig.sliding_window`): closed-form FLOPs and bytes,
Hugging Face parsing, the predictors' costs and the KV cache of serving."""

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coda.arch.accelerators import tpuv4_like
from coda.arch.clusters import cluster
from coda.arch.gpus import gpu
from coda.errors import ConfigError
from coda.evaluate.inference import inference, kv_cache_bytes
from coda.models import build, from_hf_config, get
from coda.models import ops as O
from coda.models.config import ModelConfig
from coda.predictor import latency
from coda.predictor.accel_tiles import causal_fraction
from coda.predictor.roofline import roofline_time_s

MISTRAL = from_hf_config({"model_type": "mistral", "hidden_size": 4096, "intermediate_size": 14336,
                          "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
                          "vocab_size": 32000, "max_position_embeddings": 32768, "sliding_window": 4096},
                         name="mistral-7b-v0.1")
FULL = MISTRAL.replace(sliding_window=None)


def _hf(**extra):
    base = {"model_type": "qwen2", "hidden_size": 1024, "intermediate_size": 2816, "num_attention_heads": 16,
            "num_hidden_layers": 24, "num_key_value_heads": 16, "vocab_size": 151936,
            "max_position_embeddings": 32768}
    return from_hf_config({**base, **extra})


def test_hf_window_sources(fixtures_dir):
    assert from_hf_config(fixtures_dir / "hf_configs" / "mistral_7b.json").sliding_window == 4096
    assert from_hf_config(fixtures_dir / "hf_configs" / "qwen2_7b.json").sliding_window is None  # use_sliding_window
    assert _hf(use_sliding_window=True, sliding_window=4096, max_window_layers=0).sliding_window == 4096
    assert _hf(use_sliding_window=True, sliding_window=4096, max_window_layers=24).sliding_window is None
    assert _hf(sliding_window=512, layer_types=["sliding_attention"] * 24).full_attention_layers == ()
    assert _hf(sliding_window=512, layer_types=["full_attention"] * 24).sliding_window is None
    # interleaved: Qwen2's first max_window_layers attend fully; layer_types name each layer
    mixed = _hf(use_sliding_window=True, sliding_window=4096, max_window_layers=12)
    assert (mixed.sliding_window, mixed.full_attention_layers, mixed.block_counts) == (4096, tuple(range(12)), (12, 12))
    alt = _hf(sliding_window=512, layer_types=["sliding_attention", "full_attention"] * 12)
    assert alt.full_attention_layers == tuple(range(1, 24, 2)) and alt.block_pattern[:4] == (0, 1, 0, 1)
    with pytest.raises(ConfigError, match="layer_types"):
        _hf(sliding_window=512, layer_types=["sliding_attention", "chunked_attention"] * 12)


def test_interleaved_windows_of_gemma_and_gpt_oss(fixtures_dir):
    g2 = from_hf_config(fixtures_dir / "hf_configs" / "gemma2_9b.json")
    assert g2.param_count() == pytest.approx(9.24e9, rel=0.002)  # model card: 9.24B
    assert g2.full_attention_layers == tuple(range(1, 42, 2)) and g2.sliding_window == 4096  # every second layer
    g3 = from_hf_config(fixtures_dir / "hf_configs" / "gemma3_1b.json")
    assert g3.full_attention_layers == (5, 11, 17, 23) and g3.param_count() == pytest.approx(1.0e9, rel=0.002)
    oss = from_hf_config(fixtures_dir / "hf_configs" / "gpt_oss_20b.json")
    assert (oss.n_experts, oss.experts_per_token, oss.bias, oss.block_counts) == (32, 4, True, (12, 12))
    assert oss.param_count() == pytest.approx(20.9e9, rel=0.005)  # model card: 21B, 3.6B active
    assert oss.active_param_count() - oss.vocab_size * oss.hidden == pytest.approx(3.6e9, rel=0.01)


def test_full_attention_layers_validation():
    with pytest.raises(ConfigError, match="full_attention_layers"):
        MISTRAL.replace(sliding_window=None, full_attention_layers=(1,))  # no window to leave
    for bad in ((3, 1), (1, 1), (-1,), (32,), tuple(range(32))):
        with pytest.raises(ConfigError, match="full_attention_layers"):
            MISTRAL.replace(full_attention_layers=bad)
    mixed = MISTRAL.replace(full_attention_layers=[0, 31])  # a JSON list becomes a tuple
    assert mixed.full_attention_layers == (0, 31) and [k.window for k in mixed.block_kinds] == [None, 4096]
    assert ModelConfig.from_dict(json.loads(json.dumps(mixed.to_dict()))) == mixed


def test_interleaved_graph_costs_and_memory():
    """Half the layers full: the graph holds both blocks; FLOPs, KV cache and the placement chain
    follow the layer pattern."""
    half = MISTRAL.replace(full_attention_layers=tuple(range(1, 32, 2)))
    s, a, d, w, l = 16384, 32, 128, 4096, 32
    g = build(half, "forward", 1, s)
    assert [(lg.name, n) for lg, n in g.layers] == [("embedding", 1), ("block", 16), ("block.full", 16), ("head", 1)]
    full, win = build(FULL, "forward", 1, s).flops(), build(MISTRAL, "forward", 1, s).flops()
    assert full - g.flops() == pytest.approx((full - win) / 2) == pytest.approx(l / 2 * 4 * a * s * (s - w) * d)
    assert kv_cache_bytes(half, 2, 8192) == pytest.approx((kv_cache_bytes(MISTRAL, 2, 8192)
                                                           + kv_cache_bytes(FULL, 2, 8192)) / 2)
    from coda.placement import CostModel, Plan, Software

    chain = CostModel(half, cluster("dgx-h100", 8), s, software=Software()).terms(
        Plan(tp=1, pp=1, dp=8, micro_batch=1, global_batch=8)).chain
    fwd = chain.fwd_s[1:-1]
    assert (fwd[1::2] > fwd[0::2]).all() and len(set(fwd[0::2])) == len(set(fwd[1::2])) == 1
    r = inference(half, cluster("dgx-h100", 8), 1, 4, 8192, 64, pp=2)
    assert r.kv_cache_bytes == pytest.approx(kv_cache_bytes(half, 4, 8192 + 64) / 2)  # 8 + 8 of each kind a stage


def test_phi3_reads_as_llama_with_its_window(fixtures_dir):
    c = from_hf_config(fixtures_dir / "hf_configs" / "phi3_mini_4k.json")
    assert (c.mlp, c.norm, c.position, c.sliding_window) == ("swiglu", "rmsnorm", "rope", 2047)
    assert c.param_count() == pytest.approx(3.821e9, rel=0.001)  # model card: 3.8B


def test_window_needs_causal_attention():
    with pytest.raises(ConfigError, match="causal"):
        get("bert-large").replace(sliding_window=128)
    with pytest.raises(ConfigError, match="causal"):
        O.attention(1, 8, 8, 64, 64, 64, causal=False, window=16)
    with pytest.raises(ConfigError, match="window"):
        O.attention(1, 8, 8, 64, 64, 64, window=0)


@pytest.mark.parametrize("q,kv,w", [(4096, 4096, 1024), (512, 8192, 4096), (1, 32768, 4096), (1, 100, 4096)])
def test_attention_flops_and_bytes_closed_form(q, kv, w):
    b, a, g, d = 2, 32, 8, 128
    op = O.attention(b, a, g, q, kv, d, window=w, dtype="bf16")
    assert op.flops == 4 * b * a * q * min(kv, w) * d
    kv_rows = min(kv, q + w - 1)
    assert op.bytes == 2 * (2 * b * a * q * d + 2 * b * g * kv_rows * d)
    bwd = O.attention_backward(op)
    assert bwd.flops == 2.5 * op.flops and bwd.bytes == 2 * (4 * b * a * q * d + 4 * b * g * kv_rows * d)
    if w >= kv:  # the window never bites: the very same op as full causal attention
        assert op == O.attention(b, a, g, q, kv, d, dtype="bf16")


def test_graph_flops_drop_only_beyond_the_window():
    short, long = 4096, 16384
    assert build(MISTRAL, "forward", 1, short).flops() == build(FULL, "forward", 1, short).flops()
    win, full = build(MISTRAL, "forward", 1, long), build(FULL, "forward", 1, long)
    l, s, a, d, w = MISTRAL.n_layers, long, MISTRAL.n_heads, MISTRAL.head_dim, 4096
    assert full.flops() - win.flops() == pytest.approx(l * 4 * a * s * (s - w) * d)
    # unfused attention computes the whole score matrix and masks it
    assert build(MISTRAL, "forward", 1, long, attention="unfused").flops() == \
        build(FULL, "forward", 1, long, attention="unfused").flops()


@pytest.mark.parametrize("device", [gpu("h100-sxm"), gpu("a100-sxm4-80gb"), tpuv4_like()])
def test_predicted_attention_time(device):
    prefill = [O.attention(1, 32, 8, 16384, 16384, 128, window=w) for w in (1024, 4096, 8192, None)]
    times = [latency(op, device) for op in prefill]
    assert times == sorted(times) and times[0] < times[-1] / 2  # a wider window is never faster
    for op, t in zip(prefill, times):
        assert t >= max(roofline_time_s(op, device)) * (1 - 1e-9)
    # decoding reads at most W cached positions: the step time stops growing with the context
    # (up to the one key block a window that straddles block boundaries adds on an accelerator)
    decode = [latency(O.attention(8, 32, 8, 1, c, 128, window=4096), device) for c in (4097, 8192, 32768)]
    assert decode[0] == pytest.approx(decode[1], rel=0.05) and decode[1] == pytest.approx(decode[2], rel=0.05)
    assert latency(O.attention(8, 32, 8, 1, 2048, 128, window=4096), device) < decode[0]


def _brute_fraction(q, kv, block, w):
    """Score tiles holding at least one (query, key) pair with key in (pos - w, pos], over all tiles."""
    off, nq, nk = kv - q, math.ceil(q / block), math.ceil(kv / block)
    kept = 0
    for j in range(nq):
        rows = range(j * block, min((j + 1) * block, q))
        for i in range(nk):
            lo, hi = i * block, min((i + 1) * block, kv) - 1
            kept += any(max(lo, off + r - w + 1) <= min(hi, off + r) for r in rows)
    return kept / (nq * nk)


@settings(max_examples=60, deadline=None)
@given(q=st.integers(1, 300), extra=st.integers(0, 300), w=st.integers(1, 400), block=st.sampled_from([16, 32, 64]))
def test_windowed_tile_fraction_equals_enumeration(q, extra, w, block):
    kv = q + extra
    assert causal_fraction(q, kv, block, window=w) == pytest.approx(_brute_fraction(q, kv, block, w))
    assert causal_fraction(q, kv, block, window=kv) == pytest.approx(causal_fraction(q, kv, block))


def test_kv_cache_is_a_rolling_buffer():
    assert kv_cache_bytes(MISTRAL, 4, 8192) == kv_cache_bytes(MISTRAL, 4, 4096) == kv_cache_bytes(FULL, 4, 4096)
    assert kv_cache_bytes(MISTRAL, 4, 1000) == kv_cache_bytes(FULL, 4, 1000)
    cl = cluster("dgx-h100", 8)
    win = inference(MISTRAL, cl, 1, batch=16, prompt_len=8192, output_len=256)
    full = inference(FULL, cl, 1, batch=16, prompt_len=8192, output_len=256)
    assert win.kv_cache_bytes == kv_cache_bytes(MISTRAL, 16, 8192 + 256) < full.kv_cache_bytes
    assert win.tpot_first_s == pytest.approx(win.tpot_last_s, rel=1e-6)  # past the window: constant step time
    assert win.tpot_s < full.tpot_s and win.ttft_s < full.ttft_s and win.max_batch > full.max_batch


def test_optimize_bounds_hold_for_interleaved_blocks(assert_bounds_hold):
    """With two kinds of block the pruning bounds still lie below every plan's figures."""
    from coda.placement.optimize import candidate_plans

    half = MISTRAL.replace(n_layers=8, full_attention_layers=(1, 3, 5, 7), sliding_window=512)
    plans = candidate_plans(half, 8, 16, 8, micro_batch=(1, 2), zero=(0, 3))
    assert {p.pp for p in plans} >= {1, 2, 4, 8}
    assert_bounds_hold(half, cluster("dgx-h100", 8), 2048, plans)
