"""The serving search's visit: one deployment's capacity in a worker (`evaluate_spec`, with the
layout's cost table), and the visit of the candidates in bound order on an executor (`Visit`;
`coda.serving.search`)."""

from __future__ import annotations

import math
import os
import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from coda.arch.clusters import cluster
from coda.arch.gpus import gpu
from coda.caches import memoize
from coda.errors import ConfigError, InfeasibleDesign
from coda.models.config import ModelConfig
from coda.serving.capacity import capacity, grid_index
from coda.serving.costs import CostTable, IterationCost
from coda.serving.deployment import Deployment
from coda.serving.metrics import SLO
from coda.serving.search_result import ServingSearchInterrupted, objective_value
from coda.serving.space import DeploymentSpec, dgx_preset
from coda.serving.trace import Trace

if TYPE_CHECKING:
    from coda.serving.search import Plan


@memoize("serving.search.tables", maxsize=32)
def layout_table(cfg: ModelConfig, gpu_name: str, tp: int, pp: int, ep: int, dtype: str, max_tokens: int,
                 max_sequences: int, max_context: int) -> CostTable:
    """The iteration-cost table of a layout (every deployment of the layout shares it; replicas and
    the scheduler do not change iteration costs, and a replica's collectives are those of the
    first tp x pp x ep devices whatever the cluster's size)."""
    g = gpu(gpu_name)
    dep = Deployment(cfg, cluster(dgx_preset(g), tp * pp * ep, device=g), tp=tp, pp=pp, ep=ep, dtype=dtype)
    return CostTable(IterationCost(dep), -(-max_tokens // ep), -(-max_sequences // ep) + 1, max_context)


def evaluate_spec(spec: DeploymentSpec, cfg: ModelConfig, template: Trace, slo: SLO, upper_qps: float,
                  rel_tol: float, table_tokens: int, table_sequences: int, table_context: int,
                  beat_qps: float = 0.0) -> dict[str, Any]:
    """The capacity row of one deployment (`capacity`'s fields; module-level, so a process pool can
    run it)."""
    t0 = time.perf_counter()
    dep = spec.deployment(cfg)
    table = layout_table(cfg, spec.gpu, spec.tp, spec.pp, spec.ep, spec.dtype, table_tokens, table_sequences,
                         table_context)
    try:
        c = capacity(dep, template, slo, upper_qps, table=table, rel_tol=rel_tol, beat_qps=beat_qps)
    except InfeasibleDesign as err:
        return {"status": "memory", "reason": str(err), "simulations": 0}
    row = asdict(c)
    row["seconds"] = time.perf_counter() - t0
    return row


@dataclass
class Candidate:
    """A deployment that fits, with its capacity bound, the bound's objective and its store key."""

    spec: DeploymentSpec
    upper_qps: float
    bound_objective: float
    key: str


class Visit:
    """Visit the candidates in bound order, at most `window` in flight, storing each finished one;
    stop at the first whose bound cannot beat the best (module docstring)."""

    def __init__(self, plan: Plan, cands: list[Candidate], order: list[int], db: Any, prune: bool, executor: str,
                 workers: int | None, progress: bool, tokens: int) -> None:
        from tqdm import tqdm

        self.plan, self.cands, self.order, self.db, self.prune = plan, cands, order, db, prune
        self.tokens = tokens
        self.window = 1 if executor == "inline" else max(1, min(workers or os.cpu_count() or 1, len(order) or 1))
        self.executor = "inline" if executor == "process" and self.window == 1 else executor
        self.best = -math.inf
        self.n_new = self.n_cached = 0
        self.bar = tqdm(total=len(order), desc="deployments", unit="deployment", disable=not progress)

    def _pool(self) -> Any:
        from coda.runs.executors import InlineExecutor, RayExecutor, pool_executor

        if self.executor == "inline":
            return InlineExecutor()
        return RayExecutor() if self.executor == "ray" else pool_executor(self.window)

    def beat_qps(self, c: Candidate) -> float:
        """The rate at which `c` would tie the best found so far (0: measure it whatever it is)."""
        if not self.prune or self.best <= 0:
            return 0.0
        return self.best / objective_value(self.plan.objective, 1.0, c.spec, self.plan.tdp[c.spec.gpu],
                                            self.plan.prices)

    def _submit(self, pool: Any, c: Candidate) -> Future[Any]:
        p = self.plan
        return pool.submit(evaluate_spec, c.spec, p.cfg, p.template_for(c.spec), p.slo, c.upper_qps, p.rel_tol,
                           self.tokens,
                           p.max_batch, p.context, self.beat_qps(c))

    def stored(self, c: Candidate) -> dict[str, Any] | None:
        """The store's row for `c` if it answers this search: a full capacity, or a cut at a rate
        at or below the one `c` must reach now (a cut at a higher rate says too little)."""
        row = self.db.get(c.key) if self.db is not None else None
        if row is not None and row["status"] == "below_best":
            beat, tol = self.beat_qps(c), self.plan.rel_tol
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
            v = objective_value(self.plan.objective, row["qps"], c.spec, self.plan.tdp[c.spec.gpu], self.plan.prices)
            self.best = max(self.best, v)
        self.bar.update(1)
        self.bar.set_postfix(best=f"{self.best:.4g}", refresh=False)

    def run(self) -> tuple[int, int, int]:
        """Visit every candidate up to the bound cut. Returns (evaluated now, read from the store, pruned
        by the bound)."""
        from coda.runs.executors import terminate_as_interrupt

        if self.db is not None and not self.db.writable:
            raise ConfigError(f"store {str(self.db.path)!r} is read-only; make it writable or pass another path")
        pool = self._pool()
        inflight: dict[Future[Any], Candidate] = {}
        try:
            with terminate_as_interrupt():
                try:
                    stopped = self._loop(pool, inflight)
                except BaseException as err:
                    self._abort(pool, inflight, err)
                    raise
                else:
                    pool.shutdown()
        finally:
            self.bar.close()
        return self.n_new, self.n_cached, len(self.order) - stopped

    def _fill(self, pool: Any, inflight: dict[Future[Any], Candidate], nxt: int) -> tuple[int, int | None]:
        """Submit (or read from the store) the candidates from position `nxt` while the window has
        room. Returns the next position and, when the bound cut ends the search here, its position."""
        while nxt < len(self.order) and len(inflight) < self.window:
            c = self.cands[self.order[nxt]]
            if self.prune and nxt > 0 and c.bound_objective <= self.best:  # it can at most tie
                return len(self.order), nxt
            row = self.stored(c)
            if row is not None:
                self._record(c, row, new=False)
            else:
                inflight[self._submit(pool, c)] = c
            nxt += 1
        return nxt, None

    def _loop(self, pool: Any, inflight: dict[Future[Any], Candidate]) -> int:
        """Keep the window full and record what finishes. Returns the position of the bound cut
        (the number of candidates when none)."""
        nxt, stopped = 0, len(self.order)
        while True:
            nxt, cut = self._fill(pool, inflight, nxt)
            if cut is not None:
                stopped = cut
            if not inflight:
                return stopped
            done, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
            for fut in done:
                self._record(inflight.pop(fut), fut.result(), new=True)

    def _abort(self, pool: Any, inflight: dict[Future[Any], Candidate], err: BaseException) -> None:
        """After `err`: record what finished, end the workers, and turn Ctrl-C or SIGTERM into
        `ServingSearchInterrupted` (the caller re-raises anything else)."""
        from coda.runs.executors import Terminated, signals_deferred, terminate_pool

        with signals_deferred():
            for fut, c in list(inflight.items()):
                if fut.done() and not fut.cancelled() and fut.exception() is None:
                    self._record(c, fut.result(), new=True)
            if isinstance(pool, ProcessPoolExecutor):
                terminate_pool(pool)
            else:
                pool.terminate()
        if isinstance(err, KeyboardInterrupt):
            name = "SIGTERM" if isinstance(err, Terminated) else "SIGINT"
            stored = self.n_new + self.n_cached if self.db is not None else 0
            raise ServingSearchInterrupted(name, None if self.db is None else self.db.path, stored,
                                           self.n_new) from err


__all__ = ["Candidate", "Visit", "evaluate_spec", "layout_table"]
