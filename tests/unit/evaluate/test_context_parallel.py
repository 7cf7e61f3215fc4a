"""Context-parallel serving in `coda.evaluate.inference` (`coda.evaluate.context_parallel`): the
ring's closed forms, cp = 1 unchanged, KV per device, roofline bounds, and bad input."""

import dataclasses
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coda.arch.clusters import cluster
from coda.errors import ConfigError, InfeasibleDesign
from coda.evaluate.context_parallel import (
    cp_reasons,
    local_tokens,
    ring_cost,
    ring_ops,
    ring_time_s,
)
from coda.evaluate.inference import inference, kv_cache_bytes
from coda.models import get
from coda.models import ops as O


@pytest.fixture(scope="module")
def llama8():
    return get("llama3-8b")


@pytest.fixture(scope="module")
def h100x64():
    return cluster("dgx-h100", 64)


def _prefill_flops(cfg, p):
    """Closed form: 2 FLOPs per weight and token of the blocks, plus causal attention 4 s^2 (a d) / 2 per layer."""
    blocks = cfg.param_count() - cfg.embedding_params() - cfg.head_params()
    return 2.0 * blocks * p + cfg.n_layers * 4.0 * p * p * cfg.n_heads * cfg.head_dim / 2


# -- the ring's closed forms ----------------------------------------------------------------------


def test_ring_time_closed_form():
    assert ring_time_s(3.0, 1.0, 100.0, 1) == 3.0  # cp = 1: the op itself, no transfer
    assert ring_time_s(2.0, 1.0, 0.5, 4) == 2.0 + 2 * 1.0 + 1.0  # transfers hidden: the compute
    assert ring_time_s(2.0, 1.0, 5.0, 4) == 5.0 + 2 * 5.0 + 1.0  # transfers exposed: cp-1 of them + last step


@given(d=st.floats(1e-6, 1.0), o=st.floats(1e-6, 1.0), x=st.floats(0.0, 1.0), cp=st.integers(2, 256))
def test_ring_time_bounds(d, o, x, cp):
    t = ring_time_s(d, o, x, cp)
    assert t >= (d + (cp - 1) * o) * (1 - 1e-12)  # never below the compute
    assert t >= (cp - 1) * x * (1 - 1e-12)  # nor below the transfers, which run one after another
    assert t <= d + (cp - 1) * o + (cp - 1) * x + 1e-12  # nor above doing them without overlap


def test_zigzag_split_balances_causal_work(llama8):
    """Step 0 (causal, q x q) and every other step (unmasked, q x q/2) score the same number of
    query-key pairs, so each of cp ranks does 1/cp of the causal attention."""
    q = local_tokens(llama8, 1 << 20, 8)
    assert q == (1 << 20) // 8
    diag = O.attention(1, 32, 8, q, q, 128, True)
    r = ring_ops(diag, llama8, 0, 8)
    assert r.off_diagonal.dims["kv_len"] == q // 2 and not r.off_diagonal.dims["causal"]
    pairs = q * q / 2 + 7 * q * (q // 2)
    assert pairs == pytest.approx((1 << 20) ** 2 / 2 / 8, rel=1e-5)
    # K and V of q tokens (2 g d e) against the queries (a d e): pass-KV moves half as much for GQA 32/8
    assert r.kv_bytes == pytest.approx(r.q_bytes / 2)


def test_padding_and_bidirectional_shares(llama8):
    assert local_tokens(llama8, 1_000_000, 64) == 2 * math.ceil(1_000_000 / 128)
    assert local_tokens(llama8, 7, 1) == 7
    bert = get("bert-base")
    assert local_tokens(bert, 511, 4) == 128


def test_pass_q_wins_when_most_keys_are_cached(llama8, h100x64):
    """A short chunk after a long cached context: passing its queries beats passing the big KV shards
    (Yang et al. 2024, persistent-KV prefill)."""
    q = local_tokens(llama8, 1024, 8)
    diag = O.attention(1, 32, 8, q, 100_000 // 8 + q, 128, True)
    r = ring_ops(diag, llama8, 100_000, 8)
    assert r.kv_bytes > 10 * r.q_bytes
    cost = ring_cost(h100x64, r, 1e-4, 1e-4, 1, 8)
    assert cost.variant == "pass-q"
    full = ring_ops(O.attention(1, 32, 8, 131072, 131072, 128, True), llama8, 0, 8)
    assert ring_cost(h100x64, full, 0.5, 0.5, 1, 8).variant == "pass-kv"


# -- the static inference path --------------------------------------------------------------------


def test_cp1_is_the_default(llama8, h100x64):
    a = inference(llama8, h100x64, 2, 4, 3000, 20)
    b = inference(llama8, h100x64, 2, 4, 3000, 20, cp=1)
    assert a == b and a.cp == 1 and a.ring == ""


@pytest.mark.parametrize("cp", [2, 4, 8])
def test_kv_cache_per_device_divides_by_cp(llama8, h100x64, cp):
    ctx = 65536
    r = inference(llama8, h100x64, 2, 1, ctx - 64, 64, cp=cp)
    total = kv_cache_bytes(llama8, 1, ctx, 2)
    assert r.kv_cache_bytes == pytest.approx(total / cp, rel=1e-12)
    assert r.weights_bytes == inference(llama8, h100x64, 2, 1, ctx - 64, 64).weights_bytes  # replicated over cp


def test_ttft_falls_with_cp_until_communication_dominates(llama8, h100x64):
    """A 128k prompt keeps gaining up to 64 devices; a 4k one stops once its ring crosses nodes."""
    long = [inference(llama8, h100x64, 1, 1, 131072, 2, cp=cp) for cp in (1, 2, 4, 8, 16, 32, 64)]
    assert all(b.ttft_s < a.ttft_s for a, b in zip(long, long[1:]))
    short = {cp: inference(llama8, h100x64, 1, 1, 4096, 2, cp=cp) for cp in (1, 8, 16, 64)}
    assert short[8].ttft_s < short[1].ttft_s
    assert short[16].ttft_s > short[8].ttft_s and short[16].ttft_comm_s > 0.1 * short[16].ttft_s
    assert short[64].ttft_s > short[16].ttft_s


def test_decode_pays_the_combine(llama8, h100x64):
    """A decode step attends 1/cp of the context but adds an all-gather per layer: its collectives
    grow with cp while the KV read per device falls."""
    one = inference(llama8, h100x64, 1, 1, 500_000, 8, check_memory=False)
    eight = inference(llama8, h100x64, 1, 1, 500_000, 8, cp=8)
    assert one.tpot_comm_s == 0 and eight.tpot_comm_s > 0
    assert eight.tpot_s - eight.tpot_comm_s < one.tpot_s  # the attention part shrinks


@settings(max_examples=25, deadline=None)
@given(p=st.integers(256, 1 << 17), cp=st.sampled_from([1, 2, 4, 8, 16]), tp=st.sampled_from([1, 2, 4]))
def test_roofline_and_memory_bounds(llama8, h100x64, p, cp, tp):
    r = inference(llama8, h100x64, tp, 1, p, 4, cp=cp, check_memory=False)
    peak = h100x64.device.peak_flops("bf16")
    assert r.ttft_s >= _prefill_flops(llama8, p) / (cp * tp) / peak
    assert 0 <= r.ttft_comm_s <= r.ttft_s
    bw = h100x64.device.hbm_bw_bytes_per_s
    assert r.tpot_s >= (r.weights_bytes + kv_cache_bytes(llama8, 1, math.ceil(p / cp), tp)) / bw
    assert r.kv_cache_bytes == pytest.approx(kv_cache_bytes(llama8, 1, math.ceil((p + 4) / cp), tp), rel=1e-12)
    assert r.ring == ("" if cp == 1 else "pass-kv")
    assert r.tokens_per_s_per_device == pytest.approx(r.tokens_per_s_per_replica / (tp * cp))
    assert r.replicas == 64 // (tp * cp)


def test_plan_carries_cp(llama8, h100x64):
    from coda.placement.plan import Plan

    plan = Plan(tp=2, cp=4, dp=8, stage_layers=(llama8.n_layers,))
    assert inference(llama8, h100x64, plan, 1, 8192, 8) == inference(llama8, h100x64, 2, 1, 8192, 8, cp=4)


# -- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize("cp", [0, -1, True, 2.0, "2"])
def test_bad_cp_values(llama8, h100x64, cp):
    with pytest.raises(ConfigError, match="cp="):
        inference(llama8, h100x64, 1, 1, 4096, 4, cp=cp)


def test_cp_refusals(llama8, h100x64):
    with pytest.raises(ConfigError, match="2\\*cp = 16 chunks"):
        inference(llama8, h100x64, 1, 1, 10, 4, cp=8)
    windowed = dataclasses.replace(llama8, sliding_window=4096)
    with pytest.raises(ConfigError, match="sliding window"):
        inference(windowed, h100x64, 1, 1, 8192, 4, cp=2)
    with pytest.raises(ConfigError, match="ep=1 with cp"):
        inference("mixtral-8x7b", h100x64, 1, 2, 8192, 4, ep=2, cp=2)
    with pytest.raises(InfeasibleDesign, match="tp\\*cp\\*pp\\*ep=2\\*3\\*1\\*1"):
        inference(llama8, h100x64, 2, 1, 8192, 4, cp=3)
    assert cp_reasons(llama8, 1, 1) == []


def test_out_of_memory_suggests_cp(llama8):
    with pytest.raises(InfeasibleDesign, match="not even one sequence fits.*or cp=") as e:
        inference(llama8, cluster("dgx-h100", 8), 1, 1, 1_000_000, 16)
    assert "\n" not in str(e.value)
