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

Execution is the accelerator search's (`coda.search.executors`, `coda.search.store`): a local
process pool (default), inline, or Ray; every finished deployment is written at once to the
SQLite `ResultStore` keyed by everything its capacity depends on (the model, the deployment, the
workload's requests, the SLO, the tolerance, the bound, the coda version and the cost-model
digest), so an interrupted search resumes and a repeated one is free. Ctrl-C or SIGTERM stores
what finished, ends the workers and raises `ServingSearchInterrupted`. The iteration-cost
tables are built once per layout (gpu, tp, pp, ep, dtype) in each process (the cache
`serving.search.tables` in `coda.caches`).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from coda.arch.clusters import cluster
from coda.arch.gpus import gpu
from coda.caches import memoize
from coda.errors import CodaError, ConfigError, InfeasibleDesign
from coda.models.config import ModelConfig
from coda.objectives import objective as canonical_objective
from coda.serving.capacity import (
    DEFAULT_REL_TOL,
    Workload,
    capacity,
    capacity_bound,
    grid_index,
    unit_rate,
)
from coda.serving.costs import CostTable, IterationCost, linear_table
from coda.serving.deployment import Deployment
from coda.serving.metrics import SLO
from coda.serving.space import DeploymentSpec, ServingSpace, baseline_spec, dgx_preset, enumerate_specs
from coda.serving.trace import MAX_REQUESTS, Trace

log = logging.getLogger(__name__)

OBJECTIVES = ("qps_per_device", "qps_per_watt", "qps_per_dollar")
"""What the serving search maximises (`coda.objectives`; higher is better): columns of its frame."""
EXECUTORS = ("process", "inline", "ray")
SLO_KEYS = ("ttft_p99_s", "tbt_p99_s")
SPEC_COLUMNS = ("gpu", "n_devices", "replicas", "tp", "pp", "ep", "scheduler", "max_batch", "max_tokens", "chunk")
FRAME_COLUMNS = (*SPEC_COLUMNS, "status", "capacity_qps", "capacity_below_qps", "bound_qps", *OBJECTIVES,
                 "ttft_p99_s", "tbt_p99_s",
                 "tokens_per_s", "alone_ttft_s", "alone_tbt_p99_s", "simulations", "reason")
"""The ranked frame's columns (SI units; `*_qps` requests/s, prices per device in USD/s)."""


class ServingSearchInterrupted(KeyboardInterrupt):
    """A serving search ended by Ctrl-C or SIGTERM after it stored every finished deployment."""

    def __init__(self, signal_name: str, store: Path | None, n_stored: int, n_new: int) -> None:
        kept = (f"{n_stored} deployments stored in {store}; run it again to resume" if store is not None
                else f"{n_new} deployments evaluated, none kept (give a store to resume)")
        super().__init__(f"serving search interrupted by {signal_name}: {kept}")
        self.signal_name, self.store, self.n_stored, self.n_new = signal_name, store, n_stored, n_new


@dataclass(frozen=True)
class ServingSearchResult:
    """The ranked deployments and the answer.

    Attributes:
        frame: one row per deployment of the space (`FRAME_COLUMNS`), the ones that meet the SLO
            first by the objective, then the rest (capacity 0, pruned, memory, invalid).
        best: the best row, or None when no deployment meets the SLO.
        baseline: the heuristic baseline's row (None when no tp holds the model).
        closest: when nothing meets the SLO, the deployment whose lone request comes closest to it.
        counts: deployments in the space, evaluated now, read from the store, pruned by the
            bound, pruned by memory, invalid layouts, simulations run.
    """

    frame: pd.DataFrame
    best: pd.Series | None
    baseline: pd.Series | None
    closest: pd.Series | None
    objective: str
    slo: SLO
    workload: str
    model: str
    counts: dict[str, int]
    seconds: float
    rel_tol: float = DEFAULT_REL_TOL
    prices_usd_per_h: dict[str, float] = field(default_factory=dict)

    @property
    def ratio(self) -> float:
        """The best objective over the baseline's (NaN without both)."""
        if self.best is None or self.baseline is None or not self.baseline[self.objective] > 0:
            return math.nan
        return float(self.best[self.objective] / self.baseline[self.objective])

    def summary(self) -> str:
        """The answer as a sentence."""
        slo = _slo_text(self.slo)
        if self.best is None:
            text = f"No deployment of {self.model} meets the SLO ({slo}) on {self.workload}"
            if self.closest is not None:
                c = self.closest
                text += (f"; the closest is {_label(c)}, whose lone request gets TTFT {c['alone_ttft_s']:.3g} s and "
                         f"P99 TBT {c['alone_tbt_p99_s'] * 1e3:.3g} ms")
            return text + "."
        b = self.best
        unit = {"qps_per_device": "requests/s per device", "qps_per_watt": "requests/s per kW of TDP",
                "qps_per_dollar": "requests per dollar"}[self.objective]
        scale = 1e3 if self.objective == "qps_per_watt" else 1.0
        text = (f"Best for {self.model} on {self.workload} under {slo}: {_label(b)}, {b['capacity_qps']:.3g} "
                f"requests/s ({b[self.objective] * scale:.3g} {unit}; P99 TTFT {b['ttft_p99_s']:.3g} s, P99 TBT "
                f"{b['tbt_p99_s'] * 1e3:.3g} ms at that rate)")
        if self.baseline is not None and self.baseline["status"] == "ok" and self.baseline[self.objective] > 0:
            text += f", {self.ratio:.2f}x the heuristic baseline {_label(self.baseline)}"
        elif self.baseline is not None:
            text += f"; the heuristic baseline {_label(self.baseline)} does not meet the SLO"
        c = self.counts
        return text + (f". Searched {c['space']} deployments: {c['evaluated'] + c['cached']} evaluated "
                       f"({c['cached']} from the store), {c['pruned_bound']} pruned by the capacity bound, "
                       f"{c['pruned_memory']} by memory, {c['invalid']} invalid layouts; {c['simulations']} "
                       f"simulations in {self.seconds:.1f} s.")


def _label(row: Mapping[str, Any]) -> str:
    spec = DeploymentSpec(**{k: _py(row[k]) for k in ("gpu", "tp", "pp", "ep", "replicas", "scheduler", "max_batch",
                                                      "max_tokens", "chunk")})
    return spec.label()


def _py(v: Any) -> Any:
    return v.item() if hasattr(v, "item") else v


def _slo_text(slo: SLO) -> str:
    parts = []
    if slo.ttft_p99_s is not None:
        parts.append(f"P99 TTFT <= {slo.ttft_p99_s:g} s")
    if slo.tbt_p99_s is not None:
        parts.append(f"P99 TBT <= {slo.tbt_p99_s * 1e3:g} ms")
    return ", ".join(parts)


# -- inputs ---------------------------------------------------------------------------------------


def _as_slo(slo: Any) -> SLO:
    if isinstance(slo, SLO):
        out = SLO(ttft_p99_s=slo.ttft_p99_s, tbt_p99_s=slo.tbt_p99_s)
    elif isinstance(slo, Mapping):
        unknown = sorted(set(map(str, slo)) - set(SLO_KEYS))
        if unknown:
            raise ConfigError(f"serving search: slo keys {', '.join(unknown)} are unknown; use {', '.join(SLO_KEYS)} "
                              "(seconds)")
        out = SLO(**{k: slo.get(k) for k in SLO_KEYS})
    else:
        raise ConfigError(f"serving search: slo={slo!r} must be a dict with {' and/or '.join(SLO_KEYS)} (seconds)")
    if out.ttft_p99_s is None and out.tbt_p99_s is None:
        raise ConfigError(f"serving search: slo needs {' and/or '.join(SLO_KEYS)} (seconds); capacity under no "
                          "target is unbounded")
    return out


def _prices(objective: str, gpus: Sequence[str], prices: Mapping[str, float] | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, v in (prices or {}).items():
        canon = gpu(name).name
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < math.inf:
            raise ConfigError(f"serving search: price of {name}={v!r} must be a finite number of USD per device-hour "
                              "> 0")
        out[canon] = float(v)
    if objective == "qps_per_dollar":
        missing = [g for g in gpus if g not in out]
        if missing:
            raise ConfigError(f"serving search: objective='qps_per_dollar' needs a price for every GPU; none for "
                              f"{', '.join(missing)} (prices_usd_per_h={{'{missing[0]}': 2.5}})")
    return out


def _template(cfg: ModelConfig, workload: Workload | Trace, replicas: int) -> tuple[Trace, str, bool]:
    """The unit-rate template (for a `Workload`, its requests for `replicas` replicas), its
    description, and whether deployments take a prefix of it per replica count."""
    if isinstance(workload, Workload):
        n = min(workload.requests * replicas, MAX_REQUESTS)
        t = replace(workload, requests=n).template()
        desc = workload.describe(per_replica=True)
    elif isinstance(workload, Trace):
        t = unit_rate(workload)
        desc = f"trace {workload.source or ''} ({len(workload)} requests, rescaled)".replace("  ", " ")
    else:
        raise ConfigError(f"serving search: workload={workload!r} must be a Workload (generated requests) or a Trace")
    t.check_context(cfg)
    return t, desc, isinstance(workload, Workload)


def _digest(t: Trace) -> str:
    h = hashlib.sha256()
    for a in (t.arrival_s.astype(float), t.prompt_tokens.astype(np.int64), t.output_tokens.astype(np.int64)):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:32]


# -- one deployment (in a worker) -----------------------------------------------------------------


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


# -- the search -----------------------------------------------------------------------------------


@dataclass
class _Candidate:
    spec: DeploymentSpec
    upper_qps: float
    bound_objective: float
    key: str


def _objective_value(objective: str, qps: float, spec: DeploymentSpec, tdp_w: float,
                     prices: Mapping[str, float]) -> float:
    if objective == "qps_per_device":
        return qps / spec.n_devices
    if objective == "qps_per_watt":
        return qps / (spec.n_devices * tdp_w)
    return qps / (spec.n_devices * prices[spec.gpu] / 3600.0)


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
        store: SQLite file of finished deployments (`coda.search.store.ResultStore`).
        executor: ``process`` (default), ``inline`` or ``ray``.
        workers: processes (default: the CPUs, at most the deployments).
        progress: a tqdm bar on stderr.

    Raises:
        ConfigError, UnknownNameError: bad arguments, before any simulation.
        ServingSearchInterrupted: Ctrl-C or SIGTERM (finished deployments stored).
    """
    from coda.models import get
    from coda.search.store import ResultStore, cost_model_digest

    t0 = time.perf_counter()
    cfg = get(model) if isinstance(model, str) else model
    if not isinstance(cfg, ModelConfig):
        raise ConfigError(f"serving search: model={model!r} must be a preset name or a ModelConfig")
    if isinstance(gpus, str) or not gpus:
        raise ConfigError(f"serving search: gpus={gpus!r} must be a non-empty list of GPU names, e.g. ['h100-sxm']")
    names = list(dict.fromkeys(gpu(n).name for n in gpus))
    if isinstance(max_devices, bool) or not isinstance(max_devices, int) or max_devices < 1:
        raise ConfigError(f"serving search: max_devices={max_devices!r} must be an integer >= 1")
    for n in names:
        cluster(dgx_preset(gpu(n)), max_devices)  # refuses a count the preset cannot hold
    objective = canonical_objective(objective, OBJECTIVES, "serving search: objective")
    prices = _prices(objective, names, prices_usd_per_h)
    slo_ = _as_slo(slo)
    if isinstance(rel_tol, bool) or not isinstance(rel_tol, (int, float)) or not 0 < rel_tol <= 1:
        raise ConfigError(f"serving search: rel_tol={rel_tol!r} must be a fraction in (0, 1]")
    if executor not in EXECUTORS:
        raise ConfigError(f"serving search: executor={executor!r} must be one of {', '.join(EXECUTORS)}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"serving search: workers={workers!r} must be an integer >= 1")
    space = space or ServingSpace()
    if not isinstance(space, ServingSpace):
        raise ConfigError(f"serving search: space={space!r} must be a ServingSpace")
    most = max((r for r in space.replicas if min(space.tp) * min(space.pp) * r <= max_devices), default=1)
    template, desc, per_replica = _template(cfg, workload, most)
    per = workload.requests if isinstance(workload, Workload) else len(template)
    db = ResultStore(store) if store is not None else None
    try:
        common = dict(kind="serving.capacity", model=asdict(cfg), workload=_digest(template), slo=asdict(slo_),
                      rel_tol=float(rel_tol), version=_version(), costs=cost_model_digest())
        plan = _Plan(cfg, names, max_devices, space, template, slo_, float(rel_tol), objective, prices, common)
        plan.per_replica = per if per_replica else 0
        return plan.run(db, prune, executor, workers, progress, desc, t0)
    finally:
        if db is not None:
            db.close()


def _version() -> str:
    from coda import __version__

    return __version__


class _Plan:
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

    def candidates(self, specs: list[DeploymentSpec], tokens: int) -> list[_Candidate]:
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
                budget = dep.kv_budget()
                need = budget.blocks_for(self.context)
                wm = int(dep.scheduler.watermark * budget.blocks) if spec.scheduler in ("vllm", "sarathi") else 0
                if need > budget.blocks - wm:
                    raise InfeasibleDesign(f"the longest request needs {need} KV blocks; a replica holds "
                                           f"{budget.blocks - wm}")
            except InfeasibleDesign as err:
                self.rows[spec] = {"status": "memory", "reason": str(err)}
                continue
            except ConfigError as err:
                self.rows[spec] = {"status": "invalid", "reason": str(err)}
                continue
            ub = capacity_bound(dep, lin, budget, self.template_for(spec))
            obj = _objective_value(self.objective, ub, spec, self.tdp[spec.gpu], self.prices)
            key = _key(self.common, spec, ub)
            out.append(_Candidate(spec, ub, obj, key))
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
        visit = _Visit(self, cands, order, db, prune, executor, workers, progress, tokens)
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

    def frame(self, cands: list[_Candidate]) -> pd.DataFrame:
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
                rec[obj] = (_objective_value(obj, rec["capacity_qps"], spec, self.tdp[spec.gpu], self.prices)
                            if ok else math.nan)
            for k in ("ttft_p99_s", "tbt_p99_s", "tokens_per_s", "alone_ttft_s", "alone_tbt_p99_s", "simulations"):
                rec[k] = row.get(k, math.nan)
            rec["reason"] = row.get("reason", "")
            recs.append(rec)
        df = pd.DataFrame(recs, columns=list(FRAME_COLUMNS))
        rank = {"ok": 0, "below_best": 1, "pruned_bound": 2, "slo_unmet_under_load": 3, "slo_unmet": 4, "memory": 5,
                "invalid": 6}
        df["_r"] = df["status"].map(rank)
        df["_b"] = [_objective_value(self.objective, b, s, self.tdp[s.gpu], self.prices)
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
    from coda.search.store import result_key

    return result_key(**common, spec=spec.to_dict(), upper_qps=float(upper_qps))


class _Visit:
    """Visit the candidates in bound order, at most `window` in flight, storing each finished one;
    stop at the first whose bound cannot beat the best (module docstring)."""

    def __init__(self, plan: _Plan, cands: list[_Candidate], order: list[int], db: Any, prune: bool, executor: str,
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
        from coda.search.executors import InlineExecutor, RayExecutor, pool_executor

        if self.executor == "inline":
            return InlineExecutor()
        return RayExecutor() if self.executor == "ray" else pool_executor(self.window)

    def beat_qps(self, c: _Candidate) -> float:
        """The rate at which `c` would tie the best found so far (0: measure it whatever it is)."""
        if not self.prune or self.best <= 0:
            return 0.0
        return self.best / _objective_value(self.plan.objective, 1.0, c.spec, self.plan.tdp[c.spec.gpu],
                                            self.plan.prices)

    def _submit(self, pool: Any, c: _Candidate) -> Future[Any]:
        p = self.plan
        return pool.submit(evaluate_spec, c.spec, p.cfg, p.template_for(c.spec), p.slo, c.upper_qps, p.rel_tol,
                           self.tokens,
                           p.max_batch, p.context, self.beat_qps(c))

    def stored(self, c: _Candidate) -> dict[str, Any] | None:
        """The store's row for `c` if it answers this search: a full capacity, or a cut at a rate
        at or below the one `c` must reach now (a cut at a higher rate says too little)."""
        row = self.db.get(c.key) if self.db is not None else None
        if row is not None and row["status"] == "below_best":
            beat, tol = self.beat_qps(c), self.plan.rel_tol
            if beat <= 0 or grid_index(row["missed_qps"], tol, up=False) > grid_index(beat, tol, up=False) + 1:
                return None
        return row

    def _record(self, c: _Candidate, row: dict[str, Any], new: bool) -> None:
        if new and self.db is not None:
            self.db.put(c.key, row)
        self.plan.rows[c.spec] = row
        if new:
            self.n_new += 1
        else:
            self.n_cached += 1
        if row["status"] == "ok":
            v = _objective_value(self.plan.objective, row["qps"], c.spec, self.plan.tdp[c.spec.gpu], self.plan.prices)
            self.best = max(self.best, v)
        self.bar.update(1)
        self.bar.set_postfix(best=f"{self.best:.4g}", refresh=False)

    def run(self) -> tuple[int, int, int]:
        from coda.search.executors import Terminated, signals_deferred, terminate_as_interrupt, terminate_pool

        if self.db is not None and not self.db.writable:
            raise ConfigError(f"store {str(self.db.path)!r} is read-only; make it writable or pass another path")
        pool = self._pool()
        inflight: dict[Future[Any], _Candidate] = {}
        nxt, stopped = 0, len(self.order)
        try:
            with terminate_as_interrupt():
                try:
                    while True:
                        while nxt < len(self.order) and len(inflight) < self.window:
                            c = self.cands[self.order[nxt]]
                            if self.prune and nxt > 0 and c.bound_objective <= self.best:  # it can at most tie
                                stopped = nxt
                                nxt = len(self.order)
                                break
                            row = self.stored(c)
                            if row is not None:
                                self._record(c, row, new=False)
                            else:
                                inflight[self._submit(pool, c)] = c
                            nxt += 1
                        if not inflight:
                            break
                        done, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
                        for fut in done:
                            self._record(inflight.pop(fut), fut.result(), new=True)
                except BaseException as err:
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
                    raise
                else:
                    pool.shutdown()
        finally:
            self.bar.close()
        return self.n_new, self.n_cached, len(self.order) - stopped


__all__ = ["EXECUTORS", "FRAME_COLUMNS", "OBJECTIVES", "ServingSearchInterrupted", "ServingSearchResult",
           "evaluate_spec", "layout_table", "search"]
