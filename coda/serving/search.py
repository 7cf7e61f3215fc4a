"""The serving-plan search: the deployment that serves a workload within an SLO most cheaply.

    res = coda.serving.search.search("llama2-70b", ["h100-sxm"], Workload(Lengths("fixed", 3996),
                                     Lengths("fixed", 100)), slo={"ttft_p99_s": 2, "tbt_p99_s": 0.1},
                                     max_devices=16)
    res.best, res.frame, res.baseline, res.ratio, res.summary()

Over GPU type and count, tp, pp, ep (MoE), replicas, scheduler and its budgets
(`coda.serving.space`), the capacity of each deployment (the highest arrival rate at which the
P99 TTFT and TBT meet the SLO, by bisection on a seeded workload: `coda.serving.capacity`) is
divided by its devices, its TDP or its price (`OBJECTIVES`), and the deployments are ranked.

Pruning, exact: a deployment whose weights and workspace leave no KV block, or too few for its
longest request, is `memory`; every other one gets an upper bound on its capacity
(`capacity_bound`: the throughput of saturated iterations), and the deployments are visited in
decreasing order of the bound's objective, so the first whose bound is below the best capacity
found ends the search (`pruned_bound`): none after it can win, and bisection never reports a
capacity above the bound. The heuristic baseline (`coda.serving.space.baseline_spec`) is
evaluated first, so it is in every answer with the ratio of the best to it.

Execution is the accelerator search's (`coda.runs.executors`, `coda.runs.store`): a local
process pool (default), inline, or Ray; every finished deployment is written at once to the
SQLite `ResultStore` keyed by everything its capacity depends on (the model, the deployment, the
workload's requests, the SLO, the tolerance, the bound, the coda version and the cost-model
digest), so an interrupted search resumes and a repeated one is free. Ctrl-C or SIGTERM stores
what finished, ends the workers and raises `ServingSearchInterrupted`. The iteration-cost
tables are built once per layout (gpu, tp, pp, ep, dtype) in each process (the cache
`serving.search.tables` in `coda.caches`).

Modules: the argument checks in `coda.serving.search_inputs`; the worker's evaluation and the
visit in bound order in `coda.serving.search_visit`; the result type, its frame's columns and its
sentence in `coda.serving.search_result`; here the entry point and `Plan` (bounds, order, frame).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from coda.arch.gpus import gpu
from coda.errors import CodaError, ConfigError, InfeasibleDesign
from coda.models.config import ModelConfig
from coda.serving.capacity import DEFAULT_REL_TOL, Workload, capacity_bound
from coda.serving.costs import IterationCost, linear_table
from coda.serving.metrics import SLO
from coda.serving.search_inputs import checked_inputs, trace_digest
from coda.serving.search_result import (
    EXECUTORS,
    FRAME_COLUMNS,
    OBJECTIVES,
    SPEC_COLUMNS,
    ServingSearchInterrupted,
    ServingSearchResult,
    objective_value,
)
from coda.serving.search_visit import Candidate, Visit, evaluate_spec, layout_table
from coda.serving.space import DeploymentSpec, ServingSpace, baseline_spec, enumerate_specs
from coda.serving.trace import Trace

log = logging.getLogger(__name__)


def search(model: ModelConfig | str, gpus: Sequence[str], workload: Workload | Trace, slo: Mapping[str, float] | SLO,
           objective: str = "qps_per_device", prices_usd_per_h: Mapping[str, float] | None = None,
           max_devices: int = 8, space: ServingSpace | None = None, rel_tol: float = DEFAULT_REL_TOL,
           prune: bool = True, store: str | Path | None = None, executor: str = "process",
           workers: int | None = None, progress: bool = False) -> ServingSearchResult:
    """Rank the deployments of `space` on at most `max_devices` of each GPU by their capacity under
    `slo` (module docstring).

    Args:
        model: a `ModelConfig` or a preset name.
        gpus: GPU names (Ampere or Hopper: each runs on its DGX preset).
        workload: generated requests (`Workload`) or a `Trace` (rescaled to each rate tried).
        slo: ``{"ttft_p99_s": ..., "tbt_p99_s": ...}`` seconds (one of them at least).
        objective: ``qps_per_device``, ``qps_per_watt`` (TDP) or ``qps_per_dollar``.
        prices_usd_per_h: USD per device-hour of each GPU (required for ``qps_per_dollar``).
        max_devices: most devices of one deployment.
        space: the choices (default `ServingSpace()`).
        rel_tol: bisection's relative tolerance on each capacity, in (0, 1].
        prune: skip what cannot win (False evaluates every deployment that fits).
        store: SQLite file of finished deployments (`coda.runs.store.ResultStore`).
        executor: ``process`` (default), ``inline`` or ``ray``.
        workers: processes (default: the CPUs, at most the deployments).
        progress: a tqdm bar on stderr.

    Raises:
        ConfigError, UnknownNameError: bad arguments, before any simulation.
        ServingSearchInterrupted: Ctrl-C or SIGTERM (finished deployments stored).
    """
    from coda.runs.store import ResultStore, cost_model_digest

    t0 = time.perf_counter()
    inp = checked_inputs(model, gpus, workload, slo, objective, prices_usd_per_h, max_devices, space, rel_tol,
                         executor, workers)
    db = ResultStore(store) if store is not None else None
    try:
        common = dict(kind="serving.capacity", model=asdict(inp.cfg), workload=trace_digest(inp.template),
                      slo=asdict(inp.slo), rel_tol=float(rel_tol), version=_version(), costs=cost_model_digest())
        plan = Plan(inp.cfg, inp.gpus, max_devices, inp.space, inp.template, inp.slo, float(rel_tol), inp.objective,
                    inp.prices, common)
        plan.per_replica = inp.per_replica
        return plan.run(db, prune, executor, workers, progress, inp.desc, t0)
    finally:
        if db is not None:
            db.close()


def _version() -> str:
    from coda import __version__

    return __version__


class Plan:
    """The search after its arguments were checked: bounds, order, visit, frame."""

    def __init__(self, cfg: ModelConfig, gpus: list[str], max_devices: int, space: ServingSpace, template: Trace,
                 slo: SLO, rel_tol: float, objective: str, prices: dict[str, float], common: dict[str, Any]) -> None:
        self.cfg, self.gpus, self.max_devices, self.space = cfg, gpus, max_devices, space
        self.template, self.slo, self.rel_tol, self.objective, self.prices = template, slo, rel_tol, objective, prices
        self.common = common
        self.context = int((template.prompt_tokens + template.output_tokens).max())
        self.tdp = {n: float(gpu(n).tdp_w) for n in gpus}
        self.rows: dict[DeploymentSpec, dict[str, Any]] = {}
        self.max_batch = 1
        self.per_replica = 0

    def template_for(self, spec: DeploymentSpec) -> Trace:
        """The requests a deployment serves: a generated workload's first `requests` x replicas
        (each replica sees as many as with one), or the whole trace."""
        if not self.per_replica:
            return self.template
        n = min(self.per_replica * spec.replicas, len(self.template))
        t = self.template
        return Trace(t.arrival_s[:n], t.prompt_tokens[:n], t.output_tokens[:n], source=t.source)

    def table_tokens(self, specs: list[DeploymentSpec]) -> int:
        """Tokens the layout tables cover: every iteration any scheduler of the space can form
        (as `CostTable.for_deployment`)."""
        configs = {s.scheduler_config() for s in specs}
        return max(max(sc.max_tokens, sc.chunk, self.context) + sc.max_batch for sc in configs)

    def candidates(self, specs: list[DeploymentSpec], tokens: int) -> list[Candidate]:
        """Bounds of the specs that fit; the others get their row (memory, invalid) here."""
        lins: dict[tuple[str, int, int, int, str], np.ndarray | str] = {}
        out = []
        for spec in specs:
            if spec.layout not in lins:
                try:
                    d0 = DeploymentSpec(*spec.layout[:4], 1, "vllm", 256, 4096, 512, spec.dtype)  # type: ignore[misc]
                    lins[spec.layout] = linear_table(IterationCost(d0.deployment(self.cfg)), -(-tokens // spec.ep))
                except CodaError as err:
                    lins[spec.layout] = str(err)
            lin = lins[spec.layout]
            if isinstance(lin, str):
                self.rows[spec] = {"status": "invalid", "reason": lin}
                continue
            try:
                dep = spec.deployment(self.cfg)
                budget = dep.kv_budget_for(self.context)
            except InfeasibleDesign as err:
                self.rows[spec] = {"status": "memory", "reason": str(err)}
                continue
            except ConfigError as err:
                self.rows[spec] = {"status": "invalid", "reason": str(err)}
                continue
            ub = capacity_bound(dep, lin, budget, self.template_for(spec))
            obj = objective_value(self.objective, ub, spec, self.tdp[spec.gpu], self.prices)
            key = _key(self.common, spec, ub)
            out.append(Candidate(spec, ub, obj, key))
        return out

    def run(self, db: Any, prune: bool, executor: str, workers: int | None, progress: bool, desc: str,
            t0: float) -> ServingSearchResult:
        specs = list(enumerate_specs(self.cfg, self.gpus, self.max_devices, self.space))
        base = baseline_spec(self.cfg, self.gpus[0], self.max_devices, self.space)
        if base is not None and base not in specs:
            specs.append(base)
        tokens = self.table_tokens(specs)
        self.max_batch = max(s.max_batch for s in specs)
        cands = self.candidates(specs, tokens)
        order = sorted(range(len(cands)), key=lambda i: -cands[i].bound_objective)
        if base is not None:
            first = [i for i in order if cands[i].spec == base]
            order = first + [i for i in order if cands[i].spec != base]
        visit = Visit(self, cands, order, db, prune, executor, workers, progress, tokens)
        n_new, n_cached, n_pruned = visit.run()
        frame = self.frame(cands)
        ok = frame[frame["status"] == "ok"]
        best = ok.iloc[0] if len(ok) else None
        base_row = None
        if base is not None:
            hit = frame[_match(frame, base)]
            base_row = hit.iloc[0] if len(hit) else None
        closest = None
        if best is None:
            tried = frame[frame["alone_ttft_s"].notna()]
            if len(tried):
                excess = np.maximum(tried["alone_ttft_s"] / (self.slo.ttft_p99_s or math.inf),
                                    tried["alone_tbt_p99_s"].fillna(0) / (self.slo.tbt_p99_s or math.inf))
                closest = tried.loc[excess.idxmin()]
        counts = {"space": len(specs), "evaluated": n_new, "cached": n_cached, "pruned_bound": n_pruned,
                  "pruned_memory": int((frame["status"] == "memory").sum()),
                  "invalid": int((frame["status"] == "invalid").sum()),
                  "simulations": int(frame.loc[frame["status"] != "pruned_bound", "simulations"].fillna(0).sum())}
        log.info("serving search: %s", counts)
        return ServingSearchResult(frame, best, base_row, closest, self.objective, self.slo, desc, self.cfg.name,
                                   counts, time.perf_counter() - t0, self.rel_tol, dict(self.prices))

    def frame(self, cands: list[Candidate]) -> pd.DataFrame:
        bounds = {c.spec: c.upper_qps for c in cands}
        recs = []
        specs = list(self.rows) + [c.spec for c in cands if c.spec not in self.rows]
        order = {c.spec: i for i, c in enumerate(sorted(cands, key=lambda c: -c.bound_objective))}
        for spec in specs:
            row = self.rows.get(spec, {"status": "pruned_bound", "reason": "its capacity bound cannot beat the best"})
            rec: dict[str, Any] = {"gpu": spec.gpu, "n_devices": spec.n_devices, "replicas": spec.replicas,
                                   "tp": spec.tp, "pp": spec.pp, "ep": spec.ep, "scheduler": spec.scheduler,
                                   "max_batch": spec.max_batch, "max_tokens": spec.max_tokens, "chunk": spec.chunk,
                                   "status": row["status"], "bound_qps": bounds.get(spec, math.nan),
                                   "capacity_qps": row.get("qps", math.nan),
                                   "capacity_below_qps": row.get("missed_qps", math.nan)}
            for obj in OBJECTIVES:
                ok = obj != "qps_per_dollar" or spec.gpu in self.prices
                rec[obj] = (objective_value(obj, rec["capacity_qps"], spec, self.tdp[spec.gpu], self.prices)
                            if ok else math.nan)
            for k in ("ttft_p99_s", "tbt_p99_s", "tokens_per_s", "alone_ttft_s", "alone_tbt_p99_s", "simulations"):
                rec[k] = row.get(k, math.nan)
            rec["reason"] = row.get("reason", "")
            recs.append(rec)
        df = pd.DataFrame(recs, columns=list(FRAME_COLUMNS))
        rank = {"ok": 0, "below_best": 1, "pruned_bound": 2, "slo_unmet_under_load": 3, "slo_unmet": 4, "memory": 5,
                "invalid": 6}
        df["_r"] = df["status"].map(rank)
        df["_b"] = [objective_value(self.objective, b, s, self.tdp[s.gpu], self.prices)
                    if self.objective != "qps_per_dollar" or s.gpu in self.prices else math.nan
                    for b, s in zip(df["bound_qps"], specs)]
        df["_o"] = [order.get(s, len(order)) for s in specs]
        # equal objectives: the deployment the search visits first (higher bound, then enumeration order) ranks first
        df = df.sort_values(["_r", self.objective, "_b", "_o"], ascending=[True, False, False, True], kind="stable")
        return df.drop(columns=["_r", "_b", "_o"]).reset_index(drop=True)


def _match(frame: pd.DataFrame, spec: DeploymentSpec) -> pd.Series:
    m = pd.Series(True, index=frame.index)
    for k in SPEC_COLUMNS:
        if k != "n_devices":
            m &= frame[k] == getattr(spec, k)
    return m


def _key(common: dict[str, Any], spec: DeploymentSpec, upper_qps: float) -> str:
    from coda.runs.store import result_key

    return result_key(**common, spec=spec.to_dict(), upper_qps=float(upper_qps))


__all__ = ["EXECUTORS", "FRAME_COLUMNS", "OBJECTIVES", "ServingSearchInterrupted", "ServingSearchResult",
           "evaluate_spec", "layout_table", "search"]
