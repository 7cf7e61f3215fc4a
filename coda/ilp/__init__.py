"""On-chip operator scheduling: one layer's operators on an accelerator's tensor and vector cores.

    s = coda.ilp.schedule(block_graph, tpuv4_like())       # latencies from the predictor
    s.makespan_s, s.status, s.gap, s.to_frame(), s.to_chrome_trace("trace.json")

Pipeline: `fusion.make_problem` (collectives excluded, matmul + consumer fused, latencies),
`heuristic.list_schedule` (warm start, fallback), `formulation.solve_ilp` (PuLP MILP, CBC or
HiGHS), `schedule.build_schedule` (core labels) and `schedule.check_schedule` (replay).
`exhaustive.solve_exhaustive` is the exact oracle for tests. Semantics: `coda.ilp.schedule`
module doc; formulation: docs/ilp.md.

Note: the function `coda.ilp.schedule` shadows the submodule of the same name as an attribute
of the package; import the module's names with ``from coda.ilp.schedule import Schedule``.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any

from coda.errors import ConfigError
from coda.ilp.cache import CacheStats, ScheduleCache
from coda.ilp.exhaustive import solve_exhaustive
from coda.ilp.formulation import Solver, highs_available, solve_ilp
from coda.ilp.fusion import Problem, make_problem, roofline_latencies
from coda.ilp.heuristic import list_schedule
from coda.ilp.schedule import (
    InvalidSchedule,
    Schedule,
    ScheduledOp,
    Status,
    build_schedule,
    check_schedule,
)
from coda.models.graph import OpGraph
from coda.predictor.base import OpLatency

DEFAULT_TIME_LIMIT_S = 10.0
DEFAULT_GAP = 0.01
_OPTIMAL_RTOL = 1e-9


def predicted_latencies(graph: OpGraph, accelerator: Any) -> dict[str, OpLatency]:
    """Per-op latencies from the accelerator tile model (`coda.predictor.accel_tiles`)."""
    try:
        from coda.predictor.accel_tiles import layer_latencies
    except ImportError as err:
        raise ConfigError(
            f"the accelerator latency model is unavailable ({err}); pass latencies= explicitly, "
            "e.g. coda.ilp.roofline_latencies(graph, accelerator)"
        ) from None
    return dict(layer_latencies(graph, accelerator))


def _check_options(solver: str | Solver, time_limit_s: float, gap: float, node_limit: int | None = None) -> Solver:
    s = Solver.from_str(solver.value if isinstance(solver, Solver) else solver)
    if s is Solver.HIGHS and not highs_available():
        raise ConfigError("solver='highs' needs highspy; install it with `pip install coda-llm[highs]` or use 'cbc'")
    if isinstance(time_limit_s, bool) or not isinstance(time_limit_s, (int, float)) or not time_limit_s >= 0 \
            or not math.isfinite(time_limit_s):
        raise ConfigError(f"time_limit_s={time_limit_s!r} must be a finite number of seconds >= 0")
    if isinstance(gap, bool) or not isinstance(gap, (int, float)) or not 0 <= gap < 1:
        raise ConfigError(f"gap={gap!r} must be a relative gap in [0, 1)")
    if node_limit is not None and (isinstance(node_limit, bool) or not isinstance(node_limit, int) or node_limit < 1):
        raise ConfigError(f"node_limit={node_limit!r} must be a positive number of branch-and-bound nodes, or None")
    return s


def schedule_problem(problem: Problem, solver: str | Solver = Solver.CBC, time_limit_s: float = DEFAULT_TIME_LIMIT_S,
                     gap: float = DEFAULT_GAP, node_limit: int | None = None) -> Schedule:
    """Schedule a prepared `Problem` (see `schedule`)."""
    t0 = time.perf_counter()
    s = _check_options(solver, time_limit_s, gap, node_limit)
    heur = list_schedule(problem)
    lb = problem.lower_bound_s
    meta: dict[str, Any] = {"heuristic_s": heur.makespan_s, "n_binaries": 0, "solver": "heuristic"}
    starts, par = list(heur.starts), list(heur.parallel)
    if problem.n == 0 or heur.makespan_s <= lb * (1 + _OPTIMAL_RTOL):
        status, mk = Status.OPTIMAL, heur.makespan_s  # the heuristic meets a lower bound
        lb = mk
    elif time_limit_s == 0:
        status, mk = Status.HEURISTIC, heur.makespan_s
    else:  # the time limit covers the whole call, heuristic included
        res = solve_ilp(problem, (starts, par), s, time_limit_s - (time.perf_counter() - t0), gap, node_limit)
        starts, par, mk, lb = list(res.starts), list(res.parallel), res.makespan_s, res.lower_bound_s
        meta.update(n_binaries=res.n_binaries, solver=s.value, wall_clock_limited=res.wall_clock_limited,
                    solver_error=res.solver_error)
        if res.proven or mk <= lb * (1 + _OPTIMAL_RTOL):
            status, lb = Status.OPTIMAL, mk
        elif res.improved_or_confirmed:
            status = Status.FEASIBLE
        else:
            status, meta["solver"] = Status.HEURISTIC, "heuristic"
    gap_value = max(0.0, (mk - lb) / mk) if mk > 0 else 0.0
    return build_schedule(problem, starts, par, status=status, gap=gap_value, lower_bound_s=min(lb, mk),
                          solve_time_s=time.perf_counter() - t0, **meta)


def schedule(layer_graph: OpGraph, accelerator: Any, latencies: Mapping[str, OpLatency] | None = None,
             solver: str | Solver = Solver.CBC, time_limit_s: float = DEFAULT_TIME_LIMIT_S, gap: float = DEFAULT_GAP,
             fuse: bool = True, fused_latency: str = "max", cache: ScheduleCache | None = None,
             node_limit: int | None = None) -> Schedule:
    """Minimum-makespan schedule of one layer's operators on an accelerator's cores.

    Args:
        layer_graph: the layer's `OpGraph` (forward or backward; collectives take no core time).
        accelerator: an `Accelerator` (only `n_tc`, `n_vc` and `name` are read here).
        latencies: op name -> `OpLatency`; None asks `coda.predictor.accel_tiles.layer_latencies`.
        solver: ``"cbc"`` (bundled with PuLP) or ``"highs"`` (needs `highspy`).
        time_limit_s: wall-time budget of the call, heuristic and ILP (seconds); 0 returns the heuristic.
        gap: relative optimality gap at which the solver may stop (0.01 = 1%).
        fuse: fuse a matmul with its single elementwise/norm consumer (tensor+vector task).
        fused_latency: ``"max"`` (tile-pipelined) or ``"sum"`` (back to back) for fused tasks.
        cache: a `ScheduleCache`; results are keyed by graph signature, core counts, latencies
            and these options.
        node_limit: branch-and-bound nodes per MILP solve. With it the result does not depend on
            machine load (`time_limit_s` then only guards against a pathological solve, and
            `Schedule.wall_clock_limited` says when it was hit); None leaves only the time limit.

    Returns:
        A `Schedule`; its `status` is OPTIMAL (proven), FEASIBLE (solver incumbent, `gap` > 0)
        or HEURISTIC (list scheduling; the solver found nothing in time). Never raises because
        a solver hit its limit.

    Raises:
        ConfigError: a cyclic graph, a missing/invalid latency (names the op), a bad option.
        InfeasibleDesign: the design lacks a core type some op needs (names the field).
    """
    _check_options(solver, time_limit_s, gap, node_limit)
    if latencies is None:
        latencies = predicted_latencies(layer_graph, accelerator)
    problem = make_problem(layer_graph, accelerator, latencies, fuse=fuse, fused_latency=fused_latency)
    key = None
    if cache is not None:
        key = cache.key(layer_graph, problem, solver=str(getattr(solver, "value", solver)), time_limit_s=time_limit_s,
                        gap=gap, fuse=fuse, fused_latency=fused_latency, node_limit=node_limit)
        hit = cache.get(key)
        if hit is not None:
            return hit.replace_meta(design=problem.design, layer=layer_graph.name)
    result = schedule_problem(problem, solver, time_limit_s, gap, node_limit)
    if cache is not None and key is not None:
        cache.put(key, result)
    return result


__all__ = [
    "DEFAULT_GAP", "DEFAULT_TIME_LIMIT_S", "CacheStats", "InvalidSchedule", "OpLatency", "Problem", "Schedule",
    "ScheduleCache", "ScheduledOp", "Solver",
    "Status", "build_schedule", "check_schedule", "highs_available", "list_schedule", "make_problem",
    "predicted_latencies", "roofline_latencies", "schedule", "schedule_problem", "solve_exhaustive", "solve_ilp",
]
