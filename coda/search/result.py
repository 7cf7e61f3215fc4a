"""`SearchResult`: the outcome of a design search, and the ranking of its rows."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from coda.errors import ConfigError
from coda.search.design_eval import FRAME_COLUMNS, ILP_EVENT_FIELDS
from coda.search.pareto import pareto_front

LINK_FIELDS = ("n_links", "link_bw_bytes_per_s")
"""A design's inter-chip links: they set its cluster's bandwidth (`coda.arch.design_space.design_cluster`)."""
SEARCH_COLUMNS = (*FRAME_COLUMNS[:FRAME_COLUMNS.index("area_mm2")], *LINK_FIELDS,
                  *FRAME_COLUMNS[FRAME_COLUMNS.index("area_mm2"):])
"""Columns of `SearchResult.frame` and of its reference rows: `FRAME_COLUMNS` with the links after the
other design fields."""


@dataclass
class SearchResult:
    """Outcome of `search`.

    Attributes:
        frame: one row per visited design (evaluated or read from the store), feasible ones first
            by descending objective (`SEARCH_COLUMNS`): design fields, name, n_links,
            link_bw_bytes_per_s (per link, per direction), area_mm2 (22 nm), tdp_w, peak_flops,
            bound_tokens_per_s, bound_objective, plan (text) and its fields, step_s,
            tokens_per_s, tokens_per_s_per_w (per watt of cluster TDP, n_devices * tdp_w), mfu,
            peak_memory_bytes, status (``ok`` / ``infeasible``), reason, seconds (of the evaluation).
        best: the best feasible row, None if no visited design fits.
        reference: the row of `tpuv4_like()` (PHAZE's reference) evaluated the same way (not part of the space).
        faithful_reference: the row of `tpuv4()`, the TPU v4 with its real vector unit and memories.
        objective: the ranking column.
        n_space: designs in the space; n_pruned: skipped by the bound; n_evaluated: evaluated in
            this call; n_cached: read from the store; n_infeasible: visited designs with no plan
            that fits; n_unvisited: left out because `max_designs` was reached.
        complete: True when `best` is proven optimal over the whole space (not cut by `max_designs`).
        seconds: wall time of the call.
        n_speculative: designs evaluated and stored but left out of the frame (see the module doc).
        model: the model's name; n_devices: devices (chips) per design.
        tie_tol: the relative tolerance within which every design of the space is in the frame
            (`near_ties`).
        pareto: the frame holds every design on the Pareto front of tokens/s against TDP per chip
            (a search with `pareto=True`, or with `prune=False`), so `front()` is the space's front.
        bounds: the bound designs were visited and pruned by: ``refined`` (`coda.search.refine`, the ILP
            timer) or ``peak`` (`coda.search.bounds`); the frame's ``bound_*`` columns hold it.
        n_refined: with refined bounds, the designs given bound (2) and bound (3) of `coda.search.refine`.
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
    model: str = ""
    n_devices: int = 0
    tie_tol: float = 0.0
    faithful_reference: pd.Series | None = None
    pareto: bool = False
    bounds: str = "peak"
    n_refined: tuple[int, ...] = ()

    def counts(self) -> dict[str, Any]:
        """The counters as a dict (for printing and JSON)."""
        events = {k: int(pd.to_numeric(self.frame[k], errors="coerce").fillna(0).sum()) if k in self.frame else 0
                  for k in ILP_EVENT_FIELDS}
        return dict(designs=self.n_space, pruned_by_bound=self.n_pruned, evaluated=self.n_evaluated,
                    cached=self.n_cached, infeasible=self.n_infeasible, unvisited=self.n_unvisited,
                    complete=self.complete, speculative=self.n_speculative, seconds=self.seconds, **events)

    def table(self, top: int = 10) -> pd.DataFrame:
        """The `top` feasible designs and the reference rows below them (column `rank`: 1.., `ref`)."""
        ok = self.frame[self.frame["status"] == "ok"].head(top).copy()
        ok.insert(0, "rank", [str(i + 1) for i in range(len(ok))])
        refs = self.references()
        refs.insert(0, "rank", ["ref"] * len(refs))
        return pd.concat([ok, refs], ignore_index=True)

    def references(self) -> pd.DataFrame:
        """The reference rows: the TPUv4-like chip, then the faithful TPU v4 (when evaluated)."""
        rows = [r for r in (self.reference, self.faithful_reference) if r is not None]
        return pd.DataFrame([r.to_dict() for r in rows])

    def near_ties(self) -> pd.DataFrame:
        """The feasible designs within `tie_tol` of the best (the best first): the answer is this
        family, since the layer timers differ by 1-2% on one design (empty if nothing fits)."""
        ok = self.frame[self.frame["status"] == "ok"]
        if ok.empty:
            return ok
        best = float(ok[self.objective].iloc[0])
        return ok[ok[self.objective].astype(float) >= best * (1.0 - self.tie_tol)]

    def front(self) -> pd.DataFrame:
        """The Pareto front of the space: the feasible designs no other design beats on both TDP per chip
        (lower) and tokens/s (higher), by ascending TDP (`coda.search.pareto_front`).

        Raises:
            ConfigError: the search was not a Pareto search (designs were pruned by the objective bound
                alone, so the frame may miss front points), or `max_designs` cut it.
        """
        if not self.pareto:
            raise ConfigError("SearchResult.front: this search pruned designs by its objective bound alone, so its "
                              "frame may miss points of the front; run search(..., pareto=True)")
        if not self.complete:
            raise ConfigError(f"SearchResult.front: the search stopped at max_designs with {self.n_unvisited} "
                              "designs unvisited; resume it with the same store (or no max_designs)")
        return pareto_front(self.frame)

    def to_csv(self, path: str) -> None:
        """Write the frame (SI units, one row per visited design) and the reference rows to a CSV file."""
        pd.concat([self.frame, self.references()], ignore_index=True).to_csv(path, index=False)

    def to_markdown(self, top: int = 10) -> str:
        """The `table(top)` as a GitHub-flavoured Markdown table (no optional dependency)."""
        from coda.units import markdown_table

        return markdown_table(self.table(top), title=f"top {top} by {self.objective}")

    def shortfall(self, top: int) -> str | None:
        """Why `table(top)` lists fewer than `top` designs (None when it lists `top`)."""
        from coda.search.summary import shortfall

        return shortfall(self, top)

    def summary(self, gpus: pd.DataFrame | None = None) -> str:
        """The answer as one sentence: the best design in words, its plan, its objective with units, and
        its ratio to the TPUv4-like reference and to each row of `gpus` (from `gpu_reference`)."""
        from coda.search.summary import summary

        return summary(self, gpus)


def _ranked(rows: list[dict[str, Any]], visit_pos: list[int], objective: str) -> pd.DataFrame:
    """Rows sorted: feasible first, by descending objective, ties by visiting order."""
    if not rows:
        return pd.DataFrame(columns=list(SEARCH_COLUMNS))
    df = pd.DataFrame(rows)[list(SEARCH_COLUMNS)]
    df["_infeasible"] = df["status"] != "ok"
    df["_neg"] = -df[objective].astype(float)
    df["_pos"] = visit_pos
    df = df.sort_values(["_infeasible", "_neg", "_pos"], kind="stable").drop(columns=["_infeasible", "_neg", "_pos"])
    return df.reset_index(drop=True)


__all__ = ["LINK_FIELDS", "SEARCH_COLUMNS", "SearchResult"]
