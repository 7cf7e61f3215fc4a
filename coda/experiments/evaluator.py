"""Evaluations of chosen (design, workload) pairs outside a `coda.search.search` call: the same row, the same
store and the same executors, for the experiments that need designs a single-model search did not visit
(the family winner over several models, the sensitivity re-evaluations).

A task is one accelerator, one `Workload` and one network scale (1.0: the cluster a search builds,
`coda.arch.design_space.design_cluster`). Its row is `coda.search.evaluate_design`'s (a network scale other
than 1 runs the same `optimize` call on that cluster with every level's bandwidth scaled). Rows go to the
`ResultStore` as each task finishes, under the key `coda.search.search` gives the same design and workload
(so a design a search stored is read back here and the other way round); a scaled network adds its scale to
the key.

Executors as in a search: ``inline`` (this process), ``process`` (a pool whose workers end with this
process, `coda.runs.executors.pool_executor`) or ``ray``. Ctrl-C or SIGTERM stores every finished task,
ends the workers and raises `coda.search.SearchInterrupted`, so the next run resumes.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, replace
from typing import Any

from coda.arch.accelerators import Accelerator
from coda.arch.clusters import preset_description
from coda.arch.design_space import design_cluster
from coda.errors import ConfigError
from coda.models.config import ModelConfig
from coda.runs.executors import (
    InlineExecutor,
    RayExecutor,
    pool_executor,
    signals_deferred,
    terminate_as_interrupt,
    terminate_pool,
)
from coda.runs.executors import Terminated as _Terminated
from coda.runs.store import cost_model_digest
from coda.search import CLUSTER_PRESET, ResultStore, SearchInterrupted, SearchLayerTime, evaluate_design, result_key
from coda.search.design_eval import DESIGN_FIELDS, scored_plan

log = logging.getLogger(__name__)

TIMERS = ("predictor", "ilp")
"""Layer timers an experiment can use: the predicted op latencies summed (fast, no core overlap) or the
on-chip ILP (`SearchLayerTime`, PHAZE's formulation)."""
EXECUTORS = ("process", "inline", "ray")


@dataclass(frozen=True)
class Workload:
    """One model trained on a cluster: `global_batch` sequences of `seq_len` tokens per step.

    Attributes:
        model: preset name (`coda models list`).
        global_batch: sequences per optimizer step.
        seq_len: tokens per sequence.
        source: where the setting comes from.
    """

    model: str
    global_batch: int
    seq_len: int
    source: str = ""


@functools.cache
def layer_timer(name: str) -> Any:
    """The layer timer named `name` (one per process, so an ILP timer's schedule cache is shared by the
    designs this process evaluates).

    Raises:
        ConfigError: an unknown name.
    """
    if name == "predictor":
        from coda.placement import predictor_layer_time

        return predictor_layer_time
    if name == "ilp":
        return SearchLayerTime()
    raise ConfigError(f"experiment timer {name!r} is unknown; use one of {', '.join(TIMERS)}")


def scaled_cluster(acc: Accelerator, n_devices: int, network_scale: float) -> Any:
    """The cluster a search evaluates `acc` on (`design_cluster`: the `tpuv4-pod` torus with the chip's links),
    every level's bandwidth times `network_scale`."""
    base = design_cluster(acc, n_devices, CLUSTER_PRESET)
    if network_scale == 1.0:
        return base
    levels = tuple(replace(lv, bw_each_way_bytes_per_s=lv.bw_each_way_bytes_per_s * network_scale)
                   for lv in base.levels)
    return replace(base, levels=levels)


def evaluate_task(acc: Accelerator, cfg: ModelConfig, n_devices: int, global_batch: int, seq_len: int,
                  choices: dict[str, Any], timer_name: str, network_scale: float) -> dict[str, Any]:
    """One task's row (module doc); runs in a worker process, so every argument pickles."""
    timer = layer_timer(timer_name)
    if network_scale == 1.0:
        return evaluate_design(cfg, acc, n_devices, global_batch, seq_len, choices, timer)
    from coda.placement.optimize import optimize

    row: dict[str, Any] = {"name": acc.name, **{f: getattr(acc, f) for f in DESIGN_FIELDS},
                           "area_mm2": acc.area_mm2, "tdp_w": acc.tdp_w, "peak_flops": acc.peak_flops}
    cl = scaled_cluster(acc, n_devices, network_scale)
    row.update(scored_plan(lambda: optimize(cfg, cl, global_batch, seq_len, layer_time=timer, **choices),
                           n_devices * acc.tdp_w))
    return row


@dataclass(frozen=True)
class Task:
    """One evaluation: a design, a workload, a network scale; `tag` is the caller's handle."""

    acc: Accelerator
    work: Workload
    network_scale: float = 1.0
    tag: Any = None


class Evaluator:
    """Evaluates tasks through the store and an executor (module doc).

    Args:
        store: an open `ResultStore`, or None to keep nothing.
        executor: ``process``, ``inline`` or ``ray``.
        jobs: tasks in flight (``process`` with 1 runs inline).
        timer: a name of `TIMERS`.
        n_devices: devices (chips) per design.
        choices: the merged placement choices (`coda.search.DEFAULT_CHOICES` and overrides).
        configs: model name -> `ModelConfig`.
    """

    def __init__(self, store: ResultStore | None, executor: str, jobs: int, timer: str, n_devices: int,
                 choices: dict[str, Any], configs: dict[str, ModelConfig]) -> None:
        if executor not in EXECUTORS:
            raise ConfigError(f"experiment executor {executor!r} is unknown; use one of {', '.join(EXECUTORS)}")
        self.store, self.executor, self.jobs, self.timer = store, executor, max(1, jobs), timer
        self.n_devices, self.choices, self.configs = n_devices, choices, configs
        from coda import __version__

        self._common = dict(n_devices=n_devices, choices=choices, layer_time=repr(layer_timer(timer)),
                            network=preset_description(CLUSTER_PRESET), version=__version__,
                            costs=cost_model_digest())
        self.n_evaluated = 0
        self.n_cached = 0

    def key(self, task: Task) -> str:
        """The store key: `coda.search.search`'s for the same design and workload (plus the network
        scale when it is not 1)."""
        w, acc = task.work, task.acc
        extra = {} if task.network_scale == 1.0 else {"network_scale": task.network_scale}
        return result_key(design=asdict(acc), derived=dict(area_mm2=acc.area_mm2, power_w=acc.power_breakdown()),
                          model=self.configs[w.model].to_dict(), global_batch=w.global_batch, seq_len=w.seq_len,
                          **self._common, **extra)

    def _pool(self) -> Any:
        if self.executor == "inline" or (self.executor == "process" and self.jobs == 1):
            return InlineExecutor()
        if self.executor == "ray":
            return RayExecutor()
        return pool_executor(self.jobs)

    def run(self, tasks: Iterable[Task], on_row: Callable[[Task, dict[str, Any]], None],
            keep_going: Callable[[Task], bool] = lambda t: True) -> None:
        """Evaluate `tasks` in order, at most `jobs` in flight, calling `on_row(task, row)` as each row
        arrives (a stored row at once). Just before a task is taken, `keep_going(task)` may skip it
        (False), so a caller can prune on the rows seen so far; a task's rows arrive in any order.

        Raises:
            SearchInterrupted: Ctrl-C or SIGTERM (finished rows are stored, the workers ended).
        """
        pool = self._pool()
        window = 1 if isinstance(pool, InlineExecutor) else self.jobs
        inflight: dict[Future[Any], tuple[Task, str]] = {}
        it: Iterator[Task] = iter(tasks)
        with terminate_as_interrupt():
            try:
                more = True
                while True:
                    while more and len(inflight) < window:
                        more = self._take(it, pool, inflight, on_row, keep_going)
                    if not inflight:
                        break
                    done, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
                    for fut in done:
                        task, key = inflight.pop(fut)
                        self._record(task, key, fut.result(), on_row)
            except BaseException as err:
                self._salvage(pool, inflight, on_row)
                if isinstance(err, KeyboardInterrupt):
                    name = "SIGTERM" if isinstance(err, _Terminated) else "SIGINT"
                    raise SearchInterrupted(name, None if self.store is None else self.store.path,
                                            self.n_evaluated, self.n_evaluated, 0) from err
                raise
            pool.shutdown()

    def _take(self, it: Iterator[Task], pool: Any, inflight: dict[Future[Any], tuple[Task, str]],
              on_row: Callable[[Task, dict[str, Any]], None], keep_going: Callable[[Task], bool]) -> bool:
        """The next task: skipped, read from the store, or submitted. False when `tasks` is exhausted."""
        task = next(it, None)
        if task is None:
            return False
        if keep_going(task):
            key = self.key(task)
            row = self.store.get(key) if self.store is not None else None
            if row is not None:
                self.n_cached += 1
                on_row(task, row)
            else:
                inflight[self._submit(pool, task)] = (task, key)
        return True

    def _submit(self, pool: Any, task: Task) -> Future[Any]:
        w = task.work
        return pool.submit(evaluate_task, task.acc, self.configs[w.model], self.n_devices, w.global_batch, w.seq_len,
                           self.choices, self.timer, task.network_scale)

    def _record(self, task: Task, key: str, row: dict[str, Any],
                on_row: Callable[[Task, dict[str, Any]], None]) -> None:
        if self.store is not None:
            self.store.put(key, row)
        self.n_evaluated += 1
        on_row(task, row)

    def _salvage(self, pool: Any, inflight: dict[Future[Any], tuple[Task, str]],
                 on_row: Callable[[Task, dict[str, Any]], None]) -> None:
        """Store every finished task and end the workers (signals wait meanwhile)."""
        with signals_deferred():
            for fut, (task, key) in list(inflight.items()):
                if fut.done() and not fut.cancelled() and fut.exception() is None:
                    try:
                        self._record(task, key, fut.result(), on_row)
                    except Exception as err:  # a store or callback failing meanwhile: keep the first error
                        log.error("experiment: finished task %s not recorded: %s", task.acc.name, err)
            if isinstance(pool, ProcessPoolExecutor):
                terminate_pool(pool)
            else:
                pool.terminate()


__all__ = ["EXECUTORS", "TIMERS", "Evaluator", "Task", "Workload", "evaluate_task", "layer_timer", "scaled_cluster"]
