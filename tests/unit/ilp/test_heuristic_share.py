"""The faster list-scheduling resource check (`heuristic.fits`) returns exactly what the check at
every point returned before it, so heuristic schedules (the ILP's warm start and fallback, and the
search's ILP timer) are unchanged, bit for bit (hypothesis, fixed seed)."""

from collections.abc import Sequence

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_ilp_optimality import layers  # tests/unit/ilp is on sys.path (rootdir-relative import mode)

from coda.ilp import heuristic, list_schedule, make_problem
from coda.ilp.heuristic import Interval


def reference_fits(placed: Sequence[Interval], start: float, duration: float, need: tuple[int, int],
                   cap: tuple[int, int]) -> bool:
    """The check at every point, as `heuristic.fits` was written before the shortcuts."""
    if duration <= 0:
        return True
    end = start + duration
    points = [start] + [s for s, _, _, _ in placed if start < s < end]
    for x in points:
        tc = need[0] + sum(a for s, e, a, _ in placed if s <= x < e)
        vc = need[1] + sum(b for s, e, _, b in placed if s <= x < e)
        if tc > cap[0] or vc > cap[1]:
            return False
    return True


times = st.integers(0, 12).map(float)
intervals = st.tuples(times, st.integers(0, 6).map(float), st.integers(0, 3), st.integers(0, 3)).map(
    lambda t: (t[0], t[0] + t[1], t[2], t[3]))


@settings(max_examples=600, deadline=None, derandomize=True)
@given(placed=st.lists(intervals, max_size=8), start=times, duration=st.integers(0, 8).map(float),
       need=st.tuples(st.integers(0, 4), st.integers(0, 4)), cap=st.tuples(st.integers(1, 4), st.integers(1, 4)))
def test_fits_equals_the_check_at_every_point(placed, start, duration, need, cap):
    assert heuristic.fits(placed, start, duration, need, cap) == reference_fits(placed, start, duration, need, cap)


@settings(max_examples=80, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(case=layers(max_ops=8))
def test_list_schedules_are_unchanged(case):
    g, acc, lat, fuse = case
    problem = make_problem(g, acc, lat, fuse=fuse)
    fast = list_schedule(problem)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(heuristic, "fits", reference_fits)
        slow = list_schedule(problem)
    assert fast == slow  # the same starts, modes, makespan and rule, exactly
