"""`coda.search.refine`: refined exact bounds, and `search` visiting designs best-first by them (ILP timer).

Exactness is checked against exhaustive evaluation (`search(prune=False)`, same ILP timer) on a
48-design subspace: every refined bound is above the objective its design achieves, and the
refined search returns the same best design, the same near ties and the same objective values.
The timer is the ILP's list-scheduling heuristic (`time_limit_s=0`): deterministic and fast,
and bound (2) holds for it as for any schedule.
"""

import math

import numpy as np
import pandas as pd
import pytest

from coda.arch.design_space import DesignSpace
from coda.models import get
from coda.placement import predictor_layer_time
from coda.search import SearchLayerTime, search
from coda.search.design_eval import evaluate_design
from coda.search.inputs import _merged_choices
from coda.search.refine import FlopsLayerTime, LowerBoundLayerTime, RefinedBounds
from coda.search.run import uses_refined_bounds
from coda.units import MiB

MODEL, DEVICES, BATCH, SEQ = "gpt2", 16, 64, 512
SPACE = DesignSpace.phaze(n_tc=(2, 4, 8), n_vc=(1, 2, 4), tc_rows=(64, 128), tc_cols=(64, 128),
                          glb_bytes=(8 * MiB, 128 * MiB))
TIMER = SearchLayerTime(time_limit_s=0.0)


@pytest.fixture(scope="module")
def exhaustive():
    return search(MODEL, SPACE, DEVICES, BATCH, SEQ, prune=False, layer_time=TIMER, executor="inline")


def test_subspace_size():
    assert 30 <= len(SPACE) <= 60


@pytest.mark.parametrize("objective", ["tokens_per_s_per_w", "tokens_per_s"])
def test_refined_bounds_are_above_every_achieved_objective(exhaustive, objective):
    cfg = get(MODEL)
    rb = RefinedBounds(cfg, DEVICES, BATCH, SEQ, _merged_choices(None), objective)
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


def _refined(**kw):
    return search(MODEL, SPACE, DEVICES, BATCH, SEQ, layer_time=TIMER, **{"executor": "inline", **kw})


def _same_rows(res, exhaustive):
    full = exhaustive.frame.set_index("name")
    for _, row in res.frame.iterrows():  # every evaluated row is the exhaustive one
        assert row["status"] == full.loc[row["name"], "status"]
        if row["status"] == "ok":
            assert row["tokens_per_s_per_w"] == full.loc[row["name"], "tokens_per_s_per_w"]
            assert row["plan"] == full.loc[row["name"], "plan"]


def test_search_with_the_ilp_timer_uses_the_refined_bounds():
    assert uses_refined_bounds(True, False, TIMER)
    assert not uses_refined_bounds(False, False, TIMER)  # exhaustive
    assert not uses_refined_bounds(True, True, TIMER)  # Pareto: the peak bound of every design up front
    assert not uses_refined_bounds(True, False, predictor_layer_time)  # the proofs need the ILP's instance


def test_refined_search_equals_exhaustive(exhaustive):
    res = _refined()
    assert res.best["name"] == exhaustive.best["name"]
    assert res.best["tokens_per_s_per_w"] == exhaustive.best["tokens_per_s_per_w"]
    assert list(res.near_ties()["name"]) == list(exhaustive.near_ties()["name"])
    assert list(res.near_ties()["tokens_per_s_per_w"]) == list(exhaustive.near_ties()["tokens_per_s_per_w"])
    _same_rows(res, exhaustive)
    assert res.n_space == len(SPACE) and res.n_evaluated + res.n_pruned == len(SPACE) and res.complete
    assert res.bounds == "refined" and exhaustive.bounds == "peak"
    assert len(res.n_refined) == 2 and res.n_refined[0] >= res.n_refined[1] >= res.n_evaluated
    assert res.n_evaluated < len(SPACE) // 3  # the refined bound prunes most of the space
    # a refined bound is at most the peak bound, and above what its design achieves
    peak = exhaustive.frame.set_index("name")["bound_objective"]
    fr = res.frame
    assert (fr["bound_objective"].to_numpy() <= peak.loc[fr["name"]].to_numpy()).all()
    assert (fr["bound_objective"] >= fr["tokens_per_s_per_w"]).all()
    assert (fr["bound_tokens_per_s"] >= fr["tokens_per_s"] * (1 - 1e-12)).all()


@pytest.mark.parametrize("tie_tol", [0.0, 0.1])
def test_refined_search_keeps_every_near_tie(exhaustive, tie_tol):
    res = _refined(tie_tol=tie_tol)
    ok = exhaustive.frame[exhaustive.frame["status"] == "ok"]
    best = ok["tokens_per_s_per_w"].max()
    want = set(ok.loc[ok["tokens_per_s_per_w"] >= best * (1 - tie_tol), "name"])
    assert want <= set(res.frame["name"])
    assert set(res.near_ties()["name"]) == want
    _same_rows(res, exhaustive)


def test_refined_search_tokens_per_s_objective():
    want = search(MODEL, SPACE, DEVICES, BATCH, SEQ, prune=False, layer_time=TIMER, executor="inline",
                  objective="tokens_per_s")
    res = _refined(objective="tokens_per_s")
    assert list(res.near_ties()["name"]) == list(want.near_ties()["name"])
    assert list(res.near_ties()["tokens_per_s"]) == list(want.near_ties()["tokens_per_s"])


def test_refined_search_with_a_process_pool_equals_inline():
    space = DesignSpace.phaze(n_tc=(4, 8), n_vc=(2, 4), tc_rows=(128,), tc_cols=(64, 128), glb_bytes=(32 * MiB,))
    inline = search(MODEL, space, DEVICES, BATCH, SEQ, layer_time=TIMER, executor="inline")
    pooled = search(MODEL, space, DEVICES, BATCH, SEQ, layer_time=TIMER, executor="process", workers=2)
    drop = ["seconds"]
    pd.testing.assert_frame_equal(pooled.frame.drop(columns=drop), inline.frame.drop(columns=drop))
    assert pooled.n_pruned == inline.n_pruned and pooled.n_evaluated == inline.n_evaluated


def test_refined_search_resumes_from_the_store(tmp_path, exhaustive):
    db = tmp_path / "runs.sqlite"
    cut = _refined(store=db, max_designs=2)
    assert cut.n_evaluated == 2 and not cut.complete
    resumed = _refined(store=db)
    assert resumed.n_cached == 2 and resumed.complete
    assert resumed.best["name"] == exhaustive.best["name"]
    again = _refined(store=db)
    assert again.n_evaluated == 0
    drop = ["seconds"]
    pd.testing.assert_frame_equal(again.frame.drop(columns=drop), resumed.frame.drop(columns=drop))


def test_bound_holds_with_forced_tensor_parallelism():
    choices = {"tp": (2,)}
    space = DesignSpace.phaze(n_tc=(4,), n_vc=(1, 4), tc_rows=(128,), tc_cols=(128,), glb_bytes=(8 * MiB,))
    rb = RefinedBounds(get(MODEL), DEVICES, BATCH, SEQ, _merged_choices(choices))
    first = rb.placement(space.to_frame())
    for k, acc in enumerate(space):
        row = evaluate_design(get(MODEL), acc, DEVICES, BATCH, SEQ, _merged_choices(choices), TIMER)
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
    rb = RefinedBounds(get("gpt3-175b"), DEVICES, BATCH, 2048, _merged_choices(None))
    assert np.all(rb.placement(space.to_frame()) == 0.0)
    assert rb.design(next(iter(space))) == 0.0
    assert not math.isnan(rb.design(next(iter(space))))


def test_refined_search_on_a_read_only_store(tmp_path, monkeypatch):
    """A read-only store serves a refined search it holds every visited design of, and refuses one it
    does not before any evaluation (the visit is replayed on the stored rows, bounds computed lazily)."""
    from coda.errors import ConfigError
    from coda.runs.store import ResultStore
    from coda.search import run as run_mod

    db = tmp_path / "runs.sqlite"
    first = _refined(store=db)

    class ReadOnly(ResultStore):
        def __init__(self, path):
            super().__init__(path)
            self.writable = False

    monkeypatch.setattr(run_mod, "ResultStore", ReadOnly)
    held = _refined(store=db)
    assert held.n_evaluated == 0 and held.n_cached == first.n_evaluated
    assert list(held.frame["name"]) == list(first.frame["name"])
    with pytest.raises(ConfigError, match="read-only"):
        _refined(store=db, tie_tol=0.5)  # more near ties: designs the store does not hold
