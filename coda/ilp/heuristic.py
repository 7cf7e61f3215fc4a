"""List scheduling with critical-path priorities: the ILP's warm start and fallback.

Serial schedule-generation scheme (SGS): tasks are taken one at a time, highest priority first
among those whose predecessors are placed, each at its earliest start that respects precedence
and the cores already taken (`earliest_start`); modes by earliest finish, always parallel (when
faster) or never. Parallel SGS (`parallel_sgs`): at each event time every eligible task that
fits starts on one core (alone on the chip, it runs parallel). Three priority rules are tried;
the best schedule of each family is improved by a deterministic local search (`improve`: flip
one or two modes, move one task in the list, re-run the serial SGS). Milliseconds per layer.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from coda.ilp.fusion import Problem

Interval = tuple[float, float, int, int]  # start, end, tensor cores, vector cores


def demand(problem: Problem, i: int, parallel: bool) -> tuple[int, int]:
    """(tensor, vector) cores task i holds: all of both when parallel (it runs alone)."""
    if parallel:
        return problem.n_tc, problem.n_vc
    t = problem.tasks[i]
    return int(t.uses_tensor), int(t.uses_vector)


def fits(placed: Sequence[Interval], start: float, duration: float, need: tuple[int, int],
         cap: tuple[int, int]) -> bool:
    """True if `need` cores are free over [start, start + duration) given the placed intervals.

    Usage is checked at `start` and at every placed start inside the window (usage is piecewise
    constant and only rises at starts). Only intervals overlapping the window can count at those
    points (`s <= x < e` with `start <= x < end` needs `s < end` and `e > start`), and when even all
    of those together leave room, every point does: both shortcuts return what the check at every
    point returns (`tests/unit/ilp/test_heuristic_share.py` compares with that check).
    """
    if duration <= 0:
        return True
    end = start + duration
    free_t, free_v = cap[0] - need[0], cap[1] - need[1]
    if free_t < 0 or free_v < 0:
        return False
    over = [iv for iv in placed if iv[0] < end and iv[1] > start]
    if sum(iv[2] for iv in over) <= free_t and sum(iv[3] for iv in over) <= free_v:
        return True
    points = [start] + [s for s, _, _, _ in placed if start < s < end]
    for x in points:
        tc = vc = 0
        for s, e, a, b in over:
            if s <= x < e:
                tc += a
                vc += b
        if tc > free_t or vc > free_v:
            return False
    return True


def earliest_start(placed: Sequence[Interval], ready: float, duration: float, need: tuple[int, int],
                   cap: tuple[int, int]) -> float:
    """Earliest t >= ready at which the task fits: `ready` or the end of some placed interval."""
    for t in sorted({ready} | {e for _, e, _, _ in placed if e > ready}):
        if fits(placed, t, duration, need, cap):
            return t
    raise AssertionError("a task always fits after every placed interval has ended")


@dataclass(frozen=True)
class ListSchedule:
    """A heuristic schedule: start times, modes, makespan and the rule that produced it."""

    starts: tuple[float, ...]
    parallel: tuple[bool, ...]
    makespan_s: float
    rule: str


def serial_sgs(problem: Problem, priority: Sequence[float], mode_rule: str) -> ListSchedule:
    """One pass of the serial schedule-generation scheme.

    Args:
        problem: the instance.
        priority: larger first among eligible tasks (ties: lower index).
        mode_rule: ``"eft"`` (mode with the earliest finish), ``"single"`` or ``"parallel"``
            (parallel whenever it is faster in isolation).
    """
    n = problem.n
    cap = (problem.n_tc, problem.n_vc)
    starts = [0.0] * n
    ends = [0.0] * n
    par = [False] * n
    done = [False] * n
    placed: list[Interval] = []
    for _ in range(n):
        eligible = [i for i in range(n) if not done[i] and all(done[p] for p in problem.preds[i])]
        i = max(eligible, key=lambda k: (priority[k], -k))
        ready = max((ends[p] for p in problem.preds[i]), default=0.0)
        task = problem.tasks[i]
        modes = [False]
        if task.can_parallel and mode_rule != "single":
            modes = [True] if mode_rule == "parallel" else [False, True]
        best: tuple[float, float, bool] | None = None
        for mode in modes:
            d = task.duration(mode)
            t = earliest_start(placed, ready, d, demand(problem, i, mode), cap)
            if best is None or t + d < best[0] + best[1]:
                best = (t, d, mode)
        assert best is not None
        starts[i], d, par[i] = best
        ends[i] = starts[i] + d
        done[i] = True
        placed.append((starts[i], ends[i], *demand(problem, i, par[i])))
    return ListSchedule(tuple(starts), tuple(par), max(ends, default=0.0), mode_rule)


def parallel_sgs(problem: Problem, priority: Sequence[float]) -> ListSchedule:
    """Time-stepping (parallel) SGS: at each event time start every eligible task that fits, in
    priority order, on one core; a task that is alone (nothing running, nothing else eligible)
    runs parallel if that is faster. Favours concurrency where the serial rules favour splitting."""
    n = problem.n
    cap = (problem.n_tc, problem.n_vc)
    starts = [0.0] * n
    ends = [math.inf] * n
    par = [False] * n
    started = [False] * n
    t = 0.0
    while not all(started):
        running = [i for i in range(n) if started[i] and ends[i] > t]
        eligible = sorted((i for i in range(n) if not started[i] and all(ends[p] <= t for p in problem.preds[i])),
                          key=lambda k: (-priority[k], k))
        used = [sum(demand(problem, i, par[i])[r] for i in running) for r in (0, 1)]
        for i in eligible:
            alone = not running and len(eligible) == 1
            mode = alone and problem.tasks[i].can_parallel
            need = demand(problem, i, mode)
            if used[0] + need[0] <= cap[0] and used[1] + need[1] <= cap[1]:
                starts[i], ends[i], par[i], started[i] = t, t + problem.tasks[i].duration(mode), mode, True
                used = [used[0] + need[0], used[1] + need[1]]
                running.append(i)
        later = [ends[i] for i in range(n) if started[i] and ends[i] > t]
        if not later:
            # nothing running and nothing startable cannot happen: an eligible task always fits on an idle chip
            break
        t = min(later)
    return ListSchedule(tuple(starts), tuple(par), max(ends, default=0.0), "parallel-sgs")


def _rules(problem: Problem) -> dict[str, Sequence[float]]:
    n = problem.n
    cp = [problem.tasks[i].min_duration + problem.tail[i] for i in range(n)]
    # longest path to the end with one-core durations (favours starting long chains early)
    one = [0.0] * n
    for i in reversed(range(n)):
        one[i] = problem.tasks[i].one_core_s + max((one[j] for j in problem.succs[i]), default=0.0)
    desc = [sum(1 << j for j in range(n) if problem.ancestors[j] >> i & 1).bit_count() for i in range(n)]
    return {"critical-path": cp, "critical-path-one-core": one,
            "descendants": [desc[i] + cp[i] / (max(cp) or 1.0) for i in range(n)]}


def sgs_fixed(problem: Problem, order: Sequence[int], parallel: Sequence[bool]) -> tuple[list[float], float]:
    """Serial SGS for a precedence-feasible list with fixed modes: (starts, makespan)."""
    cap = (problem.n_tc, problem.n_vc)
    starts = [0.0] * problem.n
    ends = [0.0] * problem.n
    placed: list[Interval] = []
    for i in order:
        d = problem.tasks[i].duration(parallel[i])
        need = demand(problem, i, parallel[i])
        starts[i] = earliest_start(placed, max((ends[p] for p in problem.preds[i]), default=0.0), d, need, cap)
        ends[i] = starts[i] + d
        placed.append((starts[i], ends[i], *need))
    return starts, max(ends, default=0.0)


def improve(problem: Problem, start: ListSchedule, max_evals: int = 600) -> ListSchedule:
    """Local search over (list, modes) from `start`: flip one task's mode or move one task in
    the list (keeping precedence), re-run `sgs_fixed`, accept lexicographic improvements of
    (makespan, sum of ends). Deterministic; at most `max_evals` SGS runs."""
    n = problem.n
    order = sorted(range(n), key=lambda i: (start.starts[i], i))
    modes = list(start.parallel)

    def score(o: Sequence[int], m: Sequence[bool]) -> tuple[float, float, list[float]]:
        s, mk = sgs_fixed(problem, o, m)
        return mk, sum(s[i] + problem.tasks[i].duration(m[i]) for i in range(n)), s

    best = score(order, modes)
    evals = 1
    improved = True
    while improved and evals < max_evals:
        improved = False
        moves: list[tuple[list[int], list[bool]]] = []
        flippable = [i for i in range(n) if problem.tasks[i].can_parallel]
        for i in flippable:
            m = list(modes)
            m[i] = not m[i]
            moves.append((order, m))
        for a, b in itertools.combinations(flippable, 2):  # e.g. two concurrent tasks leave parallel mode
            if not problem.comparable(a, b):
                m = list(modes)
                m[a], m[b] = not m[a], not m[b]
                moves.append((order, m))
        for k, i in enumerate(order):
            lo = max((order.index(p) for p in problem.preds[i]), default=-1) + 1
            hi = min((order.index(s) for s in problem.succs[i]), default=n) - 1
            for pos in range(lo, hi + 1):
                if pos != k:
                    o = order[:k] + order[k + 1:]
                    o.insert(pos, i)
                    moves.append((o, modes))
        for o, m in moves:
            if evals >= max_evals:
                break
            cand = score(o, m)
            evals += 1
            if cand[:2] < best[:2]:
                best, order, modes, improved = cand, list(o), list(m), True
                break
    if best[0] < start.makespan_s:
        return ListSchedule(tuple(best[2]), tuple(modes), best[0], start.rule + "+local-search")
    return start


def list_schedule(problem: Problem, rules: Callable[[Problem], dict[str, Sequence[float]]] = _rules,
                  local_search: int = 400) -> ListSchedule:
    """List scheduling: serial SGS (modes by earliest finish, always parallel, never parallel) and
    parallel SGS over several priority rules (critical path first); the best schedule of each
    family is then improved by `improve` (at most `local_search` SGS runs each; 0: none)."""
    if problem.n == 0:
        return ListSchedule((), (), 0.0, "empty")
    family: dict[str, ListSchedule] = {}
    for name, priority in rules(problem).items():
        runs = [serial_sgs(problem, priority, m) for m in ("eft", "parallel", "single")]
        runs.append(parallel_sgs(problem, priority))
        for s in runs:
            key = "parallel-sgs" if s.rule == "parallel-sgs" else ("single" if s.rule == "single" else "serial")
            if key not in family or s.makespan_s < family[key].makespan_s:
                family[key] = ListSchedule(s.starts, s.parallel, s.makespan_s, f"{name}/{s.rule}")
    best = min(family.values(), key=lambda s: s.makespan_s)
    if local_search <= 0:
        return best
    for start in sorted(family.values(), key=lambda s: s.makespan_s):
        if best.makespan_s <= problem.lower_bound_s:
            break
        s = improve(problem, start, local_search)
        if s.makespan_s < best.makespan_s:
            best = s
    return best
