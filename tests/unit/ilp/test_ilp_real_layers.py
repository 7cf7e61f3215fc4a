"""Transformer blocks of real models: status, gap and bounds, every schedule replayed."""

import pytest

from coda import models
from coda.arch.accelerators import Accelerator, tpuv4_like
from coda.ilp import Status, make_problem, roofline_latencies, schedule
from coda.ilp.fusion import NETWORK, TENSOR, VECTOR
from coda.ilp.schedule import check_schedule
from coda.predictor.base import OpLatency
from coda.units import MiB

FEW_LARGE = Accelerator(n_tc=2, tc_rows=256, tc_cols=128, n_vc=2, vc_lanes=256, glb_bytes=32 * MiB, name="few-large")


def block(model: str, phase: str, seq_len: int, tp: int = 1):
    return models.build(models.get(model), phase, batch=1, seq_len=seq_len, tp=tp).layers[1][0]


@pytest.mark.parametrize("model, phase, seq_len, tp, acc", [
    ("gpt3-175b", "backward", 2048, 8, tpuv4_like()),
    ("llama2-7b", "forward", 4096, 1, tpuv4_like()),
    ("bert-large", "backward", 512, 1, FEW_LARGE),
])
def test_real_block_within_gap(model, phase, seq_len, tp, acc):
    g = block(model, phase, seq_len, tp)
    lat = roofline_latencies(g, acc)
    problem = make_problem(g, acc, lat)
    s = schedule(g, acc, lat)
    check_schedule(s, problem)
    assert s.status in (Status.OPTIMAL, Status.FEASIBLE)
    assert s.gap <= 0.01 + 1e-12
    assert problem.lower_bound_s * (1 - 1e-9) <= s.lower_bound_s <= s.makespan_s <= s.heuristic_s * (1 + 1e-12)
    assert s.makespan_s <= s.sequential_s * (1 + 1e-12)
    # collectives are zero-length network entries placed after their producers
    network = [e for e in s.ops if e.core_type == NETWORK]
    assert len(network) == sum(op.kind == "collective" for op in g.nodes)
    assert all(e.duration_s == 0 and e.cores == () for e in network)


def test_forward_chain_is_proven_without_an_ilp():
    g = block("llama2-7b", "forward", 4096)
    s = schedule(g, tpuv4_like(), roofline_latencies(g, tpuv4_like()))
    assert s.status is Status.OPTIMAL and s.n_binaries == 0 and s.gap == 0.0


def test_schedule_beats_sequential_sum_with_independent_ops_and_spare_cores():
    """Backward: weight gradients are independent of the data-gradient chain. When splitting an
    op over all cores is not perfectly efficient, running independent ops side by side on
    spare cores beats running every op alone (the sequential sum of op latencies)."""
    g = block("llama2-7b", "backward", 4096)
    acc = tpuv4_like()
    lat = {name: OpLatency(v.core_type, v.one_core_s, max(v.all_cores_s, 0.4 * v.one_core_s))
           for name, v in roofline_latencies(g, acc).items()}  # intra-op speed-up at most 2.5x
    s = schedule(g, acc, lat)
    check_schedule(s, make_problem(g, acc, lat))
    assert s.makespan_s < 0.95 * s.sequential_s
    assert any(not e.parallel for e in s.ops if e.core_type in (TENSOR, VECTOR))


def test_predictor_latencies_by_default():
    pytest.importorskip("coda.predictor.accel_tiles")
    g = block("bert-large", "forward", 512)
    s = schedule(g, tpuv4_like())
    assert s.status is Status.OPTIMAL and s.makespan_s > 0


@pytest.mark.parametrize("solver", ["cbc", "highs"])
def test_time_limit_returns_the_incumbent(solver):
    if solver == "highs":
        pytest.importorskip("highspy")
    g = block("gpt3-175b", "backward", 2048, tp=8)
    lat = roofline_latencies(g, FEW_LARGE)
    s = schedule(g, FEW_LARGE, lat, solver=solver, time_limit_s=0.3, gap=0.0)
    check_schedule(s, make_problem(g, FEW_LARGE, lat))
    assert s.status in (Status.OPTIMAL, Status.FEASIBLE, Status.HEURISTIC)
    assert s.lower_bound_s <= s.makespan_s <= s.heuristic_s * (1 + 1e-12)
    assert s.solve_time_s < 3.0
