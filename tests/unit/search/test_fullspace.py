"""`coda.search.refine`: refined exact bounds and the best-first search that uses them.

Exactness is checked against exhaustive evaluation (`search(prune=False)`, same ILP timer) on a
48-design subspace: every refined bound is above the objective its design achieves, and the
refined search returns the same best design, the same near ties and the same objective values.
The timer is the ILP's list-scheduling heuristic (`time_limit_s=0`): deterministic and fast,
and bound (2) holds for it as for any schedule.
"""

import math

import numpy as np
import pytest

from coda.arch.design_space import DesignSpace
from coda.models import get
from coda.placement import predictor_layer_time
from coda.search import SearchLayerTime, search
from coda.search.design_eval import evaluate_design
from coda.search.inputs import _merged_choices
from coda.search.refine import FlopsLayerTime, LowerBoundLayerTime, RefinedBounds, refined_search
from coda.units import MiB

MODEL, CHIPS, BATCH, SEQ = "gpt2", 16, 64, 512
SPACE = DesignSpace.phaze(n_tc=(2, 4, 8), n_vc=(1, 2, 4), tc_rows=(64, 128), tc_cols=(64, 128),
                          glb_bytes=(8 * MiB, 128 * MiB))
TIMER = SearchLayerTime(time_limit_s=0.0)


@pytest.fixture(scope="module")
def exhaustive():
    return search(MODEL, SPACE, CHIPS, BATCH, SEQ, prune=False, layer_time=TIMER, executor="inline")


def test_subspace_size():
    assert 30 <= len(SPACE) <= 60


@pytest.mark.parametrize("objective", ["tokens_per_s_per_w", "tokens_per_s"])
def test_refined_bounds_are_above_every_achieved_objective(exhaustive, objective):
    cfg = get(MODEL)
    rb = RefinedBounds(cfg, CHIPS, BATCH, SEQ, _merged_choices(None), objective)
    designs = SPACE.to_frame()
    first = rb.placement(designs)
    achieved = exhaustive.frame.set_index("name")
    tighter = 0
    for k, acc in enumerate(SPACE):
        row = achieved.loc[acc.name]
        second, fast, placed = rb.design(acc), rb.design_fast(acc), rb.design_placed(acc)
        assert fast == pytest.approx(second, rel=1e-12)  # the same bound, from shared latencies
        assert placed <= fast * (1 + 1e-12)  # the placement's optimum is above its plan bound
        if row["status"] != "ok":
            continue
        assert first[k] >= row[objective] and second >= row[objective] and placed >= row[objective], acc.name
        tighter += second < row["bound_objective"] if objective == "tokens_per_s_per_w" else 0
    if objective == "tokens_per_s_per_w":  # the refined bound is tighter than the peak bound on most designs
        assert tighter >= len(SPACE) // 2


def test_refined_search_equals_exhaustive(exhaustive):
    res = refined_search(MODEL, SPACE, CHIPS, BATCH, SEQ, layer_time=TIMER, workers=1)
    assert res.best["name"] == exhaustive.best["name"]
    assert res.best["tokens_per_s_per_w"] == exhaustive.best["tokens_per_s_per_w"]
    assert list(res.near_ties()["name"]) == list(exhaustive.near_ties()["name"])
    full = exhaustive.frame.set_index("name")
    for _, row in res.frame.iterrows():  # every evaluated row is the exhaustive one
        assert row["status"] == full.loc[row["name"], "status"]
        if row["status"] == "ok":
            assert row["tokens_per_s_per_w"] == full.loc[row["name"], "tokens_per_s_per_w"]
            assert row["plan"] == full.loc[row["name"], "plan"]
    c = res.counts
    assert c["designs"] == len(SPACE) and c["evaluated"] + c["pruned"] == len(SPACE)
    assert c["evaluated"] < len(SPACE) // 3  # the refined bound prunes most of the space
    assert 0 <= c["cache_hits"] <= c["cache_lookups"]  # 0 here: the placement's profile cache already holds them


@pytest.mark.parametrize("tie_tol", [0.0, 0.1])
def test_refined_search_keeps_every_near_tie(exhaustive, tie_tol):
    res = refined_search(MODEL, SPACE, CHIPS, BATCH, SEQ, layer_time=TIMER, workers=1, tie_tol=tie_tol)
    ok = exhaustive.frame[exhaustive.frame["status"] == "ok"]
    best = ok["tokens_per_s_per_w"].max()
    want = set(ok.loc[ok["tokens_per_s_per_w"] >= best * (1 - tie_tol), "name"])
    assert want <= set(res.frame["name"])
    assert set(res.near_ties()["name"]) == want


def test_refined_search_with_a_process_pool_equals_inline():
    space = DesignSpace.phaze(n_tc=(4, 8), n_vc=(2, 4), tc_rows=(128,), tc_cols=(64, 128), glb_bytes=(32 * MiB,))
    inline = refined_search(MODEL, space, CHIPS, BATCH, SEQ, layer_time=TIMER, workers=1)
    pooled = refined_search(MODEL, space, CHIPS, BATCH, SEQ, layer_time=TIMER, workers=2)
    assert list(pooled.near_ties()["name"]) == list(inline.near_ties()["name"])
    assert list(pooled.near_ties()["tokens_per_s_per_w"]) == list(inline.near_ties()["tokens_per_s_per_w"])


def test_bound_holds_with_forced_tensor_parallelism():
    choices = {"tp": (2,)}
    space = DesignSpace.phaze(n_tc=(4,), n_vc=(1, 4), tc_rows=(128,), tc_cols=(128,), glb_bytes=(8 * MiB,))
    rb = RefinedBounds(get(MODEL), CHIPS, BATCH, SEQ, _merged_choices(choices))
    first = rb.placement(space.to_frame())
    for k, acc in enumerate(space):
        row = evaluate_design(get(MODEL), acc, CHIPS, BATCH, SEQ, _merged_choices(choices), TIMER)
        assert row["status"] == "ok" and row["tp"] == 2
        assert first[k] >= row["tokens_per_s_per_w"] and rb.design(acc) >= row["tokens_per_s_per_w"]


def test_layer_time_lower_bounds():
    from coda.models import build

    acc = next(iter(SPACE))
    for phase in ("forward", "backward"):
        for g, _ in build(get(MODEL), phase, 2, SEQ).layers:
            lb = LowerBoundLayerTime()(g, acc)
            assert 0 <= lb <= TIMER(g, acc) * (1 + 1e-12) + 1e-18
            assert lb <= predictor_layer_time(g, acc) * (1 + 1e-12) + 1e-18
            tensor = FlopsLayerTime("tensor", True)(g, acc) / acc.peak_flops
            vector = FlopsLayerTime("vector", True)(g, acc) / acc.vector_flops
            assert max(tensor, vector) <= TIMER(g, acc) * (1 + 1e-12) + 1e-18
    assert FlopsLayerTime("zero", True)(g, acc) == 0.0


def test_nothing_fits_gives_a_zero_bound():
    space = DesignSpace.phaze(n_tc=(4,), n_vc=(2,), tc_rows=(128,), tc_cols=(128,), glb_bytes=(8 * MiB,),
                              hbm_bytes=(1 << 30,), min_area_fraction=0.0)
    rb = RefinedBounds(get("gpt3-175b"), CHIPS, BATCH, 2048, _merged_choices(None))
    assert np.all(rb.placement(space.to_frame()) == 0.0)
    assert rb.design(next(iter(space))) == 0.0
    assert not math.isnan(rb.design(next(iter(space))))
