"""The ZeRO-1/2 weight all-gather overlapped with the next forward (`Software.dp_gather_overlap`)."""

import dataclasses
import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_dp import _random_terms

from coda.arch.clusters import CollectiveCost, cluster
from coda.models.config import ModelConfig
from coda.placement import MEGATRON_CORE, Plan
from coda.placement.chain import CostModel
from coda.placement.dp import best_split
from coda.placement.pipeline import evaluate_split, gather_exposed_s, split_problem, stage_layers_from_bounds
from coda.placement.step import evaluate_plan


def _terms(seed, layers, p, bucket):
    rng = np.random.default_rng(seed)
    t = _random_terms(rng, layers, p)
    gather = tuple(CollectiveCost(rng.uniform(0, 0.1), rng.uniform(0, 0.5)) for _ in range(p))
    return dataclasses.replace(t, dp_gather=gather, gather_bucket_bytes=bucket)


def test_exposed_gather_is_the_first_bucket_or_the_excess_over_the_forward():
    t = _terms(1, 3, 1, None)
    gc = t.dp_gather[0]
    assert gather_exposed_s(t, 0, 10.0, 1.0) == gc.time(10.0)  # not overlapped: all of it
    o = dataclasses.replace(t, gather_bucket_bytes=2.0)
    assert gather_exposed_s(o, 0, 10.0, 0.0) == pytest.approx(gc.time(10.0))  # no forward to hide behind
    assert gather_exposed_s(o, 0, 10.0, 1e9) == pytest.approx(gc.time(2.0))  # all but the first bucket hidden
    assert gather_exposed_s(o, 0, 0.0, 1.0) == 0.0


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10**6), layers=st.integers(1, 7), p=st.integers(1, 4), m=st.integers(1, 9),
       bucket=st.floats(0.1, 50.0))
def test_split_dp_with_overlapped_gather_matches_every_split(seed, layers, p, m, bucket):
    """split_problem + best_split == min over all splits of evaluate_split, with the gather overlapped."""
    if p > layers:
        return
    terms = _terms(seed, layers, p, bucket)
    plan = Plan(pp=p, micro_batch=1, global_batch=m)
    best = None
    for cuts in itertools.combinations(range(1, layers + 2), p - 1):
        bounds = (0, *cuts, layers + 2)
        r = evaluate_split(terms, plan, stage_layers_from_bounds(list(zip(bounds[:-1], bounds[1:]))))
        if r.fits and (best is None or r.step_s < best):
            best = r.step_s
    split = best_split(split_problem(terms, plan), p)
    if best is None:
        assert split is None
        return
    assert split is not None and split.step_s == pytest.approx(best, rel=1e-9)


def test_overlap_shortens_a_zero1_step_and_leaves_zero0_alone():
    cfg = ModelConfig(name="gpt-2048", n_layers=4, hidden=2048, n_heads=16, ffn_hidden=8192, vocab_size=32768,
                      max_seq_len=2048)
    cl = cluster("dgx-h100", 16)
    on, off = (CostModel(cfg, cl, 2048, "bf16", dataclasses.replace(MEGATRON_CORE, dp_gather_overlap=v))
               for v in (True, False))
    z1 = Plan(tp=1, pp=1, dp=16, micro_batch=1, global_batch=32, recompute="none", zero=1)
    a, b = evaluate_plan(on, z1), evaluate_plan(off, z1)
    assert a.breakdown()["dp_comm"] < b.breakdown()["dp_comm"] and a.step_time_s < b.step_time_s
    z0 = dataclasses.replace(z1, zero=0)
    assert evaluate_plan(on, z0).step_time_s == evaluate_plan(off, z0).step_time_s
