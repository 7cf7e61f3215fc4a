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
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import pickle
import sys
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
from coda.search.store import ResultStore, result_key

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
FRAME_COLUMNS = ("name", *DESIGN_FIELDS, "area_mm2", "tdp_w", "peak_flops", "bound_tokens_per_s", "bound_objective",
                 "plan", *PLAN_FIELDS, *RESULT_FIELDS, "status", "reason", "seconds")
"""Columns of `SearchResult.frame`, in order."""


@dataclass(frozen=True)
class SearchLayerTime:
    """Accelerator layer time for searches: ILP makespan with one `ScheduleCache` shared by all designs
    evaluated in one process (worker processes each build their own, `evaluate_in_worker`).

    The cache key is (graph, core counts, per-op latencies, solver options), so designs whose op
    latencies coincide (always those differing only in HBM capacity; often those differing only
    in GLB size) reuse each other's schedules. Equal settings compare equal (the cache is not
    part of the identity), which is what the store key and the placement profile cache see.

    Attributes:
        time_limit_s: ILP wall-time budget per layer graph, heuristic included (0: heuristic only).
        gap: relative optimality gap at which the solver may stop.
        cache: the shared schedule cache.
    """

    time_limit_s: float = 1.0
    gap: float = 0.01
    cache: ScheduleCache = field(default_factory=ScheduleCache, compare=False, repr=False, hash=False)

    def __call__(self, graph: OpGraph, device: Any) -> float:
        if graph.number_of_nodes() == 0:
            return 0.0
        s = schedule(graph, device, time_limit_s=self.time_limit_s, gap=self.gap, cache=self.cache)
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

    def counts(self) -> dict[str, Any]:
        """The counters as a dict (for printing and JSON)."""
        return dict(designs=self.n_space, pruned_by_bound=self.n_pruned, evaluated=self.n_evaluated,
                    cached=self.n_cached, infeasible=self.n_infeasible, unvisited=self.n_unvisited,
                    complete=self.complete, speculative=self.n_speculative, seconds=self.seconds)

    def table(self, top: int = 10) -> pd.DataFrame:
        """The `top` feasible designs and the reference row below them (column `rank`: 1.., `ref`)."""
        ok = self.frame[self.frame["status"] == "ok"].head(top).copy()
        ok.insert(0, "rank", [str(i + 1) for i in range(len(ok))])
        ref = self.reference.to_frame().T
        ref.insert(0, "rank", ["ref"])
        return pd.concat([ok, ref], ignore_index=True)


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
    row = _design_row(acc)
    row.update(scored_plan(lambda: optimize(cfg, cluster(CLUSTER_PRESET, n_chips, device=acc), global_batch, seq_len,
                                            layer_time=layer_time, **choices), n_chips * acc.tdp_w))
    row["seconds"] = time.perf_counter() - t0
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


_WORKER_TIMERS: dict[tuple[float, float], SearchLayerTime] = {}


def _portable_timer(timer: Any) -> Any:
    """What a worker receives: a `SearchLayerTime` as its settings (the cache stays behind), else the timer."""
    if isinstance(timer, SearchLayerTime):
        return ("SearchLayerTime", timer.time_limit_s, timer.gap)
    return timer


def evaluate_in_worker(acc: Accelerator, cfg: ModelConfig, n_chips: int, global_batch: int, seq_len: int,
                       choices: dict[str, Any], timer: Any) -> dict[str, Any]:
    """`evaluate_design` for a worker process: picklable arguments in, the row out.

    `timer` is a `_portable_timer`; ILP settings map to one `SearchLayerTime` per worker process
    and settings, so its `ScheduleCache` is shared by the designs that process evaluates.
    """
    if isinstance(timer, tuple) and timer and timer[0] == "SearchLayerTime":
        settings = (float(timer[1]), float(timer[2]))
        if settings not in _WORKER_TIMERS:
            _WORKER_TIMERS[settings] = SearchLayerTime(time_limit_s=settings[0], gap=settings[1])
        timer = _WORKER_TIMERS[settings]
    return evaluate_design(cfg, acc, n_chips, global_batch, seq_len, choices, timer)


class _InlineExecutor:
    """Runs each submitted call at once, in this process (exceptions go to the future, except
    `KeyboardInterrupt` and other non-`Exception`s, which propagate)."""

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        fut: Future[Any] = Future()
        try:
            fut.set_result(fn(*args))
        except Exception as err:
            fut.set_exception(err)
        return fut

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        pass


class _RayExecutor:
    """Ray tasks seen as `concurrent.futures` futures (connects to RAY_ADDRESS, or starts Ray locally)."""

    def __init__(self) -> None:
        try:
            ray = importlib.import_module("ray")
        except ImportError:
            raise CodaError("search: executor='ray' needs Ray; install it with `pip install coda-llm[ray]` "
                            "or use executor='process'") from None
        if not ray.is_initialized():
            ray.init()
        self._remote = ray.remote(evaluate_in_worker)

    def submit(self, fn: Callable[..., Any], *args: Any) -> Future[Any]:
        return self._remote.remote(*args).future()  # fn is always evaluate_in_worker

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        pass


class _Progress:
    """tqdm if installed, else a carriage-return counter on stderr."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.enabled, self.total, self.done, self._bar = enabled, total, 0, None
        if enabled:
            try:
                from tqdm import tqdm
            except ImportError:
                self._bar = None
            else:
                self._bar = tqdm(total=total, desc="designs", unit="design", file=sys.stderr)

    def update(self, best: float) -> None:
        self.done += 1
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.update(1)
            self._bar.set_postfix(best=f"{best:.4g}")
        else:
            sys.stderr.write(f"\rsearch: {self.done}/{self.total} designs visited, best {best:.4g}")
            sys.stderr.flush()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
        elif self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()


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
        store: SQLite file for finished designs (created if missing); None keeps nothing.
        max_designs: evaluate at most this many designs in this call (store hits are free);
            the result then says `complete=False` unless the bound finished first.
        choices: placement restrictions merged over `DEFAULT_CHOICES` (`optimize` keywords;
            a value None lifts a default restriction).
        progress: show a progress bar (tqdm if installed) on stderr.
        prune: skip designs whose bound cannot beat the incumbent (False: evaluate all).
        layer_time: layer timer for `optimize`; default `SearchLayerTime()` (ILP, 1 s per
            layer graph, schedules shared across the designs of one process). Must pickle
            for the ``process`` and ``ray`` executors.
        executor: ``process`` (default: a local process pool), ``inline`` (one design at a
            time in this process) or ``ray`` (Ray tasks; needs ``pip install coda-llm[ray]``).
            All return the same frame and best.
        workers: designs in flight for ``process`` / ``ray``; default `os.cpu_count()`. It is
            capped by the designs to evaluate, and ``process`` with one worker runs inline.

    Returns:
        A `SearchResult`.

    Raises:
        ConfigError: bad arguments (n_chips < 1, an unknown objective, choice or executor, ...).
        CodaError: executor ``ray`` without Ray installed.
        InfeasibleDesign: the space admits no design (from `DesignSpace`).
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
    timer = SearchLayerTime() if layer_time is None else layer_time
    cluster(CLUSTER_PRESET, n_chips, device=tpuv4_like())  # validates n_chips against the torus
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
                  version=_version())
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

    def with_bounds(row: dict[str, Any], peak: float, vector: float, tdp: float) -> dict[str, Any]:
        return dict(row, bound_tokens_per_s=tokens_per_s_bound(peak, vector, n_chips, flops_lb),
                    bound_objective=objective_bound(objective, peak, vector, tdp, n_chips, flops_lb))

    db = ResultStore(store) if store is not None else None
    bar = _Progress(len(designs), progress)
    pool: Any
    if executor == "inline":
        pool = _InlineExecutor()
    elif executor == "ray":
        pool = _RayExecutor()
    else:
        pool = ProcessPoolExecutor(max_workers=window)
    portable = _portable_timer(timer)

    def submit(acc: Accelerator) -> Future[Any]:
        if executor == "inline":
            return pool.submit(evaluate_design, cfg, acc, n_chips, global_batch, seq_len, merged, timer)
        return pool.submit(evaluate_in_worker, acc, cfg, n_chips, global_batch, seq_len, merged, portable)

    # Visit designs in bound order with at most `window` evaluations in flight; `found[pos]` is
    # (row, evaluated in this call). The parent alone touches the store, as each future completes.
    found: dict[int, tuple[dict[str, Any], bool]] = {}
    inflight: dict[Future[Any], tuple[int, Accelerator, str]] = {}
    best, submitted, nxt, stop = -math.inf, 0, 0, False

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

    try:
        try:
            ref_acc = tpuv4_like()
            ref_key = result_key(design=asdict(ref_acc), **common)
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
                    key = result_key(design=asdict(acc), **common)
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
        except BaseException:
            # Keep every finished design (interrupts included), drop the rest, then re-raise.
            for fut, (pos, acc, key) in list(inflight.items()):
                if fut.done() and not fut.cancelled() and fut.exception() is None:
                    record(pos, acc, key, fut.result())
                else:
                    fut.cancel()
            pool.shutdown(wait=False, cancel_futures=True)
            raise
        pool.shutdown()
    finally:
        bar.close()
        if db is not None:
            db.close()

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
        complete=unvisited == 0, seconds=time.perf_counter() - t0,
        n_speculative=sum(new for pos, (_, new) in found.items() if pos >= 0) - n_new)


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

