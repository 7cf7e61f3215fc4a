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

`refined_search` visits designs best-first, lazily: each design waits in the heap of the last
bound computed for it, keyed by the least of its bounds so far; the design with the largest key
over all heaps comes next: without bound (3), its next bound is computed and it moves on; with
it, no remaining design can have a larger bound, so it is evaluated (the ILP timer, exactly as
`coda.search.search` evaluates it) unless that bound is below the incumbent less `tie_tol`
(`bounds.pruned`), in which case every remaining design is, and the search stops. While worker
processes evaluate, the parent computes bound (2) of the best designs that lack it (work the
visit needs unless they are pruned first); a free worker takes the best design whose bound (3)
is known and not pruned, even if an unrefined design has a larger bound so far, or else
computes bound (3) (the slowest) of the best design that lacks only it, so the workers never
wait for the parent. Neither changes what is pruned: designs are only pruned
when the largest bound left is below the incumbent less `tie_tol`. So the search returns the best
design and every design within `tie_tol` of it, with the objective values an exhaustive
evaluation gives (tested against `search(prune=False)`); designs evaluated out of bound order,
or in flight when the incumbent rises past their bound, are kept in the frame.
"""

from __future__ import annotations

import heapq
import logging
import math
import os
import time
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from coda.arch.accelerators import Accelerator
from coda.arch.design_space import DesignSpace
from coda.errors import InfeasibleDesign
from coda.ilp import make_problem, predicted_latencies
from coda.models.config import ModelConfig
from coda.models.graph import OpGraph
from coda.placement.chain import CostModel
from coda.placement.dp import best_split
from coda.placement.optimize import _buildable, _order, candidate_plans, optimize
from coda.placement.pipeline import split_problem
from coda.placement.plan import Plan
from coda.search.bounds import (
    ATTENTION_KINDS,
    CAUSAL_EXECUTED_FRACTION,
    DEFAULT_TIE_TOL,
    MATMUL_KINDS,
    VECTOR_KINDS,
    objective_bound,
    pruned,
    training_flops_per_token_lb,
)
from coda.search.design_eval import SearchLayerTime, evaluate_design, search_cluster
from coda.search.inputs import _as_cfg, _merged_choices
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


def plan_step_bounds(cfg: ModelConfig, device: Accelerator, n_chips: int, global_batch: int, seq_len: int,
                     choices: dict[str, Any], layer_time: Any,
                     fits: frozenset[Plan] | None = None) -> dict[Plan, float]:
    """The placement's step-time lower bound `L(plan)` of every candidate plan whose static memory
    fits the device (and that is in `fits`, when given), with layer times from `layer_time` (module doc)."""
    model = CostModel(cfg, search_cluster(device, n_chips), seq_len, layer_time=layer_time)
    max_tp = model.cluster.levels[0].size if model.cluster.levels else 1
    plans = _buildable(model, candidate_plans(cfg, n_chips, global_batch, max_tp, model.software.attention,
                                              **choices))[0]
    if fits is not None:
        plans = [p for p in plans if p in fits]
    if not plans:
        return {}
    model.prefetch(plans)
    scored, _, _ = _order(model, plans)
    return {plan: float(t) for t, plan in scored}


def fitting_plans(cfg: ModelConfig, hbm_bytes: int, n_chips: int, global_batch: int, seq_len: int,
                  choices: dict[str, Any]) -> frozenset[Plan]:
    """The candidate plans that can fit in `hbm_bytes` on some design: static memory within the limit
    and, for 1F1B plans without fixed stage layers, a stage split whose every stage fits
    (`best_split` is None exactly when no split fits; memory does not depend on layer times, so a
    timer returning 0 decides it for every design of this HBM capacity)."""
    device = _probe(hbm_bytes=hbm_bytes)
    zero = FlopsLayerTime("zero", cfg.causal)
    model = CostModel(cfg, search_cluster(device, n_chips), seq_len, layer_time=zero)
    out = []
    for plan in plan_step_bounds(cfg, device, n_chips, global_batch, seq_len, choices, zero):
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


def _upper(objective: str, tokens_per_s: float | np.ndarray, n_chips: int, tdp_w: float | np.ndarray) -> Any:
    ub = tokens_per_s * (1.0 + BOUND_SLACK)
    return ub if objective == "tokens_per_s" else ub / (n_chips * tdp_w)


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
        cfg, n_chips, global_batch, seq_len, choices, objective: the search's workload and objective.
    """

    cfg: ModelConfig
    n_chips: int
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
            self.fits[key] = fitting_plans(self.cfg, key, self.n_chips, self.global_batch, self.seq_len, self.choices)
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
            k = {kind: plan_step_bounds(self.cfg, device, self.n_chips, self.global_batch, self.seq_len, self.choices,
                                        FlopsLayerTime(kind, self.cfg.causal), fits)
                 for kind in ("tensor", "vector", "zero")}
            rows = np.asarray(idx)
            step = np.full(len(rows), math.inf)
            for plan, k0 in k["zero"].items():
                kt, kv = k["tensor"][plan] - k0, k["vector"][plan] - k0
                step = np.minimum(step, np.maximum(kt / peak[rows], kv / vector[rows]) + k0)
            with np.errstate(divide="ignore"):
                tokens = np.where(np.isfinite(step), self.global_batch * self.seq_len / step, 0.0)
            out[rows] = _upper(self.objective, tokens, self.n_chips, tdp[rows])
        return out

    def spec(self) -> tuple[Any, ...]:
        """The workload as a hashable, picklable tuple (what a worker process rebuilds this from)."""
        return (self.cfg, self.n_chips, self.global_batch, self.seq_len, tuple(sorted(self.choices.items())),
                self.objective)

    def _linear(self, acc: Accelerator) -> LinearPlanBounds:
        """The linear plan bounds of `acc`'s (HBM, links) group, built and checked once."""
        key = (int(acc.hbm_bytes), int(acc.n_links), float(acc.link_bw_bytes_per_s))
        if key not in self.linear:
            device = _probe(hbm_bytes=key[0], n_links=key[1], link_bw_bytes_per_s=key[2])
            fits = self.fitting(key[0])
            model = CostModel(self.cfg, search_cluster(device, self.n_chips), self.seq_len)
            plans = sorted(fits, key=repr)

            def steps(timer: Any) -> dict[Plan, float]:
                return plan_step_bounds(self.cfg, device, self.n_chips, self.global_batch, self.seq_len, self.choices,
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
        return float(_upper(self.objective, self.global_batch * self.seq_len / step, self.n_chips, acc.tdp_w))

    def design_placed(self, acc: Accelerator) -> float:
        """Bound (3) on the objective of one design: the placement's own optimum with every layer time
        replaced by its lower bound (`Problem.lower_bound_s`, from the shared latencies); 0 if no plan fits."""
        try:
            _, res, _ = optimize(self.cfg, search_cluster(acc, self.n_chips), self.global_batch, self.seq_len,
                                 layer_time=_WorkTimer(self.memo), **self.choices)
        except InfeasibleDesign:
            return 0.0
        return float(_upper(self.objective, res.tokens_per_s, self.n_chips, acc.tdp_w))

    def design(self, acc: Accelerator) -> float:
        """Bound (2) on the objective of one design (0: nothing fits)."""
        steps = plan_step_bounds(self.cfg, acc, self.n_chips, self.global_batch, self.seq_len, self.choices,
                                 LowerBoundLayerTime(), self.fitting(acc.hbm_bytes))
        if not steps:
            return 0.0
        tokens = self.global_batch * self.seq_len / min(steps.values())
        return float(_upper(self.objective, tokens, self.n_chips, acc.tdp_w))


@dataclass(frozen=True)
class RefinedResult:
    """What `refined_search` found.

    Attributes:
        frame: one row per evaluated design (`evaluate_design` rows plus ``bound_objective``, the
            refined bound it was visited with, ``visit`` and ``space_index``), best first (ties in space order).
        objective: the column ranked by.
        counts: designs in the space, refined (bound 2 computed), evaluated, pruned (never
            evaluated), infeasible, ILP cache lookups and hits (summed over worker processes), seconds.
        tie_tol: the tolerance of the near ties the frame is guaranteed to hold.
    """

    frame: pd.DataFrame
    objective: str
    counts: dict[str, float]
    tie_tol: float

    @property
    def best(self) -> pd.Series | None:
        """The best feasible design's row, or None."""
        ok = self.frame[self.frame["status"] == "ok"]
        return ok.iloc[0] if len(ok) else None

    def near_ties(self) -> pd.DataFrame:
        """The feasible designs within `tie_tol` of the best (all of them in the space)."""
        best = self.best
        if best is None:
            return self.frame.iloc[:0]
        ok = self.frame[self.frame["status"] == "ok"]
        return ok[ok[self.objective] >= best[self.objective] * (1.0 - self.tie_tol)]


_WORKER_BOUNDS: dict[tuple[Any, ...], RefinedBounds] = {}


def _last_bound_in_worker(spec: tuple[Any, ...], acc: Accelerator) -> float:
    """`RefinedBounds.design_placed` in a worker process, with one `RefinedBounds` per workload there."""
    if spec not in _WORKER_BOUNDS:
        cfg, n_chips, global_batch, seq_len, choices, objective = spec
        _WORKER_BOUNDS[spec] = RefinedBounds(cfg, n_chips, global_batch, seq_len, dict(choices), objective)
    return _WORKER_BOUNDS[spec].design_placed(acc)


def _evaluate_counted(acc: Accelerator, cfg: ModelConfig, n_chips: int, global_batch: int, seq_len: int,
                      choices: dict[str, Any], timer: Any) -> tuple[dict[str, Any], tuple[int, int, int]]:
    """`evaluate_in_worker`, plus the worker's process id and its ILP cache lookups and hits so far."""
    from coda.search import design_eval

    row = design_eval.evaluate_in_worker(acc, cfg, n_chips, global_batch, seq_len, choices, timer)
    stats = [t.cache.stats for t in design_eval._WORKER_TIMERS.values()]
    return row, (os.getpid(), sum(s.lookups for s in stats), sum(s.hits for s in stats))


def refined_search(model: ModelConfig | str, space: DesignSpace, n_chips: int, global_batch: int, seq_len: int,
                   objective: str = "tokens_per_s_per_w", choices: dict[str, Any] | None = None,
                   tie_tol: float = DEFAULT_TIE_TOL, workers: int | None = None,
                   layer_time: SearchLayerTime | None = None) -> RefinedResult:
    """The best design of `space` and every design within `tie_tol` of it, best-first by the refined
    bounds (module doc), with the same rows `coda.search.search` evaluates them to.

    Args:
        model: a `ModelConfig` or a preset name.
        space: the designs.
        n_chips, global_batch, seq_len: the workload, as for `coda.search.search`.
        objective: ``tokens_per_s_per_w`` or ``tokens_per_s``.
        choices: placement restrictions merged over `DEFAULT_CHOICES`.
        tie_tol: relative tolerance of the near ties to keep (designs below the best by more are pruned).
        workers: evaluations in flight in a process pool; 1 (or a single CPU) evaluates inline.
        layer_time: the ILP timer settings (default `SearchLayerTime()`).

    Returns:
        A `RefinedResult`.
    """
    from coda.search.executors import pool_executor, terminate_pool

    t0 = time.perf_counter()
    cfg = _as_cfg(model)
    merged = _merged_choices(choices)
    timer = layer_time or SearchLayerTime()
    designs = space.to_frame()
    accs = list(space)
    fpt = training_flops_per_token_lb(cfg, seq_len)
    vector = (designs["vc_lanes"] * designs["n_vc"] * designs["clock_hz"]).to_numpy(float)
    tdp = designs["tdp_w"].to_numpy(float)
    cheap = np.array([objective_bound(objective, p, v, w, n_chips, fpt)
                      for p, v, w in zip(designs["peak_flops"].to_numpy(float), vector, tdp)])
    rb = RefinedBounds(cfg, n_chips, global_batch, seq_len, merged, objective)
    first = np.minimum(cheap, rb.placement(designs))
    # heaps[k]: designs whose bounds through stage k are known, by (-bound, space index)
    stages = (rb.design_fast, rb.design_placed)  # bounds (2) and (3)
    heaps: list[list[tuple[float, int]]] = [[(-float(b), i) for i, b in enumerate(first)], *([] for _ in stages)]
    heapq.heapify(heaps[0])
    window = max(1, workers or os.cpu_count() or 1)
    pool = pool_executor(window) if window > 1 else None
    portable = ("SearchLayerTime", timer.time_limit_s, timer.gap, timer.node_limit)
    inflight: dict[Future[Any], tuple[int, float, str]] = {}  # design, bound so far, "row" or "bound"
    rows: list[dict[str, Any]] = []
    best, refined, stats = -math.inf, [0] * len(stages), {"lookups": 0, "hits": 0}
    worker_stats: dict[int, tuple[int, int]] = {}

    def top() -> tuple[float, int, int] | None:
        """The design with the largest bound over all heaps: (-bound, index, stage)."""
        heads = [(h[0][0], h[0][1], k) for k, h in enumerate(heaps) if h]
        return min(heads) if heads else None

    def record(i: int, bound: float, row: dict[str, Any]) -> None:
        nonlocal best
        rows.append(dict(row, bound_objective=bound, visit=len(rows), space_index=i))
        if row["status"] == "ok" and row[objective] > best:
            best = float(row[objective])
        if len(rows) % 25 == 0:
            t = top()
            log.info("refined search: %d evaluated, %s refined, best %.4g, next bound %.4g", len(rows), refined,
                     best, -t[0] if t else math.nan)

    def refine(stage: int) -> None:
        """Move the best design of heaps[stage] to heaps[stage + 1] with its next bound."""
        negb, i = heapq.heappop(heaps[stage])
        refined[stage] += 1
        heapq.heappush(heaps[stage + 1], (-min(-negb, stages[stage](accs[i])), i))

    def speculative() -> int | None:
        """A stage whose best design should be refined while the workers run (not pruned yet)."""
        for stage in reversed(range(len(stages) - 1)):  # the last bound is the workers' (see the loop)
            if heaps[stage] and not pruned(-heaps[stage][0][0], best, tie_tol):
                return stage
        return None

    try:
        while any(heaps) or inflight:
            while len(inflight) < window:
                t = top()
                if t is None:
                    break
                negb, i, stage = t
                if pruned(-negb, best, tie_tol):  # the largest bound left: every remaining design is pruned
                    for h in heaps:
                        h.clear()
                    break
                if stage < len(stages):
                    last, mid = heaps[len(stages)], heaps[len(stages) - 1]
                    if pool is not None and last and not pruned(-last[0][0], best, tie_tol):
                        # a free worker takes the best fully bounded design now rather than idle while the
                        # parent refines: an evaluation out of bound order, never a design pruned meanwhile
                        negb, i = last[0]
                        stage = len(stages)
                    elif pool is not None and mid and not pruned(-mid[0][0], best, tie_tol):
                        # or computes the last (slowest) bound of the best design that lacks only it
                        negb, i = heapq.heappop(mid)
                        refined[-1] += 1
                        inflight[pool.submit(_last_bound_in_worker, rb.spec(), accs[i])] = (i, -negb, "bound")
                        continue
                    else:
                        refine(stage)
                        continue
                heapq.heappop(heaps[stage])
                if pool is None:
                    before = (timer.cache.stats.lookups, timer.cache.stats.hits)
                    record(i, -negb, evaluate_design(cfg, accs[i], n_chips, global_batch, seq_len, merged, timer))
                    stats["lookups"] += timer.cache.stats.lookups - before[0]
                    stats["hits"] += timer.cache.stats.hits - before[1]
                    continue
                inflight[pool.submit(_evaluate_counted, accs[i], cfg, n_chips, global_batch, seq_len, merged,
                                     portable)] = (i, -negb, "row")
            if inflight:
                # while the workers evaluate, refine the next designs (work the visit needs unless pruned first)
                spec = speculative()
                done, _ = wait(list(inflight), timeout=0 if spec is not None else None, return_when=FIRST_COMPLETED)
                if not done:
                    assert spec is not None
                    refine(spec)
                    continue
                for fut in done:
                    i, bound, kind = inflight.pop(fut)
                    if kind == "bound":  # back into the visit; pruned when it comes up if the incumbent passed it
                        heapq.heappush(heaps[len(stages)], (-min(bound, float(fut.result())), i))
                        continue
                    row, (pid, lookups, hits) = fut.result()
                    worker_stats[pid] = (lookups, hits)  # cumulative per worker process
                    record(i, bound, row)
    except BaseException:
        if pool is not None:
            terminate_pool(pool)
        raise
    if pool is not None:
        pool.shutdown()
        stats = {"lookups": sum(v[0] for v in worker_stats.values()), "hits": sum(v[1] for v in worker_stats.values())}
    frame = pd.DataFrame(rows)
    if len(frame):
        key = frame[objective].where(frame["status"] == "ok", -math.inf)
        frame = frame.assign(_key=-key).sort_values(["_key", "space_index"], kind="stable").drop(columns="_key")
        frame = frame.reset_index(drop=True)
    n_infeasible = int((frame["status"] != "ok").sum()) if len(frame) else 0
    counts = dict(designs=len(designs), refined=refined[0], placed=refined[1], evaluated=len(rows),
                  pruned=len(designs) - len(rows),
                  infeasible=n_infeasible, cache_lookups=stats["lookups"], cache_hits=stats["hits"],
                  seconds=time.perf_counter() - t0)
    return RefinedResult(frame, objective, counts, float(tie_tol))
