"""The capacity of a deployment: the highest arrival rate at which it meets a latency SLO.

A workload is a template of requests at a mean rate of one per second: a seeded generated trace
(`Workload`: lengths from `Lengths`, Poisson or gamma gaps) or a user's trace rescaled to that
rate (`unit_rate`). At rate r the arrival times are the template's divided by r, the lengths
the same, so every rate sees the same requests in the same order (numpy draws exponential and
gamma gaps as a scale times a standard draw: `generate(n, r, seed=s)` is the template scaled by
1/r to the bit).

`capacity(...)` finds the highest rate of a fixed geometric grid, (1 + rel_tol)^k requests/s
(5% apart by default), up to the bound, at which the P99 TTFT and TBT meet the SLO:

1. one request alone (the template's longest): if it misses the SLO, the deployment misses it
   at any rate (capacity 0, one simulation);
2. with an incumbent (`beat_qps`, the rate at which this deployment would tie the best found),
   the first grid rate above it: a miss ends the search (``below_best``: it cannot win, a tie
   goes to the deployment visited first);
3. the highest grid rate under the bound; if it meets the SLO that is the capacity (then the
   trace is short enough for an overload not to show in its percentiles);
4. halving (14 grid steps at 5%) from there until a rate meets the SLO (at most
   `MAX_HALVINGS` times), then binary search on the grid between the highest rate met and the
   lowest missed. It assumes that meeting the SLO at a rate implies meeting it at every lower
   one, so that every order of trials finds the same grid rate. A simulation stops as soon as
   the miss is certain (`simulate(stop_at_miss=True)`): overloaded runs are the long ones.

`capacity_bound` is the upper end: a replica's rate r of requests of p prompt and o output
tokens needs r (p + o - 1) tokens/s through the token-level ops and r (o - 1) decode tokens/s,
and an iteration of T tokens takes at least the token-level time `linear_table` gives each
stage (attention and the LM head only add to it), so with at most n_max sequences running
(`max_batch` and the KV blocks) r <= min(theta / (p + o - 1), delta / (o - 1)), theta = max over
T <= T_cap of T / max_s lin_s(T), delta = max over d <= n_max of d / min over t >= d of lin(t)
(one decode per running sequence per pass through the pipeline). The search skips a deployment
whose bound cannot beat the best capacity found, and clamps bisection to the bound, so pruning
never changes the answer (`tests/unit/serving/test_search.py` checks it against no pruning).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from coda.errors import ConfigError, InfeasibleDesign
from coda.serving.costs import CostTable
from coda.serving.deployment import Deployment, KVBudget
from coda.serving.metrics import SLO
from coda.serving.schedulers.base import SchedulerKind
from coda.serving.simulate import simulate
from coda.serving.trace import ARRIVALS, MAX_REQUESTS, Lengths, Trace, generate

log = logging.getLogger(__name__)

DEFAULT_REQUESTS = 300
"""Requests per replica a capacity probe simulates unless the workload says otherwise. The
capacity measured is that of a finite run from an empty system: when requests live long (2000
output tokens take minutes), a run of too few of them ends before the queue and the KV cache
reach their steady state, and the capacity comes out at the bound (`capacity_below_qps` inf)."""
DEFAULT_REL_TOL = 0.05
"""Bisection stops when the lowest rate missed is within this factor above the highest met."""
MAX_HALVINGS = 10
"""Rates tried below the bound, halving each time, before a deployment is declared unable to
meet the SLO under load (its capacity is then below bound / 2^10 and reported as 0)."""


@dataclass(frozen=True)
class Workload:
    """A generated workload: `requests` requests with lengths from `prompt` and `output`, arriving
    as a Poisson process (or gamma with coefficient of variation `cv`), seeded.

    Attributes:
        prompt, output: token-length distributions (`coda.serving.trace.Lengths`).
        requests: requests per simulation (the serving search: per replica), in [1, 2^24].
        arrival: ``poisson`` or ``gamma``.
        cv: gamma's coefficient of variation of the gaps (> 0; 1 is Poisson).
        seed: the generator's seed (>= 0).
    """

    prompt: Lengths
    output: Lengths
    requests: int = DEFAULT_REQUESTS
    arrival: str = "poisson"
    cv: float = 1.0
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("prompt", "output"):
            if not isinstance(getattr(self, name), Lengths):
                raise ConfigError(f"workload: {name}={getattr(self, name)!r} must be a Lengths "
                                  "(coda.serving.trace.Lengths('fixed', 512))")
        r = self.requests
        if isinstance(r, bool) or not isinstance(r, int) or not 1 <= r <= MAX_REQUESTS:
            raise ConfigError(f"workload: requests={r!r} must be an integer in [1, {MAX_REQUESTS}]")
        if self.arrival not in ARRIVALS:
            raise ConfigError(f"workload: arrival={self.arrival!r} must be one of {', '.join(ARRIVALS)}")
        if isinstance(self.cv, bool) or not isinstance(self.cv, (int, float)) or not 0 < self.cv < math.inf:
            raise ConfigError(f"workload: cv={self.cv!r} must be a finite number > 0 (1 is Poisson)")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"workload: seed={self.seed!r} must be an integer >= 0")

    def template(self) -> Trace:
        """The requests at one per second (module docstring)."""
        return generate(self.requests, 1.0, self.prompt, self.output, arrival=self.arrival, cv=float(self.cv),
                        seed=self.seed)

    def describe(self, per_replica: bool = False) -> str:
        """`3996 in / 100 out, 300 poisson requests (per replica), seed 0`."""
        def one(x: Lengths) -> str:
            return str(x.lo) if x.kind == "fixed" else f"{x.kind}:{x.lo}:{x.hi}" if x.kind != "csv" else f"csv:{x.path}"

        cv = f" (cv {self.cv:g})" if self.arrival == "gamma" else ""
        each = " per replica" if per_replica else ""
        return (f"{one(self.prompt)} in / {one(self.output)} out, {self.requests} {self.arrival}{cv} requests{each}, "
                f"seed {self.seed}")


def unit_rate(trace: Trace) -> Trace:
    """`trace` with its arrivals rescaled to one request per second on average ((n - 1) gaps over
    its span), the first at 0.

    Raises:
        ConfigError: fewer than two requests, or all arriving at once (no rate to scale).
    """
    a = trace.arrival_s.astype(float)
    span = float(a[-1] - a[0])
    if len(a) < 2 or span <= 0:
        raise ConfigError(f"trace {trace.source or ''}: {len(a)} request(s) arriving over {span:g} s have no arrival "
                          "rate to scale; the search needs at least two requests at different times")
    rate = (len(a) - 1) / span
    return Trace((a - a[0]) * rate, trace.prompt_tokens, trace.output_tokens, source=f"{trace.source} (rescaled)")


def at_rate(template: Trace, rate_per_s: float) -> Trace:
    """The template's requests arriving at `rate_per_s` (arrival times divided by it)."""
    return Trace(template.arrival_s / rate_per_s, template.prompt_tokens, template.output_tokens,
                 source=f"{rate_per_s:.4g}/s")


def iteration_token_cap(dep: Deployment, template: Trace) -> int:
    """Most tokens one iteration of the deployment's scheduler can hold on this workload (before
    the ep split): sarathi max(chunk, max_batch); vllm and orca max(max_tokens, max_batch, the
    longest prompt + output, which runs alone or is recomputed after a preemption); static its
    batch of the longest requests."""
    sc = dep.scheduler
    longest = int((template.prompt_tokens + template.output_tokens).max())
    if sc.kind is SchedulerKind.SARATHI:
        return max(sc.chunk, sc.max_batch)
    if sc.kind is SchedulerKind.STATIC:
        return sc.max_batch * longest
    return max(sc.max_tokens, sc.max_batch, longest)


def capacity_bound(dep: Deployment, lin: np.ndarray, budget: KVBudget, template: Trace) -> float:
    """An upper bound on the deployment's request rate (module docstring), requests/s.

    Args:
        dep: the deployment (replicas, ep, scheduler).
        lin: `coda.serving.costs.linear_table` of its layout, (tokens + 1, pp) seconds.
        budget: its replica's KV budget.
        template: the workload (mean and shortest lengths).
    """
    ep = dep.ep
    cap = min(iteration_token_cap(dep, template), ep * (len(lin) - 1))
    T = np.arange(1, cap + 1)
    t_local = -(-T // ep)
    stage_max = lin.max(axis=1)
    theta = float(np.max(T / stage_max[t_local]))
    p, o = template.prompt_tokens.astype(float), template.output_tokens.astype(float)
    bound = theta / float(np.mean(p + o - 1))
    decode_tokens = float(np.mean(o - 1))
    if decode_tokens > 0:
        per_seq = budget.blocks_for(int(p.min()) + 1)
        n_max = max(1, min(dep.scheduler.max_batch, budget.blocks // per_seq))
        d = np.arange(1, n_max + 1)
        d_local = -(-d // ep)
        passes = lin.sum(axis=1)
        suffix_min_stage = np.minimum.accumulate(stage_max[::-1])[::-1]  # min over t >= d
        delta = min(float(np.max(d / suffix_min_stage[np.minimum(d_local, len(lin) - 1)])),
                    n_max / float(passes[1:].min()))
        bound = min(bound, delta / decode_tokens)
    return bound * dep.n_replicas


@dataclass(frozen=True)
class Capacity:
    """What `capacity` found.

    Attributes:
        qps: the highest rate of the grid that met the SLO, requests/s (0 when none did; NaN
            when the search stopped because the deployment cannot exceed `beat_qps`).
        missed_qps: the lowest rate tried above it that missed (inf when none did): the
            capacity is below it.
        upper_qps: the bound the search was clamped to.
        status: ``ok``; ``below_best`` (it missed the SLO at the first grid rate above the
            incumbent's: capacity < missed_qps); ``slo_unmet`` (one request alone misses it);
            ``slo_unmet_under_load`` (every rate down to bound / 2^MAX_HALVINGS missed it).
        simulations: simulations run.
        ttft_p99_s, tbt_p99_s, tokens_per_s: the percentiles and output tokens/s at `qps` (at the
            lowest rate tried when none met the SLO).
        alone_ttft_s, alone_tbt_p99_s: one request alone (the SLO's floor).
    """

    qps: float
    missed_qps: float
    upper_qps: float
    status: str
    simulations: int
    ttft_p99_s: float
    tbt_p99_s: float
    tokens_per_s: float
    alone_ttft_s: float
    alone_tbt_p99_s: float


def grid_rate(k: int, rel_tol: float) -> float:
    """Rate k of the capacity grid, (1 + rel_tol)^k requests/s."""
    return math.exp(k * math.log1p(rel_tol))


def grid_index(rate_per_s: float, rel_tol: float, up: bool) -> int:
    """The grid index at or below (or, with `up`, at or above) a rate."""
    x = math.log(rate_per_s) / math.log1p(rel_tol)
    return math.ceil(x - 1e-9) if up else math.floor(x + 1e-9)


def capacity_row(dep: Deployment, template: Trace, slo: SLO, upper_qps: float, table: CostTable, rel_tol: float,
                 beat_qps: float = 0.0) -> dict[str, Any]:
    """`capacity`'s fields and the seconds it took as a store row, or the ``memory`` row when the
    deployment does not fit (what the searches' workers return)."""
    t0 = time.perf_counter()
    try:
        c = capacity(dep, template, slo, upper_qps, table=table, rel_tol=rel_tol, beat_qps=beat_qps)
    except InfeasibleDesign as err:
        return {"status": "memory", "reason": str(err), "simulations": 0}
    row = asdict(c)
    row["seconds"] = time.perf_counter() - t0
    return row


def capacity(dep: Deployment, template: Trace, slo: SLO, upper_qps: float, table: CostTable | None = None,
             rel_tol: float = DEFAULT_REL_TOL, beat_qps: float = 0.0) -> Capacity:
    """The highest rate of the grid (1 + rel_tol)^k up to `upper_qps` at which `dep` meets `slo` on
    `template` (module docstring). On a fixed grid, every order of trials that assumes the SLO
    holds at every rate below one where it holds finds the same rate, so an incumbent cut
    (`beat_qps`) changes which rates are tried, never the capacity reported.

    Args:
        dep: the deployment.
        template: the workload at one request per second (`Workload.template()` or `unit_rate`).
        slo: targets on the P99 of TTFT and TBT (`ttft_p99_s`, `tbt_p99_s`).
        upper_qps: the bound (`capacity_bound`), requests/s.
        table: the iteration costs (default: `CostTable.for_deployment`).
        rel_tol: the grid's ratio minus one, in (0, 1]: the capacity is within a factor
            1 + rel_tol below the rate at which the SLO starts to fail.
        beat_qps: stop as soon as the SLO fails at the first grid rate above this one (the rate
            at which the deployment would tie the best found so far: it must exceed it to win);
            0 measures the capacity whatever it is.

    Raises:
        ConfigError: rel_tol, upper_qps or beat_qps out of range.
        InfeasibleDesign: a request can never fit the KV cache (from `simulate`).
    """
    if isinstance(rel_tol, bool) or not isinstance(rel_tol, (int, float)) or not 0 < rel_tol <= 1:
        raise ConfigError(f"capacity: rel_tol={rel_tol!r} must be a fraction in (0, 1]")
    if not (isinstance(upper_qps, (int, float)) and 0 < upper_qps < math.inf):
        raise ConfigError(f"capacity: upper_qps={upper_qps!r} must be a finite number of requests/s > 0")
    if not (isinstance(beat_qps, (int, float)) and 0 <= beat_qps < math.inf):
        raise ConfigError(f"capacity: beat_qps={beat_qps!r} must be a finite number of requests/s >= 0")
    if table is None:
        table = CostTable.for_deployment(dep, max_context=int((template.prompt_tokens + template.output_tokens).max()))
    seen: dict[int, dict[str, float]] = {}

    def met(k: int) -> bool:
        if k not in seen:
            seen[k] = simulate(dep, at_rate(template, grid_rate(k, rel_tol)), cost=table, slo=slo,
                               stop_at_miss=True).summary()
        return bool(seen[k]["slo_met"])

    i = int(np.argmax(template.prompt_tokens + template.output_tokens))  # the longest request, alone
    lone = Trace(np.zeros(1), template.prompt_tokens[i:i + 1], template.output_tokens[i:i + 1], source="one request")
    alone = simulate(dep, lone, cost=table, slo=slo).summary()

    def result(qps: float, missed: float, status: str, s: dict[str, float]) -> Capacity:
        return Capacity(qps, missed, upper_qps, status, len(seen) + 1, s["ttft_p99_s"], s["tbt_p99_s"],
                        s["tokens_per_s"], alone["ttft_p99_s"], alone["tbt_p99_s"])

    if not alone["slo_met"]:
        return result(0.0, 0.0, "slo_unmet", alone)
    top = grid_index(upper_qps, rel_tol, up=False)
    lo: int | None = None
    if beat_qps > 0:
        kb = grid_index(beat_qps, rel_tol, up=False) + 1  # the first grid rate above it: to win, not to tie
        if kb > top:  # the bound is below the rate to beat (the search prunes these before)
            return result(math.nan, grid_rate(kb, rel_tol), "below_best", alone)
        if not met(kb):
            return result(math.nan, grid_rate(kb, rel_tol), "below_best", seen[kb])
        lo = kb
    if met(top):
        return result(grid_rate(top, rel_tol), math.inf, "ok", seen[top])
    hi = top
    if lo is None:
        halving = max(1, grid_index(2.0, rel_tol, up=True))
        for _ in range(MAX_HALVINGS):
            k = hi - halving
            if met(k):
                lo = k
                break
            hi = k
        else:
            return result(0.0, grid_rate(hi, rel_tol), "slo_unmet_under_load", seen[hi])
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if met(mid) else (lo, mid)
    log.debug("%s: capacity %.4g requests/s in %d simulations", dep.describe(), grid_rate(lo, rel_tol), len(seen) + 1)
    return result(grid_rate(lo, rel_tol), grid_rate(hi, rel_tol), "ok", seen[lo])


__all__ = ["DEFAULT_REL_TOL", "DEFAULT_REQUESTS", "MAX_HALVINGS", "Capacity", "Workload", "at_rate", "capacity",
           "capacity_bound", "grid_index", "grid_rate", "iteration_token_cap", "unit_rate"]
