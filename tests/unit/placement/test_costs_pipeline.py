"""Closed forms: Korthikanti activation bytes, ZeRO memory, pipeline bubble, in-flight micro-batches,
FLOP counts behind MFU / HFU, and the breakdown summing to the step."""

import numpy as np
import pytest

from coda.arch.clusters import cluster
from coda.models import get
from coda.placement import MEGATRON_2021, Plan, evaluate
from coda.placement.costs import block_activation_bytes
from coda.placement.pipeline import inflight, pipeline_time

CFG = get("megatron-18.4b")  # GPT: 4h GELU MLP, MHA
S, B = 2048, 2
H, A = CFG.hidden, CFG.n_heads


@pytest.mark.parametrize("t, sp, rec, attn, want", [
    (1, False, "none", "unfused", S * B * H * (34 + 5 * A * S / H)),
    (8, False, "none", "unfused", S * B * H * (10 + 24 / 8 + 5 * A * S / (H * 8))),
    (8, True, "none", "unfused", S * B * H * (34 + 5 * A * S / H) / 8),
    (8, False, "selective", "unfused", S * B * H * (10 + 24 / 8)),
    (8, True, "selective", "unfused", S * B * H * 34 / 8),
    (8, False, "full", "unfused", 2 * S * B * H),
    (8, True, "full", "unfused", 2 * S * B * H / 8),
    (1, False, "none", "fused", 34 * S * B * H),  # FlashAttention never stores the score matrix
])
def test_korthikanti_activation_bytes(t, sp, rec, attn, want):
    stored, full = block_activation_bytes(CFG, S, B, t, sp, rec, attn, "fp16")
    assert stored == pytest.approx(want, rel=1e-12)
    assert full >= stored


@pytest.mark.parametrize("t, sp", [(1, False), (2, True)])
def test_moe_activation_bytes_add_the_routed_token_copies(t, sp):
    """Mixtral (k = 2, SwiGLU, GQA): the per-tensor terms plus the 2*k*s*b*h routed copies."""
    cfg = get("mixtral-8x7b")
    h, q, kv, f, k = cfg.hidden, cfg.q_dim, cfg.kv_dim, cfg.ffn_hidden, cfg.experts_per_token
    replicated = (10 + 2 * k) * S * B * h / (t if sp else 1)
    split = S * B * (4 * q + 4 * kv + k * (2 * f * 2 + 2 * f)) / t
    stored, _ = block_activation_bytes(cfg, S, B, t, sp, "none", "fused", "bf16")
    assert stored == pytest.approx(replicated + split, rel=1e-12)


def test_activation_bytes_scale_with_dtype():
    a, _ = block_activation_bytes(CFG, S, B, 1, False, "none", "fused", "fp16")
    b, _ = block_activation_bytes(CFG, S, B, 1, False, "none", "fused", "fp32")
    assert b == pytest.approx(2 * a)


@pytest.mark.parametrize("p, m, v", [(1, 8, 1), (4, 8, 1), (4, 16, 2), (16, 144, 3)])
def test_balanced_pipeline_bubble_is_narayanan(p, m, v):
    """(m + (p-1)/v) * T: bubble fraction (p-1)/(v*m) (Narayanan et al. SC'21)."""
    assert pipeline_time(np.full(p, 2.0), m, v) == pytest.approx((m + (p - 1) / v) * 2.0)


def test_inflight_microbatches():
    plan = Plan(pp=8, global_batch=64)
    assert [inflight(plan, i) for i in range(8)] == [8, 7, 6, 5, 4, 3, 2, 1]
    assert inflight(Plan(pp=8, global_batch=4), 0) == 4  # fewer micro-batches than stages
    p, v = 8, 2
    il = Plan(pp=p, global_batch=64, schedule="interleaved", virtual_stages=v)
    assert inflight(il, 0) == pytest.approx(p * (1 + (p - 1) / (p * v)))  # Korthikanti et al. section 4.2.3


@pytest.fixture(scope="module")
def megatron_76b():
    plan = Plan(tp=8, pp=4, dp=32, micro_batch=1, global_batch=1792, recompute="full", schedule="interleaved",
                virtual_stages=3)
    return evaluate(get("megatron-76.1b"), cluster("dgx-a100", 1024), plan, 2048, dtype="fp16", software=MEGATRON_2021)


def test_breakdown_sums_to_step_and_throughput(megatron_76b):
    r = megatron_76b
    assert sum(r.breakdown().values()) == pytest.approx(r.step_time_s, rel=1e-12)
    assert r.tokens_per_s == pytest.approx(1792 * 2048 / r.step_time_s)
    assert r.plan.stage_layers == (5,) * 12
    assert 0 < r.mfu < r.hfu < 1


def test_flops_match_megatron_closed_forms(megatron_76b):
    """MFU counts 72*B*s*l*h^2*(1 + (s+1)/(12h) + V/(12*l*h)) (the causal half of the scores,
    `coda.placement.flops`); HFU (full recompute, unfused) the paper's 96*B*s*l*h^2*(1 + s/(6h) + V/(16*l*h))."""
    r, cfg = megatron_76b, get("megatron-76.1b")
    L, h, s, V, gb, n = cfg.n_layers, cfg.hidden, 2048, cfg.vocab_size, 1792, 1024
    model = 72 * gb * s * L * h * h * (1 + (s + 1) / (12 * h) + V / (12 * L * h))
    hw = 96 * gb * s * L * h * h * (1 + s / (6 * h) + V / (16 * L * h))
    assert r.model_flops_per_s * r.step_time_s * n == pytest.approx(model, rel=0.01)
    assert r.hardware_flops_per_s * r.step_time_s * n == pytest.approx(hw, rel=0.01)
    assert r.mfu == pytest.approx(r.model_flops_per_s / 312e12, rel=1e-3)


def test_zero_memory_is_16_bytes_per_param_split_by_stage():
    cfg, cl = get("gpt3-1.3b"), cluster("dgx-a100", 8)
    per = {}
    for zero in (0, 1, 3):
        r = evaluate(cfg, cl, Plan(dp=8, global_batch=8, zero=zero), 2048)
        s = r.pipeline.stages[0]
        per[zero] = (s.weight_bytes, s.grad_bytes, s.optim_bytes)
    w, g, o = per[0]
    assert (w + g + o) / w == pytest.approx(8)  # 2 + 2 + 12 bytes per parameter
    assert per[1] == pytest.approx((w, g, o / 8))
    assert per[3] == pytest.approx((w / 8, g / 8, o / 8))
    assert w / 2 == pytest.approx(cfg.param_count(), rel=1e-6)


def test_stage_split_moves_layers_off_the_embedding_stage():
    """With an explicit uneven split the DP-free evaluation follows it."""
    cfg, cl = get("gpt3-1.3b"), cluster("dgx-a100", 8)
    r = evaluate(cfg, cl, Plan(pp=4, dp=2, global_batch=16, stage_layers=(5, 7, 7, 5)), 2048)
    assert [s.blocks for s in r.pipeline.stages] == [5, 7, 7, 5]
    assert r.pipeline.stages[0].has_embedding and r.pipeline.stages[-1].has_head
