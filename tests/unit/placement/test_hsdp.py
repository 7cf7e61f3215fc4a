"""Hybrid sharding (`Layout.hsdp`, PyTorch FSDP `HYBRID_SHARD`): ZeRO states sharded over the first
dp*cp/hsdp members of each data-parallel group and replicated over hsdp such groups, whose gradient
shards are all-reduced. Closed forms, its place between DDP and full sharding, rules, optimize, CLI."""

import pytest

from coda.arch.clusters import Cluster, Level, cluster
from coda.cli import main
from coda.errors import ConfigError
from coda.models import get
from coda.placement import CostModel, Plan, Software, evaluate, optimize

CFG = get("megatron-1.7b")
SEQ, N = 2048, 32  # four DGX A100 nodes
P = CFG.param_count()


def _plan(zero: int = 3, hsdp: int = 1, m: int = 1) -> Plan:
    return Plan(dp=N, zero=zero, hsdp=hsdp, micro_batch=1, global_batch=N * m, recompute="full")


def _run(cl=None, **kw):
    return evaluate(CFG, cl or cluster("dgx-a100", N), _plan(**kw), SEQ)


def _moved_s(r) -> float:
    """Seconds of data-parallel traffic one step runs, exposed or hidden (one micro-batch)."""
    s = r.pipeline.stages[0]
    return s.z3_s + s.z3_hidden_s + s.dp_sync_s + s.dp_gather_s


@pytest.mark.parametrize("hsdp", [1, 2, 4, 8])
def test_static_memory_is_sharded_over_the_group(hsdp):
    s = _run(hsdp=hsdp).pipeline.stages[0]
    shard = N // hsdp
    assert s.weight_bytes == pytest.approx(2 * P / shard, rel=1e-9)
    assert s.grad_bytes == pytest.approx(2 * P / shard, rel=1e-9)
    assert s.optim_bytes == pytest.approx(12 * P / shard, rel=1e-9)


def test_zero1_hsdp_shards_the_optimizer_over_the_group():
    s = _run(zero=1, hsdp=4).pipeline.stages[0]
    assert s.optim_bytes == pytest.approx(12 * P / 8, rel=1e-9) and s.weight_bytes == pytest.approx(2 * P, rel=1e-9)


def test_per_unit_traffic_closed_form():
    """hsdp 4 on 4 nodes: each block gathers twice and reduce-scatters once inside its node, then
    all-reduces its 1/8 gradient shard with the 3 other nodes' matching device."""
    cl = cluster("dgx-a100", N)
    ch = CostModel(CFG, cl, SEQ, software=Software()).terms(_plan(hsdp=4)).chain
    node, replicas = tuple(range(8)), tuple(range(0, N, 8))
    b = 2 * CFG.block_params()
    want = (2 * cl.collective_cost("all_gather", node).time(b) + cl.collective_cost("reduce_scatter", node).time(b)
            + cl.collective_cost("all_reduce", replicas).time(b / 8))
    assert ch.z3_s[1] + ch.z3_hidden_s[1] == pytest.approx(want, rel=1e-12)


def test_one_replica_group_is_full_sharding_and_n_groups_are_ddp_bytes():
    """hsdp = 1 is plain ZeRO-3; hsdp = dp*cp shards over single devices, so only the all-reduce of
    every gradient over all replicas is left: DDP's bytes, with one call (latency) per unit."""
    full = CostModel(CFG, cluster("dgx-a100", N), SEQ).terms(_plan(hsdp=1)).chain
    assert full.weight_bytes.sum() == pytest.approx(2 * P / N, rel=1e-9)
    cl = cluster("dgx-a100", N)
    ddp_like = CostModel(CFG, cl, SEQ).terms(_plan(hsdp=N)).chain
    ar = cl.collective_cost("all_reduce", tuple(range(N)))
    units = int((ddp_like.weight_bytes > 0).sum())
    moved = (ddp_like.z3_s + ddp_like.z3_hidden_s).sum()
    assert moved == pytest.approx(ar.time(2 * P) + (units - 1) * ar.latency_s, rel=1e-9)


def test_between_ddp_and_full_sharding():
    """On DGX A100 nodes, memory and data-parallel traffic of every hybrid split lie between
    DDP's (replicated, one all-reduce) and full sharding's (gathers and reduce-scatters over all)."""
    ddp, fsdp = _run(zero=0), _run(hsdp=1)
    hybrid = [_run(hsdp=h) for h in (2, 4, 8)]
    for r in hybrid:
        assert fsdp.peak_memory_bytes < r.peak_memory_bytes < ddp.peak_memory_bytes
        assert _moved_s(ddp) < _moved_s(r) < _moved_s(fsdp)
    mem = [r.peak_memory_bytes for r in hybrid]
    assert mem == sorted(mem)


def test_sharding_inside_nodes_pays_off_on_a_slow_network():
    """With one 200 Gb/s NIC per node (3.1 GB/s per GPU), full sharding's gathers cross the slow
    network; sharding inside a node sends only the gradient shards across it."""
    base = cluster("dgx-a100", N)
    slow = Cluster(base.device, N, (base.levels[0], Level("ib-1-nic", N, 25e9 / 8, base.levels[1].latency_s, 0.96)),
                   base.collective_overhead_s, "one-nic")
    assert _run(slow, hsdp=4).step_time_s < _run(slow, hsdp=1).step_time_s
    assert _moved_s(_run(slow, hsdp=4)) < _moved_s(_run(slow, hsdp=1))


def test_rules():
    with pytest.raises(ConfigError, match="hsdp=3 replica groups must divide the dp\\*cp = 32 replicas"):
        _plan(hsdp=3)
    with pytest.raises(ConfigError, match="hsdp=2 shards ZeRO states within groups of replicas; it needs zero >= 1"):
        _plan(zero=0, hsdp=2)
    with pytest.raises(ConfigError, match="hsdp=2 with ep=8"):
        Plan(dp=16, ep=8, zero=3, hsdp=2, global_batch=16)


def test_optimize_searches_hsdp():
    kw = dict(tp=1, pp=1, dp=N, micro_batch=1, recompute="full", zero=3)
    _, best, ranked = optimize(CFG, cluster("dgx-a100", N), N, SEQ, hsdp=(1, 2, 4), **kw)
    brute = min(_run(hsdp=h).step_time_s for h in (1, 2, 4))
    assert best.step_time_s == brute
    assert set(ranked["hsdp"]) <= {1, 2, 4}
    assert best.plan.describe().endswith(f"zero3 hsdp{best.plan.hsdp}" if best.plan.hsdp > 1 else "zero3")


def test_cli(capsys):
    args = ["train", "--model", "megatron-1.7b", "--cluster", "dgx-a100", "--devices", str(N), "--global-batch",
            str(N), "--seq-len", str(SEQ), "--tp", "1", "--pp", "1", "--dp", str(N), "--micro-batch", "1",
            "--recompute", "full", "--no-sequence-parallel", "--schedule", "1f1b", "--virtual-stages", "1",
            "--zero", "3", "--hsdp", "4"]
    assert main(args) == 0
    assert "zero3 hsdp4" in capsys.readouterr().out
    assert main(args[:-1] + ["1,4"]) == 2
    assert "a fully given plan takes one hsdp value" in capsys.readouterr().err
