"""`search`: the best accelerator design of a `DesignSpace` for training one model, exactly.

Each design is `n_chips` copies of the chip in the TPU-v4-like 3D-torus preset
(`cluster("tpuv4-pod", n_chips, device=acc)`), and is scored by one `coda.placement.optimize`
call (the fastest plan that fits; layer times from the on-chip ILP) restricted to
`DEFAULT_CHOICES`. The network is the preset's for every design: `DesignSpace` holds one
`n_links` and one `link_bw_bytes_per_s` for all designs, so they enter only the TDP.

Exactness (branch and bound over designs): every design has an upper bound on the objective
(`coda.search.bounds`: roofline peak over a lower bound on executed FLOPs per token, perfect
placement). Designs are visited in descending bound order; once the next bound is strictly
below the best objective achieved so far, every remaining design is provably worse and the
search stops. Ties are visited, and broken by visiting order, so pruned and exhaustive
searches return the same best design.

Results go to an optional SQLite `ResultStore` as each design finishes; a stored design is
read back instead of evaluated (`n_cached`).

Executors: ``inline`` evaluates one design at a time in this process; ``process`` (default)
keeps at most `workers` designs in flight on a `ProcessPoolExecutor`, submitting the next
design in bound order only while its bound is not below the incumbent; ``ray`` does the same
on Ray tasks. The parent alone reads and writes the store, as each future completes. Designs
submitted before the incumbent rose enough to prune them (at most `workers - 1` of them) are
evaluated and stored but left out of the frame (`n_speculative`), so every executor returns
the frame of the inline search. Each worker process keeps its own ILP `ScheduleCache`.

Interrupts (`coda.search.executors`): pool workers end with their parent (even on SIGKILL);
Ctrl-C or SIGTERM stores every finished design, ends the workers and raises `SearchInterrupted`.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from coda.arch.accelerators import Accelerator, tpuv4_like
from coda.arch.clusters import cluster, preset_description
from coda.arch.design_space import DesignSpace
from coda.errors import CodaError, ConfigError, InfeasibleDesign
from coda.ilp import ScheduleCache, schedule
from coda.models.config import ModelConfig
from coda.models.graph import OpGraph
from coda.placement.optimize import CHOICES, check_choices, optimize
from coda.search.bounds import objective_bound, tokens_per_s_bound, training_flops_per_token_lb
from coda.search.executors import (
    InlineExecutor,
    Progress,
    RayExecutor,
    SearchInterrupted,
    Terminated,
    pool_executor,
    signals_deferred,
    terminate_as_interrupt,
    terminate_pool,
)
from coda.search.store import ResultStore, cost_model_digest, result_key

log = logging.getLogger(__name__)

OBJECTIVES = ("tokens_per_s_per_w", "tokens_per_s")
EXECUTORS = ("inline", "process", "ray")
CLUSTER_PRESET = "tpuv4-pod"
DEFAULT_CHOICES: dict[str, Any] = {
    "tp": (1, 2, 4, 8), "micro_batch": (1, 2, 4), "recompute": ("none", "full"), "zero": (0, 1),
    "schedule": "1f1b", "sequence_parallel": False,
}
"""Placement choices of one design evaluation (a subset of `optimize`'s space, for speed)."""
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


@dataclass
class SearchResult:
    """Outcome of `search`.

    Attributes:
        frame: one row per visited design (evaluated or read from the store), feasible ones first
            by descending objective: design fields, name, area_mm2 (22 nm), tdp_w, peak_flops,
            bound_tokens_per_s, bound_objective, plan (text) and its fields, step_s,
            tokens_per_s, tokens_per_s_per_w (per watt of cluster TDP, n_chips * tdp_w), mfu,
            peak_memory_bytes, status (``ok`` / ``infeasible``), reason, seconds (of the evaluation).
        best: the best feasible row, None if no visited design fits.
        reference: the row of `tpuv4_like()` evaluated the same way (not part of the space).
        objective: the ranking column.
        n_space: designs in the space; n_pruned: skipped by the bound; n_evaluated: evaluated in
            this call; n_cached: read from the store; n_infeasible: visited designs with no plan
            that fits; n_unvisited: left out because `max_designs` was reached.
        complete: True when `best` is proven optimal over the whole space (not cut by `max_designs`).
        seconds: wall time of the call.
        n_speculative: designs evaluated and stored but left out of the frame (see the module doc).
        model: the model's name; n_chips: chips per design.
    """

    frame: pd.DataFrame
    best: pd.Series | None
    reference: pd.Series
    objective: str
    n_space: int
    n_pruned: int
    n_evaluated: int
    n_cached: int
    n_infeasible: int
    n_unvisited: int
    complete: bool
    seconds: float
    n_speculative: int = 0
    model: str = ""
    n_chips: int = 0

    def counts(self) -> dict[str, Any]:
        """The counters as a dict (for printing and JSON)."""
        events = {k: int(pd.to_numeric(self.frame[k], errors="coerce").fillna(0).sum()) if k in self.frame else 0
                  for k in ILP_EVENT_FIELDS}
        return dict(designs=self.n_space, pruned_by_bound=self.n_pruned, evaluated=self.n_evaluated,
                    cached=self.n_cached, infeasible=self.n_infeasible, unvisited=self.n_unvisited,
                    complete=self.complete, speculative=self.n_speculative, seconds=self.seconds, **events)

    def table(self, top: int = 10) -> pd.DataFrame:
        """The `top` feasible designs and the reference row below them (column `rank`: 1.., `ref`)."""
        ok = self.frame[self.frame["status"] == "ok"].head(top).copy()
        ok.insert(0, "rank", [str(i + 1) for i in range(len(ok))])
        ref = self.reference.to_frame().T
        ref.insert(0, "rank", ["ref"])
        return pd.concat([ok, ref], ignore_index=True)

    def shortfall(self, top: int) -> str | None:
        """Why `table(top)` lists fewer than `top` designs (None when it lists `top`)."""
        from coda.search.summary import shortfall

        return shortfall(self, top)

    def summary(self, gpus: pd.DataFrame | None = None) -> str:
        """The answer as one sentence: the best design in words, its plan, its objective with units, and
        its ratio to the TPUv4-like reference and to each row of `gpus` (from `gpu_reference`)."""
        from coda.search.summary import summary

        return summary(self, gpus)


def _as_cfg(model: ModelConfig | str) -> ModelConfig:
    if isinstance(model, ModelConfig):
        return model
    from coda.models import get

    return get(model)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"search: {name} must be a positive integer, got {value!r}")
    return int(value)


def _merged_choices(choices: dict[str, Any] | None) -> dict[str, Any]:
    """DEFAULT_CHOICES updated by `choices`; a value None lifts that restriction."""
    merged = dict(DEFAULT_CHOICES)
    for k, v in (choices or {}).items():
        if k not in CHOICES:
            raise ConfigError(f"search: unknown placement choice {k!r}; allowed: {', '.join(CHOICES)}")
        if v is None:
            merged.pop(k, None)
        else:
            merged[k] = tuple(v) if isinstance(v, (list, set, frozenset)) else v
    check_choices(merged)  # bad values fail here, before any design is evaluated
    return merged


def _design_row(acc: Accelerator) -> dict[str, Any]:
    row: dict[str, Any] = {"name": acc.name}
    row.update({f: getattr(acc, f) for f in DESIGN_FIELDS})
    row.update(area_mm2=acc.area_mm2, tdp_w=acc.tdp_w, peak_flops=acc.peak_flops)
    return row


def evaluate_design(cfg: ModelConfig, acc: Accelerator, n_chips: int, global_batch: int, seq_len: int,
                    choices: dict[str, Any], layer_time: Any) -> dict[str, Any]:
    """One design: its fields, the best plan on `n_chips` in the TPU-v4-like torus, or why none fits.

    Returns:
        A row of `SearchResult.frame` without the bound columns.
    """
    t0 = time.perf_counter()
    events = getattr(layer_time, "events", {})
    before = {k: events.get(k, 0) for k in ILP_EVENT_FIELDS}
    row = _design_row(acc)
    row.update(scored_plan(lambda: optimize(cfg, cluster(CLUSTER_PRESET, n_chips, device=acc), global_batch, seq_len,
                                            layer_time=layer_time, **choices), n_chips * acc.tdp_w))
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


_Progress = Progress  # the progress bar of a search (tests wrap its `update`)

_WORKER_TIMERS: dict[tuple[float, float, int | None], SearchLayerTime] = {}


def _portable_timer(timer: Any) -> Any:
    """What a worker receives: a `SearchLayerTime` as its settings (the cache stays behind), else the timer."""
    if isinstance(timer, SearchLayerTime):
        return ("SearchLayerTime", timer.time_limit_s, timer.gap, timer.node_limit)
    return timer


def evaluate_in_worker(acc: Accelerator, cfg: ModelConfig, n_chips: int, global_batch: int, seq_len: int,
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
    return evaluate_design(cfg, acc, n_chips, global_batch, seq_len, choices, timer)


def search(model: ModelConfig | str, space: DesignSpace, n_chips: int, global_batch: int, seq_len: int,
           objective: str = "tokens_per_s_per_w", store: str | Path | None = None, max_designs: int | None = None,
           choices: dict[str, Any] | None = None, progress: bool = False, prune: bool = True,
           layer_time: Any = None, executor: str = "process", workers: int | None = None) -> SearchResult:
    """The design of `space` that trains `model` best on `n_chips` chips, by exact branch and bound.

    Args:
        model: a `ModelConfig` or a preset name.
        space: the designs; its constraints (area, TDP) are applied by `DesignSpace`.
        n_chips: chips per design, in the `tpuv4-pod` torus (at most 16, or a multiple of 16).
        global_batch: sequences per optimizer step.
        seq_len: tokens per sequence.
        objective: ``tokens_per_s_per_w`` (tokens/s per watt of cluster TDP, i.e. tokens per
            joule at TDP) or ``tokens_per_s``.
        store: SQLite file for finished designs (`ResultStore`: created and marked if missing
            or empty; another program's database or a damaged store is refused untouched; a
            read-only one serves only searches it holds every visited design of); None keeps nothing.
        max_designs: evaluate at most this many designs in this call (store hits are free);
            the result then says `complete=False` unless the bound finished first.
        choices: placement restrictions merged over `DEFAULT_CHOICES` (`optimize` keywords;
            a value None lifts a default restriction).
        progress: show a progress bar (tqdm if installed) on stderr.
        prune: skip designs whose bound cannot beat the incumbent (False: evaluate all).
        layer_time: layer timer for `optimize`; default `SearchLayerTime()` (ILP, 1 s per
            layer graph, schedules shared across the designs of one process). Must pickle
            for the ``process`` and ``ray`` executors.
        executor: ``process`` (default: a local process pool whose workers end with this
            process), ``inline`` (one design at a time in this process) or ``ray`` (Ray tasks;
            needs ``pip install coda-llm[ray]``). All return the same frame and best.
        workers: designs in flight for ``process`` / ``ray``; default `os.cpu_count()`. It is
            capped by the designs to evaluate, and ``process`` with one worker runs inline.

    Returns:
        A `SearchResult`.

    Raises:
        ConfigError: bad arguments (n_chips < 1, an unknown objective, choice or executor, tp or
            pp lists with no value dividing n_chips, an unusable store, ...), before any design
            is evaluated.
        CodaError: executor ``ray`` without Ray installed.
        InfeasibleDesign: the space admits no design (from `DesignSpace`).
        SearchInterrupted: Ctrl-C or SIGTERM (in the main thread): every finished design was
            stored and the workers were ended first.
    """
    t0 = time.perf_counter()
    n_chips = _positive_int("n_chips", n_chips)
    global_batch = _positive_int("global_batch", global_batch)
    seq_len = _positive_int("seq_len", seq_len)
    if objective not in OBJECTIVES:
        raise ConfigError(f"search: unknown objective {objective!r}; use one of {', '.join(OBJECTIVES)}")
    if max_designs is not None:
        max_designs = _positive_int("max_designs", max_designs)
    if executor not in EXECUTORS:
        raise ConfigError(f"search: unknown executor {executor!r}; use one of {', '.join(EXECUTORS)}")
    if workers is not None:
        workers = _positive_int("workers", workers)
    if not isinstance(space, DesignSpace):
        raise ConfigError(f"search: space must be a DesignSpace, got {type(space).__name__}")
    cfg = _as_cfg(model)
    merged = _merged_choices(choices)
    check_parallel_widths(merged, n_chips)
    timer = SearchLayerTime() if layer_time is None else layer_time
    cluster(CLUSTER_PRESET, n_chips, device=tpuv4_like())  # validates n_chips against the torus
    db = ResultStore(store) if store is not None else None  # a bad store is refused before any work
    try:
        return _search(cfg, space, n_chips, global_batch, seq_len, objective, db, max_designs, merged, prune, timer,
                       executor, workers, progress, t0)
    finally:
        if db is not None:
            db.close()


def _search(cfg: ModelConfig, space: DesignSpace, n_chips: int, global_batch: int, seq_len: int, objective: str,
            db: ResultStore | None, max_designs: int | None, merged: dict[str, Any], prune: bool, timer: Any,
            executor: str, workers: int | None, progress: bool, t0: float) -> SearchResult:
    """`search` after its arguments were checked and its store opened."""
    designs = space.to_frame()  # raises InfeasibleDesign when nothing is admitted
    flops_lb = training_flops_per_token_lb(cfg, seq_len)
    designs["vector_flops"] = designs["vc_lanes"] * designs["n_vc"] * designs["clock_hz"]
    peaks = list(zip(designs["peak_flops"].astype(float), designs["vector_flops"].astype(float),
                     designs["tdp_w"].astype(float)))
    bound_obj = np.array([objective_bound(objective, p, v, w, n_chips, flops_lb) for p, v, w in peaks])
    order = [int(i) for i in np.lexsort((np.arange(len(designs)), -bound_obj))]  # descending bound, space order
    accelerators = list(space)
    common = dict(model=cfg.to_dict(), n_chips=n_chips, global_batch=global_batch, seq_len=seq_len,
                  choices=merged, layer_time=repr(timer), network=preset_description(CLUSTER_PRESET),
                  version=_version(), costs=cost_model_digest())
    window = workers or os.cpu_count() or 1
    window = min(window, len(order) if max_designs is None else min(len(order), max_designs))
    if executor == "process" and window <= 1:
        executor = "inline"
    if executor == "inline":
        window = 1
    elif not isinstance(timer, SearchLayerTime):
        try:
            pickle.dumps(timer)
        except Exception as err:
            raise ConfigError(f"search: layer_time {timer!r} cannot be sent to worker processes ({err}); "
                              "use a module-level timer or executor='inline'") from None

    def key_of(acc: Accelerator) -> str:
        # the derived area and power as computed now: a changed constant (even one patched in a
        # notebook) gives another key
        return result_key(design=asdict(acc), derived=dict(area_mm2=acc.area_mm2, power_w=acc.power_breakdown()),
                          **common)

    def with_bounds(row: dict[str, Any], peak: float, vector: float, tdp: float) -> dict[str, Any]:
        return dict(row, bound_tokens_per_s=tokens_per_s_bound(peak, vector, n_chips, flops_lb),
                    bound_objective=objective_bound(objective, peak, vector, tdp, n_chips, flops_lb))

    ref_acc = tpuv4_like()
    if db is not None and not db.writable:
        _refuse_read_only(db, key_of(ref_acc), [key_of(accelerators[i]) for i in order],
                          [bound_obj[i] for i in order], objective, prune)
    found, n_spec = _visit(db, order, accelerators, bound_obj, objective, prune, max_designs, key_of, ref_acc,
                           executor, window, progress, cfg, n_chips, global_batch, seq_len, merged, timer)

    # The inline visit over the results: it stops no later than the parallel one, so every row it
    # reaches is in `found`; rows past its stop are the speculative ones.
    rows, visit_pos = [], []
    best, n_new, stopped_at, unvisited = -math.inf, 0, len(order), 0
    for pos, i in enumerate(order):
        if prune and bound_obj[i] < best:
            stopped_at = pos
            break
        if max_designs is not None and n_new >= max_designs:
            stopped_at, unvisited = pos, len(order) - pos
            break
        row, new = found[pos]
        n_new += new
        rows.append(with_bounds(row, *peaks[i]))
        visit_pos.append(pos)
        if row["status"] == "ok" and row[objective] > best:
            best = float(row[objective])
    reference = with_bounds(found[-1][0], ref_acc.peak_flops, ref_acc.vector_flops, ref_acc.tdp_w)

    frame = _ranked(rows, visit_pos, objective)
    n_ok = int((frame["status"] == "ok").sum()) if len(frame) else 0
    ref_series = pd.Series({c: reference[c] for c in FRAME_COLUMNS}, name="reference")
    return SearchResult(
        frame=frame, best=frame.iloc[0] if n_ok else None, reference=ref_series,
        objective=objective, n_space=len(designs), n_pruned=len(order) - stopped_at - unvisited,
        n_evaluated=n_new, n_cached=len(rows) - n_new, n_infeasible=len(frame) - n_ok, n_unvisited=unvisited,
        complete=unvisited == 0, seconds=time.perf_counter() - t0, n_speculative=n_spec - n_new,
        model=cfg.name, n_chips=n_chips)


def check_parallel_widths(choices: dict[str, Any], n_chips: int) -> None:
    """Refuse tp / pp lists of which no value (or no tp * pp product) divides `n_chips`.

    Raises:
        ConfigError: naming the list, `n_chips` and the divisors that would work.
    """
    def values(name: str) -> tuple[int, ...] | None:
        v = choices.get(name)
        if v is None:
            return None
        return tuple(int(x) for x in (v if isinstance(v, (tuple, list)) else (v,)))

    divisors = [d for d in range(1, n_chips + 1) if n_chips % d == 0]
    tp, pp = values("tp"), values("pp")
    for name, vals in (("tp", tp), ("pp", pp)):
        if vals is not None and not any(n_chips % v == 0 for v in vals):
            raise ConfigError(f"search: {name}={','.join(map(str, vals))}: no value divides n_chips={n_chips} "
                              f"(tp * pp * dp = n_chips); use divisors of {n_chips}: {', '.join(map(str, divisors))}")
    if tp is not None and pp is not None and not any(n_chips % (t * p) == 0 for t in tp for p in pp):
        raise ConfigError(f"search: no tp={','.join(map(str, tp))} times pp={','.join(map(str, pp))} divides "
                          f"n_chips={n_chips} (tp * pp * dp = n_chips); choose tp and pp whose product divides it")


def _refuse_read_only(db: ResultStore, ref_key: str, keys: list[str], bounds: list[float], objective: str,
                      prune: bool) -> None:
    """Replay the inline visit on stored rows only; refuse, before any work, if it meets a design not stored."""
    missing = None if ref_key in db else "the TPUv4-like reference"
    best = -math.inf
    for key, bound in zip(keys, bounds):
        if missing is not None or (prune and bound < best):
            break
        row = db.get(key)
        if row is None:
            missing = "a design"
        elif row["status"] == "ok" and row[objective] > best:
            best = float(row[objective])
    if missing is not None:
        raise ConfigError(f"store {str(db.path)!r} is read-only and this search must evaluate designs it does not "
                          f"hold ({missing} first); make it writable (e.g. chmod u+w) or pass another path")


def _visit(db: ResultStore | None, order: list[int], accelerators: list[Accelerator], bound_obj: np.ndarray,
           objective: str, prune: bool, max_designs: int | None, key_of: Callable[[Accelerator], str],
           ref_acc: Accelerator, executor: str, window: int, progress: bool, cfg: ModelConfig, n_chips: int,
           global_batch: int, seq_len: int, merged: dict[str, Any], timer: Any
           ) -> tuple[dict[int, tuple[dict[str, Any], bool]], int]:
    """Visit designs in bound order with at most `window` evaluations in flight.

    Returns:
        `found[pos]` = (row, evaluated in this call) for each visited position of `order` (-1:
        the reference), and the number of designs evaluated in this call.

    Raises:
        SearchInterrupted: on Ctrl-C or SIGTERM, after storing every finished design and ending
            the workers.
    """
    found: dict[int, tuple[dict[str, Any], bool]] = {}
    inflight: dict[Future[Any], tuple[int, Accelerator, str]] = {}
    best, submitted, nxt, stop = -math.inf, 0, 0, False
    bar = Progress(len(order), progress)
    pool: Any
    if executor == "inline":
        pool = InlineExecutor()
    elif executor == "ray":
        pool = RayExecutor()
    else:
        pool = pool_executor(window)
    portable = _portable_timer(timer)

    def submit(acc: Accelerator) -> Future[Any]:
        if executor == "inline":
            return pool.submit(evaluate_design, cfg, acc, n_chips, global_batch, seq_len, merged, timer)
        return pool.submit(evaluate_in_worker, acc, cfg, n_chips, global_batch, seq_len, merged, portable)

    def record(pos: int, acc: Accelerator, key: str, row: dict[str, Any]) -> None:
        nonlocal best
        if db is not None:
            db.put(key, row)
        if row["status"] != "ok":
            log.info("design %s infeasible: %s", acc.name, row["reason"])
        found[pos] = (row, True)
        if pos >= 0:
            if row["status"] == "ok" and row[objective] > best:
                best = float(row[objective])
            bar.update(best)

    def n_new() -> int:
        return sum(new for pos, (_, new) in found.items() if pos >= 0)

    interrupt: KeyboardInterrupt | None = None
    try:
        with terminate_as_interrupt():
            try:
                ref_key = key_of(ref_acc)
                ref_row = db.get(ref_key) if db is not None else None
                if ref_row is None:
                    inflight[submit(ref_acc)] = (-1, ref_acc, ref_key)
                else:
                    found[-1] = (ref_row, False)
                while True:
                    while not stop and nxt < len(order) and len(inflight) < window:
                        i = order[nxt]
                        if (prune and bound_obj[i] < best) or (max_designs is not None and submitted >= max_designs):
                            stop = True
                            break
                        acc = accelerators[i]
                        key = key_of(acc)
                        row = db.get(key) if db is not None else None
                        if row is not None:
                            found[nxt] = (row, False)
                            if row["status"] == "ok" and row[objective] > best:
                                best = float(row[objective])
                            bar.update(best)
                        else:
                            inflight[submit(acc)] = (nxt, acc, key)
                            submitted += 1
                        nxt += 1
                    if not inflight:
                        break
                    done, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
                    for fut in done:
                        pos, acc, key = inflight.pop(fut)
                        record(pos, acc, key, fut.result())
            except BaseException as err:
                # Keep every finished design, end the workers, then say what was kept (signals wait meanwhile).
                with signals_deferred():
                    for fut, (pos, acc, key) in list(inflight.items()):
                        if fut.done() and not fut.cancelled() and fut.exception() is None:
                            try:
                                record(pos, acc, key, fut.result())
                            except CodaError as store_err:  # a store that broke meanwhile: report the first error
                                log.error("search: finished design %s not stored: %s", acc.name, store_err)
                    if isinstance(pool, ProcessPoolExecutor):
                        terminate_pool(pool)
                    else:
                        pool.terminate()
                if not isinstance(err, KeyboardInterrupt):
                    raise
                interrupt = err
            else:
                pool.shutdown()
    finally:
        bar.close()
    if interrupt is not None:
        name = "SIGTERM" if isinstance(interrupt, Terminated) else "SIGINT"
        n_stored = sum(1 for pos in found if pos >= 0) if db is not None else 0
        raise SearchInterrupted(name, None if db is None else db.path, n_stored, n_new(), len(order)) from interrupt
    return found, n_new()


def _ranked(rows: list[dict[str, Any]], visit_pos: list[int], objective: str) -> pd.DataFrame:
    """Rows sorted: feasible first, by descending objective, ties by visiting order."""
    if not rows:
        return pd.DataFrame(columns=list(FRAME_COLUMNS))
    df = pd.DataFrame(rows)[list(FRAME_COLUMNS)]
    df["_infeasible"] = df["status"] != "ok"
    df["_neg"] = -df[objective].astype(float)
    df["_pos"] = visit_pos
    df = df.sort_values(["_infeasible", "_neg", "_pos"], kind="stable").drop(columns=["_infeasible", "_neg", "_pos"])
    return df.reset_index(drop=True)


def _version() -> str:
    from coda import __version__

    return __version__

