"""The per-accelerator operator schedule as a mixed-integer program (PuLP), after PHAZE.

No time-indexed variables: start times, pairwise order binaries for tasks with no path between
them (big-M disjunctions with a tight M), a binary per task for intra-op parallelism, and core
assignment binaries for a core type only once a relaxed solution overloads that type. Equation
numbers match docs/ilp.md. Times are scaled by the warm start's makespan `UB` so that every
time variable lies in [0, 1] (solver tolerances are absolute).

Solve loop (`solve_ilp`): stage 1 models exclusivity of parallel tasks but not core counts;
its solution is compacted (`compact`) and replayed; if a core type is overloaded, assignment
binaries (9)-(11) and clique cuts (15) for that type are added and the model is solved again,
warm-started (at most three solves).
A solver stopped by its time limit or gap yields its incumbent and bound; nothing is aborted.

Deterministic budget (`node_limit`): each solve stops after that many branch-and-bound nodes
(CBC `maxNodes`, HiGHS `mip_max_nodes`), single-threaded, so the result is the same on a busy and
an idle machine. The wall-clock limit then only guards against a pathological solve; when it is
what stopped a solve, `IlpResult.wall_clock_limited` says so (that result may depend on load).
"""

from __future__ import annotations

import enum
import logging
import os
import re
import tempfile
import time
import warnings
from dataclasses import dataclass
from typing import Any

import networkx as nx
import pulp

from coda.errors import ConfigError
from coda.ilp.equations import MAX_CLIQUE_CUTS, _Model, build_model
from coda.ilp.fusion import TENSOR, VECTOR, Problem

log = logging.getLogger(__name__)

# CBC's generic cuts (Gomory, MIR, ...) cost more than they gain here: the model carries its own
# cuts (13)-(15). Measured on the real-layer benchmark: the slowest case drops from ~7 s to ~2 s.
CBC_OPTIONS = ("cuts off",)


class Solver(str, enum.Enum):
    """MILP solvers: CBC (bundled with PuLP) or HiGHS (`pip install coda-llm[highs]`)."""

    CBC = "cbc"
    HIGHS = "highs"

    @classmethod
    def from_str(cls, name: str) -> Solver:
        try:
            return cls(str(name).lower())
        except ValueError:
            raise ConfigError(f"unknown solver {name!r}; use one of {', '.join(s.value for s in cls)}") from None


def highs_available() -> bool:
    """True if `highspy` can be imported (HiGHS through PuLP)."""
    try:
        import highspy  # noqa: F401
    except ImportError:
        return False
    return True


def _cbc_command(**options: Any) -> Any:
    """CBC through PuLP: the binary bundled with PuLP (`PULP_CBC_CMD`, deprecated for PuLP 4 but
    the one that needs no install), else `COIN_CMD` (a `cbc` on the PATH, ``pip install pulp[cbc]``)."""
    if hasattr(pulp, "PULP_CBC_CMD"):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="PULP_CBC_CMD is deprecated", category=DeprecationWarning)
            return pulp.PULP_CBC_CMD(**options)
    return pulp.COIN_CMD(**options)


def canonical(problem: Problem, starts: list[float], parallel: list[bool]) -> tuple[list[float], list[bool]]:
    """Permute interchangeable tasks so that their starts are in index order, as (12) requires."""
    starts, parallel = list(starts), list(parallel)
    for g in problem.identical_groups:
        slots = sorted(((starts[i], parallel[i]) for i in g), key=lambda sp: sp[0])
        for i, (s, m) in zip(g, slots):
            starts[i], parallel[i] = s, m
    return starts, parallel


def _warm_start(model: _Model, problem: Problem, starts: list[float], parallel: list[bool], scale: float) -> None:
    n = problem.n
    ends = [starts[i] + problem.tasks[i].duration(parallel[i]) for i in range(n)]
    tol = 1e-12 * scale
    model.C.setInitialValue(max(ends, default=0.0) / scale)
    for i in range(n):
        model.S[i].setInitialValue(starts[i] / scale)
    for i, var in model.p.items():
        var.setInitialValue(int(parallel[i]))
    for (u, v), var in model.b.items():
        var.setInitialValue(int(ends[u] <= starts[v] + tol))
    for r in (TENSOR, VECTOR):
        users = [i for i in range(n) if (r, i, 0) in model.x]  # in rank (index) order
        free: list[float] = []  # end time per core, greedy interval colouring by start time
        core: dict[int, int] = {}
        for i in sorted(users, key=lambda k: (starts[k], k)):
            k = next((k for k, f in enumerate(free) if f <= starts[i] + tol), len(free))
            free[k:k + 1] = [ends[i]]
            core[i] = k
        label: dict[int, int] = {}  # relabel cores by their first user in rank order, so (11) holds
        for i in users:
            label.setdefault(core[i], len(label))
            for k in range(problem.capacity(r)):
                if (r, i, k) in model.x:
                    model.x[r, i, k].setInitialValue(int(k == label[core[i]]))


@dataclass(frozen=True)
class _SolveOutcome:
    has_solution: bool
    proven: bool
    bound: float  # scaled dual bound, -inf if unknown
    wall_clock_limited: bool  # the time limit, not the gap or the node limit, stopped the solve


class _WarmHiGHS(pulp.HiGHS):  # type: ignore[misc, valid-type]
    """PuLP's HiGHS interface plus a MIP start from the variables' initial values."""

    def callSolver(self, lp: Any) -> None:
        import highspy

        sol = highspy.HighsSolution()
        values = [0.0] * len(lp.variables())
        for var in lp.variables():
            values[var.index] = var.varValue if var.varValue is not None else 0.0
        sol.col_value = values
        lp.solverModel.setSolution(sol)
        lp.solverModel.run()


def _parse_cbc_log(text: str) -> tuple[bool, float]:
    """(proven optimal, lower bound) from CBC's log.

    CBC's final "Lower bound:" has three decimals, so it is lowered by half a unit of the last
    place (the scaled objective is at most about 1) and combined with the 8-digit "best possible"
    values of the progress lines, which are valid (older, never larger) bounds.
    """
    proven = bool(re.search(r"Result - Optimal solution found\s*$", text, re.MULTILINE))
    obj = re.search(r"^Objective value:\s*([-+0-9.eE]+)", text, re.MULTILINE)
    if proven and obj:
        return True, float(obj.group(1))
    bounds = [float(v) for v in re.findall(r"best possible ([-+0-9.eE]+)", text)]
    final = re.search(r"^Lower bound:\s*([-+0-9.eE]+)", text, re.MULTILINE)
    if final:
        bounds.append(float(final.group(1)) - 5e-4)
    return False, max(bounds, default=float("-inf"))


def _solve(model: _Model, solver: Solver, time_limit_s: float, gap: float, node_limit: int | None) -> _SolveOutcome:
    prob = model.prob
    t0 = time.perf_counter()
    if solver is Solver.CBC:
        fd, log_path = tempfile.mkstemp(suffix=".log", prefix="coda_cbc_")
        os.close(fd)
        nodes = [] if node_limit is None else [f"maxNodes {node_limit}"]
        try:
            cmd = _cbc_command(msg=False, timeLimit=max(time_limit_s, 0.01), gapRel=gap, gapAbs=1e-10,
                               warmStart=True, logPath=log_path, threads=1, options=[*CBC_OPTIONS, *nodes])
            prob.solve(cmd)
            with open(log_path, encoding="utf-8", errors="replace") as fh:
                text = fh.read()
            proven, bound = _parse_cbc_log(text)
            timed_out = bool(re.search(r"^Result - Stopped on time", text, re.MULTILINE))
        finally:
            os.unlink(log_path)
    else:
        import highspy

        params: dict[str, Any] = {} if node_limit is None else {"mip_max_nodes": node_limit}
        prob.solve(_WarmHiGHS(msg=False, timeLimit=max(time_limit_s, 0.01), gapRel=gap, gapAbs=1e-10, threads=1,
                              **params))
        info = prob.solverModel.getInfo()
        bound = float(info.mip_dual_bound)
        status = prob.solverModel.getModelStatus()
        proven = status == highspy.HighsModelStatus.kOptimal and float(info.mip_gap) <= 1e-9
        timed_out = status == highspy.HighsModelStatus.kTimeLimit
    # a solver that overran its budget without saying so (e.g. killed by PuLP) counts as timed out
    timed_out = timed_out or time.perf_counter() - t0 >= time_limit_s
    has_solution = prob.sol_status in (pulp.LpSolutionOptimal, pulp.LpSolutionIntegerFeasible) and \
        model.C.varValue is not None
    return _SolveOutcome(has_solution, proven and has_solution, bound, timed_out and not proven)


def compact(problem: Problem, model: _Model) -> tuple[list[float], list[bool]] | None:
    """Earliest starts given the solution's modes and orders (longest path; exact arithmetic).

    Keeps every decision (precedence, b_uv = 1 orders, so cores and exclusivity too) and drops
    solver tolerances, so the schedule's times are exact sums of latencies. None on a cycle.
    """
    parallel = [bool(i in model.p and (model.p[i].varValue or 0) > 0.5) for i in range(problem.n)]
    g = nx.DiGraph()
    g.add_nodes_from(range(problem.n))
    g.add_edges_from(problem.edges)
    g.add_edges_from(uv for uv, var in model.b.items() if (var.varValue or 0) > 0.5)
    if not nx.is_directed_acyclic_graph(g):
        return None
    starts = [0.0] * problem.n
    for v in nx.topological_sort(g):
        starts[v] = max((starts[u] + problem.tasks[u].duration(parallel[u]) for u in g.predecessors(v)), default=0.0)
    return starts, parallel


def overloaded(problem: Problem, starts: list[float], parallel: list[bool]) -> set[str]:
    """Core types on which more single-core tasks overlap than there are cores."""
    out = set()
    ends = [starts[i] + problem.tasks[i].duration(parallel[i]) for i in range(problem.n)]
    for r in (TENSOR, VECTOR):
        users = [i for i in range(problem.n) if not parallel[i] and
                 (problem.tasks[i].uses_tensor if r == TENSOR else problem.tasks[i].uses_vector)]
        for j in users:
            if ends[j] > starts[j] and sum(starts[k] <= starts[j] < ends[k] for k in users) > problem.capacity(r):
                out.add(r)
                break
    return out


@dataclass(frozen=True)
class IlpResult:
    """Outcome of `solve_ilp`: the best schedule found (the warm start if nothing better)."""

    starts: tuple[float, ...]
    parallel: tuple[bool, ...]
    makespan_s: float
    lower_bound_s: float
    proven: bool
    improved_or_confirmed: bool  # the solver returned a solution or a bound
    n_binaries: int
    n_solves: int
    wall_clock_limited: bool = False  # the wall clock stopped a solve or the stage loop (see module doc)
    solver_error: str = ""  # the solver failed; the warm start is kept


def solve_ilp(problem: Problem, warm: tuple[list[float], list[bool]], solver: Solver = Solver.CBC,
              time_limit_s: float = 10.0, gap: float = 0.01, node_limit: int | None = None) -> IlpResult:
    """Solve the MILP by lazily adding core-capacity stages; see module doc.

    Args:
        problem: the instance (at least one task with positive duration).
        warm: a feasible schedule (starts, parallel), e.g. the list-scheduling heuristic's.
        solver: CBC or HiGHS.
        time_limit_s: wall-time budget over all stages (seconds).
        gap: relative gap at which a solver may stop.
        node_limit: branch-and-bound nodes per solve (deterministic; see module doc), None for none.
    """
    deadline = time.perf_counter() + time_limit_s
    best_starts, best_par = canonical(problem, *warm)
    ends = [best_starts[i] + problem.tasks[i].duration(best_par[i]) for i in range(problem.n)]
    best_mk = max(ends)
    ub = best_mk
    lb = problem.lower_bound_s
    modelled: frozenset[str] = frozenset()
    proven = confirmed = limited = False
    error = ""
    n_bin = n_solves = 0
    while True:
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            limited = True
            break
        model = build_model(problem, ub, modelled)
        _warm_start(model, problem, best_starts, best_par, ub)
        n_bin, n_solves = model.n_binaries, n_solves + 1
        try:
            out = _solve(model, solver, remaining, gap, node_limit)
        except pulp.PulpSolverError as err:
            log.warning("%s solver failed on %s (%s); keeping the heuristic schedule",
                        solver.value, problem.design, err)
            error = f"{solver.value}: {err}"
            break
        limited = limited or out.wall_clock_limited
        lb = max(lb, out.bound * ub)  # a relaxation's bound is valid for the full problem
        confirmed = confirmed or out.has_solution or out.bound > float("-inf")
        sol = compact(problem, model) if out.has_solution else None
        if sol is None:
            break
        over = overloaded(problem, *sol)
        if over - modelled:
            modelled = modelled | over
            continue
        if over:  # cannot happen: modelled types are kept by compaction
            log.warning("%s: compacted ILP schedule overloads %s; keeping the warm start", problem.design, over)
            break
        mk = max(sol[0][i] + problem.tasks[i].duration(sol[1][i]) for i in range(problem.n))
        if mk < best_mk:
            best_starts, best_par, best_mk = sol[0], sol[1], mk
        proven = out.proven
        break
    if proven:
        lb = max(lb, best_mk)
    return IlpResult(tuple(best_starts), tuple(best_par), best_mk, min(lb, best_mk), proven, confirmed, n_bin, n_solves,
                     limited and not proven, error)


__all__ = ["CBC_OPTIONS", "MAX_CLIQUE_CUTS", "IlpResult", "Solver", "build_model", "canonical", "compact",
           "highs_available", "overloaded", "solve_ilp"]
