"""The stage split: a dynamic program over the layer chain, exact for contiguous stages.

Problem (`pipeline.SplitProblem`): cut n units into p contiguous non-empty stages
`[b_0=0, b_1), ..., [b_{p-1}, b_p=n)` to minimise

    F(split) = constant + w * max_i time[b_i, b_{i+1}] + max_i extra[i, b_i, b_{i+1}]

subject to `feasible[i, b_i, b_{i+1}]` (memory of stage i, which depends on its position through
the micro-batches it keeps in flight). With additive stage times the sum of stage times is the
same for every split, which is why only the maximum appears (see `pipeline`).

Algorithm. For a threshold t on the slowest stage let `E(t)` be the least possible
`max_i extra_i` over splits whose stages all take at most t; it is a bottleneck (min-max)
DP over (stage, units covered):

    g_0[0] = 0,   g_{i+1}[k] = min_{j < k, time[j,k] <= t, feasible[i,j,k]} max(g_i[j], extra[i,j,k])

and `E(t) = g_p[n]` (vectorised over j and k with numpy, O(p n^2) per threshold). The optimum
is `min_t w*t + E(t)` over the distinct segment times t (the optimal split's own maximum is
one of them). E is non-increasing in t, so the smallest feasible t is found by bisection and
the scan upwards stops once `w*t + E(inf)` cannot beat the incumbent. Alpa (Zheng et al.,
OSDI'22, section 5.2) uses the same enumerate-the-maximum idea for its stage DP.

`brute_force_split` enumerates every composition and is the oracle of the tests.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from coda.placement.pipeline import SplitProblem


@dataclass(frozen=True)
class StageSplit:
    """A split: stage i covers units `[bounds[i], bounds[i+1])`; `step_s` is F(split)."""

    bounds: tuple[int, ...]
    step_s: float
    max_time_s: float
    max_extra_s: float

    def segments(self) -> list[tuple[int, int]]:
        return list(zip(self.bounds[:-1], self.bounds[1:]))


def _bottleneck(prob: SplitProblem, p: int, t: float, keep: bool = False) -> tuple[float, list[np.ndarray]]:
    """E(t) and, if `keep`, the argmin tables for reconstruction."""
    n = prob.time.shape[0] - 1
    g = np.full(n + 1, np.inf)
    g[0] = 0.0
    args: list[np.ndarray] = []
    allowed_t = prob.time <= t
    for i in range(p):
        cost = np.where(allowed_t & prob.feasible[i], np.maximum(g[:, None], prob.extra[i]), np.inf)
        if keep:
            args.append(np.argmin(cost, axis=0))
        g = cost.min(axis=0)
        if not np.isfinite(g).any():
            return np.inf, args
    return float(g[n]), args


def _reconstruct(args: list[np.ndarray], n: int) -> tuple[int, ...]:
    bounds, k = [n], n
    for a in reversed(args):
        k = int(a[k])
        bounds.append(k)
    return tuple(reversed(bounds))


def best_split(prob: SplitProblem, p: int) -> StageSplit | None:
    """The split minimising F (module docstring); None if no split fits in memory.

    Args:
        prob: segment matrices from `pipeline.split_problem` (or synthetic ones).
        p: number of stages (1 <= p <= n).
    """
    n = prob.time.shape[0] - 1
    if not 1 <= p <= n:
        return None
    times = np.unique(prob.time[np.isfinite(prob.time) & prob.feasible.any(axis=0)])
    if times.size == 0:
        return None
    e_inf, _ = _bottleneck(prob, p, float(times[-1]))
    if not np.isfinite(e_inf):
        return None
    lo, hi = 0, len(times) - 1  # smallest feasible threshold index (feasible at hi)
    cache: dict[int, float] = {hi: e_inf}
    while lo < hi:
        mid = (lo + hi) // 2
        cache[mid] = _bottleneck(prob, p, float(times[mid]))[0]
        if np.isfinite(cache[mid]):
            hi = mid
        else:
            lo = mid + 1
    best_i, best_f = -1, np.inf
    for i in range(lo, len(times)):
        t = float(times[i])
        if prob.weight * t + e_inf >= best_f:
            break
        e = cache[i] if i in cache else _bottleneck(prob, p, t)[0]
        f = prob.weight * t + e
        if f < best_f:
            best_i, best_f = i, f
    t = float(times[best_i])
    e, args = _bottleneck(prob, p, t, keep=True)
    bounds = _reconstruct(args, n)
    max_t = max(float(prob.time[a, b]) for a, b in zip(bounds[:-1], bounds[1:]))
    max_e = max(float(prob.extra[i, a, b]) for i, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])))
    return StageSplit(bounds, prob.constant + prob.weight * max_t + max_e, max_t, max_e)


def split_value(prob: SplitProblem, bounds: tuple[int, ...]) -> float:
    """F(split) for explicit bounds (inf if a stage does not fit)."""
    segs = list(zip(bounds[:-1], bounds[1:]))
    if any(b <= a or not prob.feasible[i, a, b] for i, (a, b) in enumerate(segs)):
        return np.inf
    return (prob.constant + prob.weight * max(float(prob.time[a, b]) for a, b in segs)
            + max(float(prob.extra[i, a, b]) for i, (a, b) in enumerate(segs)))


def brute_force_split(prob: SplitProblem, p: int) -> StageSplit | None:
    """Every split of n units into p stages (C(n-1, p-1) of them): the test oracle."""
    n = prob.time.shape[0] - 1
    best: StageSplit | None = None
    for cuts in itertools.combinations(range(1, n), p - 1):
        bounds = (0, *cuts, n)
        f = split_value(prob, bounds)
        if np.isfinite(f) and (best is None or f < best.step_s):
            best = StageSplit(bounds, f, 0.0, 0.0)
    return best
