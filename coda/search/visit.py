"""The visit of a design search (`coda.search.run`): the job every design is evaluated with, the pruning
rule, the dispatch and collection of evaluations (`_Visit`) and the inline replay that makes every
executor return the frame of the inline search (`_replay`). The designs come in the order of a
`coda.search.order` object; the module doc of `coda.search.run` says why the visit is exact.
"""

from __future__ import annotations

import logging
import math
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

from coda.arch.accelerators import Accelerator
from coda.errors import CodaError, ConfigError
from coda.models.config import ModelConfig
from coda.runs.executors import (
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
from coda.runs.store import ResultStore, result_key
from coda.search.bounds import objective_bound, pruned, tokens_per_s_bound
from coda.search.design_eval import _portable_timer, evaluate_design, evaluate_in_worker
from coda.search.order import RefinedOrder, StaticOrder
from coda.search.pareto import Front

log = logging.getLogger(__name__)

Order = StaticOrder | RefinedOrder
Found = dict[int, tuple[dict[str, Any], bool]]
"""Visited position of the order (-1 - k: reference chip k) -> (row, evaluated in this call)."""


@dataclass(frozen=True, eq=False)
class _Job:
    """What every design of one search is evaluated and ranked with."""

    cfg: ModelConfig
    n_devices: int
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

    def with_bounds(self, row: dict[str, Any], acc: Accelerator, peak: float, vector: float, tdp: float,
                    bound: float | None = None) -> dict[str, Any]:
        """A row with the design's links and its bound columns: the peak bound (`coda.search.bounds`), or
        `bound` on the objective when the design was visited with a refined one (tokens/s bound to match)."""
        if bound is None:
            return dict(row, n_links=acc.n_links, link_bw_bytes_per_s=acc.link_bw_bytes_per_s,
                        bound_tokens_per_s=tokens_per_s_bound(peak, vector, self.n_devices, self.flops_lb),
                        bound_objective=objective_bound(self.objective, peak, vector, tdp, self.n_devices,
                                                        self.flops_lb))
        tokens = bound if self.objective == "tokens_per_s" else bound * self.n_devices * tdp
        return dict(row, n_links=acc.n_links, link_bw_bytes_per_s=acc.link_bw_bytes_per_s,
                    bound_tokens_per_s=tokens, bound_objective=bound)


class _Pruner:
    """The one pruning rule of a search, shared by the visit, its replay and the read-only store check.

    It holds what the designs evaluated so far prove: the best objective and, for a Pareto search,
    the front of their (TDP per chip, tokens/s). Design i is skipped when `bounds.pruned` prunes its
    objective bound and, for a Pareto search, the front covers its (exact TDP, tokens/s bound)
    point (module docstring). Without `pareto` a skip ends the visit (every later bound is lower);
    with it, later designs may still be on the front, so the visit goes on.
    """

    def __init__(self, job: _Job, order: Order, peaks: list[tuple[float, float, float]],
                 accelerators: list[Accelerator]) -> None:
        self.job, self.order, self.peaks, self.accelerators = job, order, peaks, accelerators
        self.best = -math.inf
        self.front = Front()
        self.ends_visit = not job.pareto

    def is_pruned(self, bound: float) -> bool:
        """Whether a design with this objective bound is pruned by the objective alone."""
        return self.job.prune and pruned(bound, self.best, self.job.tie_tol)

    def design_at(self, pos: int) -> int:
        """The design at position `pos` of the order (a visit that ends at its first skip lets a lazy
        order stop refining a design already pruned, `coda.search.order`)."""
        i = self.order.at(pos, self.is_pruned if self.ends_visit else None)
        assert i is not None, "no bound is computed elsewhere outside a visit"
        return i

    def design_or_wait(self, pos: int) -> int | None:
        """`design_at`, or None while the order waits for (or wants) a bound computed in a worker."""
        return self.order.at(pos, self.is_pruned if self.ends_visit else None, remote=True)

    def skip(self, i: int) -> bool:
        """Whether design i (an index of the space) can be left out of the frame."""
        j = self.job
        if not self.is_pruned(self.order.bound(i)):
            return False
        if not j.pareto:
            return True
        peak, vector, _ = self.peaks[i]
        # the exact TDP the frame will show (the design's own, not the vectorised one) against the front's
        return self.front.covers(self.accelerators[i].tdp_w, tokens_per_s_bound(peak, vector, j.n_devices, j.flops_lb))

    def add(self, row: dict[str, Any]) -> None:
        """An evaluated (or stored) row of the space."""
        if row["status"] != "ok":
            return
        if row[self.job.objective] > self.best:
            self.best = float(row[self.job.objective])
        if self.job.pareto:
            self.front.add(float(row["tdp_w"]), float(row["tokens_per_s"]))


class _Replay(NamedTuple):
    rows: list[dict[str, Any]]
    visit_pos: list[int]
    n_new: int
    n_pruned: int
    unvisited: int


def _replay(job: _Job, found: Found, pruner: _Pruner, peaks: list[tuple[float, float, float]],
            refined: bool) -> _Replay:
    """Step 4: the inline visit over the results. It skips every design the parallel one skipped
    (that one knew a subset of the rows this one knows at each design, plus speculative rows, whose
    every pruning consequence an earlier visited row also has), so every row it visits is in
    `found`; the others in `found` are the speculative ones. The one exception: a parallel Pareto
    search that counted speculative designs against `max_designs` may stop first; the replay then
    stops there too (the designs left are `unvisited`)."""
    rows, visit_pos = [], []
    n_new, n_pruned, unvisited = 0, 0, 0
    order = pruner.order
    for pos in range(len(order)):
        i = pruner.design_at(pos)
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
        bound = order.bound(i) if refined else None
        rows.append(job.with_bounds(row, pruner.accelerators[i], *peaks[i], bound=bound))
        visit_pos.append(pos)
        pruner.add(row)
    return _Replay(rows, visit_pos, n_new, n_pruned, unvisited)


def _refuse_read_only(db: ResultStore, job: _Job, refs: tuple[Accelerator, ...], pruner: _Pruner) -> None:
    """A search on a read-only store: replay its inline visit on stored rows; refuse, before any
    evaluation, if it meets a design (or a reference chip) the store does not hold."""
    missing = None if all(job.key_of(acc) in db for acc in refs) else "a reference chip"
    for pos in range(len(pruner.order)) if missing is None else ():
        i = pruner.design_at(pos)
        if pruner.skip(i):
            if pruner.ends_visit:
                break
            continue
        row = db.get(job.key_of(pruner.accelerators[i]))
        if row is None:
            missing = "a design"
            break
        pruner.add(row)
    if missing is not None:
        raise ConfigError(f"store {str(db.path)!r} is read-only and this search must evaluate designs it does not "
                          f"hold ({missing} first); make it writable (e.g. chmod u+w) or pass another path")


class _Visit:
    """Step 3: visit designs in bound order with at most `window` evaluations in flight (dispatch),
    recording each finished row in the store and in `found` (collect). With a `RefinedOrder`, a free
    worker computes the last bound of the next design instead (`bounding`), and the parent computes
    the other bounds while it waits (`coda.search.order`).

    `run()` returns `found[pos]` = (row, evaluated in this call) for each visited position of
    `order` (-1 - k: reference k of `REFERENCES`), and the number of designs evaluated in this call; on Ctrl-C or
    SIGTERM it stores every finished design, ends the workers and raises `SearchInterrupted`.
    """

    def __init__(self, job: _Job, db: ResultStore | None, pruner: _Pruner, refs: tuple[Accelerator, ...],
                 executor: str, window: int, progress: bool) -> None:
        self.job, self.db, self.pruner = job, db, pruner
        self.order, self.accelerators = pruner.order, pruner.accelerators
        self.refs, self.executor, self.window = refs, executor, window
        self.found: Found = {}
        self.inflight: dict[Future[Any], tuple[int, Accelerator, str]] = {}
        self.bounding: dict[Future[Any], int] = {}
        """Bounds computed in workers (`coda.search.order`: the last refined bound) -> their design."""
        self.submitted, self.nxt, self.stop = 0, 0, False
        self.bar = Progress(len(self.order), progress)
        self.pool: Any = (InlineExecutor() if executor == "inline" else RayExecutor() if executor == "ray"
                          else pool_executor(window))
        self.portable = _portable_timer(job.timer)

    def submit(self, acc: Accelerator) -> Future[Any]:
        j = self.job
        if self.executor == "inline":
            return self.pool.submit(evaluate_design, j.cfg, acc, j.n_devices, j.global_batch, j.seq_len, j.merged,
                                    j.timer)
        return self.pool.submit(evaluate_in_worker, acc, j.cfg, j.n_devices, j.global_batch, j.seq_len, j.merged,
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

    def busy(self) -> int:
        """Evaluations and bounds in flight."""
        return len(self.inflight) + len(self.bounding)

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
        while not self.stop and self.nxt < len(self.order) and self.busy() < self.window:
            if j.max_designs is not None and self.submitted >= j.max_designs:
                self.stop = True
                break
            i = self.pruner.design_at(self.nxt) if self.executor == "inline" else self.pruner.design_or_wait(self.nxt)
            if i is None:  # the next design needs a bound a worker can compute, or waits for one
                out = self.order.offload(self.pruner.is_pruned)
                if out is None:
                    break
                d, fn, args = out
                self.bounding[self.pool.submit(fn, *args)] = d
                continue
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
        """Collect: wait for the first finished evaluations and record them. While none is finished, the
        order computes the bounds its next positions need (a `RefinedOrder`; unless the visit ends first)."""
        futures = [*self.inflight, *self.bounding]
        done, _ = wait(futures, timeout=0, return_when=FIRST_COMPLETED)
        while not done and self.order.step(self.pruner.is_pruned):
            if self.busy() < self.window and self.order.can_offload(self.pruner.is_pruned):
                return  # a free worker can take a bound: back to dispatch
            done, _ = wait(futures, timeout=0, return_when=FIRST_COMPLETED)
        if not done:
            done, _ = wait(futures, return_when=FIRST_COMPLETED)
        for fut in done:
            if fut in self.bounding:
                self.order.land(self.bounding.pop(fut), fut.result())
                continue
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

    def run(self) -> tuple[Found, int]:
        interrupt: KeyboardInterrupt | None = None
        try:
            with terminate_as_interrupt():
                try:
                    self._start()
                    while True:
                        self._fill()
                        if not self.busy():
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


