"""The package's caches: visible, bounded, and cleared from one place (`coda.caches`)."""

from __future__ import annotations

import itertools
import tracemalloc
from dataclasses import dataclass
from typing import Any

import pytest

import coda
from coda.arch.clusters import cluster
from coda.models.config import ModelConfig
from coda.placement import CostModel, Plan, Software
from coda.placement.step import evaluate_plan


@dataclass(frozen=True)
class _NodeTime:
    """A fast, deterministic layer timer: 1 us per op."""

    def __call__(self, graph: Any, device: Any) -> float:
        return 1e-6 * graph.number_of_nodes()


CFG = ModelConfig(name="tiny-cache", n_layers=4, hidden=256, n_heads=8, ffn_hidden=1024, vocab_size=1000,
                  max_seq_len=2048)


def _plans(n_devices: int) -> list[Plan]:
    out = []
    for tp, pp, zero, rec in itertools.product((1, 2, 4), (1, 2, 4), (0, 1, 3), ("none", "full")):
        dp = n_devices // (tp * pp)
        if n_devices % (tp * pp) == 0 and (zero == 0 or dp > 1):
            out.append(Plan(tp=tp, pp=pp, dp=dp, zero=zero, recompute=rec, global_batch=dp))
    return out


def _models() -> Any:
    """Distinct cost models (cluster size x software x sequence), as a long notebook session makes them."""
    for flags in itertools.product((False, True), repeat=3):
        for size, seq in itertools.product((8, 16, 32, 64), (256, 512, 1024)):
            sw = Software(dp_overlap=flags[0], pp_overlap=flags[1], scatter_gather=flags[2], name=f"sw{flags}")
            yield CostModel(CFG, cluster("dgx-a100", size), seq, layer_time=_NodeTime(), software=sw)


@pytest.mark.slow
def test_ten_thousand_plans_hold_bounded_memory() -> None:
    coda.clear_caches()
    tracemalloc.start()
    try:
        evaluated, half = 0, 0
        for model in itertools.cycle(list(_models())):
            for plan in _plans(model.cluster.n_devices):
                evaluate_plan(model, plan, check_memory=False)
                evaluated += 1
                if evaluated == 5000:
                    half = tracemalloc.get_traced_memory()[0]
            if evaluated >= 10000:
                break
        full = tracemalloc.get_traced_memory()[0]
        sizes = coda.caches.sizes()
        # every cache is within its bound, and the plan-terms cache did evict (more plans than entries)
        assert all(info.currsize <= info.maxsize for info in sizes.values()), sizes
        assert sizes["placement.terms"].currsize == sizes["placement.terms"].maxsize
        # the second 5000 plans add (almost) nothing: the caches are full and evict
        assert full - half < 0.1 * half, (half, full)
        coda.clear_caches()
        assert coda.caches.registry.entries() == 0
        assert tracemalloc.get_traced_memory()[0] < 0.5 * full
    finally:
        tracemalloc.stop()


def test_caches_are_listed_and_cleared_from_one_place() -> None:
    import coda.evaluate.inference  # noqa: F401  (registers its cache)
    import coda.predictor.gpu_tiles  # noqa: F401
    import coda.search.bounds  # noqa: F401

    names = set(coda.caches.sizes())
    assert {"placement.profiles", "placement.terms", "placement.collective_cost", "evaluate.workspace_bytes",
            "search.flops_bounds", "predictor.device_features"} <= names
    model = CostModel(CFG, cluster("dgx-a100", 8), 256, layer_time=_NodeTime())
    evaluate_plan(model, Plan(tp=2, pp=2, dp=2, global_batch=2), check_memory=False)
    assert coda.caches.sizes()["placement.terms"].currsize >= 1
    coda.clear_caches()
    assert all(info.currsize == 0 for info in coda.caches.sizes().values())


def test_lru_cache_evicts_least_recently_used() -> None:
    c = coda.caches.LRUCache(2)
    c.put("a", 1)
    c.put("b", 2)
    assert c.get("a") == 1  # a is now the most recent
    c.put("c", 3)
    assert c.get("b") is None and c.get("a") == 1 and c.get("c") == 3
    assert c.cache_info() == (2, 2)
    c.cache_clear()
    assert len(c) == 0
