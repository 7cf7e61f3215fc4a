"""The measurement window: by default every request counts (as before); a warm-up and a cool-down,
in seconds or as fractions, leave the first and last requests out of every aggregate."""

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coda.errors import ConfigError
from coda.serving.metrics import ServingResult, Window


def result(arrivals, ttft, e2e, gaps_per_request=3):
    n = len(arrivals)
    rq = pd.DataFrame({"request": np.arange(n), "arrival_s": arrivals, "ttft_s": ttft, "e2e_s": e2e,
                       "queue_s": np.zeros(n), "tpot_s": np.full(n, 0.01), "output_tokens": np.full(n, 4),
                       "preemptions": np.zeros(n, dtype=int)})
    ids = np.repeat(np.arange(n), gaps_per_request)
    tbt = pd.DataFrame({"request": ids, "tbt_s": 0.001 * (ids + 1)})
    start = np.asarray(arrivals, dtype=float)
    it = pd.DataFrame({"start_s": start, "end_s": start + 0.5, "sequences": np.arange(1, n + 1),
                       "kv_utilisation": np.linspace(0, 1, n), "steps": np.ones(n, dtype=int),
                       "swap_out_blocks": 0, "swap_in_blocks": 0})
    return ServingResult("x", 1, 100.0, rq, tbt, it, 10)


def test_default_window_is_everything():
    r = result(np.arange(10.0), np.arange(10.0), np.arange(10.0) + 1)
    assert r.summary() == r.summary(Window())
    assert r.summary()["requests_measured"] == 10


def test_warmup_and_cooldown_in_seconds():
    arr = np.arange(10.0)
    r = result(arr, ttft=arr * 10, e2e=arr * 10 + 1)
    s = r.summary(Window(warmup_s=2.0, cooldown_s=3.0))  # keeps arrivals 2..6
    assert s["requests_measured"] == 5
    assert s["ttft_p50_s"] == pytest.approx(40.0)
    assert s["tbt_p99_s"] == pytest.approx(np.percentile(0.001 * np.array([3, 4, 5, 6, 7]).repeat(3), 99))
    assert s["makespan_s"] == pytest.approx(6 + 61 - 2)
    assert s["batch_mean"] == pytest.approx(np.mean(np.arange(3, 11)))  # iterations starting in [2, 67]: 2..9


def test_fractions():
    arr = np.arange(100.0)
    r = result(arr, ttft=arr, e2e=arr + 1)
    s = r.summary(Window(warmup_fraction=0.1, cooldown_fraction=0.05))
    assert s["requests_measured"] == 85
    assert s["ttft_p50_s"] == pytest.approx(np.percentile(np.arange(10.0, 95.0), 50))


@pytest.mark.parametrize("kw", [{"warmup_s": -1}, {"cooldown_s": math.inf}, {"warmup_fraction": 1.0},
                                {"warmup_fraction": 0.6, "cooldown_fraction": 0.4}, {"warmup_s": True}])
def test_bad_windows_are_refused(kw):
    with pytest.raises(ConfigError, match="window"):
        Window(**kw)


def test_a_window_that_keeps_nothing_says_so():
    r = result(np.arange(5.0), np.ones(5), np.ones(5) * 2)
    with pytest.raises(ConfigError, match="keeps none of the 5 requests"):
        r.summary(Window(warmup_s=3.0, cooldown_s=3.0))


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 60), w=st.floats(0, 0.49), c=st.floats(0, 0.49))
def test_fraction_window_keeps_the_middle(n, w, c):
    keep = Window(warmup_fraction=w, cooldown_fraction=c).keep(np.arange(float(n)))
    lo, hi = math.floor(w * n), n - math.floor(c * n)
    assert keep.tolist() == [lo <= i < hi for i in range(n)]
