"""One design's evaluation in a search: the best plan of `n_devices` copies of an accelerator in the
TPU-v4-like torus, or why none fits, as a row of `SearchResult.frame`; and the ILP layer timer
searches share (`SearchLayerTime`). Worker processes run `evaluate_in_worker`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from coda.arch.accelerators import Accelerator
from coda.arch.clusters import Cluster
from coda.arch.design_space import design_cluster
from coda.errors import ConfigError, InfeasibleDesign
from coda.ilp import ScheduleCache, schedule
from coda.models.config import ModelConfig
from coda.models.graph import OpGraph
from coda.placement.optimize import optimize

CLUSTER_PRESET = "tpuv4-pod"
DESIGN_FIELDS = ("n_tc", "tc_rows", "tc_cols", "n_vc", "vc_lanes", "glb_bytes", "hbm_bytes", "hbm_bw_bytes_per_s",
                 "clock_hz")
PLAN_FIELDS = ("tp", "pp", "dp", "micro_batch", "recompute", "sequence_parallel", "zero", "schedule",
               "virtual_stages", "stage_layers")
RESULT_FIELDS = ("step_s", "tokens_per_s", "tokens_per_s_per_w", "mfu", "peak_memory_bytes")
ILP_EVENT_FIELDS = ("ilp_clock_limited", "ilp_solver_errors")
"""Per design: layer schedules the ILP's wall-clock safety net cut (results may depend on load), solver failures."""
FRAME_COLUMNS = ("name", *DESIGN_FIELDS, "area_mm2", "tdp_w", "peak_flops", "bound_tokens_per_s", "bound_objective",
                 "plan", *PLAN_FIELDS, *RESULT_FIELDS, "status", "reason", "seconds", *ILP_EVENT_FIELDS)
"""Columns of `SearchResult.frame`, in order."""


@dataclass(frozen=True)
class SearchLayerTime:
    """Accelerator layer time for searches: ILP makespan with one `ScheduleCache` shared by all designs
    evaluated in one process (worker processes each build their own, `evaluate_in_worker`).

    The cache key is (graph, core counts, per-op latencies, solver options), so designs whose op
    latencies coincide (always those differing only in HBM capacity; often those differing only
    in GLB size) reuse each other's schedules. Equal settings compare equal (the cache is not
    part of the identity), which is what the store key and the placement profile cache see.

    Deterministic by default: each MILP solve stops after `node_limit` branch-and-bound nodes, so
    a search returns the same frame on a busy and an idle machine; the wall-clock `time_limit_s`
    only guards against a pathological solve, and every layer time it cut (or a solver failure)
    is counted in `events` and reported in the design's row (`ilp_clock_limited`,
    `ilp_solver_errors`).

    Attributes:
        time_limit_s: ILP wall-time safety net per layer graph, heuristic included (0: heuristic only).
        gap: relative optimality gap at which the solver may stop.
        node_limit: branch-and-bound nodes per MILP solve (None: the time limit alone decides,
            and results depend on machine load). 5000 reproduces the 10 s time-limit schedules of
            every real-layer case of `benchmarks/ilp.py` (max 2.7 s on 2 cores).
        cache: the shared schedule cache.
        events: counts of clock-limited solves and solver failures (not part of the identity).
    """

    time_limit_s: float = 60.0
    gap: float = 0.01
    node_limit: int | None = 5000
    cache: ScheduleCache = field(default_factory=ScheduleCache, compare=False, repr=False, hash=False)
    events: dict[str, int] = field(default_factory=lambda: {"ilp_clock_limited": 0, "ilp_solver_errors": 0},
                                   compare=False, repr=False, hash=False)

    def __post_init__(self) -> None:
        t = self.time_limit_s
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t < 0:
            raise ConfigError(f"SearchLayerTime.time_limit_s={t!r} must be a finite number of seconds >= 0 "
                              "(0: list-scheduling heuristic only)")
        g = self.gap
        if isinstance(g, bool) or not isinstance(g, (int, float)) or not 0 <= g < 1:
            raise ConfigError(f"SearchLayerTime.gap={g!r} must lie in [0, 1) (0.01 = stop within 1% of optimal)")
        n = self.node_limit
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise ConfigError(f"SearchLayerTime.node_limit={n!r} must be a positive number of branch-and-bound "
                              "nodes, or None (wall clock only: results then depend on machine load)")

    def __call__(self, graph: OpGraph, device: Any) -> float:
        if graph.number_of_nodes() == 0:
            return 0.0
        s = schedule(graph, device, time_limit_s=self.time_limit_s, gap=self.gap, cache=self.cache,
                     node_limit=self.node_limit)
        self.events["ilp_clock_limited"] += s.wall_clock_limited
        self.events["ilp_solver_errors"] += bool(s.solver_error)
        return float(s.makespan_s)

    def many(self, graphs: list[OpGraph], device: Any) -> list[float]:
        return [self(g, device) for g in graphs]


def _design_row(acc: Accelerator) -> dict[str, Any]:
    row: dict[str, Any] = {"name": acc.name}
    row.update({f: getattr(acc, f) for f in DESIGN_FIELDS})
    row.update(area_mm2=acc.area_mm2, tdp_w=acc.tdp_w, peak_flops=acc.peak_flops)
    return row


def search_cluster(acc: Accelerator, n_devices: int) -> Cluster:
    """The cluster a search evaluates a design on: `n_devices` copies of `acc` in the `CLUSTER_PRESET`
    torus, each level's bandwidth set by the design's links (`design_cluster`; the TPU v4's 6 x 50 GB/s
    give exactly the preset's cluster). The one place evaluation and the refined bounds take it from."""
    return design_cluster(acc, n_devices, CLUSTER_PRESET)


def evaluate_design(cfg: ModelConfig, acc: Accelerator, n_devices: int, global_batch: int, seq_len: int,
                    choices: dict[str, Any], layer_time: Any) -> dict[str, Any]:
    """One design: its fields, the best plan on `n_devices` in the TPU-v4-like torus, or why none fits.

    Returns:
        A row of `SearchResult.frame` without the bound columns.
    """
    t0 = time.perf_counter()
    events = getattr(layer_time, "events", {})
    before = {k: events.get(k, 0) for k in ILP_EVENT_FIELDS}
    row = _design_row(acc)
    row.update(scored_plan(lambda: optimize(cfg, search_cluster(acc, n_devices), global_batch, seq_len,
                                            layer_time=layer_time, **choices), n_devices * acc.tdp_w))
    row["seconds"] = time.perf_counter() - t0
    row.update({k: events.get(k, 0) - before[k] for k in ILP_EVENT_FIELDS})
    return row


def scored_plan(run: Callable[[], tuple[Any, Any, Any]], cluster_tdp_w: float) -> dict[str, Any]:
    """The plan and result columns of a frame row from one `optimize` call (`run`), or why no plan fits."""
    try:
        plan, res, _ = run()
    except InfeasibleDesign as err:
        return dict(plan=None, **{f: None for f in PLAN_FIELDS}, **{f: math.nan for f in RESULT_FIELDS},
                    status="infeasible", reason=str(err))
    return dict(plan=plan.describe(), **{f: getattr(plan, f) for f in PLAN_FIELDS if f != "stage_layers"},
                stage_layers=str(list(plan.stage_layers or ())), step_s=res.step_time_s,
                tokens_per_s=res.tokens_per_s, tokens_per_s_per_w=res.tokens_per_s / cluster_tdp_w, mfu=res.mfu,
                peak_memory_bytes=float(res.peak_memory_bytes), status="ok", reason="")


_WORKER_TIMERS: dict[tuple[float, float, int | None], SearchLayerTime] = {}


def _portable_timer(timer: Any) -> Any:
    """What a worker receives: a `SearchLayerTime` as its settings (the cache stays behind), else the timer."""
    if isinstance(timer, SearchLayerTime):
        return ("SearchLayerTime", timer.time_limit_s, timer.gap, timer.node_limit)
    return timer


def evaluate_in_worker(acc: Accelerator, cfg: ModelConfig, n_devices: int, global_batch: int, seq_len: int,
                       choices: dict[str, Any], timer: Any) -> dict[str, Any]:
    """`evaluate_design` for a worker process: picklable arguments in, the row out.

    `timer` is a `_portable_timer`; ILP settings map to one `SearchLayerTime` per worker process
    and settings, so its `ScheduleCache` is shared by the designs that process evaluates.
    """
    if isinstance(timer, tuple) and timer and timer[0] == "SearchLayerTime":
        settings = (float(timer[1]), float(timer[2]), timer[3])
        if settings not in _WORKER_TIMERS:
            _WORKER_TIMERS[settings] = SearchLayerTime(time_limit_s=settings[0], gap=settings[1],
                                                       node_limit=settings[2])
        timer = _WORKER_TIMERS[settings]
    return evaluate_design(cfg, acc, n_devices, global_batch, seq_len, choices, timer)


__all__ = ["CLUSTER_PRESET", "DESIGN_FIELDS", "FRAME_COLUMNS", "ILP_EVENT_FIELDS", "PLAN_FIELDS", "RESULT_FIELDS",
           "SearchLayerTime", "evaluate_design", "search_cluster", "evaluate_in_worker", "scored_plan"]
