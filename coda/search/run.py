"""`search`: the best accelerator design of a `DesignSpace` for training one model, exactly.

Each design is `n_devices` copies of the chip in the TPU-v4-like 3D-torus preset, its bandwidth set
by the design's links (`design_cluster(acc, n_devices)`: every torus level's bandwidth scaled by
`n_links * link_bw_bytes_per_s` over the TPU v4's 6 x 50 GB/s, so the TPUv4-like chip gets the
preset's cluster), and is scored by one `coda.placement.optimize` call (the fastest plan that
fits; layer times from the on-chip ILP) restricted to `DEFAULT_CHOICES`. Links cost TDP (their
SerDes energy), so a `DesignSpace` axis over `n_links` or `link_bw_bytes_per_s` trades power for
collective time.

Exactness (branch and bound over designs): every design has an upper bound on the objective
(`coda.search.bounds`: roofline peak over a lower bound on executed FLOPs per token, perfect
placement). Designs are visited in descending bound order; once the next bound is below the
best objective achieved so far less `tie_tol` of it (`bounds.pruned`), every remaining design is
provably worse than the best by more than `tie_tol`, and the search stops. So the frame holds the
best design and every design within `tie_tol` of it (`SearchResult.near_ties()`), exactly as an
exhaustive search would; ties are broken by visiting order.

With the ILP timer (`SearchLayerTime`) and without `pareto`, the bound is the refined one of
`coda.search.refine` (the placement's own step bound with FLOP and ILP lower-bound layer times,
then the placement's optimum with lower-bound layer times), computed lazily best-first
(`coda.search.order.RefinedOrder`; with a pool, the last bound only in its workers): the
same visit and pruning rule over a much tighter bound, and the frame's ``bound_*`` columns hold it
(`SearchResult.bounds`). Other timers keep the peak bound (the refined proofs need the ILP's
scheduling instance). The visit's steps (order, dispatch, collect, replay) are in `coda.search.visit`.

Pareto search (`pareto=True`): the frame must also hold the Pareto front of tokens/s against TDP
per chip (`pareto_front`, `SearchResult.front()`). A design is then skipped only when the bound
above prunes it *and* its point (exact TDP per chip `w`, upper bound `U` on tokens/s) is dominated
by an evaluated design e (`Front.covers`: `w_e <= w`, `t_e >= U`, one strict). Exactness: the
design's real point (w, t <= U) is then dominated by e, so it is not on the front of the space; and
a design it would have dominated is dominated by e too (dominance is transitive), so leaving it
out removes no point from the front: the front of the frame equals the front of the whole space.
The designs visited before the bound first prunes are those of the plain search, and every design
evaluated after it has an objective below `best * (1 - tie_tol)`, so `best` and the near ties are
those of the plain search; the frame holds more rows (the front's).

Results go to an optional SQLite `ResultStore` as each design finishes; a stored design is
read back instead of evaluated (`n_cached`).

Executors: ``inline`` evaluates one design at a time in this process; ``process`` (default)
keeps at most `workers` designs in flight on a `ProcessPoolExecutor`, submitting the next
design in bound order only while its bound is not below the incumbent; ``ray`` does the same
on Ray tasks. The parent alone reads and writes the store, as each future completes. Designs
submitted before the incumbent rose enough to prune them (at most `workers - 1` of them) are
evaluated and stored but left out of the frame (`n_speculative`), so every executor returns
the frame of the inline search. Each worker process keeps its own ILP `ScheduleCache`.

Interrupts (`coda.runs.executors`): pool workers end with their parent (even on SIGKILL);
Ctrl-C or SIGTERM stores every finished design, ends the workers and raises `SearchInterrupted`.
"""

from __future__ import annotations

import logging
import os
import pickle
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from coda.arch.accelerators import Accelerator, tpuv4, tpuv4_like
from coda.arch.clusters import preset_description
from coda.arch.design_space import DesignSpace, design_cluster
from coda.errors import ConfigError
from coda.models.config import ModelConfig
from coda.objectives import objective as as_objective
from coda.runs.executors import Progress
from coda.runs.store import ResultStore, cost_model_digest
from coda.search.bounds import DEFAULT_TIE_TOL, objective_bound, training_flops_per_token_lb
from coda.search.design_eval import (
    CLUSTER_PRESET,
    DESIGN_FIELDS,
    FRAME_COLUMNS,
    ILP_EVENT_FIELDS,
    PLAN_FIELDS,
    RESULT_FIELDS,
    SearchLayerTime,
    evaluate_design,
    evaluate_in_worker,
    scored_plan,
)
from coda.search.inputs import DEFAULT_CHOICES, _as_cfg, _merged_choices, _positive_int, check_parallel_widths
from coda.search.order import RefinedOrder, StaticOrder
from coda.search.refine import RefinedBounds, placed_bound_in_worker
from coda.search.result import SEARCH_COLUMNS, SearchResult, _ranked
from coda.search.visit import Order, _Job, _Pruner, _refuse_read_only, _replay, _Visit

log = logging.getLogger(__name__)

OBJECTIVES = ("tokens_per_s_per_w", "tokens_per_s")
"""What the design search can rank by (`coda.objectives`)."""
EXECUTORS = ("inline", "process", "ray")
REFERENCES = (tpuv4_like(), tpuv4())
"""Reference chips evaluated beside every search: PHAZE's TPUv4-like chip (its reference, 2 x 128
vector lanes) and the faithful TPU v4 (2 x 1024 lanes, its real memories; `coda.arch.accelerators`)."""

_Progress = Progress  # the progress bar of a search (tests wrap its `update`)

def search(model: ModelConfig | str, space: DesignSpace, n_devices: int, global_batch: int, seq_len: int,
           objective: str = "tokens_per_s_per_w", store: str | Path | None = None, max_designs: int | None = None,
           choices: dict[str, Any] | None = None, progress: bool = False, prune: bool = True,
           layer_time: Any = None, executor: str = "process", workers: int | None = None,
           tie_tol: float = DEFAULT_TIE_TOL, pareto: bool = False) -> SearchResult:
    """The design of `space` that trains `model` best on `n_devices` chips, by exact branch and bound.

    Args:
        model: a `ModelConfig` or a preset name.
        space: the designs; its constraints (area, TDP) are applied by `DesignSpace`.
        n_devices: devices (chips) per design, in the `tpuv4-pod` torus (at most 16, or a multiple of 16).
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
        tie_tol: relative tolerance of the near ties the result must hold (default 0.02): no
            design within it of the best is pruned; 0 prunes everything that cannot win.
        pareto: the frame also holds the Pareto front of tokens/s against TDP per chip
            (`SearchResult.front()`): a design is pruned only when, besides the objective bound,
            an evaluated design dominates its (TDP, tokens/s bound) point (module docstring).

    Returns:
        A `SearchResult`.

    Raises:
        ConfigError: bad arguments (n_devices < 1, an unknown objective, choice or executor, tp or
            pp lists with no value dividing n_devices, an unusable store, ...), before any design
            is evaluated.
        CodaError: executor ``ray`` without Ray installed.
        InfeasibleDesign: the space admits no design (from `DesignSpace`).
        SearchInterrupted: Ctrl-C or SIGTERM (in the main thread): every finished design was
            stored and the workers were ended first.
    """
    t0 = time.perf_counter()
    n_devices = _positive_int("n_devices", n_devices)
    global_batch = _positive_int("global_batch", global_batch)
    seq_len = _positive_int("seq_len", seq_len)
    objective = as_objective(objective, OBJECTIVES, "search: objective")
    if max_designs is not None:
        max_designs = _positive_int("max_designs", max_designs)
    if executor not in EXECUTORS:
        raise ConfigError(f"search: unknown executor {executor!r}; use one of {', '.join(EXECUTORS)}")
    if workers is not None:
        workers = _positive_int("workers", workers)
    if isinstance(tie_tol, bool) or not isinstance(tie_tol, (int, float)) or not 0 <= tie_tol < 1:
        raise ConfigError(f"search: tie_tol={tie_tol!r} must lie in [0, 1) (0.02: designs within 2% of the best)")
    if not isinstance(pareto, bool):
        raise ConfigError(f"search: pareto={pareto!r} must be True or False")
    if not isinstance(space, DesignSpace):
        raise ConfigError(f"search: space must be a DesignSpace, got {type(space).__name__}")
    cfg = _as_cfg(model)
    merged = _merged_choices(choices)
    check_parallel_widths(merged, n_devices)
    timer = SearchLayerTime() if layer_time is None else layer_time
    for n_links in space.n_links:  # n_devices against the torus, and the space's links against its axes
        for link_bw in space.link_bw_bytes_per_s:
            design_cluster(replace(tpuv4_like(), n_links=n_links, link_bw_bytes_per_s=link_bw), n_devices,
                           CLUSTER_PRESET)
    db = ResultStore(store) if store is not None else None  # a bad store is refused before any work
    try:
        return _search(cfg, space, n_devices, global_batch, seq_len, objective, db, max_designs, merged, prune, timer,
                       executor, workers, progress, t0, float(tie_tol), pareto)
    finally:
        if db is not None:
            db.close()


def uses_refined_bounds(prune: bool, pareto: bool, timer: Any) -> bool:
    """Whether a search visits designs by the refined bounds (`coda.search.refine`): they are proved for
    the ILP timer (`SearchLayerTime`) alone, and a Pareto search needs every design's tokens/s bound up
    front, so it keeps the peak bound."""
    return prune and not pareto and isinstance(timer, SearchLayerTime)


def _order_designs(designs: pd.DataFrame, job: _Job,
                   accelerators: list[Accelerator]) -> tuple[list[tuple[float, float, float]], Order]:
    """Step 1: each design's (peak, vector peak, TDP) and the visiting order: descending objective bound,
    ties in space order; the refined bounds, computed lazily, where they hold (`uses_refined_bounds`),
    else the peak bound."""
    designs["vector_flops"] = designs["vc_lanes"] * designs["n_vc"] * designs["clock_hz"]
    peaks = list(zip(designs["peak_flops"].astype(float), designs["vector_flops"].astype(float),
                     designs["tdp_w"].astype(float)))
    bound_obj = np.array([objective_bound(job.objective, p, v, w, job.n_devices, job.flops_lb) for p, v, w in peaks])
    if not uses_refined_bounds(job.prune, job.pareto, job.timer):
        return peaks, StaticOrder(bound_obj)
    rb = RefinedBounds(job.cfg, job.n_devices, job.global_batch, job.seq_len, job.merged, job.objective)
    first = np.minimum(bound_obj, rb.placement(designs))
    stages = (lambda i: rb.design_fast(accelerators[i]), lambda i: rb.design_placed(accelerators[i]))
    spec = rb.spec()
    return peaks, RefinedOrder(first, stages, remote=lambda i: (placed_bound_in_worker, (spec, accelerators[i])))


def _dispatch_window(executor: str, workers: int | None, n_order: int, max_designs: int | None,
                     timer: Any) -> tuple[str, int]:
    """Step 2: the executor and how many designs it keeps in flight (a pool of one runs inline);
    a timer that cannot reach worker processes is refused."""
    window = workers or os.cpu_count() or 1
    window = min(window, n_order if max_designs is None else min(n_order, max_designs))
    if executor == "process" and window <= 1:
        executor = "inline"
    if executor == "inline":
        return executor, 1
    if not isinstance(timer, SearchLayerTime):
        try:
            pickle.dumps(timer)
        except Exception as err:
            raise ConfigError(f"search: layer_time {timer!r} cannot be sent to worker processes ({err}); "
                              "use a module-level timer or executor='inline'") from None
    return executor, window


def _search(cfg: ModelConfig, space: DesignSpace, n_devices: int, global_batch: int, seq_len: int, objective: str,
            db: ResultStore | None, max_designs: int | None, merged: dict[str, Any], prune: bool, timer: Any,
            executor: str, workers: int | None, progress: bool, t0: float, tie_tol: float,
            pareto: bool = False) -> SearchResult:
    """`search` after its arguments were checked and its store opened: order the designs, dispatch
    them, collect the rows, replay the inline visit."""
    designs = space.to_frame()  # raises InfeasibleDesign when nothing is admitted
    common = dict(model=cfg.to_dict(), n_devices=n_devices, global_batch=global_batch, seq_len=seq_len,
                  choices=merged, layer_time=repr(timer), network=preset_description(CLUSTER_PRESET),
                  version=_version(), costs=cost_model_digest())
    job = _Job(cfg, n_devices, global_batch, seq_len, objective, merged, timer, prune, max_designs,
               training_flops_per_token_lb(cfg, seq_len), common, tie_tol, pareto)
    accelerators = list(space)
    peaks, order = _order_designs(designs, job, accelerators)
    executor, window = _dispatch_window(executor, workers, len(order), max_designs, timer)
    refs = REFERENCES
    if db is not None and not db.writable:
        _refuse_read_only(db, job, refs, _Pruner(job, order, peaks, accelerators))
    visit = _Visit(job, db, _Pruner(job, order, peaks, accelerators), refs, executor, window, progress)
    found, n_spec = visit.run()
    rep = _replay(job, found, _Pruner(job, order, peaks, accelerators), peaks, isinstance(order, RefinedOrder))
    n_refined = tuple(order.refined) if isinstance(order, RefinedOrder) else None
    if n_refined is not None:
        log.info("search: bounds (2) and (3) computed for %s designs, %d visited", n_refined, rep.n_new)
    ref_rows = [job.with_bounds(found[-1 - k][0], acc, acc.peak_flops, acc.vector_flops, acc.tdp_w)
                for k, acc in enumerate(refs)]
    frame = _ranked(rep.rows, rep.visit_pos, objective)
    n_ok = int((frame["status"] == "ok").sum()) if len(frame) else 0
    ref_series = [pd.Series({c: row[c] for c in SEARCH_COLUMNS}, name="reference") for row in ref_rows]
    return SearchResult(
        frame=frame, best=frame.iloc[0] if n_ok else None, reference=ref_series[0], faithful_reference=ref_series[1],
        objective=objective, n_space=len(designs), n_pruned=rep.n_pruned,
        n_evaluated=rep.n_new, n_cached=len(rep.rows) - rep.n_new, n_infeasible=len(frame) - n_ok,
        n_unvisited=rep.unvisited, complete=rep.unvisited == 0, seconds=time.perf_counter() - t0,
        n_speculative=n_spec - rep.n_new, model=cfg.name, n_devices=n_devices, tie_tol=tie_tol,
        pareto=pareto or not prune, bounds="peak" if n_refined is None else "refined", n_refined=n_refined or ())


def _version() -> str:
    from coda import __version__

    return __version__


__all__ = [
    "CLUSTER_PRESET", "DEFAULT_CHOICES", "DESIGN_FIELDS", "EXECUTORS", "FRAME_COLUMNS", "ILP_EVENT_FIELDS",
    "OBJECTIVES", "PLAN_FIELDS", "RESULT_FIELDS", "SearchLayerTime", "SearchResult", "check_parallel_widths",
    "evaluate_design", "evaluate_in_worker", "scored_plan", "search",
]
