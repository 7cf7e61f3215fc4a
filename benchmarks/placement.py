"""Time per evaluated plan and per `optimize` call, 3 models x 3 cluster sizes on dgx-a100, and
`optimize` over expert-parallel widths for two MoE models on dgx-h100.

Targets: one `coda.evaluate.training` under 5 ms once the model's layers are profiled (the layer
profile, i.e. building and predicting the graphs, is cached per (model, device, tp,
micro-batch, seq, dtype, SP)); `optimize` for gpt3-175b on 1024 GPUs under 10 s. Columns:
cold = empty caches; layers profiled = the plan's cost arrays rebuilt (median of 5); cached
plan = a repeated call; optimize = from empty caches.

Run: python benchmarks/placement.py
"""

from __future__ import annotations

import time

import pandas as pd

from coda.arch.clusters import cluster
from coda.evaluate.training import training
from coda.models import get
from coda.placement import Plan, optimize
from coda.placement.costs import clear_profiles
from coda.placement.terms import _terms

CASES = (("llama2-7b", 4096, 512), ("llama3-70b", 4096, 1024), ("gpt3-175b", 2048, 1536))
SIZES = (64, 256, 1024)
MOE_CASES = (("mixtral-8x7b", 64, 4096, 256, (1, 2, 4, 8)), ("qwen3-30b-a3b", 64, 4096, 512, (1, 8, 32, 64)))


def _plan(n: int, gb: int) -> Plan:
    tp, pp = 8, min(8, n // 8)
    return Plan(tp=tp, pp=pp, dp=n // (tp * pp), micro_batch=1, global_batch=gb, recompute="full")


def bench(name: str, seq: int, gb: int, n: int) -> dict[str, object]:
    cfg, cl = get(name), cluster("dgx-a100", n)
    plan = _plan(n, gb)
    clear_profiles()
    _terms.cache_clear()
    t0 = time.perf_counter()
    training(cfg, cl, plan, seq, check_memory=False)  # cold: builds and predicts the layer graphs
    cold = time.perf_counter() - t0
    warm_runs = []
    for _ in range(5):  # profile cached, plan costs rebuilt
        _terms.cache_clear()
        t0 = time.perf_counter()
        training(cfg, cl, plan, seq, check_memory=False)
        warm_runs.append(time.perf_counter() - t0)
    warm = sorted(warm_runs)[2]
    reps = 50
    t0 = time.perf_counter()
    for _ in range(reps):
        training(cfg, cl, plan, seq, check_memory=False)
    hot = (time.perf_counter() - t0) / reps
    clear_profiles()
    _terms.cache_clear()
    t0 = time.perf_counter()
    best_plan, best, ranked = optimize(cfg, cl, gb, seq)  # cold: profiles every (tp, micro-batch, SP)
    opt_s = time.perf_counter() - t0
    a = ranked.attrs
    return {"model": name, "GPUs": n, "global batch": gb, "evaluate, cold (ms)": round(cold * 1e3, 1),
            "evaluate, layers profiled (ms)": round(warm * 1e3, 2), "evaluate, cached plan (ms)": round(hot * 1e3, 2),
            "optimize, cold (s)": round(opt_s, 2), "candidates": a["candidates"], "evaluated": a["evaluated"],
            "ms per evaluated plan": round(1e3 * opt_s / max(a["evaluated"], 1), 2),
            "best plan": best_plan.describe(), "MFU": round(best.mfu, 3)}


def bench_moe(name: str, n: int, seq: int, gb: int, eps: tuple[int, ...]) -> dict[str, object]:
    clear_profiles()
    _terms.cache_clear()
    t0 = time.perf_counter()
    best_plan, best, ranked = optimize(get(name), cluster("dgx-h100", n), gb, seq, ep=eps)
    opt_s = time.perf_counter() - t0
    a = ranked.attrs
    return {"model": name, "GPUs": n, "global batch": gb, "ep searched": ",".join(map(str, eps)),
            "optimize, cold (s)": round(opt_s, 2), "candidates": a["candidates"], "evaluated": a["evaluated"],
            "best plan": best_plan.describe(), "MFU": round(best.mfu, 3)}


def main() -> None:
    rows = [bench(name, seq, gb, n) for name, seq, gb in CASES for n in SIZES]
    moe = [bench_moe(*case) for case in MOE_CASES]
    with pd.option_context("display.width", 250, "display.max_columns", None):
        print(pd.DataFrame(rows).to_string(index=False))
        print()
        print(pd.DataFrame(moe).to_string(index=False))


if __name__ == "__main__":
    main()
