"""Which chip serves a workload best: the serving search over a `DesignSpace` of accelerators.

    res = coda.serving.design_search.design_search("llama3-8b", DesignSpace(...), Workload(Lengths("fixed", 200),
                                                   Lengths("fixed", 2000)), slo={"ttft_p99_s": 2, "tbt_p99_s": 0.1})
    res.best, res.chips, res.deployments, res.references, res.summary()

For every chip (each design of the space, PHAZE's TPUv4-like chip, the faithful TPU v4, and A100 / H100 on
their DGX nodes for comparison) and every deployment of a `ServingSpace` on at most `max_devices` of it (tp,
pp, replicas, scheduler and budgets: `coda.serving.space.enumerate_specs`), the capacity under the P99 SLO
(`coda.serving.capacity.capacity`: the highest rate of a 5% grid at which P99 TTFT and TBT meet it). A
design runs on `coda.arch.design_space.design_cluster` (the TPU v4 torus, its links' bandwidth), its ops
timed by the accelerator tile model (`coda.predictor.AcceleratorTileModel`); a GPU on its DGX preset with the
calibrated GPU model. The objective is output tokens/s per watt of TDP at that capacity
(``tokens_per_s_per_watt``; or per device), and a chip's value is its best deployment's.

Pruning, exact (docs/serving.md, "Which chip serves a workload best"):

1. memory: a deployment whose weights and workspace leave too few KV blocks for the longest request;
2. rough bound: `capacity_bound` (the throughput of saturated iterations) evaluated on a lower bound of
   each token-level time, max((F_tensor / P_tensor + F_vector / P_vector), bytes / HBM bandwidth) per stage
   without its collectives: it needs the FLOPs and bytes of each layout once (`layout_counts`, the same ops
   and knots as `coda.serving.costs.linear_table`) and three numbers per chip. Every predictor is at least
   the roofline of each op (`coda.predictor.roofline`), and a sum of maxima is at least the maximum of the
   sums, so this time is below the tile model's and its capacity bound above the exact one;
3. bound: `capacity_bound` on the chip's own `linear_table` (the simulator's costs), computed only for a
   deployment whose rough bound can still beat the best found.

The candidates are visited best bound first (a rough bound is refined when it reaches the top), and the
search stops when the top bound cannot exceed the best objective found: nothing after it can win. The best
design is exact; a chip's reported best deployment is exact when `exact` is True (every one of its
deployments was measured or bounded below it). As in `coda.serving.search`, a deployment measured while an
incumbent exists is first simulated at the rate that would beat it (`below_best` on a miss), which is exact
under the capacity assumption (the SLO met at every rate below one where it is met); `prune=False`
measures every deployment. References are searched each on its own, so their rows are their exact best.

Results go to the same resumable SQLite store (`coda.runs.store`) and run on the same executors
(`coda.runs.executors`: a process pool, inline, or Ray).
"""

from __future__ import annotations

import heapq
import logging
import math
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, wait
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

from coda.arch.accelerators import Accelerator
from coda.arch.design_space import DesignSpace
from coda.errors import ConfigError, InfeasibleDesign
from coda.models.config import ModelConfig
from coda.serving.capacity import DEFAULT_REL_TOL, Workload, capacity_bound, grid_index
from coda.serving.costs import IterationCost, linear_table
from coda.serving.deployment import Deployment
from coda.serving.design_chips import (
    DEFAULT_GPUS,
    Chip,
    evaluate_candidate,
    layout_counts,
    reference_chips,
    rough_linear_table,
)
from coda.serving.design_result import OBJECTIVES, STATUS_RANK, DesignSearchResult
from coda.serving.metrics import SLO
from coda.serving.search_inputs import checked_inputs, trace_digest
from coda.serving.space import DeploymentSpec, ServingSpace, enumerate_specs
from coda.serving.trace import Trace

log = logging.getLogger(__name__)

DEFAULT_SPACE = ServingSpace(tp=(1, 2, 4, 8), pp=(1,), replicas=(1,), schedulers=("sarathi",), max_batch=(256,),
                             chunk=(512,))
"""The deployments tried on each chip unless told otherwise: one replica of tp 1-8, Sarathi with 512-token chunks
(per watt, more replicas of the same layout serve about proportionally more)."""


# --- the search ----------------------------------------------------------------------------------
@dataclass
class Candidate:
    """A deployment on a chip that fits: its bounds (rough, then exact once refined) and its row."""

    chip: Chip
    spec: DeploymentSpec
    rough_qps: float
    per_qps: float  # the objective of one request/s
    bound_qps: float = math.nan
    row: dict[str, Any] | None = None

    @property
    def refined(self) -> bool:
        return not math.isnan(self.bound_qps)

    @property
    def key_objective(self) -> float:
        return (self.bound_qps if self.refined else self.rough_qps) * self.per_qps


def design_search(model: ModelConfig | str, space: DesignSpace | Iterable[Accelerator], workload: Workload | Trace,
                  slo: Mapping[str, float] | SLO, max_devices: int = 8, serving_space: ServingSpace | None = None,
                  objective: str = "tokens_per_s_per_watt", references: bool = True,
                  gpus: Sequence[str] = DEFAULT_GPUS, rel_tol: float = DEFAULT_REL_TOL, prune: bool = True,
                  store: Any = None, executor: str = "process", workers: int | None = None,
                  progress: bool = False) -> DesignSearchResult:
    """The accelerator design that serves `workload` within `slo` with the most output tokens/s per watt
    (module docstring), beside the TPU v4 references and GPU rows.

    Args:
        model: a `ModelConfig` or a preset name.
        space: a `DesignSpace` (or any accelerators) to search.
        workload: generated requests (`Workload`, `requests` per replica) or a `Trace` (rescaled to each rate).
        slo: ``{"ttft_p99_s": ..., "tbt_p99_s": ...}`` seconds (one at least).
        max_devices: most chips of one deployment (a design's torus holds at most 16, or multiples of 16).
        serving_space: the deployments tried on each chip (default `DEFAULT_SPACE`).
        objective: ``tokens_per_s_per_watt`` (TDP) or ``tokens_per_s_per_device``.
        references: add PHAZE's TPUv4-like chip and the faithful TPU v4.
        gpus: GPU rows for comparison (Ampere or Hopper names; () for none).
        rel_tol: the capacity grid's step, in (0, 1].
        prune: skip what cannot win (False measures every deployment that fits).
        store: SQLite file of finished deployments (`coda.runs.store.ResultStore`): resume, repeat for free.
        executor: ``process`` (default), ``inline`` or ``ray``.
        workers: processes (default: the CPUs).
        progress: a tqdm bar on stderr.

    Raises:
        ConfigError, UnknownNameError: bad arguments (an empty space among them), before any simulation.
        InfeasibleDesign: a `DesignSpace` whose constraints admit no design.
        coda.serving.search_result.ServingSearchInterrupted: Ctrl-C or SIGTERM (finished rows stored).
    """
    from coda.runs.store import ResultStore, cost_model_digest, result_key

    t0 = time.perf_counter()
    if objective not in OBJECTIVES:
        raise ConfigError(f"design search: objective={objective!r} must be one of {', '.join(OBJECTIVES)}")
    if isinstance(space, DesignSpace):
        designs = [Chip(a.name, "design", a) for a in space]
    elif isinstance(space, Iterable) and not isinstance(space, (str, bytes)):
        designs = []
        for a in space:
            if not isinstance(a, Accelerator):
                raise ConfigError(f"design search: space holds {a!r}; give a DesignSpace or Accelerators")
            designs.append(Chip(a.name, "design", a))
    else:
        raise ConfigError(f"design search: space={space!r} must be a DesignSpace or a list of Accelerators")
    if not designs:
        raise ConfigError("design search: the space holds no design; give a DesignSpace that admits at least one "
                          "(len(space) > 0) or a non-empty list of Accelerators")
    designs = _distinct_names(designs)
    refs = reference_chips(references, gpus)
    sspace = serving_space if serving_space is not None else DEFAULT_SPACE
    # the serving search's checks of the workload, SLO, run options and device count (on its first GPU)
    inp = checked_inputs(model, list(gpus) or ["h100-sxm"], workload, slo, "qps_per_device", None, max_devices,
                         sspace, rel_tol, executor, workers)
    if max_devices > 16 and max_devices % 16:
        raise ConfigError(f"design search: max_devices={max_devices}: a design's torus (tpuv4-pod) holds at most 16 "
                          "chips or a multiple of 16; use 8, 16 or 32")
    run = _Run(inp.cfg, inp.template, inp.per_replica, inp.slo, sspace, max_devices, objective, float(rel_tol),
               prune, executor, workers, progress)
    db = ResultStore(store) if store is not None else None
    try:
        common = dict(kind="serving.design_capacity", model=asdict(inp.cfg), workload=trace_digest(inp.template),
                      slo=asdict(inp.slo), rel_tol=float(rel_tol), version=_version(), costs=cost_model_digest())
        run.db, run.key = db, (lambda chip, spec, ub: result_key(**common, chip=chip.key(), spec=spec.to_dict(),
                                                                   upper_qps=float(ub)))
        for chip in refs:
            run.search_group([chip], f"reference {chip.name}")
        run.search_group(designs, "designs")
    finally:
        if db is not None:
            db.close()
    return run.result(designs, refs, inp.desc, time.perf_counter() - t0)


def _distinct_names(designs: list[Chip]) -> list[Chip]:
    """Designs whose names (the on-chip configuration, and the links when they vary) coincide get their HBM
    capacity and bandwidth in the name."""
    names = [d.name for d in designs]
    if len(set(names)) == len(names):
        return designs
    out = []
    for d in designs:
        a = d.device
        assert isinstance(a, Accelerator)
        out.append(Chip(f"{d.name}-{a.hbm_bytes / 2**30:g}GiB-{a.hbm_bw_bytes_per_s / 1e9:g}GBps", d.kind, a))
    if len({d.name for d in out}) != len(out):
        raise ConfigError("design search: two designs share every field that names them; give each Accelerator a "
                          "distinct name (or remove the duplicates)")
    return out


def _version() -> str:
    from coda import __version__

    return __version__


class _Run:
    """The search after its arguments were checked: candidates, bounds, the visit, the frames."""

    def __init__(self, cfg: ModelConfig, template: Trace, per_replica: int, slo: SLO, sspace: ServingSpace,
                 max_devices: int, objective: str, rel_tol: float, prune: bool, executor: str, workers: int | None,
                 progress: bool) -> None:
        self.cfg, self.template, self.per_replica, self.slo = cfg, template, per_replica, slo
        self.objective, self.rel_tol, self.prune, self.executor, self.progress = objective, rel_tol, prune, executor, \
            progress
        self.workers = workers
        self.specs = list(enumerate_specs(cfg, ["chip"], max_devices, sspace))
        self.context = int((template.prompt_tokens + template.output_tokens).max())
        self.tokens = max(max(sc.max_tokens, sc.chunk, self.context) + sc.max_batch
                          for sc in {s.scheduler_config() for s in self.specs})
        self.table_dims = (self.tokens, max(s.max_batch for s in self.specs), self.context)
        self.out_tokens = float(np.mean(template.output_tokens))
        self.rows: list[dict[str, Any]] = []
        self.counts_cache: dict[tuple[Any, ...], dict[str, np.ndarray] | str] = {}
        self.lin_cache: dict[tuple[Any, ...], np.ndarray] = {}
        self.db: Any = None
        self.key: Any = None
        self.n = dict(evaluated=0, cached=0, design_evaluated=0, design_cached=0)

    def template_for(self, spec: DeploymentSpec) -> Trace:
        if not self.per_replica:
            return self.template
        n = min(self.per_replica * spec.replicas, len(self.template))
        t = self.template
        return Trace(t.arrival_s[:n], t.prompt_tokens[:n], t.output_tokens[:n], source=t.source)

    def per_qps(self, chip: Chip, spec: DeploymentSpec) -> float:
        """The objective of one request/s of `spec` on `chip`."""
        per_device = self.out_tokens / spec.n_devices
        return per_device / chip.tdp_w if self.objective == "tokens_per_s_per_watt" else per_device

    # -- candidates and bounds --------------------------------------------------------------------
    def _counts(self, dep: Deployment, spec: DeploymentSpec) -> dict[str, np.ndarray]:
        key = (spec.tp, spec.pp, spec.ep, spec.dtype)
        if key not in self.counts_cache:
            self.counts_cache[key] = layout_counts(dep, -(-self.tokens // spec.ep))
        out = self.counts_cache[key]
        assert not isinstance(out, str)
        return out

    def candidates(self, chips: Sequence[Chip]) -> list[Candidate]:
        """The deployments of each chip that fit, with their rough bounds; the others get their rows here."""
        out = []
        for chip in chips:
            for spec in self.specs:
                base = {"chip": chip, "spec": spec}
                try:
                    dep = chip.deployment(self.cfg, spec)
                    budget = dep.kv_budget_for(self.context)
                    counts = self._counts(dep, spec)
                except InfeasibleDesign as err:
                    self.rows.append({**base, "status": "memory", "reason": str(err)})
                    continue
                except ConfigError as err:
                    self.rows.append({**base, "status": "invalid", "reason": str(err)})
                    continue
                rough = capacity_bound(dep, rough_linear_table(counts, chip.device), budget, self.template_for(spec))
                out.append(Candidate(chip, spec, rough, self.per_qps(chip, spec)))
        return out

    def refine(self, c: Candidate) -> None:
        """The exact bound: `capacity_bound` on the chip's own token-level times."""
        dep = c.chip.deployment(self.cfg, c.spec)
        key = (c.chip, c.spec.layout[1:])
        if key not in self.lin_cache:
            self.lin_cache[key] = linear_table(IterationCost(dep), -(-self.tokens // c.spec.ep))
        c.bound_qps = capacity_bound(dep, self.lin_cache[key], dep.kv_budget(), self.template_for(c.spec))

    # -- the visit --------------------------------------------------------------------------------
    def _pool(self, window: int) -> Any:
        from coda.runs.executors import InlineExecutor, RayExecutor, pool_executor

        if self.executor == "inline" or window == 1 and self.executor == "process":
            return InlineExecutor()
        return RayExecutor() if self.executor == "ray" else pool_executor(window)

    def _beat(self, c: Candidate, best: float) -> float:
        return best / c.per_qps if self.prune and best > 0 else 0.0

    def _stored(self, c: Candidate, best: float) -> dict[str, Any] | None:
        row = self.db.get(self.key(c.chip, c.spec, c.bound_qps)) if self.db is not None else None
        if row is not None and row["status"] == "below_best":
            beat = self._beat(c, best)
            if beat <= 0 or grid_index(row["missed_qps"], self.rel_tol, up=False) > \
                    grid_index(beat, self.rel_tol, up=False) + 1:
                return None
        return row

    def search_group(self, chips: Sequence[Chip], what: str) -> None:
        """Visit the candidates of `chips` best bound first, sharing one incumbent (module docstring)."""
        from tqdm import tqdm

        from coda.runs.executors import terminate_as_interrupt

        if self.db is not None and not self.db.writable:
            raise ConfigError(f"store {str(self.db.path)!r} is read-only; make it writable or pass another path")
        cands = self.candidates(chips)
        heap = [(-c.key_objective, i, c) for i, c in enumerate(cands)]
        heapq.heapify(heap)
        window = 1 if self.executor == "inline" else max(1, min(self.workers or os.cpu_count() or 1, len(cands) or 1))
        pool = self._pool(window)
        inflight: dict[Future[Any], Candidate] = {}
        best = -math.inf
        bar = tqdm(total=len(cands), desc=what, unit="deployment", disable=not self.progress)

        def record(c: Candidate, row: dict[str, Any], new: bool) -> float:
            if new and self.db is not None:
                self.db.put(self.key(c.chip, c.spec, c.bound_qps), row)
            c.row = row
            self.n["evaluated" if new else "cached"] += 1
            if c.chip.kind == "design":
                self.n["design_evaluated" if new else "design_cached"] += 1
            bar.update(1)
            return row["qps"] * c.per_qps if row["status"] == "ok" else -math.inf

        try:
            with terminate_as_interrupt():
                try:
                    while True:
                        while heap and len(inflight) < window:
                            negk, i, c = heap[0]
                            if self.prune and -negk <= best:
                                break  # nothing left can beat the best (a tie goes to the one found first)
                            heapq.heappop(heap)
                            if not c.refined:
                                self.refine(c)
                                heapq.heappush(heap, (-c.key_objective, i, c))
                                continue
                            row = self._stored(c, best)
                            if row is not None:
                                best = max(best, record(c, row, new=False))
                            else:
                                inflight[pool.submit(evaluate_candidate, c.chip, c.spec, self.cfg,
                                                     self.template_for(c.spec), self.slo, c.bound_qps, self.rel_tol,
                                                     self.table_dims, self._beat(c, best))] = c
                        if not inflight:
                            break
                        done, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
                        for fut in done:
                            best = max(best, record(inflight.pop(fut), fut.result(), new=True))
                except BaseException as err:
                    self._abort(pool, inflight, err, record)
                    raise
                else:
                    pool.shutdown()
        finally:
            bar.close()
        for c in cands:
            self.rows.append(self._row(c))

    def _abort(self, pool: Any, inflight: dict[Future[Any], Candidate], err: BaseException, record: Any) -> None:
        from coda.runs.executors import signals_deferred
        from coda.serving.search_result import ServingSearchInterrupted
        from coda.serving.search_visit import end_pool

        with signals_deferred():
            for fut, c in list(inflight.items()):
                if fut.done() and not fut.cancelled() and fut.exception() is None:
                    record(c, fut.result(), True)
            end_pool(pool)
        ServingSearchInterrupted.raise_for(err, None if self.db is None else self.db.path,
                                           self.n["evaluated"] + self.n["cached"], self.n["evaluated"])

    def _row(self, c: Candidate) -> dict[str, Any]:
        row = c.row or ({"status": "pruned_bound", "reason": "its capacity bound cannot beat the best"} if c.refined
                        else {"status": "pruned_rough", "reason": "its roofline capacity bound cannot beat the best"})
        return {"chip": c.chip, "spec": c.spec, "status": row["status"], "reason": row.get("reason", ""),
                "rough_bound_qps": c.rough_qps, "bound_qps": c.bound_qps, "per_qps": c.per_qps,
                **{k: row.get(k, math.nan) for k in ("qps", "missed_qps", "ttft_p99_s", "tbt_p99_s", "tokens_per_s",
                                                     "alone_ttft_s", "alone_tbt_p99_s", "simulations")}}

    # -- the frames -------------------------------------------------------------------------------
    def deployments_frame(self) -> pd.DataFrame:
        recs = []
        for r in self.rows:
            chip, spec = r["chip"], r["spec"]
            per_dev = self.out_tokens / spec.n_devices
            rec = {"chip": chip.name, "kind": chip.kind, **chip.describe(), "n_devices": spec.n_devices,
                   "replicas": spec.replicas, "tp": spec.tp, "pp": spec.pp, "ep": spec.ep, "scheduler": spec.scheduler,
                   "max_batch": spec.max_batch, "max_tokens": spec.max_tokens, "chunk": spec.chunk,
                   "status": r["status"], "capacity_qps": r.get("qps", math.nan),
                   "capacity_below_qps": r.get("missed_qps", math.nan),
                   "bound_qps": r.get("bound_qps", math.nan), "rough_bound_qps": r.get("rough_bound_qps", math.nan)}
            q = rec["capacity_qps"] if r["status"] == "ok" else math.nan
            rec["tokens_per_s"] = q * self.out_tokens
            rec["tokens_per_s_per_device"] = q * per_dev
            rec["tokens_per_s_per_watt"] = q * per_dev / chip.tdp_w
            b = rec["bound_qps"] if not math.isnan(rec["bound_qps"]) else rec["rough_bound_qps"]
            rec["bound_objective"] = b * self.per_qps(chip, spec)
            for k in ("ttft_p99_s", "tbt_p99_s", "alone_ttft_s", "alone_tbt_p99_s", "simulations"):
                rec[k] = r.get(k, math.nan)
            rec["reason"] = r.get("reason", "")
            recs.append(rec)
        df = pd.DataFrame(recs)
        df["_r"] = df["status"].map(STATUS_RANK)
        df = df.sort_values(["_r", self.objective, "bound_objective"], ascending=[True, False, False], kind="stable")
        return df.drop(columns="_r").reset_index(drop=True)

    def chips_frame(self, deps: pd.DataFrame, chips: Sequence[Chip]) -> pd.DataFrame:
        """Each chip's best deployment (deps is ranked, so its first row), and whether that is exact."""
        recs = []
        for chip in chips:
            mine = deps[deps["chip"] == chip.name]
            top = mine.iloc[0].to_dict()
            best = top[self.objective] if top["status"] == "ok" else -math.inf
            unmeasured = mine[~mine["status"].isin(("ok", "below_best", "slo_unmet", "slo_unmet_under_load",
                                                    "memory", "invalid"))]
            top["exact"] = bool((unmeasured["bound_objective"] <= best).all()) and top["status"] != "below_best"
            bounds = mine["bound_objective"].dropna()
            top["best_bound_objective"] = float(bounds.max()) if len(bounds) else math.nan
            recs.append(top)
        out = pd.DataFrame(recs)
        out["_r"] = out["status"].map(STATUS_RANK)
        out = out.sort_values(["_r", self.objective, "best_bound_objective"], ascending=[True, False, False],
                              kind="stable")
        return out.drop(columns="_r").reset_index(drop=True)

    def result(self, designs: Sequence[Chip], refs: Sequence[Chip], desc: str, seconds: float) -> DesignSearchResult:
        deps = self.deployments_frame()
        chips = self.chips_frame(deps, [*designs, *refs])
        design_rows = chips[chips["kind"] == "design"]
        ok = design_rows[design_rows["status"] == "ok"]
        best = ok.iloc[0] if len(ok) else None
        closest = None
        if best is None:
            tried = deps[(deps["kind"] == "design") & deps["alone_ttft_s"].notna()]
            if len(tried):
                excess = np.maximum(tried["alone_ttft_s"] / (self.slo.ttft_p99_s or math.inf),
                                    tried["alone_tbt_p99_s"].fillna(0) / (self.slo.tbt_p99_s or math.inf))
                closest = tried.loc[excess.idxmin()]
        d = deps[deps["kind"] == "design"]
        measured = set(d.loc[~d["status"].isin(("pruned_rough", "pruned_bound", "memory", "invalid")), "chip"])
        counts = {"designs": len(designs), "specs": len(self.specs),
                  "candidates": int((~d["status"].isin(("memory", "invalid"))).sum()),
                  "pruned_memory": int((d["status"] == "memory").sum()),
                  "invalid": int((d["status"] == "invalid").sum()),
                  "pruned_rough": int((d["status"] == "pruned_rough").sum()),
                  "pruned_bound": int((d["status"] == "pruned_bound").sum()),
                  "evaluated": self.n["design_evaluated"], "cached": self.n["design_cached"],
                  "designs_pruned": len(designs) - len(measured),
                  "simulations": int(deps["simulations"].fillna(0).sum())}
        log.info("design search: %s", counts)
        return DesignSearchResult(deps, chips, best, chips[chips["kind"] != "design"].reset_index(drop=True), closest,
                                  self.objective, self.slo, desc, self.cfg.name, counts, seconds, self.rel_tol)


__all__ = ["DEFAULT_GPUS", "DEFAULT_SPACE", "OBJECTIVES", "Candidate", "Chip", "DesignSearchResult", "design_search",
           "evaluate_candidate", "layout_counts", "reference_chips", "rough_linear_table"]
