"""The Pareto front of evaluated designs: no other design is at least as good on both axes and
better on one (by default: lower TDP per chip, higher tokens/s).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from coda.errors import ConfigError


def pareto_front(frame: pd.DataFrame, cost: str = "tdp_w", value: str = "tokens_per_s") -> pd.DataFrame:
    """Rows of `frame` (feasible ones, `status == "ok"` when the column exists) that no other row
    dominates: `other[cost] <= row[cost]` and `other[value] >= row[value]` with one strict. Exact
    duplicates are all kept. Sorted by ascending cost.

    Raises:
        ConfigError: a missing column.
    """
    missing = [c for c in (cost, value) if c not in frame.columns]
    if missing:
        raise ConfigError(f"pareto_front: no column {missing}; columns are {list(frame.columns)}")
    ok = frame[frame["status"] == "ok"] if "status" in frame.columns else frame
    ok = ok.sort_values([cost, value], ascending=[True, False], kind="stable")
    c, v = ok[cost].to_numpy(float), ok[value].to_numpy(float)
    # sorted by cost, then value descending: a row is on the front when its value beats every
    # row of strictly lower cost, and ties the best of its own cost
    keep = np.zeros(len(ok), dtype=bool)
    best_below = -np.inf
    i = 0
    while i < len(ok):
        j = i
        while j < len(ok) and c[j] == c[i]:
            j += 1
        top = v[i]
        if top > best_below:
            keep[i:j] = v[i:j] == top
            best_below = top
        i = j
    return ok[keep]
