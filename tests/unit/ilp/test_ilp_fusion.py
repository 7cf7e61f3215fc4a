"""Fusion of matmul + single elementwise/norm consumer, and collective bridging."""

import pytest

from coda import models
from coda.arch.accelerators import tpuv4_like
from coda.ilp import make_problem, roofline_latencies
from coda.ilp.fusion import FUSED, fusion_pairs


def block(phase, tp=1):
    return models.build(models.get("llama2-7b"), phase, batch=1, seq_len=4096, tp=tp).layers[1][0]


def test_fusion_pairs_llama_forward():
    assert fusion_pairs(block("forward")) == [
        ("qkv", "rope"), ("out_proj", "attn_residual"), ("mlp_up", "mlp_act"), ("mlp_down", "mlp_residual")]


def test_collective_between_blocks_fusion_and_is_bridged():
    g = block("forward", tp=8)
    pairs = fusion_pairs(g)
    assert ("out_proj", "attn_residual") not in pairs and ("qkv", "rope") in pairs
    p = make_problem(g, tpuv4_like(), roofline_latencies(g, tpuv4_like()))
    assert set(p.network) == {"attn.all_reduce", "mlp.all_reduce"}
    # out_proj -> all_reduce -> attn_residual becomes out_proj -> attn_residual
    assert (p.task_of["out_proj"], p.task_of["attn_residual"]) in p.edges


@pytest.mark.parametrize("mode, combine", [("max", max), ("sum", lambda a, b: a + b)])
def test_fused_latency(mode, combine):
    g = block("backward")
    acc = tpuv4_like()
    lat = roofline_latencies(g, acc)
    p = make_problem(g, acc, lat, fused_latency=mode)
    fused = [t for t in p.tasks if t.core_type == FUSED]
    assert {t.name for t in fused} == {"mlp_down.dgrad+mlp_act.bwd", "mlp_up.dgrad+ln2.bwd", "qkv.dgrad+ln1.bwd"}
    for t in fused:
        a, b = (lat[m] for m in t.members)
        assert t.one_core_s == combine(a.one_core_s, b.one_core_s)
        assert t.all_cores_s == combine(a.all_cores_s, b.all_cores_s)


def test_no_fusion_keeps_every_op():
    g = block("backward")
    p = make_problem(g, tpuv4_like(), roofline_latencies(g, tpuv4_like()), fuse=False)
    assert p.n == g.number_of_nodes() and all(t.core_type != FUSED for t in p.tasks)
