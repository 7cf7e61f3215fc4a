"""The answer of the serving design search (`coda.serving.design_search`): its type and its sentence."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from coda.serving.capacity import DEFAULT_REL_TOL
from coda.serving.metrics import SLO

OBJECTIVES = ("tokens_per_s_per_watt", "tokens_per_s_per_device")
"""What the design search maximises: output tokens/s at capacity per watt of TDP, or per device."""
STATUS_RANK = {"ok": 0, "below_best": 1, "pruned_bound": 2, "pruned_rough": 3, "slo_unmet_under_load": 4,
               "slo_unmet": 5, "memory": 6, "invalid": 7}
"""Order of the statuses in the frames (the ones that meet the SLO first)."""


@dataclass(frozen=True)
class DesignSearchResult:
    """The answer of `design_search`.

    Attributes:
        deployments: one row per (chip, deployment): status, bounds, capacity, objectives, percentiles.
        chips: one row per chip: its best deployment (or, when none was measured, its best bound and why).
        best: the best design's row of `chips` (None when no design meets the SLO).
        references: the rows of `chips` for the references and GPUs.
        closest: when no design meets the SLO, the deployment whose lone request comes closest.
        counts: chips, deployments, memory, rough- and bound-pruned, evaluated, cached, simulations.
    """

    deployments: pd.DataFrame
    chips: pd.DataFrame
    best: pd.Series | None
    references: pd.DataFrame
    closest: pd.Series | None
    objective: str
    slo: SLO
    workload: str
    model: str
    counts: dict[str, int]
    seconds: float
    rel_tol: float = DEFAULT_REL_TOL

    def ratio_to(self, name: str) -> float:
        """The best design's objective over chip `name`'s (NaN when either has none)."""
        ref = self.chips[self.chips["chip"] == name]
        if self.best is None or ref.empty or not ref.iloc[0][self.objective] > 0:
            return math.nan
        return float(self.best[self.objective] / ref.iloc[0][self.objective])

    def summary(self) -> str:
        """The answer as a sentence."""
        slo = _slo_text(self.slo)
        c = self.counts
        tail = (f" Searched {c['designs']} designs x {c['specs']} deployments ({c['candidates']} that fit): "
                f"{c['pruned_rough']} pruned by the roofline bound, {c['pruned_bound']} by the capacity bound, "
                f"{c['evaluated']} measured ({c['cached']} from the store), {c['designs_pruned']} designs never "
                f"simulated; {c['simulations']} simulations in {self.seconds:.1f} s.")
        if self.best is None:
            text = f"No design serves {self.model} on {self.workload} within the SLO ({slo})"
            if self.closest is not None:
                r = self.closest
                text += (f"; the closest is {r['chip']} ({_label(r)}), whose lone request gets TTFT "
                         f"{r['alone_ttft_s']:.3g} s and P99 TBT {r['alone_tbt_p99_s'] * 1e3:.3g} ms")
            return text + "." + tail
        b = self.best
        unit = "output tokens/s per W" if self.objective == "tokens_per_s_per_watt" else "output tokens/s per device"
        text = (f"Best design for {self.model} on {self.workload} under {slo}: {b['chip']} ({b['tdp_w']:.3g} W, "
                f"{_label(b)}), {b['capacity_qps']:.3g} requests/s, {b[self.objective]:.4g} {unit}")
        refs = [f"{self.ratio_to(n):.2f}x {n}" for n in self.references["chip"] if not math.isnan(self.ratio_to(n))]
        if refs:
            text += f" ({', '.join(refs)})"
        return text + "." + tail


def _slo_text(slo: SLO) -> str:
    parts = []
    if slo.ttft_p99_s is not None:
        parts.append(f"P99 TTFT <= {slo.ttft_p99_s:g} s")
    if slo.tbt_p99_s is not None:
        parts.append(f"P99 TBT <= {slo.tbt_p99_s * 1e3:g} ms")
    return ", ".join(parts)


def _label(row: Mapping[str, Any]) -> str:
    return f"{int(row['replicas'])} x tp{int(row['tp'])} pp{int(row['pp'])}, {row['scheduler']}"


__all__ = ["OBJECTIVES", "STATUS_RANK", "DesignSearchResult"]
