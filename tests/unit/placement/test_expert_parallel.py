"""Expert parallelism (MoE): one device's graphs, memory, all-to-all time and plan checks, in closed form."""

import pytest

from coda.arch.clusters import cluster
from coda.errors import ConfigError, InfeasibleDesign
from coda.evaluate.training import training
from coda.models import build, get
from coda.placement import Plan, optimize
from coda.placement.chain import CostModel, Software, ep_groups

SEQ, MB = 1024, 1


@pytest.fixture(scope="module")
def mixtral():
    return get("mixtral-8x7b")


@pytest.mark.parametrize("phase", ["forward", "backward"])
def test_graph_flops_are_those_of_ep1_and_two_all_to_alls_per_pass(mixtral, phase):
    cfg, T = mixtral, MB * SEQ
    one = build(cfg, phase, MB, SEQ)
    for ep in (2, 4, 8):
        g = build(cfg, phase, MB, SEQ, ep=ep)
        assert g.flops() == pytest.approx(one.flops(), rel=1e-12)  # balanced routing: same work per device
        block = g.layers[1][0]
        a2a = [op for op in block.nodes if op.kind == "collective"]
        assert [op.dims["collective"] for op in a2a] == ["all_to_all"] * 2
        assert all(op.dims["group"] == ep and op.dims["n_bytes"] == T * cfg.experts_per_token * cfg.hidden * 2
                   for op in a2a)
        if phase == "forward":  # E/ep experts on the device, each ep times taller
            up = next(op for op in block.nodes if op.name == "expert_up")
            assert up.dims["batch"] == cfg.n_experts // ep
            assert up.dims["m"] == T * ep * cfg.experts_per_token // cfg.n_experts


def test_graph_parameters_hold_one_ep_th_of_the_experts(mixtral):
    cfg = mixtral
    dense_block = cfg.block_params() - cfg.n_experts * cfg.mlp_params()
    for ep in (1, 2, 8):
        block = build(cfg, "forward", MB, SEQ, ep=ep).layers[1][0]
        assert block.param_count() == pytest.approx(dense_block + cfg.n_experts // ep * cfg.mlp_params(), rel=1e-12)


def test_bad_ep_is_refused(mixtral):
    with pytest.raises(ConfigError, match="must divide its 8 experts"):
        build(mixtral, "forward", MB, SEQ, ep=3)
    with pytest.raises(ConfigError, match="needs an MoE model"):
        build(get("llama2-7b"), "forward", MB, SEQ, ep=2)
    cl = cluster("dgx-h100", 16)
    with pytest.raises(InfeasibleDesign, match="must divide its 8 experts"):
        training(mixtral, cl, Plan(tp=1, dp=16, ep=16, global_batch=16), SEQ)
    with pytest.raises(InfeasibleDesign, match=r"ep=4 must divide tp\*cp\*dp = 6"):
        training(mixtral, cluster("dgx-h100", 6), Plan(tp=2, dp=3, ep=4, sequence_parallel=True, global_batch=6), SEQ)
    with pytest.raises(InfeasibleDesign, match="needs sequence_parallel"):
        training(mixtral, cl, Plan(tp=2, dp=8, ep=8, global_batch=8), SEQ)
    with pytest.raises(ConfigError, match="needs sequence parallelism"):
        build(mixtral, "forward", MB, SEQ, tp=2, ep=2)
    with pytest.raises(InfeasibleDesign, match="needs an MoE model"):
        training(get("llama2-7b"), cl, Plan(tp=1, dp=16, ep=2, global_batch=16), SEQ)


def _run(cfg, ep, zero=1, dp=16):
    cl = cluster("dgx-h100", dp)
    plan = Plan(tp=1, pp=1, dp=dp, ep=ep, zero=zero, micro_batch=MB, global_batch=dp)
    return training(cfg, cl, plan, SEQ, check_memory=False)  # ep=1 does not fit: compared, not run


def test_memory_per_device_in_closed_form(mixtral):
    """Weights and gradients: 2 bytes x (dense + experts/ep); Adam states (12 bytes) sharded by
    ZeRO-1 over dp for the dense part and over dp/ep for the experts."""
    cfg, dp = mixtral, 16
    experts = cfg.n_layers * cfg.n_experts * cfg.mlp_params()
    dense = cfg.param_count() - experts
    for ep in (1, 2, 8):
        s = _run(cfg, ep, zero=1).pipeline.stages[0]
        assert s.weight_bytes == pytest.approx(2 * (dense + experts / ep), rel=1e-9)
        assert s.grad_bytes == s.weight_bytes
        shard_e = dp if ep == 1 else dp // ep
        assert s.optim_bytes == pytest.approx(12 * (dense / dp + experts / ep / shard_e), rel=1e-9)


def e_per(cfg, ep):
    """Expert parameters of one device's block."""
    return cfg.n_experts // ep * cfg.mlp_params()


def test_zero3_with_expert_parallelism(mixtral):
    """ZeRO-3 shards the dense weights over dp and the experts over the expert-data-parallel group
    (dp/ep devices); a unit gathers each part over its own group."""
    cfg, dp = mixtral, 16
    experts = cfg.n_layers * cfg.n_experts * cfg.mlp_params()
    dense = cfg.param_count() - experts
    for ep in (2, 8):
        r = _run(cfg, ep, zero=3)
        s = r.pipeline.stages[0]
        held = dense / dp + experts / ep / (dp // ep)
        assert s.weight_bytes == pytest.approx(2 * held, rel=1e-9) and s.grad_bytes == s.weight_bytes
        assert s.optim_bytes == pytest.approx(12 * held, rel=1e-9)
        cl = cluster("dgx-h100", dp)
        chain = CostModel(cfg, cl, SEQ, software=Software()).terms(r.plan).chain
        block = 1 + cfg.n_layers // 2
        dense_b, expert_b = 2 * (cfg.block_params() - cfg.n_experts * cfg.mlp_params()), 2 * e_per(cfg, ep)

        ag, rs = ((cl.collective_cost(kind, tuple(range(dp))).time(dense_b)
                   + cl.collective_cost(kind, tuple(range(0, dp, ep))).time(expert_b))
                  for kind in ("all_gather", "reduce_scatter"))
        # per micro-batch: a gather in the forward, a gather and a reduce-scatter in the backward
        moved = chain.z3_s[block] + chain.z3_hidden_s[block]
        assert moved == pytest.approx(2 * ag + rs, rel=1e-9)
    assert _run(cfg, 8, zero=3).peak_memory_bytes < _run(cfg, 1, zero=3).peak_memory_bytes


def test_bounds_are_below_every_plan(mixtral, assert_bounds_hold):
    """The pruning bounds of `optimize` stay below every plan's step time and weights + gradients +
    optimizer states per device, for every ZeRO stage and expert-parallel width (including tp > ep,
    where expert states are sharded over more devices than the dense ones)."""
    from coda.placement.optimize import candidate_plans

    plans = [p for p in candidate_plans(mixtral, 16, 16, 8, ep=(1, 2, 4, 8), micro_batch=1) if p.pp == 1]
    assert {p.ep for p in plans} == {1, 2, 4, 8} and any(p.tp > p.ep > 1 for p in plans)
    assert_bounds_hold(mixtral, cluster("dgx-h100", 16), SEQ, plans)


def test_ep_comm_is_four_all_to_alls_per_block_and_micro_batch(mixtral):
    cfg = mixtral
    r = _run(cfg, 8)
    cl = cluster("dgx-h100", 16)
    group = tuple(ep_groups(r.plan, 0)[0])
    assert group == tuple(range(8))  # tp=1: eight consecutive ranks, one NVLink domain
    one = cl.collective_cost("all_to_all", group).time(MB * SEQ * cfg.experts_per_token * cfg.hidden * 2)
    m = r.plan.micro_batches
    assert r.breakdown()["ep_comm"] == pytest.approx(m * cfg.n_layers * 4 * one, rel=1e-9)
    assert _run(cfg, 1).breakdown()["ep_comm"] == 0.0


def test_expert_gradients_need_no_reduction_when_ep_spans_the_data_parallel_group(mixtral):
    """With ep = dp every expert lives on one device: only the dense gradients are reduced."""
    cfg = mixtral
    model = CostModel(cfg, cluster("dgx-h100", 8), SEQ, software=Software())
    for ep, expert_share in ((8, 0.0), (1, 1.0)):
        sync = model.terms(Plan(tp=1, dp=8, ep=ep, global_batch=8)).chain.sync_bytes.sum()
        experts_local = cfg.n_layers * cfg.n_experts // ep * cfg.mlp_params()
        dense = cfg.param_count() - cfg.n_layers * cfg.n_experts * cfg.mlp_params()
        assert sync == pytest.approx(2 * (dense + expert_share * experts_local), rel=1e-9)


def test_optimize_over_ep_is_the_better_of_each(mixtral):
    cl = cluster("dgx-h100", 16)
    kw = dict(zero=1, tp=1, micro_batch=1)
    both = optimize(mixtral, cl, 32, SEQ, ep=(1, 8), **kw)[1].step_time_s
    each = [optimize(mixtral, cl, 32, SEQ, ep=ep, **kw)[1].step_time_s for ep in (1, 8)]
    assert both == pytest.approx(min(each), rel=1e-12)


def test_folded_experts_with_tensor_parallelism(mixtral):
    """tp 2 with SP and ep 8 on 16 devices (MoE parallel folding): attention is tensor-split, the
    expert layer routes the T/2 tokens of the SP shard to whole experts, one per device, with no
    TP collective of its own; expert-parallel groups are 8 consecutive ranks, expert-data-parallel
    groups ranks 8 apart."""
    cfg, T = mixtral, MB * SEQ
    block = build(cfg, "forward", MB, SEQ, tp=2, sequence_parallel=True, ep=8).layers[1][0]
    colls = sorted((op.dims["collective"], op.dims["group"]) for op in block.nodes if op.kind == "collective")
    assert colls == [("all_gather", 2), ("all_to_all", 8), ("all_to_all", 8), ("reduce_scatter", 2)]
    up = next(op for op in block.nodes if op.name == "expert_up")
    assert (up.dims["batch"], up.dims["m"], up.dims["n"]) == (1, T // 2 * 8 * 2 // 8, 2 * cfg.ffn_hidden)
    dense = build(cfg, "forward", MB, SEQ, tp=2, sequence_parallel=True).layers[1][0]
    assert block.flops() == pytest.approx(dense.flops(), rel=1e-3)  # same work per device, split differently
    plan = Plan(tp=2, dp=8, ep=8, sequence_parallel=True, zero=1, global_batch=8)
    assert ep_groups(plan, 0) == (list(range(8)), [0, 8])
    s = training(cfg, cluster("dgx-h100", 16), plan, SEQ, check_memory=False).pipeline.stages[0]
    experts = cfg.n_layers * cfg.n_experts * cfg.mlp_params()
    dense_params = cfg.param_count() - experts
    assert s.weight_bytes == pytest.approx(2 * (dense_params / 2 + experts / 8), rel=2e-3)  # norms are not split


def test_ep_overlap_hides_all_to_alls_up_to_the_block_compute(mixtral):
    """Software.ep_overlap: per block the exposed all-to-all time is max(0, a2a - fwd - bwd); the
    hidden part is reported as overlapped; the step is never longer than without the overlap."""
    cl = cluster("dgx-h100", 16)
    plan = Plan(tp=1, dp=16, ep=8, zero=1, global_batch=16)
    base = training(mixtral, cl, plan, SEQ, check_memory=False)
    over = training(mixtral, cl, plan, SEQ, check_memory=False, software=Software(ep_overlap=True))
    a2a = base.breakdown()["ep_comm"]
    compute = base.breakdown()["forward"] + base.breakdown()["backward"]
    assert over.breakdown()["ep_comm"] == pytest.approx(max(0.0, a2a - compute), abs=1e-12)
    assert over.breakdown()["ep_comm"] + over.overlapped()["ep_comm"] == pytest.approx(a2a, rel=1e-9)
    assert over.step_time_s <= base.step_time_s
    # Qwen3-30B-A3B with ep 32 over 4 nodes: the all-to-alls outlast the block's compute
    cfg, plan = get("qwen3-30b-a3b"), Plan(tp=1, dp=32, ep=32, zero=1, global_batch=32)
    chains = [CostModel(cfg, cluster("dgx-h100", 32), 4096, software=sw).terms(plan).chain
              for sw in (Software(), Software(ep_overlap=True))]
    a2a, compute = chains[0].ep_s[1], chains[0].fwd_s[1] + chains[0].bwd_s[1]
    assert a2a > compute and chains[1].ep_s[1] == pytest.approx(a2a - compute, rel=1e-12)
    assert chains[1].ep_hidden_s[1] == pytest.approx(compute, rel=1e-12)
