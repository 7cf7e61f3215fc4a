"""The serving search's visit: one deployment's capacity in a worker (`evaluate_spec`, with the
layout's cost table), and the visit of the candidates in bound order on an executor (`Visit`;
`coda.serving.search`)."""

from __future__ import annotations

import logging
import math
import os
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from coda.arch.clusters import cluster
from coda.arch.gpus import gpu
from coda.caches import memoize
from coda.errors import ConfigError
from coda.models.config import ModelConfig
from coda.serving.capacity import capacity_row, grid_index
from coda.serving.costs import CostTable
from coda.serving.deployment import Deployment
from coda.serving.metrics import SLO
from coda.serving.search_result import ServingSearchInterrupted, objective_value
from coda.serving.space import DeploymentSpec, dgx_preset
from coda.serving.trace import Trace

if TYPE_CHECKING:
    from coda.serving.search import Plan

log = logging.getLogger(__name__)


@memoize("serving.search.tables", maxsize=32)
def layout_table(cfg: ModelConfig, gpu_name: str, tp: int, pp: int, ep: int, dtype: str, max_tokens: int,
                 max_sequences: int, max_context: int) -> CostTable:
    """The iteration-cost table of a layout (every deployment of the layout shares it; replicas and
    the scheduler do not change iteration costs, and a replica's collectives are those of the
    first tp x pp x ep devices whatever the cluster's size)."""
    g = gpu(gpu_name)
    dep = Deployment(cfg, cluster(dgx_preset(g), tp * pp * ep, device=g), tp=tp, pp=pp, ep=ep, dtype=dtype)
    return CostTable.for_layout(dep, max_tokens, max_sequences, max_context)


def evaluate_spec(spec: DeploymentSpec, cfg: ModelConfig, template: Trace, slo: SLO, upper_qps: float,
                  rel_tol: float, table_tokens: int, table_sequences: int, table_context: int,
                  beat_qps: float = 0.0) -> dict[str, Any]:
    """The capacity row of one deployment (`capacity`'s fields; module-level, so a process pool can
    run it)."""
    table = layout_table(cfg, spec.gpu, spec.tp, spec.pp, spec.ep, spec.dtype, table_tokens, table_sequences,
                         table_context)
    return capacity_row(spec.deployment(cfg), template, slo, upper_qps, table, rel_tol, beat_qps)


@dataclass
class Candidate:
    """A deployment that fits, with its capacity bound, the bound's objective and its store key."""

    spec: DeploymentSpec
    upper_qps: float
    bound_objective: float
    key: str


class Visit:
    """Visit the candidates in bound order, storing each finished one; stop at the first whose bound
    cannot beat the best (`coda.serving.search`).

    The answer is the inline visit's whatever the executor and the number of workers. That visit
    evaluates position i with the incumbent of positions < i (`capacity`'s `beat_qps`, which its
    trials depend on only through `cut_index`). With a window of several workers, positions run
    ahead speculatively with the incumbent known when they are submitted (a lower one); they are
    accepted in order (`_finalize`): a position is final once every earlier one is, with the
    inline visit's incumbent; its row is kept if it was evaluated with the same cut index, else it
    is evaluated again with that incumbent. The store is read and written only at acceptance, the
    bound cut is taken there too, and speculative rows past the cut are dropped, so the frame, the
    counts and the store equal the inline search's; the speculation only costs evaluations
    (`discarded`, logged)."""

    def __init__(self, plan: Plan, cands: list[Candidate], order: list[int], db: Any, prune: bool, executor: str,
                 workers: int | None, progress: bool, tokens: int) -> None:
        from tqdm import tqdm

        self.plan, self.cands, self.order, self.db, self.prune = plan, cands, order, db, prune
        self.tokens = tokens
        self.window = 1 if executor == "inline" else max(1, min(workers or os.cpu_count() or 1, len(order) or 1))
        self.executor = "inline" if executor == "process" and self.window == 1 else executor
        self.best = -math.inf  # the incumbent of the positions accepted so far
        self.n_new = self.n_cached = self.discarded = 0
        self.final = 0  # the next position to accept
        self.cut: int | None = None  # the bound cut's position, once reached
        self.nxt = 0  # the next position to submit speculatively
        self.found: dict[int, tuple[dict[str, Any], float]] = {}  # finished, not accepted: (row, beat used)
        self.running: dict[Future[Any], tuple[int, float]] = {}  # in flight: (position, beat used)
        self.bar = tqdm(total=len(order), desc="deployments", unit="deployment", disable=not progress)

    def _pool(self) -> Any:
        from coda.runs.executors import InlineExecutor, RayExecutor, pool_executor

        if self.executor == "inline":
            return InlineExecutor()
        return RayExecutor() if self.executor == "ray" else pool_executor(self.window)

    def objective(self, c: Candidate, row: dict[str, Any]) -> float:
        """The objective of an ``ok`` row."""
        p = self.plan
        return objective_value(p.objective, row["qps"], c.spec, p.tdp[c.spec.gpu], p.prices)

    def beat_qps(self, c: Candidate, best: float | None = None) -> float:
        """The rate at which `c` would tie `best` (default the incumbent; 0: measure it whatever it is)."""
        best = self.best if best is None else best
        if not self.prune or best <= 0:
            return 0.0
        return best / objective_value(self.plan.objective, 1.0, c.spec, self.plan.tdp[c.spec.gpu], self.plan.prices)

    def cut_index(self, beat_qps: float) -> int | None:
        """What of `beat_qps` a capacity search depends on: the grid index of the first rate above
        it (`capacity`, step 2), None without an incumbent."""
        return grid_index(beat_qps, self.plan.rel_tol, up=False) + 1 if beat_qps > 0 else None

    def _submit(self, pool: Any, pos: int, beat: float) -> None:
        p, c = self.plan, self.cands[self.order[pos]]
        fut = pool.submit(evaluate_spec, c.spec, p.cfg, p.template_for(c.spec), p.slo, c.upper_qps, p.rel_tol,
                          self.tokens, p.max_batch, p.context, beat)
        self.running[fut] = (pos, beat)

    def stored(self, c: Candidate, beat: float | None = None) -> dict[str, Any] | None:
        """The store's row for `c` if it answers this search: a full capacity, or a cut at a rate
        at or below the one `c` must reach (`beat`, default the incumbent's; a cut at a higher rate
        says too little)."""
        row = self.db.get(c.key) if self.db is not None else None
        if row is not None and row["status"] == "below_best":
            beat, tol = self.beat_qps(c) if beat is None else beat, self.plan.rel_tol
            if beat <= 0 or grid_index(row["missed_qps"], tol, up=False) > grid_index(beat, tol, up=False) + 1:
                return None
        return row

    def _record(self, c: Candidate, row: dict[str, Any], new: bool) -> None:
        if new and self.db is not None:
            self.db.put(c.key, row)
        self.plan.rows[c.spec] = row
        if new:
            self.n_new += 1
        else:
            self.n_cached += 1
        if row["status"] == "ok":
            self.best = max(self.best, self.objective(c, row))
        self.bar.update(1)
        self.bar.set_postfix(best=f"{self.best:.4g}", refresh=False)

    def _finalize(self) -> int | None:
        """Accept positions in order while their rows are known (module docstring). Returns the
        position that needs an evaluation with the incumbent it has now, if any."""
        while self.cut is None and self.final < len(self.order):
            pos = self.final
            c = self.cands[self.order[pos]]
            if self.prune and pos > 0 and c.bound_objective <= self.best:  # it can at most tie: the cut
                self.cut = pos
                break
            beat = self.beat_qps(c)
            row = self.stored(c, beat)
            if row is not None:
                self._record(c, row, new=False)
            elif pos in self.found and self.cut_index(self.found[pos][1]) == self.cut_index(beat):
                self._record(c, self.found[pos][0], new=True)
            else:
                if pos in self.found:
                    self.discarded += 1
                    del self.found[pos]
                if any(q == pos and self.cut_index(b) == self.cut_index(beat) for q, b in self.running.values()):
                    return None  # under way with this incumbent
                return pos
            self.found.pop(pos, None)
            self.final += 1
        return None

    def _speculative_best(self, pos: int) -> float:
        """A lower bound on the incumbent position `pos` will have: the best of the accepted rows and
        of the ``ok`` rows found (evaluated or stored) before it."""
        best = self.best
        for q, (row, _) in self.found.items():
            if q < pos and row["status"] == "ok":
                best = max(best, self.objective(self.cands[self.order[q]], row))
        return best

    def _fill(self, pool: Any, need: int | None) -> None:
        """Submit the position to accept next when it needs an evaluation, then speculative ones,
        while the window has room."""
        if need is not None and len(self.running) < self.window:
            self._submit(pool, need, self.beat_qps(self.cands[self.order[need]]))
        self.nxt = max(self.nxt, self.final + 1 if need is not None else self.final)
        while self.cut is None and self.nxt < len(self.order) and len(self.running) < self.window:
            pos = self.nxt
            c = self.cands[self.order[pos]]
            best = self._speculative_best(pos)
            if self.prune and pos > 0 and c.bound_objective <= best:  # the cut comes here or before
                self.nxt = len(self.order)
                break
            self.nxt += 1
            if pos in self.found or any(q == pos for q, _ in self.running.values()):
                continue
            beat = self.beat_qps(c, best)
            row = self.stored(c, beat)
            if row is not None:  # it answers any later incumbent too: read again at acceptance
                self.found[pos] = (row, beat)
            else:
                self._submit(pool, pos, beat)

    def run(self) -> tuple[int, int, int]:
        """Visit every candidate up to the bound cut. Returns (evaluated now, read from the store, pruned
        by the bound)."""
        from coda.runs.executors import terminate_as_interrupt

        if self.db is not None and not self.db.writable:
            raise ConfigError(f"store {str(self.db.path)!r} is read-only; make it writable or pass another path")
        pool = self._pool()
        try:
            with terminate_as_interrupt():
                try:
                    self._loop(pool)
                except BaseException as err:
                    self._abort(pool, err)
                    raise
                else:
                    self._close(pool)
        finally:
            self.bar.close()
        if self.discarded:
            log.info("serving search: %d speculative evaluation(s) redone or dropped (the answer is the inline "
                     "visit's)", self.discarded)
        stopped = len(self.order) if self.cut is None else self.cut
        return self.n_new, self.n_cached, len(self.order) - stopped

    def _loop(self, pool: Any) -> None:
        """Accept what is known, keep the window full, collect what finishes, until the last position
        or the cut is accepted."""
        while True:
            need = self._finalize()
            if self.cut is not None or self.final >= len(self.order):
                return
            self._fill(pool, need)
            assert self.running, "a position to accept is always found, stored or under way"
            done, _ = wait(list(self.running), return_when=FIRST_COMPLETED)
            for fut in done:
                pos, beat = self.running.pop(fut)
                row = fut.result()
                if pos >= self.final and pos not in self.found:
                    self.found[pos] = (row, beat)
                else:
                    self.discarded += 1

    def _close(self, pool: Any) -> None:
        """End the executor; speculative evaluations past the cut still running are dropped."""
        left = [f for f in self.running if not f.done()]
        self.discarded += len(self.running) + sum(1 for q in self.found if q >= self.final)
        if left:
            end_pool(pool)
        else:
            pool.shutdown()

    def _abort(self, pool: Any, err: BaseException) -> None:
        """After `err`: accept (and store) what finished in order, end the workers, and turn Ctrl-C
        or SIGTERM into `ServingSearchInterrupted` (the caller re-raises anything else)."""
        from coda.runs.executors import signals_deferred

        with signals_deferred():
            for fut, (pos, beat) in list(self.running.items()):
                if fut.done() and not fut.cancelled() and fut.exception() is None and pos not in self.found:
                    self.found[pos] = (fut.result(), beat)
            self._finalize()
            end_pool(pool)
        ServingSearchInterrupted.raise_for(err, None if self.db is None else self.db.path, self.n_new + self.n_cached,
                                           self.n_new)


def end_pool(pool: Any) -> None:
    """End an executor's workers now: a process pool's (`coda.runs.executors.terminate_pool`) or Ray's."""
    from coda.runs.executors import terminate_pool

    if isinstance(pool, ProcessPoolExecutor):
        terminate_pool(pool)
    else:
        pool.terminate()


__all__ = ["Candidate", "Visit", "end_pool", "evaluate_spec", "layout_table"]
