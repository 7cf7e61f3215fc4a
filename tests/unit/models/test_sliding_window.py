"""Causal sliding-window attention (`ModelConfig.sliding_window`): closed-form FLOPs and bytes,
Hugging Face parsing, the predictors' costs and the KV cache of serving."""

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
    assert _hf(sliding_window=512, layer_types=["sliding_attention"] * 24).sliding_window == 512
    assert _hf(sliding_window=512, layer_types=["full_attention"] * 24).sliding_window is None
    for mixed in (dict(use_sliding_window=True, sliding_window=4096, max_window_layers=12),
                  dict(sliding_window=512, layer_types=["sliding_attention", "full_attention"] * 12)):
        with pytest.raises(ConfigError, match="interleaved"):
            _hf(**mixed)


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
