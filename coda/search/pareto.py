"""The Pareto front of evaluated designs: no other design is at least as good on both axes and
better on one (by default: lower TDP per chip, higher tokens/s), and the front a search prunes
against (`Front`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

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


def dominates(cost_a: float, value_a: float, cost_b: float, value_b: float) -> bool:
    """Whether point a dominates point b: `cost_a <= cost_b` and `value_a >= value_b`, one of them strict
    (the relation of `pareto_front`). It is transitive, which is what makes pruning against it exact."""
    return cost_a <= cost_b and value_a >= value_b and (cost_a < cost_b or value_a > value_b)


@dataclass
class Front:
    """The Pareto front of the points added so far (cost to minimise, value to maximise), for pruning.

    A search adds each evaluated feasible design's (`tdp_w`, `tokens_per_s`) and asks, before it
    evaluates a design of exact cost `c` and value at most `v_ub` (its upper bound), whether
    `covers(c, v_ub)`: some added point dominates (c, v_ub). Then it also dominates the design's
    real point (c, v) with v <= v_ub (a dominates (c, v_ub) and (c, v_ub) weakly dominates (c, v)),
    so the design is not on the front of any set that holds that added point. Only non-dominated
    points are kept: a point dominated by another added point covers nothing that point does not.

    Attributes:
        points: the non-dominated (cost, value) pairs added so far, in no particular order.
    """

    points: list[tuple[float, float]] = field(default_factory=list)

    def covers(self, cost: float, value_bound: float) -> bool:
        """Whether an added point dominates (cost, value_bound) (`dominates`, one axis strict)."""
        return any(dominates(c, v, cost, value_bound) for c, v in self.points)

    def add(self, cost: float, value: float) -> None:
        """Add an evaluated point; points it dominates leave the front (exact duplicates stay)."""
        if self.covers(cost, value):
            return
        self.points = [(c, v) for c, v in self.points if not dominates(cost, value, c, v)]
        self.points.append((float(cost), float(value)))


__all__ = ["Front", "dominates", "pareto_front"]
