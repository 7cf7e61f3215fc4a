"""MFU and HFU as `coda.placement.flops` defines them: causal attention counts the entries its mask
keeps, and every plan `optimize` returns has 0 < MFU <= HFU <= 1, on GPUs and accelerators."""

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from coda.arch.accelerators import Accelerator
from coda.arch.clusters import cluster
from coda.errors import InfeasibleDesign
from coda.models import build, get
from coda.placement import MEGATRON_2021, IlpLayerTime, Plan, evaluate, optimize
from coda.placement.flops import causal_fraction, full_matrix_mfu, hardware_flops, model_flops
from coda.units import MiB


def _kept(q_len: int, kv_len: int, window: int | None) -> int:
    """Score entries a causal mask keeps, counted one query at a time."""
    return sum(min(p + 1, window or kv_len) for p in range(kv_len - q_len, kv_len))


@given(kv_len=st.integers(1, 300), data=st.data())
def test_causal_fraction_counts_the_kept_entries(kv_len, data):
    q_len = data.draw(st.integers(1, kv_len))
    window = data.draw(st.none() | st.integers(1, 400))
    counted = q_len * (kv_len if window is None else min(kv_len, window))  # what the op's FLOPs count
    assert causal_fraction(q_len, kv_len, window) * counted == pytest.approx(_kept(q_len, kv_len, window))


@given(s=st.integers(1, 1 << 16), layers=st.integers(1, 128), width=st.integers(1, 1 << 14),
       tokens=st.floats(1.0, 1e6), mfu=st.floats(0.0, 1.0))
def test_full_matrix_mfu_adds_the_masked_half(s, layers, width, tokens, mfu):
    """PaLM's count adds the masked entries coda leaves out: 12*L*H*Q*s*(1 - kept fraction) per token."""
    peak = 1e15
    masked = 12 * layers * width * s * (1 - causal_fraction(s, s))
    assert full_matrix_mfu(mfu, tokens, peak, layers, width, s) == pytest.approx(mfu + tokens * masked / peak)


def test_causal_fraction_closed_forms():
    assert causal_fraction(2048, 2048) == pytest.approx(2049 / 4096)  # (s + 1) / (2s)
    assert causal_fraction(1, 4096) == 1.0  # one decode query sees every key
    assert causal_fraction(4096, 4096, window=4096) == causal_fraction(4096, 4096)


def test_model_flops_count_the_causal_half_fused_or_not():
    """The model count does not depend on the attention kernel; the hardware count does (an unfused
    kernel multiplies the masked entries too)."""
    cfg, b, s = get("gpt2"), 2, 1024
    fused = build(cfg, "forward", b, s, attention="fused").layers[1][0]
    unfused = build(cfg, "forward", b, s, attention="unfused").layers[1][0]
    attn = 4.0 * b * cfg.n_heads * s * s * cfg.head_dim
    gemms = ("matmul", "attention")  # element-wise, norm and softmax FLOPs are not model FLOPs
    assert model_flops(fused, causal=True) == pytest.approx(fused.flops(gemms) - attn * (1 - (s + 1) / (2 * s)))
    assert model_flops(unfused, causal=True) == pytest.approx(model_flops(fused, causal=True), rel=1e-12)
    assert hardware_flops(fused) == pytest.approx(fused.flops() - attn * (1 - (s + 1) / (2 * s)))
    assert hardware_flops(unfused) == unfused.flops() > hardware_flops(fused)
    bert = get("bert-large")  # bidirectional: every entry counts
    enc = build(bert, "forward", b, 512).layers[1][0]
    assert model_flops(enc, causal=False) == enc.flops(gemms)
    assert hardware_flops(enc) == enc.flops()


def test_megatron_model_and_hardware_flops_closed_forms():
    """Model FLOPs: Narayanan et al. SC'21's 72*B*s*l*h^2*(1 + s/(6h) + V/(12*l*h)) with the causal
    attention term at its kept share (s+1)/(2s); hardware FLOPs (full recomputation, unfused
    attention, which multiplies the whole matrix) the paper's eq. 3, 96*B*s*l*h^2*(1 + s/(6h) + V/(16*l*h))."""
    cfg, n, gb, s = get("megatron-76.1b"), 1024, 1792, 2048
    plan = Plan(tp=8, pp=4, dp=32, micro_batch=1, global_batch=gb, recompute="full", schedule="interleaved",
                virtual_stages=3)
    r = evaluate(cfg, cluster("dgx-a100", n), plan, s, dtype="fp16", software=MEGATRON_2021)
    L, h, V = cfg.n_layers, cfg.hidden, cfg.vocab_size
    model = 72 * gb * s * L * h * h * (1 + (s + 1) / (12 * h) + V / (12 * L * h))
    hw = 96 * gb * s * L * h * h * (1 + s / (6 * h) + V / (16 * L * h))
    assert r.model_flops_per_s * r.step_time_s * n == pytest.approx(model, rel=0.01)
    assert r.hardware_flops_per_s * r.step_time_s * n == pytest.approx(hw, rel=0.01)
    assert 0 < r.mfu < r.hfu < 1


def _check_utilisation(ranked, best) -> None:
    assert 0 < best.mfu <= best.hfu <= 1
    for mfu, hfu in zip(ranked["mfu"], ranked["hfu"]):
        assert 0 < mfu <= hfu <= 1


@settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(system=st.sampled_from(["dgx-a100", "dgx-h100"]), n=st.sampled_from([1, 2, 8, 16]),
       model=st.sampled_from(["gpt2", "gpt3-125m", "bert-large", "llama2-7b", "mixtral-8x7b"]),
       seq=st.sampled_from([128, 512, 2048, 4096]), batch=st.sampled_from([8, 32, 64]),
       recompute=st.sampled_from([None, "full", "selective"]), attention=st.sampled_from(["fused", "unfused"]))
def test_optimized_plans_on_gpus_have_mfu_at_most_hfu_at_most_one(system, n, model, seq, batch, recompute, attention):
    from coda.placement import Software

    cfg = get(model)
    assume(seq <= cfg.max_seq_len)
    assume(recompute != "selective" or attention == "unfused")  # fused attention never stores the scores
    choices = {} if recompute is None else {"recompute": recompute}
    try:
        _, best, ranked = optimize(cfg, cluster(system, n), batch, seq, software=Software(attention=attention),
                                   **choices)
    except InfeasibleDesign:
        return  # nothing fits: no plan to bound
    _check_utilisation(ranked, best)


@settings(max_examples=12, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(n_tc=st.sampled_from([1, 2, 8]), side=st.sampled_from([32, 64, 128]),
       model=st.sampled_from(["gpt2", "gpt3-125m", "bert-large"]), seq=st.sampled_from([512, 1024, 2048]),
       recompute=st.sampled_from([None, "full"]))
def test_optimized_plans_on_accelerators_have_mfu_at_most_hfu_at_most_one(n_tc, side, model, seq, recompute):
    """Small designs (one 64x64 tensor core reached an MFU of 1.03 when full causal attention counted).
    Layer times from the list schedule (the ILP's warm start; the ILP is checked on one design below)."""
    cfg = get(model)
    assume(seq <= cfg.max_seq_len)
    acc = Accelerator(n_tc=n_tc, tc_rows=side, tc_cols=side, n_vc=1, vc_lanes=128, glb_bytes=32 * MiB)
    choices = {} if recompute is None else {"recompute": recompute}
    try:
        _, best, ranked = optimize(cfg, cluster("tpuv4-pod", 8, device=acc), 16, seq,
                                   layer_time=IlpLayerTime(time_limit_s=0.0), **choices)
    except InfeasibleDesign:
        return
    _check_utilisation(ranked, best)


def test_optimized_plans_on_a_small_accelerator_with_the_ilp():
    """The design class of the report (1 x 64x64 tensor core), causal GPT at s = 2048, ILP layer times."""
    acc = Accelerator(n_tc=1, tc_rows=64, tc_cols=64, n_vc=1, vc_lanes=128, glb_bytes=32 * MiB)
    _, best, ranked = optimize(get("gpt3-125m"), cluster("tpuv4-pod", 8, device=acc), 16, 2048, micro_batch=2)
    _check_utilisation(ranked, best)
    assert best.mfu > 0.5  # compute-bound: the bound is tight, not vacuous
