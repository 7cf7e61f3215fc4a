"""ZeRO-2: gradients and optimizer states sharded over the data-parallel replicas, each micro-batch's
gradients reduce-scattered as they are produced (Rajbhandari et al. SC'20; DeepSpeed stage 2).
Closed forms for memory and communication, and its place between ZeRO-1 and ZeRO-3."""

from dataclasses import replace

import pytest

from coda.arch.clusters import cluster
from coda.cli import main
from coda.models import get
from coda.placement import MEGATRON_2021, CostModel, Plan, evaluate, optimize
from coda.placement.rules import static_bytes_per_param
from coda.placement.software import DEEPSPEED_2021
from coda.units import GiB

CFG = get("megatron-1.7b")
SEQ = 2048
N = 16  # two DGX A100 nodes: the data-parallel group crosses InfiniBand


def _plan(zero: int, m: int = 4, **kw) -> Plan:
    return Plan(dp=N, zero=zero, micro_batch=1, global_batch=N * m, recompute="full", **kw)


def _run(zero: int, m: int = 4, software=MEGATRON_2021):
    return evaluate(CFG, cluster("dgx-a100", N), _plan(zero, m), SEQ, dtype="fp16", software=software)


def test_static_memory_closed_form():
    """2 bytes of weights per parameter, 2/dp of gradients, 12/dp of optimizer states."""
    s = _run(2).pipeline.stages[0]
    p = CFG.param_count()
    assert s.weight_bytes == pytest.approx(2 * p, rel=1e-9)
    assert s.grad_bytes == pytest.approx(2 * p / N, rel=1e-9)
    assert s.optim_bytes == pytest.approx(12 * p / N, rel=1e-9)
    assert static_bytes_per_param("fp16", "fp16", 1, N, N) == pytest.approx(2 + 2 / N + 12 / N)
    assert static_bytes_per_param("fp16", "fp16", N, N) == pytest.approx(16 / N)  # ZeRO-3 as before


def test_memory_lies_between_zero1_and_zero3():
    static = {z: _run(z).pipeline.stages[0] for z in (1, 2, 3)}
    total = {z: s.weight_bytes + s.grad_bytes + s.optim_bytes for z, s in static.items()}
    assert total[1] > total[2] > total[3]
    assert static[2].weight_bytes == static[1].weight_bytes and static[2].optim_bytes == static[1].optim_bytes
    peak = {z: _run(z).peak_memory_bytes for z in (1, 2, 3)}
    assert peak[1] > peak[2] > peak[3]


def test_workspace_holds_one_unreduced_unit_gradient():
    w1 = CostModel(CFG, cluster("dgx-a100", N), SEQ, "fp16", MEGATRON_2021).terms(_plan(1)).chain
    w2 = CostModel(CFG, cluster("dgx-a100", N), SEQ, "fp16", MEGATRON_2021).terms(_plan(2)).chain
    assert w2.work_bytes - w1.work_bytes == pytest.approx(2 * (w1.weight_bytes / 2), rel=1e-12)


def test_each_micro_batch_reduce_scatters_its_gradients():
    """Not overlapped (MEGATRON_2021): a block's per-micro-batch cost is one reduce-scatter of its
    gradients over the data-parallel group; the step has m of them and no end-of-step reduction,
    but the same end-of-step all-gather of updated weights as ZeRO-1."""
    cl = cluster("dgx-a100", N)
    ch = CostModel(CFG, cl, SEQ, "fp16", MEGATRON_2021).terms(_plan(2)).chain
    rs = cl.collective_cost("reduce_scatter", tuple(range(N)))
    assert ch.z3_s[1] == pytest.approx(rs.time(2 * CFG.block_params()), rel=1e-12)
    assert ch.z3_hidden_s.sum() == 0
    r1, r2 = _run(1), _run(2)
    s1, s2 = r1.pipeline.stages[0], r2.pipeline.stages[0]
    assert s2.dp_sync_s == 0 and s1.dp_sync_s > 0
    assert s2.dp_gather_s == pytest.approx(s1.dp_gather_s, rel=1e-12)
    assert r2.breakdown()["zero3_comm"] == pytest.approx(4 * ch.z3_s.sum(), rel=1e-9)


def _moved_s(r) -> float:
    """Seconds of data-parallel traffic a step runs, exposed or hidden."""
    s, m = r.pipeline.stages[0], r.plan.micro_batches
    return m * (s.z3_s + s.z3_hidden_s) + s.dp_sync_s + s.dp_gather_s


def test_communication_between_zero1_and_zero3():
    """ZeRO-2 reduces the gradients m times per step (one call per unit), ZeRO-1 once; ZeRO-3 also
    gathers the weights twice per micro-batch."""
    for m in (1, 4):
        moved = {z: _moved_s(_run(z, m)) for z in (1, 2, 3)}
        assert moved[1] <= moved[2] <= moved[3]
    gather = _run(2, 1).pipeline.stages[0].dp_gather_s  # once per step, whatever m
    assert _moved_s(_run(2, 4)) - gather == pytest.approx(4 * (_moved_s(_run(2, 1)) - gather), rel=1e-9)
    # with the same (blocking) reduction, the step orders likewise between ZeRO-1 and ZeRO-2
    assert _run(1, 4).step_time_s < _run(2, 4).step_time_s


def test_overlapped_reduce_scatters_hide_behind_their_backward():
    sw = replace(MEGATRON_2021, dp_overlap=True)
    cl = cluster("dgx-a100", N)
    ch = CostModel(CFG, cl, SEQ, "fp16", sw).terms(_plan(2)).chain
    rs = cl.collective_cost("reduce_scatter", tuple(range(N))).time(2 * CFG.block_params())
    assert ch.z3_s[1] == pytest.approx(max(0.0, rs - ch.bwd_s[1] - ch.rec_s[1]), abs=1e-15)
    assert ch.z3_s[1] + ch.z3_hidden_s[1] == pytest.approx(rs, rel=1e-12)


def test_optimize_searches_zero2():
    """With 7 GB per device ZeRO-1 (9.2 GB) does not fit; ZeRO-2 (6.2 GB) does and beats ZeRO-3,
    whose per-tensor gathers (`DEEPSPEED_2021`) are exposed: optimize must find it unasked."""
    sw = replace(DEEPSPEED_2021, reserved_bytes=80 * GiB - 7e9)
    kw = dict(dtype="fp16", software=sw, tp=1, pp=1, dp=N, micro_batch=1, recompute="full")
    _, best, ranked = optimize(CFG, cluster("dgx-a100", N), N * 4, SEQ, **kw)
    assert best.plan.zero == 2
    assert list(ranked["zero"]) == [2, 3]
    _, forced, _ = optimize(CFG, cluster("dgx-a100", N), N * 4, SEQ, zero=2, **kw)
    assert forced.step_time_s == best.step_time_s


def test_cli_accepts_zero2(capsys):
    args = ["train", "--model", "megatron-1.7b", "--cluster", "dgx-a100", "--devices", str(N), "--global-batch",
            str(4 * N), "--seq-len", str(SEQ), "--dtype", "fp16", "--tp", "1", "--pp", "1", "--dp", str(N),
            "--micro-batch", "1", "--recompute", "full", "--no-sequence-parallel", "--schedule", "1f1b",
            "--virtual-stages", "1", "--zero", "2"]
    assert main(args) == 0
    assert "zero2" in capsys.readouterr().out
