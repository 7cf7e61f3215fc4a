"""`search`: the best accelerator design of a `DesignSpace` for training one model, exactly.

Each design is `n_chips` copies of the chip in the TPU-v4-like 3D-torus preset, its bandwidth set
by the design's links (`design_cluster(acc, n_chips)`: every torus level's bandwidth scaled by
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

Interrupts (`coda.search.executors`): pool workers end with their parent (even on SIGKILL);
Ctrl-C or SIGTERM stores every finished design, ends the workers and raises `SearchInterrupted`.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from coda.arch.accelerators import Accelerator, tpuv4, tpuv4_like
from coda.arch.clusters import preset_description
from coda.arch.design_space import DesignSpace, design_cluster
from coda.errors import CodaError, ConfigError
from coda.models.config import ModelConfig
from coda.objectives import objective as as_objective
from coda.search.bounds import (
    DEFAULT_TIE_TOL,
    objective_bound,
    pruned,
    tokens_per_s_bound,
    training_flops_per_token_lb,
)
from coda.search.design_eval import (
    CLUSTER_PRESET,
    DESIGN_FIELDS,
    FRAME_COLUMNS,
    ILP_EVENT_FIELDS,
    PLAN_FIELDS,
    RESULT_FIELDS,
    SearchLayerTime,
    _portable_timer,
    evaluate_design,
    evaluate_in_worker,
    scored_plan,
)
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
from coda.search.inputs import (
    DEFAULT_CHOICES,
    _as_cfg,
    _merged_choices,
    _positive_int,
    _refuse_read_only,
    check_parallel_widths,
)
from coda.search.pareto import Front
from coda.search.result import SEARCH_COLUMNS, SearchResult, _ranked
from coda.search.store import ResultStore, cost_model_digest, result_key

log = logging.getLogger(__name__)

OBJECTIVES = ("tokens_per_s_per_w", "tokens_per_s")
"""What the design search can rank by (`coda.objectives`)."""
EXECUTORS = ("inline", "process", "ray")
REFERENCES = (tpuv4_like(), tpuv4())
"""Reference chips evaluated beside every search: PHAZE's TPUv4-like chip (its reference, 2 x 128
vector lanes) and the faithful TPU v4 (2 x 1024 lanes, its real memories; `coda.arch.accelerators`)."""



_Progress = Progress  # the progress bar of a search (tests wrap its `update`)

def search(model: ModelConfig | str, space: DesignSpace, n_chips: int, global_batch: int, seq_len: int,
           objective: str = "tokens_per_s_per_w", store: str | Path | None = None, max_designs: int | None = None,
           choices: dict[str, Any] | None = None, progress: bool = False, prune: bool = True,
           layer_time: Any = None, executor: str = "process", workers: int | None = None,
           tie_tol: float = DEFAULT_TIE_TOL, pareto: bool = False) -> SearchResult:
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
        tie_tol: relative tolerance of the near ties the result must hold (default 0.02): no
            design within it of the best is pruned; 0 prunes everything that cannot win.
        pareto: the frame also holds the Pareto front of tokens/s against TDP per chip
            (`SearchResult.front()`): a design is pruned only when, besides the objective bound,
            an evaluated design dominates its (TDP, tokens/s bound) point (module docstring).

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
    check_parallel_widths(merged, n_chips)
    timer = SearchLayerTime() if layer_time is None else layer_time
    for n_links in space.n_links:  # n_chips against the torus, and the space's links against its axes
        for link_bw in space.link_bw_bytes_per_s:
            design_cluster(replace(tpuv4_like(), n_links=n_links, link_bw_bytes_per_s=link_bw), n_chips,
                           CLUSTER_PRESET)
    db = ResultStore(store) if store is not None else None  # a bad store is refused before any work
    try:
        return _search(cfg, space, n_chips, global_batch, seq_len, objective, db, max_designs, merged, prune, timer,
                       executor, workers, progress, t0, float(tie_tol), pareto)
    finally:
        if db is not None:
            db.close()


@dataclass(frozen=True, eq=False)
class _Job:
    """What every design of one search is evaluated and ranked with."""

    cfg: ModelConfig
    n_chips: int
    global_batch: int
    seq_len: int
    objective: str
    merged: dict[str, Any]
    timer: Any
    prune: bool
    max_designs: int | None
    flops_lb: Any
    common: dict[str, Any]
    tie_tol: float
    pareto: bool = False

    def key_of(self, acc: Accelerator) -> str:
        """The store key of a design: its fields, its derived area and power as computed now (a
        changed constant, even one patched in a notebook, gives another key) and the search inputs."""
        return result_key(design=asdict(acc), derived=dict(area_mm2=acc.area_mm2, power_w=acc.power_breakdown()),
                          **self.common)

    def with_bounds(self, row: dict[str, Any], acc: Accelerator, peak: float, vector: float,
                    tdp: float) -> dict[str, Any]:
        """A row with the design's links and its bound columns."""
        return dict(row, n_links=acc.n_links, link_bw_bytes_per_s=acc.link_bw_bytes_per_s,
                    bound_tokens_per_s=tokens_per_s_bound(peak, vector, self.n_chips, self.flops_lb),
                    bound_objective=objective_bound(self.objective, peak, vector, tdp, self.n_chips, self.flops_lb))


def _order_designs(designs: pd.DataFrame, job: _Job) -> tuple[list[tuple[float, float, float]], np.ndarray, list[int]]:
    """Step 1: each design's (peak, vector peak, TDP), its objective bound, and the visiting order
    (descending bound, ties in space order)."""
    designs["vector_flops"] = designs["vc_lanes"] * designs["n_vc"] * designs["clock_hz"]
    peaks = list(zip(designs["peak_flops"].astype(float), designs["vector_flops"].astype(float),
                     designs["tdp_w"].astype(float)))
    bound_obj = np.array([objective_bound(job.objective, p, v, w, job.n_chips, job.flops_lb) for p, v, w in peaks])
    order = [int(i) for i in np.lexsort((np.arange(len(designs)), -bound_obj))]
    return peaks, bound_obj, order


class _Pruner:
    """The one pruning rule of a search, shared by the visit, its replay and the read-only store check.

    It holds what the designs evaluated so far prove: the best objective and, for a Pareto search,
    the front of their (TDP per chip, tokens/s). Design i is skipped when `bounds.pruned` prunes its
    objective bound and, for a Pareto search, the front covers its (exact TDP, tokens/s bound)
    point (module docstring). Without `pareto` a skip ends the visit (every later bound is lower);
    with it, later designs may still be on the front, so the visit goes on.
    """

    def __init__(self, job: _Job, bound_obj: np.ndarray, peaks: list[tuple[float, float, float]],
                 accelerators: list[Accelerator]) -> None:
        self.job, self.bound_obj, self.peaks, self.accelerators = job, bound_obj, peaks, accelerators
        self.best = -math.inf
        self.front = Front()
        self.ends_visit = not job.pareto

    def skip(self, i: int) -> bool:
        """Whether design i (an index of the space) can be left out of the frame."""
        j = self.job
        if not (j.prune and pruned(self.bound_obj[i], self.best, j.tie_tol)):
            return False
        if not j.pareto:
            return True
        peak, vector, _ = self.peaks[i]
        # the exact TDP the frame will show (the design's own, not the vectorised one) against the front's
        return self.front.covers(self.accelerators[i].tdp_w, tokens_per_s_bound(peak, vector, j.n_chips, j.flops_lb))

    def add(self, row: dict[str, Any]) -> None:
        """An evaluated (or stored) row of the space."""
        if row["status"] != "ok":
            return
        if row[self.job.objective] > self.best:
            self.best = float(row[self.job.objective])
        if self.job.pareto:
            self.front.add(float(row["tdp_w"]), float(row["tokens_per_s"]))


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


class _Replay(NamedTuple):
    rows: list[dict[str, Any]]
    visit_pos: list[int]
    n_new: int
    n_pruned: int
    unvisited: int


def _replay(job: _Job, found: dict[int, tuple[dict[str, Any], bool]], order: list[int], pruner: _Pruner,
            peaks: list[tuple[float, float, float]]) -> _Replay:
    """Step 4: the inline visit over the results. It skips every design the parallel one skipped
    (that one knew a subset of the rows this one knows at each design, plus speculative rows, whose
    every pruning consequence an earlier visited row also has), so every row it visits is in
    `found`; the others in `found` are the speculative ones. The one exception: a parallel Pareto
    search that counted speculative designs against `max_designs` may stop first; the replay then
    stops there too (the designs left are `unvisited`)."""
    rows, visit_pos = [], []
    n_new, n_pruned, unvisited = 0, 0, 0
    for pos, i in enumerate(order):
        if pruner.skip(i):
            if pruner.ends_visit:
                n_pruned += len(order) - pos
                break
            n_pruned += 1
            continue
        if (job.max_designs is not None and n_new >= job.max_designs) or pos not in found:
            unvisited = len(order) - pos
            break
        row, new = found[pos]
        n_new += new
        rows.append(job.with_bounds(row, pruner.accelerators[i], *peaks[i]))
        visit_pos.append(pos)
        pruner.add(row)
    return _Replay(rows, visit_pos, n_new, n_pruned, unvisited)


def _search(cfg: ModelConfig, space: DesignSpace, n_chips: int, global_batch: int, seq_len: int, objective: str,
            db: ResultStore | None, max_designs: int | None, merged: dict[str, Any], prune: bool, timer: Any,
            executor: str, workers: int | None, progress: bool, t0: float, tie_tol: float,
            pareto: bool = False) -> SearchResult:
    """`search` after its arguments were checked and its store opened: order the designs, dispatch
    them, collect the rows, replay the inline visit."""
    designs = space.to_frame()  # raises InfeasibleDesign when nothing is admitted
    common = dict(model=cfg.to_dict(), n_chips=n_chips, global_batch=global_batch, seq_len=seq_len,
                  choices=merged, layer_time=repr(timer), network=preset_description(CLUSTER_PRESET),
                  version=_version(), costs=cost_model_digest())
    job = _Job(cfg, n_chips, global_batch, seq_len, objective, merged, timer, prune, max_designs,
               training_flops_per_token_lb(cfg, seq_len), common, tie_tol, pareto)
    peaks, bound_obj, order = _order_designs(designs, job)
    accelerators = list(space)
    executor, window = _dispatch_window(executor, workers, len(order), max_designs, timer)
    refs = REFERENCES
    if db is not None and not db.writable:
        if pareto and prune:
            _refuse_read_only_front(db, job, order, accelerators, _Pruner(job, bound_obj, peaks, accelerators))
        else:
            _refuse_read_only(db, [job.key_of(acc) for acc in refs], [job.key_of(accelerators[i]) for i in order],
                              [bound_obj[i] for i in order], objective, prune, tie_tol)
    visit = _Visit(job, db, order, accelerators, _Pruner(job, bound_obj, peaks, accelerators), refs, executor,
                   window, progress)
    found, n_spec = visit.run()
    rep = _replay(job, found, order, _Pruner(job, bound_obj, peaks, accelerators), peaks)
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
        n_speculative=n_spec - rep.n_new, model=cfg.name, n_chips=n_chips, tie_tol=tie_tol,
        pareto=pareto or not prune)


def _refuse_read_only_front(db: ResultStore, job: _Job, order: list[int], accelerators: list[Accelerator],
                            pruner: _Pruner) -> None:
    """A Pareto search on a read-only store: replay its inline visit on stored rows; refuse, before any
    work, if it meets a design (or a reference chip) the store does not hold."""
    missing = None if all(job.key_of(acc) in db for acc in REFERENCES) else "a reference chip"
    for i in order if missing is None else ():
        if pruner.skip(i):
            if pruner.ends_visit:
                break
            continue
        row = db.get(job.key_of(accelerators[i]))
        if row is None:
            missing = "a design"
            break
        pruner.add(row)
    if missing is not None:
        raise ConfigError(f"store {str(db.path)!r} is read-only and this search must evaluate designs it does not "
                          f"hold ({missing} first); make it writable (e.g. chmod u+w) or pass another path")


class _Visit:
    """Step 3: visit designs in bound order with at most `window` evaluations in flight (dispatch),
    recording each finished row in the store and in `found` (collect).

    `run()` returns `found[pos]` = (row, evaluated in this call) for each visited position of
    `order` (-1 - k: reference k of `REFERENCES`), and the number of designs evaluated in this call; on Ctrl-C or
    SIGTERM it stores every finished design, ends the workers and raises `SearchInterrupted`.
    """

    def __init__(self, job: _Job, db: ResultStore | None, order: list[int], accelerators: list[Accelerator],
                 pruner: _Pruner, refs: tuple[Accelerator, ...], executor: str, window: int,
                 progress: bool) -> None:
        self.job, self.db, self.order, self.accelerators, self.pruner = job, db, order, accelerators, pruner
        self.refs, self.executor, self.window = refs, executor, window
        self.found: dict[int, tuple[dict[str, Any], bool]] = {}
        self.inflight: dict[Future[Any], tuple[int, Accelerator, str]] = {}
        self.submitted, self.nxt, self.stop = 0, 0, False
        self.bar = _Progress(len(order), progress)
        self.pool: Any = (InlineExecutor() if executor == "inline" else RayExecutor() if executor == "ray"
                          else pool_executor(window))
        self.portable = _portable_timer(job.timer)

    def submit(self, acc: Accelerator) -> Future[Any]:
        j = self.job
        if self.executor == "inline":
            return self.pool.submit(evaluate_design, j.cfg, acc, j.n_chips, j.global_batch, j.seq_len, j.merged,
                                    j.timer)
        return self.pool.submit(evaluate_in_worker, acc, j.cfg, j.n_chips, j.global_batch, j.seq_len, j.merged,
                                self.portable)

    def _improve(self, row: dict[str, Any]) -> None:
        self.pruner.add(row)
        self.bar.update(self.pruner.best)

    def record(self, pos: int, acc: Accelerator, key: str, row: dict[str, Any]) -> None:
        """A finished evaluation: into the store, into `found`, and into the incumbent."""
        if self.db is not None:
            self.db.put(key, row)
        if row["status"] != "ok":
            log.info("design %s infeasible: %s", acc.name, row["reason"])
        self.found[pos] = (row, True)
        if pos >= 0:
            self._improve(row)

    def n_new(self) -> int:
        return sum(new for pos, (_, new) in self.found.items() if pos >= 0)

    def _start(self) -> None:
        """The reference designs: from the store, or submitted first."""
        for k, acc in enumerate(self.refs):
            key = self.job.key_of(acc)
            row = self.db.get(key) if self.db is not None else None
            if row is None:
                self.inflight[self.submit(acc)] = (-1 - k, acc, key)
            else:
                self.found[-1 - k] = (row, False)

    def _fill(self) -> None:
        """Dispatch: read stored designs, submit the others while the window has room; skip what the
        pruner skips (and stop there unless it is a Pareto search), stop at `max_designs`."""
        j = self.job
        while not self.stop and self.nxt < len(self.order) and len(self.inflight) < self.window:
            i = self.order[self.nxt]
            if j.max_designs is not None and self.submitted >= j.max_designs:
                self.stop = True
                break
            if self.pruner.skip(i):
                if self.pruner.ends_visit:
                    self.stop = True
                    break
                self.nxt += 1
                continue
            acc = self.accelerators[i]
            key = self.job.key_of(acc)
            row = self.db.get(key) if self.db is not None else None
            if row is not None:
                self.found[self.nxt] = (row, False)
                self._improve(row)
            else:
                self.inflight[self.submit(acc)] = (self.nxt, acc, key)
                self.submitted += 1
            self.nxt += 1

    def _collect(self) -> None:
        """Collect: wait for the first finished evaluations and record them."""
        done, _ = wait(list(self.inflight), return_when=FIRST_COMPLETED)
        for fut in done:
            pos, acc, key = self.inflight.pop(fut)
            self.record(pos, acc, key, fut.result())

    def _salvage(self) -> None:
        """Keep every finished design and end the workers (signals wait meanwhile)."""
        with signals_deferred():
            for fut, (pos, acc, key) in list(self.inflight.items()):
                if fut.done() and not fut.cancelled() and fut.exception() is None:
                    try:
                        self.record(pos, acc, key, fut.result())
                    except CodaError as store_err:  # a store that broke meanwhile: report the first error
                        log.error("search: finished design %s not stored: %s", acc.name, store_err)
            if isinstance(self.pool, ProcessPoolExecutor):
                terminate_pool(self.pool)
            else:
                self.pool.terminate()

    def run(self) -> tuple[dict[int, tuple[dict[str, Any], bool]], int]:
        interrupt: KeyboardInterrupt | None = None
        try:
            with terminate_as_interrupt():
                try:
                    self._start()
                    while True:
                        self._fill()
                        if not self.inflight:
                            break
                        self._collect()
                except BaseException as err:
                    self._salvage()
                    if not isinstance(err, KeyboardInterrupt):
                        raise
                    interrupt = err
                else:
                    self.pool.shutdown()
        finally:
            self.bar.close()
        if interrupt is not None:
            name = "SIGTERM" if isinstance(interrupt, Terminated) else "SIGINT"
            n_stored = sum(1 for pos in self.found if pos >= 0) if self.db is not None else 0
            raise SearchInterrupted(name, None if self.db is None else self.db.path, n_stored, self.n_new(),
                                    len(self.order)) from interrupt
        return self.found, self.n_new()


def _version() -> str:
    from coda import __version__

    return __version__


__all__ = [
    "CLUSTER_PRESET", "DEFAULT_CHOICES", "DESIGN_FIELDS", "EXECUTORS", "FRAME_COLUMNS", "ILP_EVENT_FIELDS",
    "OBJECTIVES", "PLAN_FIELDS", "RESULT_FIELDS", "SearchLayerTime", "SearchResult", "check_parallel_widths",
    "evaluate_design", "evaluate_in_worker", "scored_plan", "search",
]
