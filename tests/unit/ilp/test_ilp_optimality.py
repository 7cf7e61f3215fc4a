"""The ILP against the exhaustive oracle on random tiny layers (hypothesis, fixed seed).

Every schedule (ILP, oracle, heuristic) is replayed by `check_schedule`. The ILP must equal the
oracle when it reports OPTIMAL, never be below the critical-path or work bounds, never above the
list-scheduling heuristic, and its reported lower bound must never exceed the true optimum.
"""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coda.arch.accelerators import Accelerator
from coda.ilp import (
    Status,
    highs_available,
    list_schedule,
    make_problem,
    schedule,
    solve_exhaustive,
)
from coda.ilp.fusion import TENSOR, VECTOR
from coda.ilp.heuristic import serial_sgs
from coda.ilp.schedule import build_schedule, check_schedule
from coda.models import ops as O
from coda.models.graph import OpGraph
from coda.predictor.base import OpLatency
from coda.units import MiB

REL = 1e-9
SCALINGS = (None, 0.3, 0.5, 0.8, 1.0, 1.3)  # all_cores_s / one_core_s; None = perfect (1 / cores)


def design(n_tc: int, n_vc: int) -> Accelerator:
    return Accelerator(n_tc=n_tc, tc_rows=2, tc_cols=2, n_vc=n_vc, vc_lanes=2, glb_bytes=2 * MiB,
                       name=f"{n_tc}tc-{n_vc}vc")


@st.composite
def layers(draw, max_ops: int = 7):
    """A random DAG of matmul (tensor) and elementwise (vector) ops with random latencies.

    Latencies are integer microseconds so that ties (the hard, degenerate cases) are common.
    """
    n = draw(st.one_of(st.integers(1, max_ops), st.integers(max_ops - 2, max_ops)))  # favour the larger cases
    n_tc, n_vc = draw(st.integers(1, 4)), draw(st.integers(1, 3))
    g = OpGraph(name="random")
    ops, lat = [], {}
    for i in range(n):
        tensor = draw(st.booleans())
        op = O.matmul(8, 8, 8, name=f"op{i}") if tensor else O.elementwise(64, name=f"op{i}")
        preds = [ops[j] for j in range(i) if draw(st.integers(0, 99)) < 25]
        g.add(op, after=preds)
        ops.append(op)
        one = draw(st.integers(1, 12)) * 1e-6
        scale = draw(st.sampled_from(SCALINGS))
        cores = n_tc if tensor else n_vc
        lat[op.name] = OpLatency(TENSOR if tensor else VECTOR, one, one / cores if scale is None else one * scale)
    return g, design(n_tc, n_vc), lat, draw(st.booleans())


def _check_against_oracle(g, acc, lat, fuse, solver):
    problem = make_problem(g, acc, lat, fuse=fuse)
    result = schedule(g, acc, lat, solver=solver, gap=0.0, time_limit_s=30, fuse=fuse)
    oracle = solve_exhaustive(problem)
    heur = list_schedule(problem)
    check_schedule(result, problem)
    check_schedule(oracle, problem)
    check_schedule(build_schedule(problem, list(heur.starts), list(heur.parallel), status=Status.HEURISTIC, gap=0.0,
                                  lower_bound_s=0.0, solve_time_s=0.0, solver="heuristic"), problem)
    opt = oracle.makespan_s
    assert result.makespan_s >= problem.critical_path_bound_s * (1 - REL)
    assert result.makespan_s >= problem.work_bound_s(TENSOR) * (1 - REL)
    assert result.makespan_s >= problem.work_bound_s(VECTOR) * (1 - REL)
    assert result.makespan_s <= heur.makespan_s * (1 + REL)
    assert opt <= heur.makespan_s * (1 + REL)
    assert result.makespan_s >= opt * (1 - REL)
    assert result.lower_bound_s <= opt * (1 + REL)
    if result.status is Status.OPTIMAL:
        assert result.makespan_s == pytest.approx(opt, rel=REL, abs=0)
    return result


@settings(max_examples=200, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(layers())
def test_ilp_matches_exhaustive_cbc(case):
    g, acc, lat, fuse = case
    result = _check_against_oracle(g, acc, lat, fuse, "cbc")
    assert result.status is Status.OPTIMAL  # gap 0 and a generous time limit: every tiny case is proven


@pytest.mark.skipif(not highs_available(), reason="highspy not installed (pip install coda-llm[highs])")
@settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(layers())
def test_ilp_matches_exhaustive_highs(case):
    g, acc, lat, fuse = case
    result = _check_against_oracle(g, acc, lat, fuse, "highs")
    assert result.status in (Status.OPTIMAL, Status.FEASIBLE)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(layers(max_ops=6))
def test_oracle_is_at_most_every_serial_sgs(case):
    """The oracle's makespan is no larger than any serial SGS run (it enumerates them all)."""
    g, acc, lat, fuse = case
    problem = make_problem(g, acc, lat, fuse=fuse)
    opt = solve_exhaustive(problem).makespan_s
    for mode_rule in ("eft", "parallel", "single"):
        assert opt <= serial_sgs(problem, [-i for i in range(problem.n)], mode_rule).makespan_s * (1 + REL)


def test_oracle_small_cases_by_hand():
    us = 1e-6
    g = OpGraph(name="two")
    a, b = O.matmul(8, 8, 8, name="a"), O.matmul(8, 8, 8, name="b")
    g.add(a)
    g.add(b)
    lat = {"a": OpLatency(TENSOR, 4 * us, 3 * us), "b": OpLatency(TENSOR, 6 * us, 4 * us)}
    # one tensor core: serial, each at its best (parallel on 1 core = its 1-core time? here faster)
    assert solve_exhaustive(make_problem(g, design(1, 1), lat)).makespan_s == pytest.approx(7 * us)
    # two cores: concurrently on one core each (6) beats both parallel one after the other (7)
    assert solve_exhaustive(make_problem(g, design(2, 1), lat)).makespan_s == pytest.approx(6 * us)
    # parallel much faster: run them one after the other, each on all cores (1 + 1)
    fast = {k: OpLatency(TENSOR, v.one_core_s, 1 * us) for k, v in lat.items()}
    assert solve_exhaustive(make_problem(g, design(2, 1), fast)).makespan_s == pytest.approx(2 * us)
    # a parallel tensor op excludes a concurrent vector op: 3 + 2 rather than max(3, 2)
    g2 = OpGraph(name="mixed")
    g2.add(a)
    g2.add(O.elementwise(64, name="v"))
    lat2 = {"a": OpLatency(TENSOR, 8 * us, 3 * us), "v": OpLatency(VECTOR, 2 * us, 2 * us)}
    assert solve_exhaustive(make_problem(g2, design(2, 1), lat2)).makespan_s == pytest.approx(5 * us)


def test_identical_independent_ops_are_grouped_and_solved_exactly():
    """Q, K, V as three separate projections: symmetry breaking keeps the optimum."""
    us = 1e-6
    g = OpGraph(name="qkv")
    ln = g.add(O.layernorm(8, 8, name="ln"))
    projections = [g.add(O.matmul(8, 8, 8, name=n), after=[ln]) for n in ("q", "k", "v")]
    g.add(O.elementwise(64, name="attn"), after=projections)
    lat = {"ln": OpLatency(VECTOR, 1 * us, 1 * us), "attn": OpLatency(VECTOR, 2 * us, 1.5 * us)}
    lat.update({n: OpLatency(TENSOR, 6 * us, 2.5 * us) for n in ("q", "k", "v")})
    problem = make_problem(g, design(2, 1), lat, fuse=False)
    assert [tuple(problem.tasks[i].name for i in grp) for grp in problem.identical_groups] == [("k", "q", "v")]
    result = schedule(g, design(2, 1), lat, fuse=False, gap=0.0)
    check_schedule(result, problem)
    assert result.status is Status.OPTIMAL
    assert result.makespan_s == pytest.approx(solve_exhaustive(problem).makespan_s, rel=REL)
