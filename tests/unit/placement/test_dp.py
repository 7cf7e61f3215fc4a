"""The stage-split DP against brute force: synthetic segment matrices and real-shaped chains."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coda.arch.clusters import CollectiveCost
from coda.placement.chain import ChainCosts, PlanTerms
from coda.placement.dp import best_split, brute_force_split, split_value
from coda.placement.pipeline import SplitProblem, evaluate_split, split_problem, stage_layers_from_bounds
from coda.placement.plan import Plan


def _problem(rng, n, p, weight, mem_frac):
    """A SplitProblem built from random additive unit costs (time) and per-stage extra/feasible."""
    unit = rng.uniform(0.1, 2.0, n)
    c = np.concatenate(([0.0], np.cumsum(unit)))
    j, k = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    valid = k > j
    time = np.where(valid, np.round(c[None, :] - c[:, None], 12), np.inf)
    size = rng.uniform(0.0, 1.0, n)
    s = np.concatenate(([0.0], np.cumsum(size)))
    seg = s[None, :] - s[:, None]
    extra = np.stack([rng.uniform(0, 0.5) * seg + rng.uniform(0, 0.2) for _ in range(p)])
    limit = mem_frac * size.sum()
    feasible = np.stack([valid & (seg * (1 + 0.3 * (p - i)) <= limit) for i in range(p)])
    return SplitProblem(time, extra, feasible, float(weight), 1.0)


@settings(max_examples=150, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.integers(1, 9), p=st.integers(1, 9), weight=st.integers(0, 12),
       mem=st.floats(0.2, 3.0))
def test_best_split_matches_brute_force(seed, n, p, weight, mem):
    prob = _problem(np.random.default_rng(seed), n, p, weight, mem)
    got, want = best_split(prob, p), brute_force_split(prob, p) if p <= n else None
    if want is None:
        assert got is None
        return
    assert got is not None
    assert got.step_s == pytest.approx(want.step_s, rel=1e-12)
    assert split_value(prob, got.bounds) == pytest.approx(got.step_s, rel=1e-12)


def _random_terms(rng, n_layers, p):
    n = n_layers + 2
    arr = lambda lo, hi: rng.uniform(lo, hi, n)  # noqa: E731
    chain = ChainCosts(arr(1, 3), arr(2, 6), arr(0, 1), arr(0, 1), np.zeros(n), np.zeros(n), arr(1, 5), arr(1, 5),
                       arr(2, 20), arr(1, 4), arr(0, 3), arr(1, 10), arr(0, 0.3), arr(1, 2), arr(1, 2))
    sync = tuple(CollectiveCost(rng.uniform(0, 0.1), rng.uniform(0, 0.05)) for _ in range(p))
    zero = tuple(CollectiveCost(0.0, 0.0) for _ in range(p))
    limit = float(rng.uniform(0.3, 1.5) * chain.static_bytes.sum())
    return PlanTerms(chain, float(rng.uniform(0, 0.5)), 0.0, sync, zero, bool(rng.integers(2)),
                     float(rng.uniform(0, 0.2)), limit)


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10**6), layers=st.integers(1, 7), p=st.integers(1, 4), m=st.integers(1, 9))
def test_dp_on_chain_matches_every_split_evaluated_directly(seed, layers, p, m):
    """split_problem + best_split == min over all splits of pipeline.evaluate_split (random heterogeneous units)."""
    if p > layers:
        return
    rng = np.random.default_rng(seed)
    terms = _random_terms(rng, layers, p)
    plan = Plan(pp=p, micro_batch=1, global_batch=m)
    best = None
    for cuts in itertools.combinations(range(1, layers + 2), p - 1):
        bounds = (0, *cuts, layers + 2)
        sl = stage_layers_from_bounds(list(zip(bounds[:-1], bounds[1:])))
        if any(x < 1 for x in sl[1:-1]):
            continue
        r = evaluate_split(terms, plan, sl)
        if r.fits and (best is None or r.step_s < best):
            best = r.step_s
    split = best_split(split_problem(terms, plan), p)
    if best is None:
        assert split is None
        return
    assert split is not None
    direct = evaluate_split(terms, plan, stage_layers_from_bounds(split.segments()))
    assert direct.step_s == pytest.approx(best, rel=1e-9)
    assert split.step_s == pytest.approx(best, rel=1e-9)
