"""The replay checker rejects every kind of broken schedule."""

from dataclasses import replace

import pytest

from coda.arch.accelerators import Accelerator
from coda.ilp import schedule
from coda.ilp.fusion import TENSOR, VECTOR, make_problem
from coda.ilp.schedule import InvalidSchedule, Status, build_schedule, check_schedule
from coda.models import ops as O
from coda.models.graph import OpGraph
from coda.predictor.base import OpLatency
from coda.units import MiB

US = 1e-6


@pytest.fixture
def solved():
    g = OpGraph(name="diamond")
    a = g.add(O.matmul(8, 8, 8, name="a"))
    b = g.add(O.matmul(8, 8, 8, name="b"), after=[a])
    c = g.add(O.matmul(8, 8, 8, name="c"), after=[a])
    g.add(O.collective("all_reduce", 1e6, 8, name="ar"), after=[b])
    g.add(O.elementwise(64, name="d"), after=[g.by_name("ar"), c])
    g.add(O.elementwise(64, name="e"), after=[a])
    lat = {"a": OpLatency(TENSOR, 4 * US, 1 * US), "b": OpLatency(TENSOR, 3 * US, 2.5 * US),
           "c": OpLatency(TENSOR, 3 * US, 2.5 * US), "d": OpLatency(VECTOR, 1 * US, 1 * US),
           "e": OpLatency(VECTOR, 5 * US, 5 * US)}
    acc = Accelerator(n_tc=2, tc_rows=2, tc_cols=2, n_vc=1, vc_lanes=2, glb_bytes=2 * MiB, name="t")
    problem = make_problem(g, acc, lat, fuse=False)
    s = schedule(g, acc, lat, fuse=False, gap=0.0)
    check_schedule(s, problem)
    return s, problem


def _with(s, name, **changes):
    return s.replace_meta(ops=tuple(replace(e, **changes) if e.name == name else e for e in s.ops))


def test_valid_schedule_passes(solved):
    s, _problem = solved
    assert [e.name for e in s.ops][-1] == "ar"  # the collective is a network entry
    assert s.op("ar").start_s == pytest.approx(s.op("b").end_s)


def test_precedence_violation(solved):
    s, problem = solved
    b = s.op("b")
    shift = b.start_s - 0.5 * US
    with pytest.raises(InvalidSchedule, match="edge a -> b"):
        check_schedule(_with(s, "b", start_s=shift, end_s=shift + b.duration_s), problem)


def test_wrong_duration(solved):
    s, problem = solved
    with pytest.raises(InvalidSchedule, match="duration"):
        check_schedule(_with(s, "e", end_s=s.op("e").end_s + 1 * US).replace_meta(
            makespan_s=max(s.makespan_s, s.op("e").end_s + 1 * US)), problem)


def test_capacity_and_shared_core(solved):
    s, problem = solved
    b, c = s.op("b"), s.op("c")
    moved = _with(s, "c", start_s=b.start_s, end_s=b.start_s + c.duration_s, cores=b.cores, parallel=b.parallel)
    with pytest.raises(InvalidSchedule):
        check_schedule(moved, problem)


def test_parallel_overlap():
    g = OpGraph(name="pair")
    g.add(O.matmul(8, 8, 8, name="x"))
    g.add(O.elementwise(64, name="y"))
    lat = {"x": OpLatency(TENSOR, 4 * US, 1 * US), "y": OpLatency(VECTOR, 1 * US, 1 * US)}
    acc = Accelerator(n_tc=2, tc_rows=2, tc_cols=2, n_vc=1, vc_lanes=2, glb_bytes=2 * MiB, name="t")
    problem = make_problem(g, acc, lat)
    x, y = (problem.task_of[n] for n in ("x", "y"))
    starts, parallel = [0.0, 0.0], [False, False]
    parallel[x] = True  # x split over both tensor cores while y runs: not allowed
    bad = build_schedule(problem, starts, parallel, status=Status.FEASIBLE, gap=0.0, lower_bound_s=0.0,
                         solve_time_s=0.0, solver="test")
    with pytest.raises(InvalidSchedule, match="parallel task 'x' overlaps"):
        check_schedule(bad, problem)
    starts[y] = 1 * US  # after x: fine
    check_schedule(build_schedule(problem, starts, parallel, status=Status.FEASIBLE, gap=0.0, lower_bound_s=0.0,
                                  solve_time_s=0.0, solver="test"), problem)


def test_missing_task_and_wrong_makespan(solved):
    s, problem = solved
    with pytest.raises(InvalidSchedule, match="missing"):
        check_schedule(s.replace_meta(ops=tuple(e for e in s.ops if e.name != "d")), problem)
    with pytest.raises(InvalidSchedule, match="makespan"):
        check_schedule(s.replace_meta(makespan_s=s.makespan_s * 2), problem)
