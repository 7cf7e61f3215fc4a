"""Tighter exact upper bounds on a design's training throughput, and an exact best-first search that uses them.

`coda.search.bounds` bounds a design by its peaks alone (no pipeline bubble, no recomputation,
no communication, no memory limit, no HBM stall). For GPT-3 175B on 1024 chips of 32 GiB that
bound is about 2x the achieved throughput (1.83 vs 0.93 tokens/s/W for the best design), so the
search evaluates thousands of designs with the ILP. Three tighter bounds, each exact:

The placement's own lower bound on the step time of a plan (`coda.placement.optimize._bound_data`,
the bound its exact branch and bound prunes with) is

    step(plan) >= L(plan) = (m + (p - 1)/v) / p * ( sum_g c_g(plan) * time_g + coll(plan) )

where `time_g` are the layer times of the plan layout's graphs (forward, backward, attention
core of each distinct layer), `c_g >= 0` their multiplicities (recomputation adds forward graphs
again) and `coll` the tensor-parallel collective time (it depends on the design only through its
links, `search_cluster`). Only plans that can fit are candidates: static memory within the HBM
(the test `optimize` prunes with) and, for 1F1B, a stage split whose every stage fits
(`fitting_plans`; memory does not depend on layer times). L is linear and non-decreasing in
every `time_g`, so a lower bound on each layer time gives a lower bound on `L`, hence on the
step of every plan, hence on the step of the plan `optimize` returns (tokens/s = B * s / step).

1. `RefinedBounds.placement` (all designs at once, vectorised): the ILP makespan of a graph is at
   least its tensor FLOPs over the tensor peak P and its vector FLOPs over the vector peak V
   (`coda.search.bounds`; causal attention executes at least half its FLOPs). With `K_T`, `K_V`,
   `K_0` the values of `L` when `time_g` is the graph's tensor FLOPs, vector FLOPs, and 0,
   linearity gives `L >= max((K_T - K_0)/P, (K_V - K_0)/V) + K_0`. The K's depend on the
   design only through its HBM capacity and links, so one placement pass per (capacity, links)
   bounds all 29,360 PHAZE designs (about 1 s; 1.32 vs the peak bound's 1.86 for GPT-3 175B).
2. `RefinedBounds.design_fast` (one design, about 10 ms): `time_g` >= `Problem.lower_bound_s`
   = max(critical path, tensor work / n_tc, vector work / n_vc) of the graph's scheduling instance
   with the design's predicted op latencies (HBM stalls, tile padding, core counts): the ILP and
   its heuristic return feasible schedules of that instance, so no makespan is below it. The
   instance and the plan coefficients are built once and the op latencies shared across designs
   (`coda.search.layer_bounds`); `RefinedBounds.design` computes the same bound through the
   placement directly (90 ms, the reference the tests compare with).
3. `RefinedBounds.design_placed` (one design, 0.1-0.5 s): the placement's optimum itself
   (`optimize`) with every layer time replaced by its lower bound from (2). The step time of a
   plan and stage split, `S + (m - 1) max_i T_i + max_i (DP_i + gather_i + opt_i) + emb` with
   `DP_i = max(0, sync_i - window_i)` (`coda.placement.pipeline`), is non-decreasing in every
   layer time: raising the stage times by D_i >= 0 raises `S` by sum_i D_i and lowers each
   exposed sync (its window is the stage's backward + recompute) by at most D_i, so by at most
   max_i D_i <= sum_i D_i. Memory, hence which splits and plans fit, does not depend on layer
   times, and `optimize` returns the exact minimum over plans and splits (its branch and bound
   and split DP are exact), so its step with lower-bound layer times is at most its step with
   the ILP's. For the best GPT-3 175B design this bound is 0.2% above the achieved objective.

Every refined bound is multiplied by `1 + BOUND_SLACK` so that floating-point rounding (the
subtraction in (1), the summation order in (2), the 1e-12 s rounding of the split DP) can never
make a bound fall below an achieved value it equals.

`coda.search.search` visits designs best-first by these bounds when its timer is the ILP's
(`coda.search.order.RefinedOrder`, computed lazily: a design's next bound is computed only when it
is the largest left), so it evaluates a design only when no remaining design can have a larger
bound, and stops when that bound is below the incumbent less `tie_tol`. The proofs need the ILP:
bound (2) is a lower bound on the makespan of any schedule of the ILP's instance, so it holds for
the ILP and its heuristic (`SearchLayerTime`, any settings). It is not proved for another timer
(the predictor sum times ops without that instance), so such a search uses the peak bound alone.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from coda.arch.accelerators import Accelerator
from coda.errors import InfeasibleDesign
from coda.ilp import make_problem, predicted_latencies
from coda.models.config import ModelConfig
from coda.models.graph import OpGraph
from coda.placement.chain import CostModel
from coda.placement.dp import best_split
from coda.placement.optimize import buildable_plans, candidate_plans, optimize, order_by_bound
from coda.placement.pipeline import split_problem
from coda.placement.plan import Plan
from coda.search.bounds import (
    ATTENTION_KINDS,
    CAUSAL_EXECUTED_FRACTION,
    MATMUL_KINDS,
    VECTOR_KINDS,
)
from coda.search.design_eval import search_cluster
from coda.search.layer_bounds import LatencyMemo, LinearPlanBounds

log = logging.getLogger(__name__)

BOUND_SLACK = 1e-9
"""Relative slack added to every refined upper bound (floating-point rounding, module doc)."""


@dataclass(frozen=True)
class FlopsLayerTime:
    """A pseudo layer timer that returns a graph's tensor or vector FLOPs (or 0) instead of seconds:
    evaluating the placement's linear step bound with it gives the coefficients `K_T`, `K_V`, `K_0`.

    Attributes:
        kind: ``tensor`` (matmul FLOPs + executed attention FLOPs), ``vector`` or ``zero``.
        causal: the model's attention is causal (a block-skipping kernel executes at least half).
    """

    kind: str
    causal: bool

    def __call__(self, graph: OpGraph, device: Any) -> float:
        if self.kind == "zero" or graph.number_of_nodes() == 0:
            return 0.0
        if self.kind == "vector":
            return float(graph.flops(VECTOR_KINDS))
        attn = CAUSAL_EXECUTED_FRACTION if self.causal else 1.0
        return float(graph.flops(MATMUL_KINDS) + attn * graph.flops(ATTENTION_KINDS))

    def many(self, graphs: list[OpGraph], device: Any) -> list[float]:
        return [self(g, device) for g in graphs]


@dataclass(frozen=True)
class LowerBoundLayerTime:
    """A layer timer that returns a lower bound on the ILP makespan: `Problem.lower_bound_s` of the
    graph's scheduling instance with the design's predicted op latencies (module doc, bound 2)."""

    def __call__(self, graph: OpGraph, device: Any) -> float:
        if graph.number_of_nodes() == 0:
            return 0.0
        problem = make_problem(graph, device, predicted_latencies(graph, device))
        return float(problem.lower_bound_s) if problem.n else 0.0

    def many(self, graphs: list[OpGraph], device: Any) -> list[float]:
        return [self(g, device) for g in graphs]


def plan_step_bounds(cfg: ModelConfig, device: Accelerator, n_devices: int, global_batch: int, seq_len: int,
                     choices: dict[str, Any], layer_time: Any,
                     fits: frozenset[Plan] | None = None) -> dict[Plan, float]:
    """The placement's step-time lower bound `L(plan)` of every candidate plan whose static memory
    fits the device (and that is in `fits`, when given), with layer times from `layer_time` (module doc)."""
    model = CostModel(cfg, search_cluster(device, n_devices), seq_len, layer_time=layer_time)
    max_tp = model.cluster.levels[0].size if model.cluster.levels else 1
    plans = buildable_plans(model, candidate_plans(cfg, n_devices, global_batch, max_tp, model.software.attention,
                                                   **choices))[0]
    if fits is not None:
        plans = [p for p in plans if p in fits]
    if not plans:
        return {}
    model.prefetch(plans)
    scored, _, _ = order_by_bound(model, plans)
    return {plan: float(t) for t, plan in scored}


def fitting_plans(cfg: ModelConfig, hbm_bytes: int, n_devices: int, global_batch: int, seq_len: int,
                  choices: dict[str, Any]) -> frozenset[Plan]:
    """The candidate plans that can fit in `hbm_bytes` on some design: static memory within the limit
    and, for 1F1B plans without fixed stage layers, a stage split whose every stage fits
    (`best_split` is None exactly when no split fits; memory does not depend on layer times, so a
    timer returning 0 decides it for every design of this HBM capacity)."""
    device = _probe(hbm_bytes=hbm_bytes)
    zero = FlopsLayerTime("zero", cfg.causal)
    model = CostModel(cfg, search_cluster(device, n_devices), seq_len, layer_time=zero)
    out = []
    for plan in plan_step_bounds(cfg, device, n_devices, global_batch, seq_len, choices, zero):
        if plan.schedule == "1f1b" and plan.stage_layers is None:
            if best_split(split_problem(model.terms(plan), plan), plan.pp) is None:
                continue
        out.append(plan)
    return frozenset(out)


_GROUP = ("hbm_bytes", "n_links", "link_bw_bytes_per_s")
"""The design fields besides the peaks that bound (1) depends on: memory capacity (which plans fit)
and links (collective times)."""


def _probe(**fields: Any) -> Accelerator:
    """A chip with the given HBM capacity and links (the other fields do not enter bound (1))."""
    kw: dict[str, Any] = {k: (float(v) if k == "link_bw_bytes_per_s" else int(v)) for k, v in fields.items()}
    return Accelerator(n_tc=1, tc_rows=128, tc_cols=128, n_vc=1, vc_lanes=128, glb_bytes=1 << 21, **kw)


def _upper(objective: str, tokens_per_s: float | np.ndarray, n_devices: int, tdp_w: float | np.ndarray) -> Any:
    ub = tokens_per_s * (1.0 + BOUND_SLACK)
    return ub if objective == "tokens_per_s" else ub / (n_devices * tdp_w)


@dataclass(frozen=True)
class _WorkTimer:
    """The layer work bound of `coda.search.layer_bounds` as a layer timer (for the reconstruction check)."""

    memo: LatencyMemo = field(compare=False, hash=False)

    def __call__(self, graph: OpGraph, device: Any) -> float:
        return self.memo.problem_bound(graph, device) if graph.number_of_nodes() else 0.0

    def many(self, graphs: list[OpGraph], device: Any) -> list[float]:
        return [self(g, device) for g in graphs]


@dataclass
class RefinedBounds:
    """Bounds (1) and (2) of the module doc for one search's workload; remembers the plans that can
    fit per HBM capacity (`fitting_plans`), the only state (clear it with `fits.clear()`).

    Attributes:
        cfg, n_devices, global_batch, seq_len, choices, objective: the search's workload and objective.
    """

    cfg: ModelConfig
    n_devices: int
    global_batch: int
    seq_len: int
    choices: dict[str, Any]
    objective: str = "tokens_per_s_per_w"
    fits: dict[int, frozenset[Plan]] = field(default_factory=dict, repr=False)
    memo: LatencyMemo = field(default_factory=LatencyMemo, repr=False)
    linear: dict[tuple[Any, ...], LinearPlanBounds] = field(default_factory=dict, repr=False)

    def fitting(self, hbm_bytes: int) -> frozenset[Plan]:
        """`fitting_plans` for this HBM capacity (computed once)."""
        key = int(hbm_bytes)
        if key not in self.fits:
            self.fits[key] = fitting_plans(self.cfg, key, self.n_devices, self.global_batch, self.seq_len, self.choices)
        return self.fits[key]

    def placement(self, designs: pd.DataFrame) -> np.ndarray:
        """Bound (1) on the objective of every row of a `DesignSpace.to_frame()` (0: nothing fits)."""
        peak = designs["peak_flops"].to_numpy(float)
        vector = (designs["vc_lanes"] * designs["n_vc"] * designs["clock_hz"]).to_numpy(float)
        tdp = designs["tdp_w"].to_numpy(float)
        out = np.zeros(len(designs))
        groups = designs.groupby([c for c in _GROUP if c in designs.columns], sort=False).indices
        for values, idx in groups.items():
            values = values if isinstance(values, tuple) else (values,)
            device = _probe(**dict(zip([c for c in _GROUP if c in designs.columns], values)))
            fits = self.fitting(device.hbm_bytes)
            k = {kind: plan_step_bounds(self.cfg, device, self.n_devices, self.global_batch, self.seq_len, self.choices,
                                        FlopsLayerTime(kind, self.cfg.causal), fits)
                 for kind in ("tensor", "vector", "zero")}
            rows = np.asarray(idx)
            step = np.full(len(rows), math.inf)
            for plan, k0 in k["zero"].items():
                kt, kv = k["tensor"][plan] - k0, k["vector"][plan] - k0
                step = np.minimum(step, np.maximum(kt / peak[rows], kv / vector[rows]) + k0)
            with np.errstate(divide="ignore"):
                tokens = np.where(np.isfinite(step), self.global_batch * self.seq_len / step, 0.0)
            out[rows] = _upper(self.objective, tokens, self.n_devices, tdp[rows])
        return out

    def spec(self) -> tuple[Any, ...]:
        """The workload as a hashable, picklable tuple (what a worker process rebuilds this from)."""
        return (self.cfg, self.n_devices, self.global_batch, self.seq_len, tuple(sorted(self.choices.items())),
                self.objective)

    def _linear(self, acc: Accelerator) -> LinearPlanBounds:
        """The linear plan bounds of `acc`'s (HBM, links) group, built and checked once."""
        key = (int(acc.hbm_bytes), int(acc.n_links), float(acc.link_bw_bytes_per_s))
        if key not in self.linear:
            device = _probe(hbm_bytes=key[0], n_links=key[1], link_bw_bytes_per_s=key[2])
            fits = self.fitting(key[0])
            model = CostModel(self.cfg, search_cluster(device, self.n_devices), self.seq_len)
            plans = sorted(fits, key=repr)

            def steps(timer: Any) -> dict[Plan, float]:
                return plan_step_bounds(self.cfg, device, self.n_devices, self.global_batch, self.seq_len, self.choices,
                                        timer, fits)

            lin = LinearPlanBounds(model, plans, steps)
            lin.check(steps(_WorkTimer(self.memo)), self.memo.problem_bound, device)
            self.linear[key] = lin
        return self.linear[key]

    def design_fast(self, acc: Accelerator) -> float:
        """Bound (1.5) on the objective of one design: the placement bound with the layer work bounds of
        `coda.search.layer_bounds` (milliseconds once the design's latency key was seen; 0: nothing fits)."""
        step = self._linear(acc).step_bound(self.memo.problem_bound, acc)
        if not math.isfinite(step):
            return 0.0
        return float(_upper(self.objective, self.global_batch * self.seq_len / step, self.n_devices, acc.tdp_w))

    def design_placed(self, acc: Accelerator) -> float:
        """Bound (3) on the objective of one design: the placement's own optimum with every layer time
        replaced by its lower bound (`Problem.lower_bound_s`, from the shared latencies); 0 if no plan fits."""
        try:
            _, res, _ = optimize(self.cfg, search_cluster(acc, self.n_devices), self.global_batch, self.seq_len,
                                 layer_time=_WorkTimer(self.memo), **self.choices)
        except InfeasibleDesign:
            return 0.0
        return float(_upper(self.objective, res.tokens_per_s, self.n_devices, acc.tdp_w))

    def design(self, acc: Accelerator) -> float:
        """Bound (2) on the objective of one design (0: nothing fits)."""
        steps = plan_step_bounds(self.cfg, acc, self.n_devices, self.global_batch, self.seq_len, self.choices,
                                 LowerBoundLayerTime(), self.fitting(acc.hbm_bytes))
        if not steps:
            return 0.0
        tokens = self.global_batch * self.seq_len / min(steps.values())
        return float(_upper(self.objective, tokens, self.n_devices, acc.tdp_w))


_WORKER_BOUNDS: dict[tuple[Any, ...], RefinedBounds] = {}
"""One `RefinedBounds` per workload in a worker process (its latency memo serves the designs it bounds)."""


def placed_bound_in_worker(spec: tuple[Any, ...], acc: Accelerator) -> float:
    """`RefinedBounds.design_placed` in a worker process, for the workload `spec` (`RefinedBounds.spec`)."""
    if spec not in _WORKER_BOUNDS:
        cfg, n_devices, global_batch, seq_len, choices, objective = spec
        _WORKER_BOUNDS[spec] = RefinedBounds(cfg, n_devices, global_batch, seq_len, dict(choices), objective)
    return _WORKER_BOUNDS[spec].design_placed(acc)
