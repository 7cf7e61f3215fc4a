"""Analytical accelerator tile model: reference numbers, bounds, monotonicity, layer latencies."""

from __future__ import annotations

import dataclasses
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import coda.models
from coda.arch.accelerators import Accelerator, tpuv4_like
from coda.arch.gpus import gpu
from coda.errors import ConfigError
from coda.models import ops as O
from coda.predictor import explain
from coda.predictor.accel_tiles import (
    HBM_STREAM_FRACTION,
    AcceleratorTileModel,
    causal_fraction,
    core_type,
    gemm_hbm_bytes,
    gemm_mapping,
    layer_latencies,
)
from coda.predictor.roofline import roofline_time_s
from coda.units import MiB

MODEL = AcceleratorTileModel()
HYP = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --- strategies ---------------------------------------------------------------------------
pow2 = lambda lo, hi: st.integers(lo, hi).map(lambda i: 1 << i)  # noqa: E731
dim = st.integers(1, 6000)

designs = st.builds(
    Accelerator,
    n_tc=pow2(0, 9), tc_rows=pow2(1, 7), tc_cols=pow2(1, 7), n_vc=pow2(0, 9), vc_lanes=pow2(1, 8),
    glb_bytes=pow2(21, 27), hbm_bw_bytes_per_s=st.sampled_from([0.3e12, 1.2e12, 3.35e12]),
    clock_hz=st.sampled_from([0.7e9, 1.05e9, 1.8e9]),
)


@st.composite
def attention_ops(draw: st.DrawFn) -> O.Op:
    kv_heads = draw(pow2(0, 4))
    heads = kv_heads * draw(pow2(0, 3))
    kv_len = draw(st.integers(1, 4096))
    q_len = draw(st.sampled_from([1, kv_len, max(1, kv_len // 3)]))
    op = O.attention(draw(st.integers(1, 4)), heads, kv_heads, q_len, kv_len, draw(st.sampled_from([64, 80, 128])),
                     causal=draw(st.booleans()))
    return O.attention_backward(op) if draw(st.booleans()) else op


ops = st.one_of(
    st.builds(lambda m, k, n, b: O.matmul(m, k, n, batch=b), dim, dim, dim, st.integers(1, 8)),
    attention_ops(),
    st.builds(lambda n, f, i: O.elementwise(n, f, i), st.integers(1, 1 << 24), st.sampled_from([0, 1, 3, 8]),
              st.integers(1, 3)),
    st.builds(O.norm, st.integers(1, 8192), st.integers(1, 1 << 17)),
    st.builds(O.softmax, st.integers(1, 8192), st.integers(1, 1 << 17)),
    st.builds(O.embedding, st.integers(1, 8192), st.integers(1, 8192), st.integers(1, 1 << 17)),
)

GROWABLE = ("n_tc", "tc_rows", "tc_cols", "n_vc", "vc_lanes", "glb_bytes", "hbm_bw_bytes_per_s", "clock_hz")


# --- reference numbers on the TPUv4-like chip ---------------------------------------------
def test_large_gemm_reaches_90_percent_of_peak():
    acc = tpuv4_like()
    est = MODEL.estimate(O.matmul(8192, 8192, 8192), acc)
    assert est.bound == "compute"
    assert est.details["utilisation"] >= 0.90
    assert est.details["tile_shape"] == (128, 128, 8192)
    assert est.details["waves"] == 8 and est.details["n_tiles"] == 64


def test_gemv_is_hbm_bound():
    acc = tpuv4_like()
    op = O.matmul(1, 8192, 8192)
    est = MODEL.estimate(op, acc)
    assert est.bound == "memory"
    assert est.latency_s == pytest.approx(op.bytes / (acc.hbm_bw_bytes_per_s * HBM_STREAM_FRACTION), rel=0.03)


def test_vector_ops_bound_by_lanes_or_hbm():
    acc = tpuv4_like()
    lanes = acc.vc_lanes * acc.n_vc
    for op in (O.norm(2048, 4096), O.elementwise(1 << 24, 1, 2), O.softmax(4096, 2048), O.elementwise(10**6 + 3, 5)):
        n = op.dims["n_elements"] if op.kind == "elementwise" else op.dims["rows"] * op.dims["cols"]
        lane_s = -(-n // lanes) * (op.flops / n) / acc.clock_hz
        hbm_s = op.bytes / (acc.hbm_bw_bytes_per_s * HBM_STREAM_FRACTION)
        est = MODEL.estimate(op, acc)
        assert est.latency_s == pytest.approx(max(lane_s, hbm_s), rel=1e-12)
        assert est.bound == ("compute" if lane_s >= hbm_s else "memory")
    assert MODEL.estimate(O.norm(2048, 4096), acc).bound == "compute"  # 8 FLOP/element at 2.7e11 FLOP/s
    assert MODEL.estimate(O.elementwise(1 << 24, 1, 2), acc).bound == "memory"
    emb = MODEL.estimate(O.embedding(2048, 4096, 32000), acc)
    assert emb.bound == "memory" and emb.details["compute_s"] == 0.0


def test_details_and_dispatch():
    acc = tpuv4_like()
    est = explain(O.matmul(2048, 4096, 12288), acc)
    assert est.model == "accelerator-tiles"
    for key in ("tile_shape", "n_tiles", "waves", "wave_s", "utilisation", "compute_s", "memory_s", "hbm_bytes"):
        assert key in est.details
    assert est.details["wave_s"] * est.details["waves"] == pytest.approx(est.details["compute_s"])
    assert 0.0 < est.details["utilisation"] <= 1.0


def test_gemm_mapping_timing_formula():
    # One 128x128 array, one fold: SCALE-Sim 2*Sr + Sc + T - 2 cycles.
    g = gemm_mapping(1, 1000, 128, 128, 128, 128, 1)
    assert g.cycles == 2 * 128 + 128 + 1000 - 2 and (g.tiles, g.waves) == (1, 1)
    # Partial tile wastes cells: K = 129 needs two folds (the second uses one row).
    assert gemm_mapping(1, 1000, 129, 128, 128, 128, 1).cycles == 2 * (128 + 1000 - 2) + 2 * 129


def test_glb_size_decides_hbm_traffic():
    op = O.matmul(8192, 8192, 8192)
    assert gemm_hbm_bytes(O.matmul(1024, 1024, 1024), 128 * MiB)[0] == O.matmul(1024, 1024, 1024).bytes
    sizes = [2 * MiB, 8 * MiB, 32 * MiB, 128 * MiB]
    traffic = [gemm_hbm_bytes(op, g)[0] for g in sizes]
    assert all(a > b for a, b in zip(traffic, traffic[1:]))
    assert traffic[-1] >= op.bytes


def test_causal_attention_skips_masked_tiles():
    acc = tpuv4_like()
    assert causal_fraction(2048, 2048) == pytest.approx(136 / 256)
    assert causal_fraction(1, 4096) == 1.0
    causal = MODEL.estimate(O.attention(1, 32, 32, 2048, 2048, 128, causal=True), acc)
    full = MODEL.estimate(O.attention(1, 32, 32, 2048, 2048, 128, causal=False), acc)
    assert causal.details["compute_s"] == pytest.approx(full.details["compute_s"] * 136 / 256, rel=1e-6)
    fwd = O.attention(2, 32, 8, 1024, 1024, 128, causal=False)
    bwd = MODEL.estimate(O.attention_backward(fwd), acc).details["compute_s"]
    assert bwd == pytest.approx(2.5 * MODEL.estimate(fwd, acc).details["compute_s"], rel=1e-6)


def test_gqa_decode_packs_the_group_heads_as_rows():
    """Query heads sharing a K/V head stream through the same stationary tile: a GQA decode step is
    the per-(batch, kv head) GEMMs with g = heads/kv_heads rows, not heads GEMMs of one row each."""
    acc = tpuv4_like()
    r, c, p = acc.tc_rows, acc.tc_cols, acc.n_tc
    for heads, kv_heads in ((32, 8), (64, 8), (32, 32)):
        op = O.attention(4, heads, kv_heads, 1, 4096, 128, causal=True)
        g, bg = heads // kv_heads, 4 * kv_heads
        cycles = gemm_mapping(bg, g, 128, 4096, r, c, p).cycles + gemm_mapping(bg, g, 4096, 128, r, c, p).cycles
        assert MODEL.estimate(op, acc).details["compute_s"] == pytest.approx(cycles / acc.clock_hz, rel=1e-9)
    gqa = MODEL.estimate(O.attention(4, 32, 8, 1, 4096, 128), acc).details["compute_s"]
    mha = MODEL.estimate(O.attention(4, 32, 32, 1, 4096, 128), acc).details["compute_s"]
    assert gqa < mha / 3  # four heads per K/V head: the same weights-loading folds serve four rows


# --- properties ---------------------------------------------------------------------------
@HYP
@given(op=ops, acc=designs)
def test_never_below_roofline(op, acc):
    est = MODEL.estimate(op, acc)
    compute_s, memory_s = roofline_time_s(op, acc)  # causal attention: unmasked FLOPs only
    assert est.details["hbm_bytes"] >= op.bytes
    assert est.latency_s >= max(compute_s, memory_s) * (1 - 1e-12)
    assert 0.0 <= est.details["utilisation"] <= 1.0 + 1e-12


@HYP
@given(op=ops, acc=designs, field=st.sampled_from(GROWABLE))
def test_latency_never_increases_when_a_resource_grows(op, acc, field):
    bigger = dataclasses.replace(acc, name="", **{field: getattr(acc, field) * 2})
    assert MODEL.latency(op, bigger) <= MODEL.latency(op, acc) * (1 + 1e-12)


@HYP
@given(op=ops, acc=designs, data=st.data())
def test_more_cores_never_slower(op, acc, data):
    avail = acc.n_tc if core_type(op) == "tensor" else acc.n_vc
    p = data.draw(st.integers(1, avail))
    q = data.draw(st.integers(p, avail))
    t_p, t_q = MODEL.latency(op, acc, p), MODEL.latency(op, acc, q)
    assert t_q <= t_p * (1 + 1e-12)
    assert MODEL.latency(op, acc, 1) >= MODEL.latency(op, acc) * (1 - 1e-12)


@HYP
@given(m=dim, k=dim, n=dim, b=st.integers(1, 4), rows=pow2(1, 7), cols=pow2(1, 7), p=pow2(0, 9))
def test_gemm_mapping_never_beats_the_macs(m, k, n, b, rows, cols, p):
    g = gemm_mapping(b, m, k, n, rows, cols, p)
    assert g.cycles * rows * cols * p >= b * m * k * n
    assert g.waves == -(-g.tiles // p)


# --- layer latencies and bad input --------------------------------------------------------
def test_layer_latencies_cover_every_non_collective_op():
    acc = tpuv4_like()
    for tp in (1, 2):
        block = coda.models.build(coda.models.get("llama2-7b"), "forward", 1, 2048, tp=tp).layers[1][0]
        lat = layer_latencies(block, acc)
        expected = {op.name for op in block.ops() if op.kind != "collective"}
        assert set(lat) == expected and expected
        for op in block.ops():
            if op.kind == "collective":
                continue
            entry = lat[op.name]
            assert entry.core_type == core_type(op)
            assert entry.one_core_s >= entry.all_cores_s > 0
            assert entry.all_cores_s == MODEL.latency(op, acc)
    assert any(op.kind == "collective" for op in block.ops())  # tp=2 has all-reduces, skipped


def test_core_types():
    assert core_type(O.matmul(2, 3, 4)) == "tensor"
    assert core_type(O.attention(1, 2, 2, 8, 8, 64)) == "tensor"
    assert core_type(O.attention_backward(O.attention(1, 2, 2, 8, 8, 64))) == "tensor"
    for op in (O.elementwise(8), O.norm(2, 8), O.softmax(2, 8), O.embedding(2, 8, 16)):
        assert core_type(op) == "vector"
    with pytest.raises(ConfigError, match="collective"):
        core_type(O.collective("all_reduce", 1e6, 8))


@pytest.mark.parametrize("n_cores, field", [(0, "n_tc"), (9, "n_tc"), (True, "n_tc"), (2.0, "n_tc")])
def test_bad_core_counts(n_cores, field):
    with pytest.raises(ConfigError, match=f"n_cores.*{field}"):
        MODEL.estimate(O.matmul(64, 64, 64), tpuv4_like(), n_cores)
    with pytest.raises(ConfigError, match="n_vc"):
        MODEL.estimate(O.norm(64, 64), tpuv4_like(), 3)


def test_rejects_collectives_and_other_devices():
    with pytest.raises(ConfigError, match="collective"):
        MODEL.estimate(O.collective("all_gather", 1e6, 4), tpuv4_like())
    with pytest.raises(ConfigError, match="Accelerator"):
        MODEL.estimate(O.matmul(8, 8, 8), gpu("a100-sxm4-80gb"))


def test_estimate_is_cheap():
    acc = tpuv4_like()
    block = coda.models.build(coda.models.get("llama2-7b"), "forward", 1, 2048).layers[1][0]
    graph_ops = [op for op in block.ops() if op.kind != "collective"]
    start = time.perf_counter()
    for _ in range(20):
        for op in graph_ops:
            MODEL.estimate(op, acc)
    per_op = (time.perf_counter() - start) / (20 * len(graph_ops))
    assert per_op < 500e-6  # ~10-30 us in practice; loose for loaded CI machines
