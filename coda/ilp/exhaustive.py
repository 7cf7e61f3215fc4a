"""Exact oracle for tiny layers (<= 7 tasks): branch and bound over serial schedule generation.

The model (`coda.ilp.schedule` module doc) is a multi-mode resource-constrained project
scheduling problem: two renewable resources (tensor cores, capacity `n_tc`; vector cores,
capacity `n_vc`); each task has two modes, single-core (demand (1, 0), (0, 1) or (1, 1) for
tensor, vector, fused; duration `one_core_s`) and parallel (demand (n_tc, n_vc), i.e. alone on
the chip; duration `all_cores_s`); non-preemptive; precedence; objective the makespan.

Why enumerating serial SGS runs is exact. Fix the optimal mode vector; the rest is a
single-mode RCPSP with a regular objective.
(a) Any feasible schedule can be turned into an *active* one (no task can start earlier without
    moving another) by repeated left shifts; starts only decrease, so the makespan does not grow.
    Hence some optimal schedule is active.
(b) Every active schedule is produced by the serial SGS for the list of its tasks sorted by start
    time (Kolisch 1996, EJOR 90: 320-333, thm. 2). Proof: induction over the list. Suppose the
    tasks before j are placed as in the schedule, and the SGS finds a start t < S_j for j
    (precedence- and resource-feasible against those tasks). Tasks after j in the list start at
    or after S_j, so they take no core in [t, S_j); and in [S_j, t + d_j) j was already running
    in the schedule. So moving j alone to t keeps the schedule feasible: a contradiction with
    "active". The SGS therefore places j at S_j.
So min over (mode vector, precedence-feasible list) of the SGS makespan is the optimum. This
module searches that tree depth first: a node picks the next task and its mode (both modes for
every task: it does not rely on the "parallel only when faster" dominance the ILP uses), places
it at its earliest feasible start, and is pruned when a valid lower bound reaches the incumbent:
the current last end; for any unplaced task, its ready time + least duration + least tail; or
the core-seconds of each type (placed tasks in their mode, the others at their least) over its
cores. Children are visited in order of their end + tail, so good incumbents come early.
Nodes with the same partial schedule (same set of (task, mode, start)) are visited once, since
the SGS continuation depends only on that set. Resource checks are implemented here
independently of `coda.ilp.heuristic`.
"""

from __future__ import annotations

import math
import time

from coda.errors import ConfigError
from coda.ilp.fusion import Problem
from coda.ilp.schedule import Schedule, Status, build_schedule

MAX_TASKS = 7


def _earliest(placed: list[tuple[float, float, int, int]], ready: float, d: float, need: tuple[int, int],
              cap: tuple[int, int]) -> float:
    """Earliest start >= ready where `need` cores are free for d seconds (checked at every event)."""
    candidates = sorted({ready} | {e for _, e, _, _ in placed if e > ready})
    for t in candidates:
        if d <= 0:
            return t
        ok = True
        for x in [t] + [s for s, _, _, _ in placed if t < s < t + d]:
            tc = need[0] + sum(a for s, e, a, _ in placed if s <= x < e)
            vc = need[1] + sum(b for s, e, _, b in placed if s <= x < e)
            if tc > cap[0] or vc > cap[1]:
                ok = False
                break
        if ok:
            return t
    raise AssertionError("unreachable: after the last end every core is free")


def solve_exhaustive(problem: Problem) -> Schedule:
    """The optimal schedule of a problem with at most `MAX_TASKS` tasks (status OPTIMAL).

    Raises:
        ConfigError: more than `MAX_TASKS` tasks.
    """
    if problem.n > MAX_TASKS:
        raise ConfigError(f"exhaustive search handles at most {MAX_TASKS} tasks, got {problem.n}; "
                          "use coda.ilp.schedule")
    t0 = time.perf_counter()
    n = problem.n
    cap = (problem.n_tc, problem.n_vc)
    tasks = problem.tasks
    preds = [tuple(i for i, j in problem.edges if j == k) for k in range(n)]
    succs = [tuple(j for i, j in problem.edges if i == k) for k in range(n)]
    md = [min(t.one_core_s, t.all_cores_s) for t in tasks]
    tail = [0.0] * n
    for i in reversed(range(n)):
        tail[i] = max((md[j] + tail[j] for j in succs[i]), default=0.0)

    def need(i: int, parallel: bool) -> tuple[int, int]:
        return cap if parallel else (int(tasks[i].uses_tensor), int(tasks[i].uses_vector))

    best: list = [math.inf, None]
    seen: set[frozenset[tuple[int, bool, float]]] = set()
    starts = [0.0] * n
    ends = [0.0] * n
    modes = [False] * n
    done = [False] * n
    placed: list[tuple[float, float, int, int]] = []
    decisions: list[tuple[int, bool, float]] = []

    def work(i: int, parallel: bool, r: int) -> float:
        """Core-seconds task i takes from resource r (a parallel task blocks all of it)."""
        if parallel:
            return cap[r] * tasks[i].all_cores_s
        return need(i, False)[r] * tasks[i].one_core_s

    least_work = [[min(work(i, False, r), work(i, True, r)) for r in (0, 1)] for i in range(n)]

    def bound() -> float:
        lb = max((ends[i] for i in range(n) if done[i]), default=0.0)
        ready = [0.0] * n
        for j in range(n):  # tasks are in topological order
            if done[j]:
                continue
            ready[j] = max((ends[p] if done[p] else ready[p] + md[p] for p in preds[j]), default=0.0)
            lb = max(lb, ready[j] + md[j] + tail[j])
        for r in (0, 1):  # all work fits in cap[r] cores over the makespan
            if cap[r] == 0:
                continue
            total = sum(work(i, modes[i], r) if done[i] else least_work[i][r] for i in range(n))
            lb = max(lb, total / cap[r])
        return lb

    def dfs(depth: int) -> None:
        key = frozenset(decisions)
        if key in seen:
            return
        seen.add(key)
        if bound() >= best[0]:
            return
        if depth == n:
            best[0] = max(ends, default=0.0)
            best[1] = (list(starts), list(modes))
            return
        children = []
        for i in range(n):
            if done[i] or not all(done[p] for p in preds[i]):
                continue
            ready = max((ends[p] for p in preds[i]), default=0.0)
            for mode in (False, True):
                d = tasks[i].duration(mode)
                t = _earliest(placed, ready, d, need(i, mode), cap)
                children.append((t + d + tail[i], i, mode, t, d))
        for _, i, mode, t, d in sorted(children):  # promising children first: good incumbents early
            starts[i], ends[i], modes[i], done[i] = t, t + d, mode, True
            placed.append((t, t + d, *need(i, mode)))
            decisions.append((i, mode, t))
            dfs(depth + 1)
            decisions.pop()
            placed.pop()
            done[i] = False

    dfs(0)
    s, m = best[1]
    return build_schedule(problem, s, m, status=Status.OPTIMAL, gap=0.0, lower_bound_s=best[0],
                          solve_time_s=time.perf_counter() - t0, solver="exhaustive")
