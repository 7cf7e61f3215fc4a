"""TP communication overlapped with its GEMMs (`Software.tp_comm_overlap`, `coda.placement.tp_overlap`)."""

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coda.arch.clusters import cluster
from coda.models.config import ModelConfig
from coda.placement import MEGATRON_CORE, MEGATRON_CORE_2024, Plan, Software, costs
from coda.placement import tp_overlap as T
from coda.placement.chain import CostModel
from coda.placement.layout import Layout
from coda.placement.optimize import _bound_data
from coda.placement.step import evaluate_plan

CFG = ModelConfig(name="gpt-7168", n_layers=4, hidden=7168, n_heads=56, ffn_hidden=4 * 7168, vocab_size=131072,
                  max_seq_len=4096, tied_embeddings=False)
POS = st.floats(1e-7, 1e-2)


def _model(overlap: bool, cfg: ModelConfig = CFG) -> CostModel:
    return CostModel(cfg, cluster("dgx-h100", 8), 4096, "bf16", dataclasses.replace(MEGATRON_CORE,
                                                                                    tp_comm_overlap=overlap))


def test_off_by_default_in_every_existing_profile():
    from coda.placement import DEEPSPEED_2021, FSDP, MEGATRON_2021

    assert not any(s.tp_comm_overlap for s in (Software(), MEGATRON_2021, MEGATRON_CORE, FSDP, DEEPSPEED_2021))
    assert MEGATRON_CORE_2024.tp_comm_overlap


@settings(max_examples=200, deadline=None)
@given(g=POS, r=POS, f=st.floats(1.0, 2.0))
def test_both_runs_at_least_the_longer_and_at_most_the_sum(g, r, f):
    t = T.both(g, r, f)
    assert max(g, r) <= t * (1 + 1e-12) and t <= (g + r) * (1 + 1e-12)
    assert T.both(g, r, 1.0) == pytest.approx(max(g, r))  # no SM contention: the longer of the two


@settings(max_examples=200, deadline=None)
@given(g=POS, p=POS, t=st.sampled_from([2, 4, 8]))
def test_ring_exchange_hides_all_but_the_excess_of_each_step(g, p, t):
    # t chunks of g, t - 1 steps of p: hidden entirely when a step is shorter than a chunk
    total = T.ring_exchange_s(g, p, t)
    assert total - t * g == pytest.approx((t - 1) * max(0.0, p - g), abs=1e-15)


@settings(max_examples=200, deadline=None)
@given(g=POS, r=POS, f=st.floats(1.0, 1.5))
def test_pipeline_leaves_the_last_chunks_reduce_scatter_exposed(g, r, f):
    total = T.pipeline_s(g, r, f, splits=4)
    assert total >= 4 * g + r - 1e-15  # the last chunk's reduce-scatter follows the last GEMM chunk
    assert total <= 4 * g + 4 * r + 1e-15  # never worse than not overlapping


def test_pairs_follow_transformer_engines_methods():
    gr = costs.layer_graphs(CFG, Layout(tp=8, micro_batch=1, sequence_parallel=True), 4096, "bf16",
                            MEGATRON_CORE.graph_options)
    fwd = {(c.name, m, g.name) for c, m, g in T._pairs(gr.fwd[1])}
    assert fwd == {("attn.all_gather", "ring_exchange", "qkv"), ("attn.reduce_scatter", "pipeline", "out_proj"),
                   ("mlp.all_gather", "ring_exchange", "mlp_up"), ("mlp.reduce_scatter", "pipeline", "mlp_down")}
    bwd = {(m, g.name) for _, m, g in T._pairs(gr.bwd[1])}
    assert bwd == {("ring_exchange", "out_proj.dgrad"), ("ring_exchange", "mlp_down.dgrad"),
                   ("bulk", "qkv.wgrad"), ("bulk", "mlp_up.wgrad")}


def test_exposed_tp_time_between_zero_and_unoverlapped():
    lay = Layout(tp=8, micro_batch=1, sequence_parallel=True)
    on, off = _model(True), _model(False)
    fwd, bwd = T.exposed_tp_times(on, lay)
    prof = off.profile(lay)
    plain = [[sum(on.cluster.collective_cost(k, 8).time(b) for k, b in colls) for colls in cc]
             for cc in (prof.fwd_coll, prof.bwd_coll)]
    for got, ref in zip((fwd, bwd), plain):
        assert got[0] == pytest.approx(ref[0]) and got[-1] == pytest.approx(ref[-1])  # embedding, head: as before
        assert 0.0 <= got[1] < ref[1]  # the block hides part of its collectives


def test_overlap_changes_nothing_without_sequence_parallelism_or_tp():
    for lay in (Layout(tp=8, micro_batch=1, sequence_parallel=False), Layout(tp=1, micro_batch=1)):
        assert not T.applies(_model(True), lay)
        plan = Plan(tp=lay.tp, pp=1, dp=8 // lay.tp, micro_batch=1, global_batch=8 // lay.tp,
                    sequence_parallel=lay.sequence_parallel, recompute="none", zero=0)
        small = _model(True).cluster
        on = evaluate_plan(CostModel(CFG, small, 4096, "bf16", MEGATRON_CORE_2024), plan, check_memory=False)
        off = evaluate_plan(CostModel(CFG, small, 4096, "bf16", dataclasses.replace(MEGATRON_CORE_2024,
                                                                                  tp_comm_overlap=False)),
                            plan, check_memory=False)
        assert on.step_time_s == off.step_time_s


def test_overlap_shortens_a_sequence_parallel_step():
    plan = Plan(tp=8, pp=1, dp=1, micro_batch=1, global_batch=2, sequence_parallel=True, recompute="full", zero=0)
    on = evaluate_plan(_model(True), plan, check_memory=False)
    off = evaluate_plan(_model(False), plan, check_memory=False)
    assert on.breakdown()["tp_comm"] < off.breakdown()["tp_comm"]
    assert on.step_time_s < off.step_time_s
    assert on.breakdown()["forward"] == off.breakdown()["forward"]  # compute itself unchanged


@pytest.mark.parametrize("recompute", ["none", "full"])
@pytest.mark.parametrize("micro_batch", [1, 2])
def test_search_lower_bound_holds_with_overlapped_tp_collectives(recompute, micro_batch):
    """`optimize`'s branch-and-bound lower bound stays below the step time when the TP collectives hide (it
    counts a block's as 0); counting them whole would exceed the step of these plans and prune them."""
    model = CostModel(CFG, cluster("dgx-h100", 8), 4096, "bf16", MEGATRON_CORE_2024)
    plan = Plan(tp=8, pp=1, dp=1, micro_batch=micro_batch, global_batch=4, sequence_parallel=True,
                recompute=recompute, zero=0)
    assert _bound_data(model)(plan)[0] <= evaluate_plan(model, plan, check_memory=False).step_time_s
