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
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from coda.arch.accelerators import Accelerator, tpuv4_like
from coda.arch.clusters import cluster, preset_description
from coda.arch.design_space import DesignSpace
from coda.errors import ConfigError, InfeasibleDesign
from coda.ilp import ScheduleCache, schedule
from coda.models.config import ModelConfig
from coda.models.graph import OpGraph
from coda.placement.optimize import CHOICES, optimize
from coda.search.bounds import objective_bound, tokens_per_s_bound, training_flops_per_token_lb
from coda.search.store import ResultStore, result_key

log = logging.getLogger(__name__)

OBJECTIVES = ("tokens_per_s_per_w", "tokens_per_s")
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
    """Accelerator layer time for searches: ILP makespan with one `ScheduleCache` shared by all designs.

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

    def counts(self) -> dict[str, Any]:
        """The counters as a dict (for printing and JSON)."""
        return dict(designs=self.n_space, pruned_by_bound=self.n_pruned, evaluated=self.n_evaluated,
                    cached=self.n_cached, infeasible=self.n_infeasible, unvisited=self.n_unvisited,
                    complete=self.complete, seconds=self.seconds)

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
    try:
        cl = cluster(CLUSTER_PRESET, n_chips, device=acc)
        plan, res, _ = optimize(cfg, cl, global_batch, seq_len, layer_time=layer_time, **choices)
    except InfeasibleDesign as err:
        row.update(plan=None, **{f: None for f in PLAN_FIELDS}, **{f: math.nan for f in RESULT_FIELDS},
                   status="infeasible", reason=str(err))
    else:
        row.update(plan=plan.describe(), **{f: getattr(plan, f) for f in PLAN_FIELDS})
        row["stage_layers"] = str(list(plan.stage_layers or ()))
        row.update(step_s=res.step_time_s, tokens_per_s=res.tokens_per_s,
                   tokens_per_s_per_w=res.tokens_per_s / (n_chips * acc.tdp_w), mfu=res.mfu,
                   peak_memory_bytes=float(res.peak_memory_bytes), status="ok", reason="")
    row["seconds"] = time.perf_counter() - t0
    return row


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
           layer_time: Any = None) -> SearchResult:
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
            layer graph, schedules shared across designs).

    Returns:
        A `SearchResult`.

    Raises:
        ConfigError: bad arguments (n_chips < 1, an unknown objective or choice, ...).
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
    order = np.lexsort((np.arange(len(designs)), -bound_obj))  # descending bound, then space order
    accelerators = list(space)
    common = dict(model=cfg.to_dict(), n_chips=n_chips, global_batch=global_batch, seq_len=seq_len,
                  choices=merged, layer_time=repr(timer), network=preset_description(CLUSTER_PRESET),
                  version=_version())

    db = ResultStore(store) if store is not None else None
    counts = dict(evaluated=0, cached=0)

    def visit(acc: Accelerator) -> dict[str, Any]:
        key = result_key(design=asdict(acc), **common)
        row = db.get(key) if db is not None else None
        if row is not None:
            counts["cached"] += 1
            return row
        row = evaluate_design(cfg, acc, n_chips, global_batch, seq_len, merged, timer)
        counts["evaluated"] += 1
        if row["status"] != "ok":
            log.info("design %s infeasible: %s", acc.name, row["reason"])
        if db is not None:
            db.put(key, row)
        return row

    def with_bounds(row: dict[str, Any], peak: float, vector: float, tdp: float) -> dict[str, Any]:
        return dict(row, bound_tokens_per_s=tokens_per_s_bound(peak, vector, n_chips, flops_lb),
                    bound_objective=objective_bound(objective, peak, vector, tdp, n_chips, flops_lb))

    bar = _Progress(len(designs), progress)
    try:
        ref_acc = tpuv4_like()
        reference = with_bounds(visit(ref_acc), ref_acc.peak_flops, ref_acc.vector_flops, ref_acc.tdp_w)
        ref_counts = dict(counts)
        rows, visit_pos = [], []
        best, stopped_at, unvisited = -math.inf, len(order), 0
        for pos, i in enumerate(_indices(order)):
            if prune and bound_obj[i] < best:
                stopped_at = pos
                break
            if max_designs is not None and counts["evaluated"] - ref_counts["evaluated"] >= max_designs:
                stopped_at, unvisited = pos, len(order) - pos
                break
            acc = accelerators[i]
            row = with_bounds(visit(acc), *peaks[i])
            rows.append(row)
            visit_pos.append(pos)
            if row["status"] == "ok" and row[objective] > best:
                best = float(row[objective])
            bar.update(best)
    finally:
        bar.close()
        if db is not None:
            db.close()

    frame = _ranked(rows, visit_pos, objective)
    n_ok = int((frame["status"] == "ok").sum()) if len(frame) else 0
    ref_row = pd.Series({c: reference[c] for c in FRAME_COLUMNS}, name="reference")
    return SearchResult(
        frame=frame, best=frame.iloc[0] if n_ok else None, reference=ref_row,
        objective=objective, n_space=len(designs), n_pruned=len(order) - stopped_at - unvisited,
        n_evaluated=counts["evaluated"] - ref_counts["evaluated"], n_cached=counts["cached"] - ref_counts["cached"],
        n_infeasible=len(frame) - n_ok, n_unvisited=unvisited, complete=unvisited == 0,
        seconds=time.perf_counter() - t0)


def _indices(order: np.ndarray) -> Iterator[int]:
    return (int(i) for i in order)


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

