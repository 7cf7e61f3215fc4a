"""The MILP of one layer's on-chip schedule, one builder per equation group of docs/ilp.md.

`build_model(problem, ub, modelled)` writes the variables (V1)-(V6) and the constraints (1)-(15)
exactly as numbered in docs/ilp.md ("Formulation"); `coda.ilp.formulation` solves it. Times are
scaled by `ub` so every time variable lies in [0, 1].
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import pulp

from coda.ilp.fusion import TENSOR, VECTOR, Problem

MAX_CLIQUE_CUTS = 500  # (15) is added only when a core type has at most this many (N+1)-antichains
_SLACK = 1e-9  # scaled-time slack on bounds derived from float sums, so the warm start stays feasible



@dataclass
class _Model:
    prob: pulp.LpProblem
    S: list[pulp.LpVariable]
    C: pulp.LpVariable
    p: dict[int, pulp.LpVariable]
    b: dict[tuple[int, int], pulp.LpVariable]
    x: dict[tuple[str, int, int], pulp.LpVariable]

    @property
    def n_binaries(self) -> int:
        return len(self.p) + len(self.b) + len(self.x)


def _var(prob: pulp.LpProblem, name: str, lowBound: float | None = None, upBound: float | None = None,
         cat: str = pulp.LpContinuous) -> pulp.LpVariable:
    """A variable of `prob` (PuLP >= 3.3 API, with the PuLP 2 constructor as fallback)."""
    if hasattr(prob, "add_variable"):
        return prob.add_variable(name, lowBound=lowBound, upBound=upBound, cat=cat)
    return pulp.LpVariable(name, lowBound=lowBound, upBound=upBound, cat=cat)


@dataclass(eq=False)
class _Builder:
    """The MILP under construction; each method adds one equation group of docs/ilp.md, in the
    order `build_model` calls them (the order of variables and rows is part of the solver's input)."""

    problem: Problem
    ub: float
    modelled: frozenset[str]
    prob: pulp.LpProblem
    C: pulp.LpVariable
    S: list[pulp.LpVariable]
    p: dict[int, pulp.LpVariable]
    b: dict[tuple[int, int], pulp.LpVariable] = field(default_factory=dict)
    x: dict[tuple[str, int, int], pulp.LpVariable] = field(default_factory=dict)
    pairs: list[tuple[int, int]] = field(default_factory=list)

    @classmethod
    def variables(cls, problem: Problem, ub: float, modelled: frozenset[str]) -> _Builder:
        """(V1)-(V3) and (5): scaled start times with their head/tail bounds, the makespan, and the
        parallel-mode binaries."""
        n, tasks, scale = problem.n, problem.tasks, ub
        head, tail = problem.head, problem.tail
        prob = pulp.LpProblem("layer_schedule", pulp.LpMinimize)
        # (V2) C: makespan, scaled; (5) C <= UB (the warm start is feasible), C >= analytic lower bound
        C = _var(prob, "C", lowBound=min(problem.lower_bound_s / scale, 1.0) - _SLACK, upBound=1.0 + _SLACK)
        # (V1) S_i: start of task i, head_i <= S_i <= UB - tail_i - min duration_i
        S = [_var(prob, f"S_{i}", lowBound=max(head[i] / scale - _SLACK, 0.0),
                  upBound=max(head[i], ub - tail[i] - tasks[i].min_duration) / scale + _SLACK) for i in range(n)]
        # (V3) p_i = 1: task i runs parallel on all cores of its type (only where that is faster)
        p = {i: _var(prob, f"p_{i}", cat=pulp.LpBinary) for i in range(n) if tasks[i].can_parallel}
        return cls(problem, ub, modelled, prob, C, S, p)

    def d(self, i: int) -> Any:
        """(1) d_i = o_i - (o_i - a_i) p_i, scaled."""
        t, scale = self.problem.tasks[i], self.ub
        if i in self.p:
            return t.one_core_s / scale - (t.one_core_s - t.all_cores_s) / scale * self.p[i]
        return t.one_core_s / scale

    def uses(self, i: int, r: str) -> bool:
        task = self.problem.tasks[i]
        return task.uses_tensor if r == TENSOR else task.uses_vector

    def order(self, i: int, j: int) -> Any:
        """b_ij + b_ji: 1 when i and j are ordered either way."""
        return self.b.get((i, j), 0) + self.b.get((j, i), 0)

    def objective_precedence_makespan(self) -> None:
        """(2) minimise C; (3) precedence (transitively reduced); (4) the makespan covers every task and its tail."""
        prob, S, C, pr = self.prob, self.S, self.C, self.problem
        prob += C
        for i, j in pr.edges:
            prob += S[j] >= S[i] + self.d(i), f"prec_{i}_{j}"
        for i in range(pr.n):
            prob += C >= S[i] + self.d(i) + pr.tail[i] / self.ub, f"mk_{i}"

    def chain_work_cuts(self) -> None:
        """(13)-(14), per chain K and core type r: the chain's tasks run one after another; every
        other task's work on type r (N_r a_j when parallel, o_j when single) fits in the N_r cores
        outside the chain's intervals, except what overlaps a chain task i (at most v_ri, eq. 14)."""
        for k, chain in enumerate(self.problem.chains):
            for r in (TENSOR, VECTOR):
                cap = self.problem.capacity(r)
                if cap == 0:  # a core type the design lacks (then no task uses it)
                    continue
                self._chain_work_cut(k, chain, r, cap)

    def _chain_work_cut(self, k: int, chain: Any, r: str, cap: int) -> None:
        pr, tasks, p, scale = self.problem, self.problem.tasks, self.p, self.ub
        on_chain = set(chain)
        rest = []
        for j in range(pr.n):
            if j in on_chain:
                continue
            single = tasks[j].one_core_s if self.uses(j, r) else 0.0
            rest.append(cap * tasks[j].all_cores_s * p[j] + single * (1 - p[j]) if j in p else single)
        overlap = []
        for i in chain:
            free = (cap - self.uses(i, r)) * tasks[i].one_core_s
            fill = [(min(tasks[i].one_core_s, tasks[j].one_core_s), j) for j in range(pr.n)
                    if j not in on_chain and self.uses(j, r) and not pr.comparable(i, j)]
            if free <= 0 or not fill:
                continue
            # (V6) v_ri >= 0: type-r work of other tasks done while chain task i runs
            v = _var(self.prob, f"v_{k}_{r[0]}_{i}", lowBound=0)
            overlap.append(v)
            self.prob += v <= free / scale * (1 - p[i] if i in p else 1), f"vcap_{k}_{r[0]}_{i}"  # (14a)
            self.prob += v <= pulp.lpSum(w / scale * (1 - p[j] if j in p else 1) for w, j in fill), \
                f"vfill_{k}_{r[0]}_{i}"  # (14b)
        self.prob += self.C >= pulp.lpSum(self.d(i) for i in chain) + (
            pulp.lpSum(rest) / scale - pulp.lpSum(overlap)) / cap, f"work_{k}_{r[0]}"  # (13)

    def disjunctions_and_symmetry(self) -> None:
        """(V4) order binaries with (6) tight big-M disjunctions for unordered pairs that may
        conflict; (12) identical independent tasks start in index order (and never the reverse order)."""
        pr, S, scale = self.problem, self.S, self.ub
        later_twin = {pair for g in pr.identical_groups for pair in itertools.pairwise(g)}
        forbidden = {(b, a) for a, b in later_twin}
        for i in range(pr.n):
            for j in range(i + 1, pr.n):
                if pr.comparable(i, j):
                    continue
                if i in self.p or j in self.p or any(self.uses(i, r) and self.uses(j, r) for r in self.modelled):
                    self.pairs.append((i, j))
                    for u, v in ((i, j), (j, i)):
                        if (u, v) not in forbidden:
                            # (V4) b_uv = 1: u ends before v starts
                            self.b[u, v] = _var(self.prob, f"b_{u}_{v}", cat=pulp.LpBinary)
                            big_m = max(self.ub - pr.tail[u] - pr.head[v], 0.0) / scale + _SLACK
                            self.prob += S[v] >= S[u] + self.d(u) - big_m * (1 - self.b[u, v]), f"disj_{u}_{v}"
        for a, c in sorted(later_twin):
            self.prob += S[a] <= S[c], f"sym_{a}_{c}"

    def order_once_and_exclusive(self) -> None:
        """(7) at most one order per pair; (8) a parallel task overlaps nothing."""
        for i, j in self.pairs:
            self.prob += self.order(i, j) <= 1, f"once_{i}_{j}"
            for k in (i, j):
                if k in self.p:
                    self.prob += self.order(i, j) >= self.p[k], f"excl_{i}_{j}_{k}"

    def clique_cuts(self) -> None:
        """(15) of cap+1 pairwise unordered users of a modelled type r, two must not overlap."""
        for r in sorted(self.modelled):
            cap = self.problem.capacity(r)
            users = [i for i in range(self.problem.n) if self.uses(i, r)]
            cliques = self.problem.antichains(users, cap + 1, MAX_CLIQUE_CUTS)
            for k, clique in enumerate(cliques):
                self.prob += pulp.lpSum(self.order(i, j) for i, j in itertools.combinations(clique, 2)) >= 1, \
                    f"clique_{r[0]}_{k}"

    def core_assignment(self) -> None:
        """(V5) x_rik; (9) one core of a modelled type per task; (10) two tasks on the same core do
        not overlap; (11) only cores k <= rank(i) (core symmetry)."""
        x = self.x
        for r in sorted(self.modelled):
            users = [i for i in range(self.problem.n) if self.uses(i, r)]
            cap = self.problem.capacity(r)
            for rank, i in enumerate(users):
                row = [x.setdefault((r, i, k), _var(self.prob, f"x_{r[0]}_{i}_{k}", cat=pulp.LpBinary))
                       for k in range(min(cap, rank + 1))]
                self.prob += pulp.lpSum(row) == 1, f"assign_{r[0]}_{i}"
            for i, j in self.pairs:
                if self.uses(i, r) and self.uses(j, r):
                    for k in range(cap):
                        if (r, i, k) in x and (r, j, k) in x:
                            self.prob += self.order(i, j) >= x[r, i, k] + x[r, j, k] - 1, f"core_{r[0]}_{i}_{j}_{k}"


def build_model(problem: Problem, ub: float, modelled: frozenset[str]) -> _Model:
    """The MILP for `problem` with makespan at most `ub` and core counts of the `modelled` types,
    one equation group of docs/ilp.md at a time."""
    m = _Builder.variables(problem, ub, modelled)  # (V1)-(V3), (5)
    m.objective_precedence_makespan()  # (1)-(4)
    m.chain_work_cuts()  # (13), (14a), (14b), (V6)
    m.disjunctions_and_symmetry()  # (V4), (6), (12)
    m.order_once_and_exclusive()  # (7), (8)
    m.clique_cuts()  # (15)
    m.core_assignment()  # (V5), (9)-(11)
    return _Model(m.prob, m.S, m.C, m.p, m.b, m.x)


__all__ = ["MAX_CLIQUE_CUTS", "build_model"]
