"""The best single design for a family of workloads, exactly: the design of a space with the highest geometric
mean of its per-workload objective (PHAZE picks one chip for a model family).

Each design d has, per workload m, either its exact objective v_m(d) (a row evaluated by the per-model
searches or here) or an upper bound b_m(d) (`coda.search.objective_bound`: roofline peak over a lower bound on
executed FLOPs per token, perfect placement; `docs/search.md`). Its family upper bound is the geometric mean of
the exact values where known and the bounds elsewhere, U(d) = (prod_m u_m(d))^(1/M); an infeasible workload
counts 0. A design whose U(d) is below G*(1 - tie_tol), G* the best geometric mean over designs evaluated for
every workload, can neither beat the best nor come within `tie_tol` of it, whatever its missing rows hold.

Visit: designs in descending order of their initial U; each missing (design, workload) row is evaluated
unless the design's current U (lowered by rows already back) has fallen below the threshold; the visit stops at
the first design whose initial U is below it (every later one is lower). G* only rises, so every skip is
safe: the result holds the best design and every design within `tie_tol` of it, as evaluating all
designs for all workloads would (tested against that on a small space).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from coda.arch.accelerators import Accelerator
from coda.experiments.evaluator import Evaluator, Task, Workload
from coda.search import objective_bound, training_flops_per_token_lb
from coda.search.design_eval import DESIGN_FIELDS

log = logging.getLogger(__name__)

OBJECTIVE = "tokens_per_s_per_w"


def design_key(row: Any) -> tuple[float, ...]:
    """A design's identity across frames: its template fields (names leave out HBM and clock)."""
    return tuple(float(row[f]) for f in DESIGN_FIELDS)


def geomean(values: Any) -> float:
    """Geometric mean of positive values; 0 when any value is 0 (an infeasible workload)."""
    v = np.asarray(values, dtype=float)
    if v.size == 0 or np.any(v <= 0):
        return 0.0
    return float(np.exp(np.mean(np.log(v))))


def bounds_matrix(designs: pd.DataFrame, works: tuple[Workload, ...], configs: dict[str, Any],
                  n_devices: int) -> np.ndarray:
    """Per design (rows of `DesignSpace.to_frame()`) and workload: the objective's upper bound."""
    vector = (designs["vc_lanes"] * designs["n_vc"] * designs["clock_hz"]).to_numpy(float)
    peak, tdp = designs["peak_flops"].to_numpy(float), designs["tdp_w"].to_numpy(float)
    out = np.empty((len(designs), len(works)))
    for j, w in enumerate(works):
        fpt = training_flops_per_token_lb(configs[w.model], w.seq_len)
        out[:, j] = [objective_bound(OBJECTIVE, p, v, t, n_devices, fpt) for p, v, t in zip(peak, vector, tdp)]
    return out


@dataclass
class FamilyResult:
    """Outcome of `family_search`.

    Attributes:
        frame: one row per design evaluated for every workload, best geometric mean first: name,
            design fields, area_mm2, tdp_w, `<model>` (its tokens/s per W) per workload, geomean,
            geomean_bound (the family bound before any row was known).
        rows: (design index, model) -> the evaluated row (`coda.search` frame row) of every design in `frame`.
        tie_tol: every design within it of the best is in `frame`.
        n_designs: designs in the space; n_pruned: designs never completed (their family bound fell
            below the threshold); n_evaluated / n_cached: rows evaluated here / read from the store.
        values: design index x workload -> exact objective (0: infeasible), NaN where never evaluated.
        bounds: design index x workload -> the objective's upper bound.
    """

    frame: pd.DataFrame
    rows: dict[tuple[int, str], dict[str, Any]]
    tie_tol: float
    n_designs: int = 0
    n_pruned: int = 0
    n_evaluated: int = 0
    n_cached: int = 0
    values: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))
    bounds: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))

    @property
    def best(self) -> pd.Series | None:
        """The design with the best geometric mean (None if no design is feasible for every workload)."""
        ok = self.frame[self.frame["geomean"] > 0]
        return None if ok.empty else ok.iloc[0]

    def near_ties(self) -> pd.DataFrame:
        """The designs within `tie_tol` of the best geometric mean (the best first)."""
        if self.best is None:
            return self.frame.iloc[:0]
        return self.frame[self.frame["geomean"] >= float(self.best["geomean"]) * (1.0 - self.tie_tol)]

    def counts(self) -> dict[str, Any]:
        return dict(designs=self.n_designs, completed=len(self.frame), pruned_by_bound=self.n_pruned,
                    evaluated=self.n_evaluated, cached=self.n_cached)


def family_search(accelerators: list[Accelerator], designs: pd.DataFrame, works: tuple[Workload, ...],
                  known: dict[tuple[int, str], dict[str, Any]], evaluator: Evaluator, tie_tol: float) -> FamilyResult:
    """The designs within `tie_tol` of the best geometric mean of tokens/s per W over `works` (module doc).

    Args:
        accelerators: the designs, in `designs` order (`list(space)`).
        designs: `space.to_frame()`.
        works: the workloads (one model each).
        known: (design index, model) -> a row already evaluated (e.g. by the per-model searches).
        evaluator: evaluates the missing rows (store, executor, timer, devices, choices).
        tie_tol: near-tie tolerance, in [0, 1).
    """
    names = [w.model for w in works]
    bnd = bounds_matrix(designs, works, evaluator.configs, evaluator.n_devices)
    vals = np.full(bnd.shape, np.nan)
    rows: dict[tuple[int, str], dict[str, Any]] = {}
    col = {m: j for j, m in enumerate(names)}

    def put(i: int, m: str, row: dict[str, Any]) -> None:
        rows[(i, m)] = row
        vals[i, col[m]] = float(row[OBJECTIVE]) if row["status"] == "ok" else 0.0

    for (i, m), row in known.items():
        put(i, m, row)

    def upper(i: int) -> float:
        return geomean(np.where(np.isnan(vals[i]), bnd[i], vals[i]))

    u0 = np.array([upper(i) for i in range(len(bnd))])
    complete = ~np.isnan(vals).any(axis=1)
    state = {"best": max((upper(int(i)) for i in np.flatnonzero(complete)), default=-math.inf)}

    def threshold() -> float:
        return state["best"] * (1.0 - tie_tol)

    order = [int(i) for i in np.lexsort((np.arange(len(u0)), -u0))]
    def tasks() -> Any:
        for i in order:
            if u0[i] < threshold():
                return
            if upper(i) < threshold():
                continue
            for j, w in enumerate(works):
                if np.isnan(vals[i, j]):
                    yield Task(accelerators[i], w, tag=(i, w.model))

    def on_row(task: Task, row: dict[str, Any]) -> None:
        i, m = task.tag
        put(i, m, row)
        if not np.isnan(vals[i]).any():
            state["best"] = max(state["best"], geomean(vals[i]))

    before = (evaluator.n_evaluated, evaluator.n_cached)
    evaluator.run(tasks(), on_row, keep_going=lambda t: upper(t.tag[0]) >= threshold())
    done = np.flatnonzero(~np.isnan(vals).any(axis=1))
    frame = _frame(designs, done, vals, u0, names)
    kept = {(i, m): r for (i, m), r in rows.items() if i in set(done.tolist())}
    log.info("family: %d designs completed, best geometric mean %.4g", len(done), state["best"])
    return FamilyResult(frame=frame, rows=kept, tie_tol=tie_tol, n_designs=len(bnd),
                        n_pruned=len(bnd) - len(done), n_evaluated=evaluator.n_evaluated - before[0],
                        n_cached=evaluator.n_cached - before[1], values=vals, bounds=bnd)


def _frame(designs: pd.DataFrame, done: np.ndarray, vals: np.ndarray, u0: np.ndarray,
           names: list[str]) -> pd.DataFrame:
    base = designs.iloc[done][["n_tc", "tc_rows", "tc_cols", "n_vc", "vc_lanes", "glb_bytes", "hbm_bytes",
                               "hbm_bw_bytes_per_s", "clock_hz", "area_mm2", "tdp_w", "peak_flops"]]
    out = base.reset_index(drop=True)
    out.insert(0, "design", done)
    for j, m in enumerate(names):
        out[m] = vals[done, j]
    out["geomean"] = [geomean(vals[i]) for i in done]
    out["geomean_bound"] = u0[done]
    out = out.sort_values(["geomean", "design"], ascending=[False, True], kind="stable")
    return out.reset_index(drop=True)


__all__ = ["FamilyResult", "bounds_matrix", "design_key", "family_search", "geomean"]
