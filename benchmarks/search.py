"""Time exact design-space searches at PHAZE's setting: `python benchmarks/search.py [--full] [--models ...]`.

Workload (PHAZE, Wang et al. ICML 2024; `coda.placement.phaze`): 1024 chips, global batch 4096,
each model at PHAZE's sequence length: bert-large 512, gpt2-xl 1024, opt-350m 2048, llama2-7b
4096, gpt3-175b 2048. Space: `DesignSpace.phaze()` with `--full` (29,360 designs), else a quick
subspace (`QUICK`, 2-8 tensor cores of 128-256 a side, 1-4 vector cores, 8 or 32 MiB).

Timers and drivers, one row each:

- ``predictor``: `coda.search.search` with the predictor-sum layer timer and its peak bound;
- ``ilp``: `coda.search.search` with the ILP timer (`SearchLayerTime`), which visits designs
  best-first by the refined bounds of `coda.search.refine` (`coda.search.order.RefinedOrder`).

Columns: designs in the space, evaluated, pruned fraction (never evaluated), refined (designs
given bound 2, the per-design work bound, and bound 3, the placement with lower-bound layer
times), ILP schedule-cache hit rate (with ``--workers 1`` only: worker processes keep their own
caches), wall and CPU seconds (this process and its reaped workers), designs of the space per
wall second, the best design and its tokens/s per W. On a shared machine the wall time depends
on the load; CPU seconds do not (much). Tests do not assert timings.
"""

from __future__ import annotations

import argparse
import logging
import resource
import time
from typing import Any

import pandas as pd

from coda.arch.design_space import DesignSpace
from coda.placement import predictor_layer_time
from coda.search import SearchLayerTime, search
from coda.units import MiB

MODELS = {"bert-large": 512, "gpt2-xl": 1024, "opt-350m": 2048, "llama2-7b": 4096, "gpt3-175b": 2048}
"""PHAZE's models with its sequence lengths (`coda.placement.phaze.PHAZE_PLACEMENTS`)."""
DEVICES, GLOBAL_BATCH = 1024, 4096
QUICK = dict(n_tc=(2, 4, 8), n_vc=(1, 2, 4), tc_rows=(128, 256), tc_cols=(128, 256), glb_bytes=(8 * MiB, 32 * MiB))
TIMERS = ("predictor", "ilp")


def _cpu_s() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run(model: str, seq_len: int, timer: str, space: DesignSpace, workers: int) -> dict[str, Any]:
    """One search; its row of the table."""
    t0, c0 = time.perf_counter(), _cpu_s()
    layer_time: Any = predictor_layer_time if timer == "predictor" else SearchLayerTime()
    res = search(model, space, DEVICES, GLOBAL_BATCH, seq_len, workers=workers, layer_time=layer_time)
    wall, cpu = time.perf_counter() - t0, _cpu_s() - c0
    n, evaluated, best = res.n_space, res.n_evaluated + res.n_cached, res.best
    refined = "/".join(map(str, res.n_refined))
    stats = layer_time.cache.stats if timer == "ilp" and workers == 1 else None
    hit = stats.hits / stats.lookups if stats is not None and stats.lookups else float("nan")
    return {"model": model, "seq": seq_len, "timer": timer, "designs": n, "evaluated": evaluated,
            "pruned_frac": 1 - evaluated / n, "refined": refined, "cache_hit_rate": hit, "wall_s": wall,
            "cpu_s": cpu, "designs_per_s": n / wall, "best": None if best is None else best["name"],
            "tokens_per_s_per_w": float("nan") if best is None else float(best["tokens_per_s_per_w"])}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="the whole PHAZE space (29,360 designs), not QUICK")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma list of {', '.join(MODELS)}")
    parser.add_argument("--timers", default="predictor,ilp", help=f"comma list of {', '.join(TIMERS)}")
    parser.add_argument("--workers", type=int, default=2, help="evaluations in flight (default 2)")
    parser.add_argument("--verbose", action="store_true", help="log the search's progress")
    args = parser.parse_args()
    if args.verbose:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    models = [m for m in args.models.split(",") if m]
    timers = [t for t in args.timers.split(",") if t]
    for name in models:
        if name not in MODELS:
            parser.error(f"--models: unknown model {name!r}; use {', '.join(MODELS)}")
    for t in timers:
        if t not in TIMERS:
            parser.error(f"--timers: unknown timer {t!r}; use {', '.join(TIMERS)}")
    space = DesignSpace.phaze() if args.full else DesignSpace.phaze(**QUICK)
    rows = []
    for name in models:
        for t in timers:
            rows.append(run(name, MODELS[name], t, space, args.workers))
            print(pd.DataFrame(rows[-1:]).to_string(index=False, float_format=lambda v: f"{v:.4g}"), flush=True)
    print(f"\nspace: {'DesignSpace.phaze()' if args.full else 'QUICK'} ({len(space)} designs); {DEVICES} chips, "
          f"global batch {GLOBAL_BATCH}; {args.workers} workers")
    with pd.option_context("display.width", 250):
        print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.4g}"))


if __name__ == "__main__":
    main()
