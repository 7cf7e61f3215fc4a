"""`pareto_front` equals the brute-force definition of Pareto optimality."""

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coda.errors import ConfigError
from coda.search import pareto_front

points = st.lists(st.tuples(st.integers(1, 6), st.integers(0, 6), st.sampled_from(["ok", "ok", "infeasible"])),
                  max_size=25)


@settings(max_examples=300, deadline=None)
@given(points)
def test_front_is_exactly_the_non_dominated_feasible_rows(rows):
    df = pd.DataFrame(rows, columns=["tdp_w", "tokens_per_s", "status"])
    ok = df[df["status"] == "ok"]

    def dominated(i):
        r = ok.loc[i]
        return any((o.tdp_w <= r.tdp_w and o.tokens_per_s >= r.tokens_per_s
                    and (o.tdp_w < r.tdp_w or o.tokens_per_s > r.tokens_per_s)) for o in ok.itertuples())

    expected = sorted(i for i in ok.index if not dominated(i))
    front = pareto_front(df)
    assert sorted(front.index) == expected
    assert list(front["tdp_w"]) == sorted(front["tdp_w"])


def test_missing_column_is_a_config_error():
    with pytest.raises(ConfigError, match="no column"):
        pareto_front(pd.DataFrame({"tdp_w": [1.0]}))
