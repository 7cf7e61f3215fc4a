"""A per-design lower bound on every plan's step time in milliseconds: work bounds of the layer graphs
from memoised op latencies, combined by the placement bound's coefficients.

**Layer bound.** For a layer graph on a design with `n_tc` tensor and `n_vc` vector cores, let
each non-collective op `o` have its predicted latency `one_o` on one core of its type and `all_o`
on all `N_o` cores of its type (`coda.predictor.accel_tiles`, the latencies the ILP schedules).
Then every schedule the ILP or its heuristic returns has a makespan of at least

    W = max( sum_{tensor ops} min(one_o / n_tc, all_o),  sum_{vector ops} min(one_o / n_vc, all_o),
             max_o min(one_o, all_o) )

Proof: the ILP's instance (`coda.ilp.fusion.make_problem`) has a task per op or per fused
matmul + consumer pair, whose one-core and all-core latencies are the max (or, with
``fused_latency="sum"``, the sum) of its members', so never below any member's. Its work bound
(`Problem.work_bound_s`, docs/ilp.md eq. 13) charges each task using a core type at least
`min(one / N, all)` (a task running alone is charged its full minimum duration, which is more),
and a task's minimum duration bounds the makespan; each is non-decreasing in the task's
latencies, so replacing tasks by their members' latencies (dropping fusion) only lowers them.
`W` drops the critical path and the articulation refinement of `Problem.lower_bound_s`, so it
is weaker, but it needs no scheduling instance: each op's latency depends on the design only
through (tc_rows, tc_cols, vc_lanes, glb_bytes, hbm_bw_bytes_per_s, clock_hz) and the core
count used (`AcceleratorTileModel.estimate` reads nothing else but the range check), so it is
computed once per such key and shared by every design that has it (`LatencyMemo`).

**Plan bound.** The placement's bound of a plan (`coda.search.refine`, `L(plan)`) is linear with
non-negative coefficients in the times of the graphs of the plan's layout, which the placement
times in a fixed order of roles (`costs._Graphs.all()`: forward, backward and attention-core
graph of each distinct layer, then the optimizer): `L = sum_r c_r * time_r + K_0`. The
coefficients are read from the placement itself, by timing with `RoleProbe(r)` (1 for role r,
0 otherwise) and with zero, once per (HBM capacity, links) group; `LinearPlanBounds` checks the
reconstruction against a direct placement evaluation on one design before use. A design's bound
is then `min_plan sum_r c_r W_r + K_0` with its layer bounds `W_r`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from coda.arch.accelerators import Accelerator
from coda.ilp.fusion import Problem, Task, make_problem
from coda.models.graph import OpGraph
from coda.placement.chain import CostModel
from coda.placement.costs import layer_graphs
from coda.placement.layout import Layout
from coda.placement.plan import Plan
from coda.predictor.accel_tiles import AcceleratorTileModel, core_type
from coda.predictor.base import OpLatency

_RECONSTRUCTION_RTOL = 1e-9


def latency_key(acc: Accelerator) -> tuple[Any, ...]:
    """The design fields an op's latency on `p` cores depends on (module doc)."""
    return (acc.tc_rows, acc.tc_cols, acc.vc_lanes, acc.glb_bytes, acc.hbm_bw_bytes_per_s, acc.clock_hz)


class LatencyMemo:
    """Op latencies by (op, `latency_key`, cores used), shared across designs; `clear()` empties it."""

    def __init__(self) -> None:
        self._memo: dict[tuple[Any, ...], float] = {}
        self._ops: dict[int, tuple[OpGraph, dict[str, Any], Problem]] = {}  # id(graph) -> (graph, ops, instance)
        self._model = AcceleratorTileModel()

    def __len__(self) -> int:
        return len(self._memo)

    def clear(self) -> None:
        self._memo.clear()
        self._ops.clear()

    def latency(self, op: Any, acc: Accelerator, key: tuple[Any, ...], cores: int) -> float:
        k = (op, key, cores)
        v = self._memo.get(k)
        if v is None:
            v = self._memo[k] = self._model.latency(op, acc, cores)
        return v

    def problem_bound(self, graph: OpGraph, acc: Accelerator) -> float:
        """`Problem.lower_bound_s` of `make_problem(graph, acc, predicted_latencies(graph, acc))`, exactly,
        without rebuilding the instance: its structure (fusion, task order, reduced edges) depends on the
        ops' core types only, so it is built once per graph and given each design's task latencies
        (the max of a fused pair's, as `fusion._fuse` does with ``fused_latency="max"``)."""
        key = latency_key(acc)
        ops = self._ops.get(id(graph))
        if ops is None or ops[0] is not graph:
            by_name = {op.name: op for op in graph.nodes if op.kind != "collective"}
            lat = {name: OpLatency(core_type(op), self.latency(op, acc, key, 1),
                                   self.latency(op, acc, key, acc.n_tc if core_type(op) == "tensor" else acc.n_vc))
                   for name, op in by_name.items()}
            ops = self._ops[id(graph)] = (graph, by_name, make_problem(graph, acc, lat))
        _, by_name, base = ops
        if base.n == 0:
            return 0.0
        tasks = []
        for t in base.tasks:
            ones, alls = [], []
            for name in t.members:
                op = by_name[name]
                ones.append(self.latency(op, acc, key, 1))
                alls.append(self.latency(op, acc, key, acc.n_tc if core_type(op) == "tensor" else acc.n_vc))
            tasks.append(Task(t.name, t.members, t.core_type, max(ones), max(alls)))
        return float(replace(base, tasks=tuple(tasks), n_tc=acc.n_tc, n_vc=acc.n_vc).lower_bound_s)

    def work_bound(self, graph: OpGraph, acc: Accelerator) -> float:
        """`W` of the module doc: a lower bound on the ILP makespan of `graph` on `acc`."""
        key = latency_key(acc)
        tensor = vector = longest = 0.0
        for op in graph.nodes:
            if op.kind == "collective":
                continue
            is_tensor = core_type(op) == "tensor"
            n = acc.n_tc if is_tensor else acc.n_vc
            one = self.latency(op, acc, key, 1)
            full = self.latency(op, acc, key, n)
            share = min(one / n, full)
            if is_tensor:
                tensor += share
            else:
                vector += share
            longest = max(longest, min(one, full))
        return max(tensor, vector, longest)


@dataclass(frozen=True)
class RoleProbe:
    """A pseudo layer timer that returns 1 for the graphs of one role and 0 for the others (or 0 for
    all, `role=-1`); the placement times its layouts' graphs in batches of `per` roles (module doc)."""

    role: int
    per: int

    def __call__(self, graph: OpGraph, device: Any) -> float:
        raise AssertionError("RoleProbe times whole layouts only (through `many`)")

    def many(self, graphs: list[OpGraph], device: Any) -> list[float]:
        if len(graphs) % self.per:
            raise AssertionError(f"the placement timed {len(graphs)} graphs, not whole layouts of {self.per}")
        return [1.0 if k % self.per == self.role else 0.0 for k in range(len(graphs))]


class LinearPlanBounds:
    """`L(plan) = sum_r c_r * time_r + K_0` for the plans of one (HBM, links) group (module doc).

    Args:
        model: a `CostModel` on a chip of the group (its cluster, dtype and software are the search's).
        plans: the candidate plans (those that can fit).
        step_bounds: `(model, plans, layer_time) -> {plan: L(plan)}` with that timer.
    """

    def __init__(self, model: CostModel, plans: list[Plan], step_bounds: Any) -> None:
        self.model = model
        self.layouts: dict[Layout, list[OpGraph]] = {}
        for plan in plans:
            lay = plan.graph_layout
            if lay not in self.layouts:
                self.layouts[lay] = layer_graphs(model.cfg, lay, model.seq_len, model.dtype,
                                                 model.software.graph_options).all()
        self.per = len(next(iter(self.layouts.values()))) if self.layouts else 0
        zero = step_bounds(RoleProbe(-1, max(self.per, 1)))
        roles = [step_bounds(RoleProbe(r, self.per)) for r in range(self.per)]
        self.plans = [p for p in plans if p in zero]
        self.k0 = np.array([zero[p] for p in self.plans])
        self.coef = np.array([[roles[r][p] - zero[p] for r in range(self.per)] for p in self.plans]).reshape(
            len(self.plans), self.per)
        self.plan_layout = [p.graph_layout for p in self.plans]

    def step_bound(self, layer_bound: Any, acc: Accelerator) -> float:
        """min over plans of `L(plan)` with layer times `layer_bound(graph, acc)` (inf: no plan)."""
        if not self.plans:
            return float("inf")
        times = {lay: np.array([layer_bound(g, acc) if g.number_of_nodes() else 0.0 for g in graphs])
                 for lay, graphs in self.layouts.items()}
        return float(min(float(self.coef[k] @ times[lay]) + float(self.k0[k])
                         for k, lay in enumerate(self.plan_layout)))

    def check(self, direct: dict[Plan, float], layer_bound: Any, acc: Accelerator) -> None:
        """Assert the reconstruction equals `direct` (the placement's `L` with `layer_bound` on `acc`)."""
        times = {lay: np.array([layer_bound(g, acc) if g.number_of_nodes() else 0.0 for g in graphs])
                 for lay, graphs in self.layouts.items()}
        for k, plan in enumerate(self.plans):
            mine = float(self.coef[k] @ times[self.plan_layout[k]]) + float(self.k0[k])
            if abs(mine - direct[plan]) > _RECONSTRUCTION_RTOL * max(abs(direct[plan]), 1e-30):
                raise AssertionError(f"linear plan bound {mine!r} != placement's {direct[plan]!r} for {plan}")
