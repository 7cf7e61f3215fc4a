"""`coda.search.order`: the lazy best-first order gives the sequence of the final bounds (descending,
ties in space order) however its bounds are computed: here, or some of them "in a worker" (offloaded
and landed in any order), and the pruning shortcut only ends the sequence early."""

import random

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from coda.search.order import RefinedOrder, StaticOrder

NEVER = lambda bound: False  # noqa: E731


def _bounds(draw, n):
    vals = st.sampled_from([0.0, 0.5, 1.0, 1.5, 2.0, 3.0])  # few values: many ties
    return [[draw(vals) for _ in range(n)] for _ in range(3)]


def _order(first, second, third):
    def remote(i):
        return (lambda j: third[j], (i,))

    return RefinedOrder(np.array(first), (lambda i: second[i], lambda i: third[i]), remote=remote)


def _final(first, second, third):
    return np.minimum(np.minimum(first, second), third)


@st.composite
def cases(draw):
    n = draw(st.integers(1, 12))
    return _bounds(draw, n), draw(st.integers(0, 2**16))


@settings(max_examples=200, deadline=None)
@given(cases())
def test_lazy_order_is_the_order_of_the_final_bounds(case):
    (first, second, third), seed = case
    want = StaticOrder(_final(first, second, third))
    order = _order(first, second, third)
    assert [order.at(p) for p in range(len(order))] == [want.at(p) for p in range(len(want))]
    assert all(order.bound(i) == want.bound(i) for i in range(len(order)))
    assert order.refined[0] <= len(order) and order.refined[1] <= order.refined[0]


@settings(max_examples=200, deadline=None)
@given(cases())
def test_offloaded_bounds_give_the_same_sequence(case):
    (first, second, third), seed = case
    want = StaticOrder(_final(first, second, third))
    order, rng, out, seq = _order(first, second, third), random.Random(seed), [], []
    while len(seq) < len(order):
        i = order.at(len(seq), remote=True)
        if i is not None:
            seq.append(i)
            continue
        job = order.offload(NEVER)
        if job is not None and rng.random() < 0.7:  # a worker takes it; results come back in any order
            out.append(job)
            continue
        if job is not None:
            out.append(job)
        if not out:
            assert order.step(NEVER)
            continue
        d, fn, args = out.pop(rng.randrange(len(out)))
        order.land(d, fn(*args))
    assert seq == [want.at(p) for p in range(len(want))]
    assert all(order.bound(i) == want.bound(i) for i in seq)


@settings(max_examples=200, deadline=None)
@given(cases(), st.sampled_from([0.0, 0.75, 1.25, 2.5]))
def test_pruning_shortcut_only_cuts_the_pruned_tail(case, floor):
    (first, second, third), _ = case
    final = _final(first, second, third)
    want = StaticOrder(final)
    order = _order(first, second, third)
    is_pruned = lambda bound: bound < floor  # noqa: E731
    for p in range(len(order)):
        i = order.at(p, is_pruned)
        if is_pruned(order.bound(i)):  # the visit ends here: every later final bound is pruned too
            assert all(is_pruned(b) for b in [want.bound(want.at(q)) for q in range(p, len(want))])
            assert final[i] <= order.bound(i)
            break
        assert i == want.at(p) and order.bound(i) == want.bound(i)
