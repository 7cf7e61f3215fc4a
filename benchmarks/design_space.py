"""Time the enumeration of design spaces: `python benchmarks/design_space.py [--repeats N]`.

Prints one row per space: points in the product, admitted designs, best-of-N wall time of a
fresh `len(space)` (vectorised area + TDP + filters), and points enumerated per second. The
target for `DesignSpace.phaze()` is under 2 s; tests do not assert timings.
"""

from __future__ import annotations

import argparse
import itertools
import time

import pandas as pd

from coda.arch.design_space import DesignSpace
from coda.units import GiB


def _best_time(make: object, repeats: int) -> tuple[float, int]:
    best, n = float("inf"), 0
    for _ in range(repeats):
        space = make()  # type: ignore[operator]
        t0 = time.perf_counter()
        n = len(space)
        best = min(best, time.perf_counter() - t0)
    return best, n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    cases = {
        "phaze()": DesignSpace.phaze,
        "phaze(max_tdp_w=200)": lambda: DesignSpace.phaze(max_tdp_w=200.0),
        "phaze(3 HBM sizes x 3 HBM bandwidths)": lambda: DesignSpace.phaze(
            hbm_bytes=(32 * GiB, 64 * GiB, 80 * GiB), hbm_bw_bytes_per_s=(0.8e12, 1.2e12, 1.6e12)),
    }
    rows = []
    for label, make in cases.items():
        seconds, n = _best_time(make, args.repeats)
        points = make().n_points
        rows.append({"space": label, "points": points, "admitted": n, "seconds": seconds,
                     "points_per_s": points / seconds, "admitted_per_s": n / seconds})

    space = DesignSpace.phaze()
    len(space)
    t0 = time.perf_counter()
    built = sum(1 for _ in itertools.islice(iter(space), 5000))
    seconds = time.perf_counter() - t0
    rows.append({"space": "phaze(): iterate 5000 Accelerators", "points": built, "admitted": built,
                 "seconds": seconds, "points_per_s": built / seconds, "admitted_per_s": built / seconds})

    with pd.option_context("display.width", 200):
        print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.4g}"))


if __name__ == "__main__":
    main()
