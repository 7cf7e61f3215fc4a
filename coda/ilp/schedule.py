"""The result of scheduling one layer (`Schedule`), its Chrome trace, and the replay checker.

Semantics every solver (ILP, heuristic, exhaustive) and the checker share:

- A task runs either on one core of its type (a fused task on one tensor core and one vector
  core at once), for `one_core_s`; several such tasks of a type may overlap, at most `n_tc`
  (tensor) / `n_vc` (vector) at any instant; or *parallel*, split across every core of its
  type(s), for `all_cores_s`, and then nothing else runs on the chip at the same time, on either
  core type (PHAZE: intra-op parallelism excludes every concurrent operator; the split op also
  saturates the shared global buffer and HBM).
- Tasks are non-preemptive; a task starts when all its predecessors have ended.
- Collectives take no core time: they are zero-length ``network`` entries.

`check_schedule` replays a schedule against the original layer graph and raises
`InvalidSchedule` on any violated precedence, capacity, exclusivity, duration or core label.
"""

from __future__ import annotations

import enum
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx
import pandas as pd

from coda.errors import CodaError, ConfigError
from coda.ilp.fusion import FUSED, NETWORK, TENSOR, VECTOR, Problem
from coda.plotting import pyplot

REL_TOL = 1e-9


class Status(str, enum.Enum):
    """How good a schedule is known to be."""

    OPTIMAL = "optimal"  # proven: makespan equals the lower bound, or the solver closed the gap
    FEASIBLE = "feasible"  # a solver incumbent with a remaining gap (gap limit or time limit)
    HEURISTIC = "heuristic"  # the list-scheduling fallback: the solver gave nothing better

    @classmethod
    def from_str(cls, name: str) -> Status:
        try:
            return cls(name.lower())
        except ValueError:
            raise ConfigError(f"unknown status {name!r}; use one of {', '.join(s.value for s in cls)}") from None


class InvalidSchedule(CodaError):
    """A schedule that breaks precedence, capacity, exclusivity or durations (the checker's verdict)."""


@dataclass(frozen=True)
class ScheduledOp:
    """One task (or network op) in a schedule. Times in seconds from the layer's start.

    Attributes:
        name: task name (``"a+b"`` for a fused pair).
        members: original op names it runs.
        core_type: ``tensor``, ``vector``, ``tensor+vector`` or ``network``.
        start_s, end_s: start and end time.
        parallel: split across all cores of its type(s) (then alone on the chip).
        cores: core labels it occupies (``tc0``.., ``vc0``..); empty for network ops.
    """

    name: str
    members: tuple[str, ...]
    core_type: str
    start_s: float
    end_s: float
    parallel: bool
    cores: tuple[str, ...]

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


@dataclass(frozen=True)
class Schedule:
    """An on-chip schedule of one layer and how it was obtained.

    Attributes:
        layer: layer graph name; design: accelerator name; n_tc, n_vc: its core counts.
        makespan_s: layer time (seconds).
        ops: tasks ordered by start time, then network ops.
        status: `Status`; gap: (makespan - lower bound) / makespan.
        lower_bound_s: best proven lower bound (critical path, work / cores, solver bound).
        solve_time_s: wall time of the scheduling call that produced it (a cache hit keeps it;
            not compared by ``==``).
        solver: ``cbc``, ``highs``, ``heuristic`` or ``exhaustive``.
        n_binaries: binary variables of the last ILP solved (0 if none).
        sequential_s: sum over tasks of their best single-task latency (everything serial).
        heuristic_s: makespan of the list-scheduling heuristic.
        wall_clock_limited: the wall-clock limit, not the gap or a node limit, ended the solve, so
            the schedule may differ on a busier or idler machine.
        solver_error: the solver's failure, if it failed (the heuristic schedule is kept).
    """

    layer: str
    design: str
    n_tc: int
    n_vc: int
    makespan_s: float
    ops: tuple[ScheduledOp, ...]
    status: Status
    gap: float
    lower_bound_s: float
    solve_time_s: float = field(compare=False)
    solver: str
    n_binaries: int = 0
    sequential_s: float = 0.0
    heuristic_s: float = 0.0
    wall_clock_limited: bool = False
    solver_error: str = ""

    def op(self, name: str) -> ScheduledOp:
        """The entry of task `name`, or of the task that runs original op `name`."""
        for entry in self.ops:
            if entry.name == name or name in entry.members:
                return entry
        raise KeyError(name)

    @property
    def utilisation(self) -> dict[str, float]:
        """Busy core-seconds / (cores * makespan) per core type (a parallel task uses all its type's cores)."""
        busy = {TENSOR: 0.0, VECTOR: 0.0}
        for e in self.ops:
            for core_type in (TENSOR, VECTOR):
                if e.core_type in (core_type, FUSED):
                    n = (self.n_tc if core_type == TENSOR else self.n_vc) if e.parallel else 1
                    busy[core_type] += n * e.duration_s
        cores = {TENSOR: self.n_tc, VECTOR: self.n_vc}
        return {k: busy[k] / (cores[k] * self.makespan_s) if cores[k] and self.makespan_s > 0 else 0.0 for k in busy}

    def replace_meta(self, **changes: Any) -> Schedule:
        """A copy with some metadata fields changed (status, solver, times...)."""
        return Schedule(**{**self.__dict__, **changes})

    def to_frame(self) -> pd.DataFrame:
        """One row per entry: name, core_type, start_s, end_s, duration_s, parallel, n_cores, cores."""
        return pd.DataFrame([
            {"name": e.name, "core_type": e.core_type, "start_s": e.start_s, "end_s": e.end_s,
             "duration_s": e.duration_s, "parallel": e.parallel, "n_cores": len(e.cores), "cores": _cores_label(e)}
            for e in self.ops
        ])

    def summary(self) -> dict[str, Any]:
        """Scalar fields and utilisation, for tables and JSON."""
        out = {k: v for k, v in self.to_dict().items() if k != "ops"}
        out["utilisation"] = self.utilisation
        out["n_ops"] = sum(e.core_type != NETWORK for e in self.ops)
        return out

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["status"] = self.status.value
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Schedule:
        ops = tuple(ScheduledOp(**{**e, "members": tuple(e["members"]), "cores": tuple(e["cores"])})
                    for e in data["ops"])
        return cls(**{**data, "ops": ops, "status": Status.from_str(data["status"])})

    def to_chrome_trace(self, path: str | Path | None = None) -> dict[str, Any]:
        """Chrome trace JSON (open in Perfetto or chrome://tracing): one track per core.

        Complete events (``ph: X``, microseconds) per task on each core it occupies (a parallel
        task appears on every core of its type), instant events on a ``network`` track for
        collectives. Writes the JSON to `path` if given; returns it either way.
        """
        tracks = [f"tc{k}" for k in range(self.n_tc)] + [f"vc{k}" for k in range(self.n_vc)] + [NETWORK]
        tid = {label: k for k, label in enumerate(tracks)}
        events: list[dict[str, Any]] = [
            {"name": "process_name", "ph": "M", "pid": 0, "args": {"name": f"{self.layer} on {self.design}"}},
        ]
        used = {c for e in self.ops for c in e.cores} | {NETWORK}
        for label in tracks:
            if label in used:
                events.append({"name": "thread_name", "ph": "M", "pid": 0, "tid": tid[label], "args": {"name": label}})
                events.append({"name": "thread_sort_index", "ph": "M", "pid": 0, "tid": tid[label],
                               "args": {"sort_index": tid[label]}})
        for e in self.ops:
            args = {"members": list(e.members), "core_type": e.core_type, "parallel": e.parallel,
                    "start_s": e.start_s, "end_s": e.end_s}
            if e.core_type == NETWORK:
                events.append({"name": e.name, "cat": NETWORK, "ph": "i", "s": "t", "pid": 0, "tid": tid[NETWORK],
                               "ts": e.start_s * 1e6, "args": args})
                continue
            for core in e.cores:
                events.append({"name": e.name, "cat": e.core_type, "ph": "X", "pid": 0, "tid": tid[core],
                               "ts": e.start_s * 1e6, "dur": e.duration_s * 1e6, "args": args})
        trace = {"traceEvents": events, "displayTimeUnit": "ms",
                 "otherData": {k: v for k, v in self.summary().items()}}
        if path is not None:
            Path(path).write_text(json.dumps(trace, indent=1, default=str))
        return trace

    def plot_timeline(self, path: str | Path, max_rows: int = 16) -> None:
        """Save a PNG timeline: one row per core (only the cores single-core tasks use when a type
        has more than `max_rows`); parallel tasks (hatched) span all rows of their type(s).
        Needs matplotlib (``pip install coda-llm[plot]``)."""
        plt = pyplot("plot_timeline")
        rows: list[str] = []
        for prefix, n in (("tc", self.n_tc), ("vc", self.n_vc)):
            labels = sorted({c for e in self.ops if not e.parallel for c in e.cores if c.startswith(prefix)},
                            key=lambda c: int(c[2:]))
            rows += [f"{prefix}{k}" for k in range(n)] if n <= max_rows else (labels or [f"{prefix}*"])
        y = {label: k for k, label in enumerate(rows)}
        fig, ax = plt.subplots(figsize=(12, 0.45 * len(rows) + 1.5))
        colors = {TENSOR: "tab:blue", VECTOR: "tab:orange", FUSED: "tab:green"}
        for e in self.ops:
            if e.core_type == NETWORK:
                continue
            if e.parallel:
                prefixes = [p for p, t in (("tc", TENSOR), ("vc", VECTOR)) if e.core_type in (t, FUSED)]
                targets = [r for r in rows if r[:2] in prefixes]
            else:
                targets = [c for c in e.cores if c in y]
            for label in targets:
                ax.broken_barh([(e.start_s * 1e6, e.duration_s * 1e6)], (y[label] - 0.4, 0.8),
                               facecolors=colors[e.core_type], edgecolor="black", linewidth=0.5,
                               hatch="//" if e.parallel else None)
            if e.duration_s < 0.04 * self.makespan_s:  # too narrow for a label
                continue
            mid = targets[len(targets) // 2]
            ax.text((e.start_s + e.duration_s / 2) * 1e6, y[mid], e.name, ha="center", va="center", fontsize=6,
                    clip_on=True)
        from matplotlib.patches import Patch

        ax.legend(handles=[Patch(facecolor=c, edgecolor="black", label=k) for k, c in colors.items()],
                  loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7)
        ax.set_yticks(range(len(rows)), rows)
        ax.invert_yaxis()
        ax.set_xlabel("time (us)")
        ax.set_title(f"{self.layer} on {self.design}: makespan {self.makespan_s * 1e6:.1f} us "
                     f"({self.status.value}, gap {self.gap:.2%}); hatched = parallel on all cores")
        fig.tight_layout()
        fig.savefig(path, dpi=120)
        plt.close(fig)


def _cores_label(e: ScheduledOp) -> str:
    """``tc3``, ``tc0+vc1``, or ``all 8 tc`` / ``all 8 tc + 2 vc`` for a parallel task."""
    if not e.parallel:
        return "+".join(e.cores)
    counts = [(sum(c.startswith(p) for c in e.cores), p) for p in ("tc", "vc")]
    return "all " + " + ".join(f"{n} {p}" for n, p in counts if n)


def build_schedule(problem: Problem, starts: list[float], parallel: list[bool], **meta: Any) -> Schedule:
    """Assemble a `Schedule` from task start times and modes: ends, core labels, network entries.

    Cores are assigned greedily by start time (lowest free index), which needs no more cores than
    the largest number of overlapping tasks (interval graphs are perfect). `meta` fills the
    remaining `Schedule` fields (status, gap, lower_bound_s, solve_time_s, solver, ...).
    """
    n = problem.n
    ends = [starts[i] + problem.tasks[i].duration(parallel[i]) for i in range(n)]
    makespan = max(ends, default=0.0)
    tol = REL_TOL * max(makespan, 1e-300)
    cores: list[list[str]] = [[] for _ in range(n)]
    for core_type, prefix in ((TENSOR, "tc"), (VECTOR, "vc")):
        cap = problem.capacity(core_type)
        free = [0.0] * cap
        uses = [i for i, t in enumerate(problem.tasks) if t.core_type in (core_type, FUSED)]
        for i in sorted(uses, key=lambda k: (starts[k], ends[k], k)):
            if parallel[i]:
                cores[i] += [f"{prefix}{k}" for k in range(cap)]
                free = [max(f, ends[i]) for f in free]
                continue
            k = next((k for k in range(cap) if free[k] <= starts[i] + tol), None)
            if k is None:
                raise InvalidSchedule(f"{problem.design}: more than {cap} {core_type} tasks overlap at "
                                      f"{starts[i]:.6g} s (task {problem.tasks[i].name!r})")
            cores[i].append(f"{prefix}{k}")
            free[k] = ends[i]
    entries = [ScheduledOp(t.name, t.members, t.core_type, starts[i], ends[i], bool(parallel[i]), tuple(cores[i]))
               for i, t in enumerate(problem.tasks)]
    entries.sort(key=lambda e: (e.start_s, e.end_s, e.name))
    entries += _network_entries(problem, starts, ends)
    return Schedule(layer=problem.graph.name if problem.graph is not None else "", design=problem.design,
                    n_tc=problem.n_tc, n_vc=problem.n_vc, makespan_s=makespan, ops=tuple(entries),
                    sequential_s=sum(t.min_duration for t in problem.tasks), **meta)


def _network_entries(problem: Problem, starts: list[float], ends: list[float]) -> list[ScheduledOp]:
    if not problem.network or problem.graph is None:
        return []
    time: dict[str, float] = {op: ends[i] for op, i in problem.task_of.items()}
    out = []
    for op in problem.graph.ops():
        if op.kind != "collective":
            continue
        t = max((time[p.name] for p in problem.graph.predecessors(op)), default=0.0)
        time[op.name] = t
        out.append(ScheduledOp(op.name, (op.name,), NETWORK, t, t, False, ()))
    return out


def _task_errors(t: Any, e: ScheduledOp, problem: Problem, tol: float) -> list[str]:
    """One task's entry: members, core type, duration for its mode, start >= 0, core labels."""
    errors = []
    if e.members != t.members or e.core_type != t.core_type:
        errors.append(f"task {t.name!r}: members/core type {e.members}/{e.core_type} differ from the problem")
    if abs(e.duration_s - t.duration(e.parallel)) > tol:
        errors.append(f"task {t.name!r}: duration {e.duration_s:.9g} s != {t.duration(e.parallel):.9g} s")
    if e.start_s < -tol:
        errors.append(f"task {t.name!r} starts before 0")
    want = [(p, problem.capacity(ct)) for p, ct in (("tc", TENSOR), ("vc", VECTOR)) if t.core_type in (ct, FUSED)]
    for prefix, cap in want:
        labels = [c for c in e.cores if c.startswith(prefix)]
        ok = all(c[2:].isdigit() and int(c[2:]) < cap for c in labels)
        if not ok or len(set(labels)) != (cap if e.parallel else 1):
            errors.append(f"task {t.name!r}: cores {e.cores} are not {'all' if e.parallel else 'one'} "
                          f"of {prefix}0..{cap - 1}")
    return errors


def _edge_errors(problem: Problem, by_name: dict[str, ScheduledOp], tol: float) -> list[str]:
    """Every original edge (through fused tasks and network ops) respected; the graph acyclic."""
    errors, graph = [], problem.graph
    assert graph is not None
    entry = {m: by_name.get(problem.tasks[i].name) for m, i in problem.task_of.items()}
    entry.update({m: by_name.get(m) for m in problem.network})
    for u, v in graph.edges:
        a, b = entry.get(u.name), entry.get(v.name)
        if a is None or b is None:
            errors.append(f"edge {u.name} -> {v.name}: op missing from the schedule")
        elif a is not b and b.start_s < a.end_s - tol:
            errors.append(f"edge {u.name} -> {v.name}: {b.name!r} starts at {b.start_s:.9g} before "
                          f"{a.name!r} ends at {a.end_s:.9g}")
    if not nx.is_directed_acyclic_graph(graph):
        errors.append("graph is cyclic")
    return errors


def _overlap_errors(tasks: list[ScheduledOp], problem: Problem, tol: float) -> list[str]:
    """At every task start: no task overlapping a parallel one, at most the cores of each type
    busy, no core shared by overlapping tasks."""
    errors = []
    for j in tasks:
        if j.duration_s <= tol:
            continue
        t0 = j.start_s + tol
        active = [k for k in tasks if k.start_s <= t0 and k.end_s > t0]
        par = [k for k in active if k.parallel]
        if par and len(active) > 1:
            errors.append(f"parallel task {par[0].name!r} overlaps {[k.name for k in active if k is not par[0]]}")
        for ct in (TENSOR, VECTOR):
            used = sum(k.core_type in (ct, FUSED) for k in active if not k.parallel)
            if used > problem.capacity(ct):
                errors.append(f"{used} {ct} tasks run at {j.start_s:.9g} s on {problem.capacity(ct)} cores")
        for k in active:
            if k is not j and set(k.cores) & set(j.cores):
                errors.append(f"tasks {k.name!r} and {j.name!r} share cores {sorted(set(k.cores) & set(j.cores))[:3]}")
    return errors


def check_schedule(schedule: Schedule, problem: Problem, rel_tol: float = REL_TOL) -> None:
    """Replay `schedule` against `problem` and its original graph; raise `InvalidSchedule` if wrong.

    Checks: every task once with the right members, type and duration for its mode; start >= 0;
    every original edge (through fused tasks and network ops) respected; at every task start,
    at most `n_tc` / `n_vc` single-core tasks of each type running, and no task overlapping a
    parallel one; core labels valid, of the right count, and never shared by overlapping tasks;
    makespan equal to the last end.
    """
    errors: list[str] = []
    span = max(schedule.makespan_s, 1e-300)
    tol = rel_tol * span
    by_name = {e.name: e for e in schedule.ops}
    tasks = []
    for t in problem.tasks:
        e = by_name.get(t.name)
        if e is None:
            errors.append(f"task {t.name!r} missing")
            continue
        tasks.append(e)
        errors += _task_errors(t, e, problem, tol)
    if len(schedule.ops) != problem.n + len(problem.network):
        errors.append(f"{len(schedule.ops)} entries for {problem.n} tasks and {len(problem.network)} network ops")
    if problem.graph is not None:
        errors += _edge_errors(problem, by_name, tol)
    errors += _overlap_errors(tasks, problem, tol)
    last = max((e.end_s for e in schedule.ops), default=0.0)
    if abs(last - schedule.makespan_s) > tol:
        errors.append(f"makespan {schedule.makespan_s:.9g} s != last end {last:.9g} s")
    if errors:
        raise InvalidSchedule(f"{schedule.layer} on {schedule.design}: " + "; ".join(sorted(set(errors))[:10]))
