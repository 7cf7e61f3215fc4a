"""What a serving simulation measured: per-request latencies, inter-token times, iterations, and
their aggregates (`ServingResult.summary()`), all in SI units with unit suffixes.

Definitions (per request r, times from the simulation clock):
- queue_s: first scheduled - arrival; ttft_s: first token - arrival; e2e_s: last token - arrival;
- tbt_s: every gap between consecutive tokens of a request (the stall of a preemption included);
- tpot_s: (last token - first token) / (output - 1), NaN for one output token;
- throughput over the makespan (first arrival to last token): requests/s, output tokens/s,
  per device, per watt of the devices' TDP;
- goodput (DistServe, Zhong et al. OSDI'24): requests/s that meet the SLO (TTFT and TPOT both);
- slo_met: whether the run meets the SLO's targets on the 99th percentiles of TTFT and TBT over
  all requests and gaps (Vidur's and Sarathi-Serve's capacity criterion), 1.0 or 0.0.

Measurement window (`Window`): by default every request counts, as before. Papers and benchmark
harnesses often measure a steady state instead, leaving out the requests of the warm-up (an
empty system fills its batch and its KV cache) and of the cool-down (the last requests run in a
draining system): `summary(Window(warmup_s=..., cooldown_s=...))` keeps the requests that arrive
at least `warmup_s` after the first arrival and at least `cooldown_s` before the last one, and
`Window(warmup_fraction=..., cooldown_fraction=...)` drops that share of the first and last
requests by arrival. The aggregates then use the kept requests, their inter-token gaps, the
iterations that start between the first kept arrival and the last kept token, and a makespan
over that span.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from coda.errors import ConfigError
from coda.serving.state import Requests

if TYPE_CHECKING:
    from coda.serving.deployment import Deployment, KVBudget
    from coda.serving.simulate import _Log
    from coda.serving.trace import Trace

PERCENTILES = (50, 90, 99)


@dataclass(frozen=True)
class SLO:
    """Latency targets, seconds (None: no target): of each request (`ttft_s`, `tpot_s`: goodput
    counts the requests within both) and of the run (`ttft_p99_s`, `tbt_p99_s`: the 99th
    percentiles of TTFT over requests and of TBT over every inter-token gap; `slo_met`)."""

    ttft_s: float | None = None
    tpot_s: float | None = None
    ttft_p99_s: float | None = None
    tbt_p99_s: float | None = None

    def __post_init__(self) -> None:
        for name in ("ttft_s", "tpot_s", "ttft_p99_s", "tbt_p99_s"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < math.inf):
                raise ConfigError(f"slo: {name}={v!r} must be a finite number of seconds > 0 (or None)")

    def met(self, requests: pd.DataFrame) -> np.ndarray:
        ok = np.ones(len(requests), dtype=bool)
        if self.ttft_s is not None:
            ok &= requests["ttft_s"].to_numpy() <= self.ttft_s
        if self.tpot_s is not None:
            ok &= np.nan_to_num(requests["tpot_s"].to_numpy(), nan=0.0) <= self.tpot_s
        return ok


@dataclass(frozen=True)
class Window:
    """Which requests the aggregates measure (module docstring); the default keeps all of them.

    Attributes:
        warmup_s, cooldown_s: seconds after the first arrival and before the last one whose
            arrivals are left out, >= 0.
        warmup_fraction, cooldown_fraction: shares of the requests, first and last by arrival,
            left out, in [0, 1), together below 1.
    """

    warmup_s: float = 0.0
    cooldown_s: float = 0.0
    warmup_fraction: float = 0.0
    cooldown_fraction: float = 0.0

    def __post_init__(self) -> None:
        for name in ("warmup_s", "cooldown_s", "warmup_fraction", "cooldown_fraction"):
            v = getattr(self, name)
            hi = 1.0 if name.endswith("fraction") else math.inf
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v < hi:
                unit = "a fraction in [0, 1)" if hi == 1.0 else "a finite number of seconds >= 0"
                raise ConfigError(f"window: {name}={v!r} must be {unit}")
        if self.warmup_fraction + self.cooldown_fraction >= 1:
            raise ConfigError(f"window: warmup_fraction + cooldown_fraction = "
                              f"{self.warmup_fraction + self.cooldown_fraction:g} leaves no request; keep it below 1")

    @property
    def everything(self) -> bool:
        return self == Window()

    def keep(self, arrival_s: np.ndarray) -> np.ndarray:
        """Which requests (in arrival order, `arrival_s` sorted) the window keeps.

        Raises:
            ConfigError: it keeps none (naming the run's span).
        """
        n = len(arrival_s)
        ok = np.ones(n, dtype=bool)
        if n == 0:
            return ok
        ok &= arrival_s >= arrival_s[0] + self.warmup_s
        ok &= arrival_s <= arrival_s[-1] - self.cooldown_s
        first = math.floor(self.warmup_fraction * n)
        last = math.floor(self.cooldown_fraction * n)
        ok[:first] = False
        ok[n - last:] = False  # (empty when last is 0)
        if not ok.any():
            raise ConfigError(f"window: {self} keeps none of the {n} requests arriving over "
                              f"{float(arrival_s[-1] - arrival_s[0]):.4g} s; use a shorter warm-up or cool-down")
        return ok


@dataclass(frozen=True)
class ServingResult:
    """A simulation's measurements.

    Attributes:
        deployment: what was simulated (its `describe()` in `name`).
        requests: one row per request (module docstring columns).
        tbt: one row per inter-token gap: request, tbt_s.
        iterations: one row per iteration: replica, start_s, end_s, prefill_tokens, decodes,
            sequences, kv_blocks (in use at its start), kv_utilisation, steps (identical
            decode iterations this row stands for, `coda.serving.simulate`), swap_out_blocks and
            swap_in_blocks (KV blocks moved to and from host memory before it computed).
        kv_blocks: blocks of one replica's budget.
        slo: the goodput targets, if any.
        stopped: the simulation stopped at a certain SLO miss (`simulate(stop_at_miss=True)`):
            the frames hold only what ran, and `summary()["slo_met"]` is 0.
    """

    name: str
    n_devices: int
    tdp_w: float
    requests: pd.DataFrame = field(repr=False)
    tbt: pd.DataFrame = field(repr=False)
    iterations: pd.DataFrame = field(repr=False)
    kv_blocks: int
    slo: SLO | None = None
    stopped: bool = False

    def summary(self, window: Window | None = None) -> dict[str, float]:
        """Aggregates (module docstring) as a flat dict of SI numbers, over the requests `window`
        keeps (default: all of them; `requests_measured` says how many)."""
        rq, tbt_frame, it = self.requests, self.tbt, self.iterations
        if window is not None and not window.everything:
            kept = window.keep(rq["arrival_s"].to_numpy())
            rq = rq[kept]
            tbt_frame = tbt_frame[tbt_frame["request"].isin(rq["request"])]
            t0, t1 = float(rq["arrival_s"].min()), float((rq["arrival_s"] + rq["e2e_s"]).max())
            inside = (it["start_s"] >= t0) & (it["start_s"] <= t1)
            it = it[inside] if inside.any() else it
        return self._aggregate(rq, tbt_frame, it)

    def _aggregate(self, rq: pd.DataFrame, tbt_frame: pd.DataFrame, it: pd.DataFrame) -> dict[str, float]:
        out: dict[str, float] = {"requests_measured": float(len(rq))}
        for col in ("ttft_s", "e2e_s", "queue_s"):
            for p in PERCENTILES:
                out[f"{col[:-2]}_p{p}_s"] = float(np.percentile(rq[col], p))
        tbt = tbt_frame["tbt_s"].to_numpy()
        for p in PERCENTILES:
            out[f"tbt_p{p}_s"] = float(np.percentile(tbt, p)) if len(tbt) else math.nan
        out["tpot_mean_s"] = float(rq["tpot_s"].mean())
        span = float((rq["arrival_s"] + rq["e2e_s"]).max() - rq["arrival_s"].min())
        tokens = float(rq["output_tokens"].sum())
        out["makespan_s"] = span
        out["requests_per_s"] = len(rq) / span if span > 0 else math.nan
        out["tokens_per_s"] = tokens / span if span > 0 else math.nan
        out["tokens_per_s_per_device"] = out["tokens_per_s"] / self.n_devices
        out["tokens_per_s_per_watt"] = out["tokens_per_s"] / self.tdp_w
        dur = (it["end_s"] - it["start_s"]).to_numpy()
        w = dur / dur.sum() if dur.sum() > 0 else np.full(len(dur), 1 / max(len(dur), 1))
        out["batch_mean"] = float((it["sequences"].to_numpy() * w).sum())
        out["kv_utilisation_mean"] = float((it["kv_utilisation"].to_numpy() * w).sum())
        out["kv_utilisation_max"] = float(it["kv_utilisation"].max())
        out["preemptions"] = float(rq["preemptions"].sum())
        out["swapped_blocks"] = float(it["swap_out_blocks"].sum() + it["swap_in_blocks"].sum())
        out["iterations"] = float(it["steps"].sum())
        if self.slo is not None:
            ok = self.slo.met(rq)
            out["slo_attainment"] = float(ok.mean())
            out["goodput_requests_per_s"] = float(ok.sum()) / span if span > 0 else math.nan
            met = True
            if self.slo.ttft_p99_s is not None:
                met &= out["ttft_p99_s"] <= self.slo.ttft_p99_s
            if self.slo.tbt_p99_s is not None:
                met &= not out["tbt_p99_s"] > self.slo.tbt_p99_s  # no gaps (one-token outputs) meets it
            out["slo_met"] = float(met and not self.stopped)
        return out

    def summary_frame(self, window: Window | None = None) -> pd.DataFrame:
        """`summary(window)` as a one-row frame named by the deployment."""
        return pd.DataFrame([self.summary(window)], index=[self.name])


def build_result(dep: Deployment, trace: Trace, req: Requests, lg: _Log, budget: KVBudget,
                 slo: SLO | None, stopped: bool = False) -> ServingResult:
    """Frames from the simulator's arrays and logs."""
    n = len(req)
    tpot = np.full(n, np.nan)
    many = req.output > 1
    tpot[many] = (req.finish_s[many] - req.first_token_s[many]) / (req.output[many] - 1)
    ids = np.concatenate(lg.tbt_ids) if lg.tbt_ids else np.zeros(0, dtype=np.int64)
    gaps = np.concatenate(lg.tbt_s) if lg.tbt_s else np.zeros(0)
    max_tbt = np.full(n, np.nan)
    if len(ids):
        np.fmax.at(max_tbt, ids, gaps)
    requests = pd.DataFrame({
        "request": np.arange(n), "replica": req.replica, "arrival_s": req.arrival_s,
        "prompt_tokens": req.prompt, "output_tokens": req.output, "generated_tokens": req.generated,
        "queue_s": req.scheduled_s - req.arrival_s, "ttft_s": req.first_token_s - req.arrival_s,
        "e2e_s": req.finish_s - req.arrival_s, "tpot_s": tpot, "max_tbt_s": max_tbt,
        "preemptions": req.preemptions})
    iterations = pd.DataFrame({
        "replica": lg.replica, "start_s": lg.start_s, "end_s": lg.end_s, "prefill_tokens": lg.prefill_tokens,
        "decodes": lg.decodes, "sequences": lg.sequences, "kv_blocks": lg.kv_blocks, "steps": lg.steps,
        "swap_out_blocks": lg.swap_out_blocks, "swap_in_blocks": lg.swap_in_blocks})
    iterations["kv_utilisation"] = iterations["kv_blocks"] / budget.blocks
    return ServingResult(dep.describe(), dep.n_devices, dep.tdp_w(), requests,
                         pd.DataFrame({"request": ids, "tbt_s": gaps}), iterations, budget.blocks, slo, stopped)


