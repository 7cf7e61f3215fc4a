"""The serving search's answer: its frame's columns, its result type and its sentence (`coda.serving.search`)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from coda.serving.capacity import DEFAULT_REL_TOL
from coda.serving.metrics import SLO
from coda.serving.space import DeploymentSpec

OBJECTIVES = ("qps_per_device", "qps_per_watt", "qps_per_dollar")
"""What the serving search maximises (`coda.objectives`; higher is better): columns of its frame."""
EXECUTORS = ("process", "inline", "ray")
SLO_KEYS = ("ttft_p99_s", "tbt_p99_s")
SPEC_COLUMNS = ("gpu", "n_devices", "replicas", "tp", "pp", "ep", "scheduler", "max_batch", "max_tokens", "chunk")
FRAME_COLUMNS = (*SPEC_COLUMNS, "status", "capacity_qps", "capacity_below_qps", "bound_qps", *OBJECTIVES,
                 "ttft_p99_s", "tbt_p99_s",
                 "tokens_per_s", "alone_ttft_s", "alone_tbt_p99_s", "simulations", "reason")
"""The ranked frame's columns (SI units; `*_qps` requests/s, prices per device in USD/s)."""


def objective_value(objective: str, qps: float, spec: DeploymentSpec, tdp_w: float,
                    prices: Mapping[str, float]) -> float:
    """`objective` of a deployment that serves `qps` requests/s (`tdp_w` of its GPU; `prices` USD per
    device-hour)."""
    if objective == "qps_per_device":
        return qps / spec.n_devices
    if objective == "qps_per_watt":
        return qps / (spec.n_devices * tdp_w)
    return qps / (spec.n_devices * prices[spec.gpu] / 3600.0)


class ServingSearchInterrupted(KeyboardInterrupt):
    """A serving search ended by Ctrl-C or SIGTERM after it stored every finished deployment."""

    def __init__(self, signal_name: str, store: Path | None, n_stored: int, n_new: int) -> None:
        kept = (f"{n_stored} deployments stored in {store}; run it again to resume" if store is not None
                else f"{n_new} deployments evaluated, none kept (give a store to resume)")
        super().__init__(f"serving search interrupted by {signal_name}: {kept}")
        self.signal_name, self.store, self.n_stored, self.n_new = signal_name, store, n_stored, n_new

    @classmethod
    def raise_for(cls, err: BaseException, store: Path | None, n_stored: int, n_new: int) -> None:
        """Raise this for Ctrl-C or SIGTERM (`err`, a `KeyboardInterrupt`); return for anything else."""
        from coda.runs.executors import Terminated

        if isinstance(err, KeyboardInterrupt):
            name = "SIGTERM" if isinstance(err, Terminated) else "SIGINT"
            raise cls(name, store, n_stored if store is not None else 0, n_new) from err


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


__all__ = ["EXECUTORS", "FRAME_COLUMNS", "OBJECTIVES", "SLO_KEYS", "SPEC_COLUMNS", "ServingSearchInterrupted",
           "ServingSearchResult", "objective_value"]
