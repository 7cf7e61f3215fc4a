"""The family winner (best geometric mean over several models) is exact: it equals exhaustive evaluation."""

from __future__ import annotations

import numpy as np
import pytest

from coda.arch.design_space import DesignSpace
from coda.experiments.evaluator import Evaluator, Task, Workload, evaluate_task
from coda.experiments.family import OBJECTIVE, design_key, family_search, geomean
from coda.models import get
from coda.search import DEFAULT_CHOICES, ResultStore, search
from coda.units import MiB

N_DEVICES = 16
WORKS = (Workload("gpt2", 64, 256), Workload("bert-base", 64, 128), Workload("opt-125m", 64, 512))


@pytest.fixture(scope="module")
def setting():
    space = DesignSpace.phaze(n_tc=(2, 8), n_vc=(1, 4), tc_rows=(64, 128), tc_cols=(64, 128),
                              glb_bytes=(2 * MiB, 32 * MiB))
    configs = {w.model: get(w.model) for w in WORKS}
    designs, accs = space.to_frame(), list(space)
    exhaustive = np.array([[_value(evaluate_task(a, configs[w.model], N_DEVICES, w.global_batch, w.seq_len,
                                                 dict(DEFAULT_CHOICES), "predictor", 1.0)) for w in WORKS]
                           for a in accs])
    return space, configs, designs, accs, exhaustive


def _value(row):
    return float(row[OBJECTIVE]) if row["status"] == "ok" else 0.0


@pytest.mark.parametrize("tie_tol", [0.0, 0.02, 0.1])
@pytest.mark.parametrize("with_searches", [False, True])
def test_family_equals_exhaustive(setting, tie_tol, with_searches):
    space, configs, designs, accs, exhaustive = setting
    known = {}
    if with_searches:  # the per-model searches' rows, as the experiment passes them
        index = {design_key(r): i for i, r in enumerate(designs.to_dict("records"))}
        for w in WORKS:
            res = search(configs[w.model], space, N_DEVICES, w.global_batch, w.seq_len, layer_time=_timer(),
                         executor="inline", tie_tol=tie_tol)
            known.update({(index[design_key(r)], w.model): r for r in res.frame.to_dict("records")})
    ev = Evaluator(None, "inline", 1, "predictor", N_DEVICES, dict(DEFAULT_CHOICES), configs)
    fam = family_search(accs, designs, WORKS, known, ev, tie_tol)
    g = np.array([geomean(v) for v in exhaustive])
    best = g.max()
    expected = set(np.flatnonzero(g >= best * (1 - tie_tol)).tolist())
    assert set(fam.near_ties()["design"].astype(int)) == expected
    assert float(fam.best["geomean"]) == pytest.approx(best, rel=1e-12)
    # the frame's per-model values are the exhaustive ones, and the bounds hold
    for _, r in fam.frame.iterrows():
        assert [r[w.model] for w in WORKS] == pytest.approx(list(exhaustive[int(r["design"])]), rel=1e-12)
    assert np.all(fam.bounds >= exhaustive * (1 - 1e-9))
    if tie_tol == 0.0:
        assert fam.n_pruned > 0  # the bound did some work on this space


def _timer():
    from coda.experiments.evaluator import layer_timer

    return layer_timer("predictor")


def test_evaluator_store_resumes(tmp_path, setting):
    """Rows go to the store as they finish; a second run reads every one back, under the search's key."""
    space, configs, designs, accs, _ = setting
    store = tmp_path / "s.sqlite"
    w = WORKS[0]
    res = search(configs[w.model], space, N_DEVICES, w.global_batch, w.seq_len, layer_time=_timer(),
                 executor="inline", store=str(store), prune=False)
    db = ResultStore(store)
    try:
        ev = Evaluator(db, "inline", 1, "predictor", N_DEVICES, dict(DEFAULT_CHOICES), configs)
        rows = {}
        ev.run([Task(a, w, tag=k) for k, a in enumerate(accs)], lambda t, r: rows.__setitem__(t.tag, r))
        assert ev.n_evaluated == 0 and ev.n_cached == len(accs)  # the search's rows, read back
        by_name = {r["name"]: r[OBJECTIVE] for r in res.frame.to_dict("records")}
        assert {accs[k].name: r[OBJECTIVE] for k, r in rows.items()} == pytest.approx(by_name)
        ev.run([Task(a, w, network_scale=0.5, tag=k) for k, a in enumerate(accs[:2])], lambda t, r: None)
        assert ev.n_evaluated == 2  # another network is another key
        ev.run([Task(a, w, network_scale=0.5, tag=k) for k, a in enumerate(accs[:2])], lambda t, r: None)
        assert ev.n_evaluated == 2 and ev.n_cached == len(accs) + 2
    finally:
        db.close()


def test_slower_network_is_never_faster(setting):
    """The scaled-network evaluation is the search's at scale 1 and monotone in the bandwidth."""
    _, configs, _, accs, exhaustive = setting
    w = WORKS[2]
    for k, a in enumerate(accs[:3]):
        args = (a, configs[w.model], N_DEVICES, w.global_batch, w.seq_len, dict(DEFAULT_CHOICES), "predictor")
        base = _value(evaluate_task(*args, 1.0))
        assert base == pytest.approx(exhaustive[k, 2], rel=1e-12)
        assert _value(evaluate_task(*args, 0.25)) <= base * (1 + 1e-12)
        assert _value(evaluate_task(*args, 4.0)) >= base * (1 - 1e-12)


def test_interrupt_keeps_finished_rows_and_resumes(tmp_path, setting):
    """Ctrl-C during the family's evaluations: finished rows stay in the store, the next run reads them back."""
    from coda.search import SearchInterrupted

    _, configs, _, accs, _ = setting
    store = tmp_path / "s.sqlite"
    tasks = [Task(a, WORKS[1], tag=k) for k, a in enumerate(accs[:4])]
    seen = []

    def stop_after_two(task, row):
        seen.append(task.tag)
        if len(seen) == 2:
            raise KeyboardInterrupt

    db = ResultStore(store)
    try:
        ev = Evaluator(db, "inline", 1, "predictor", N_DEVICES, dict(DEFAULT_CHOICES), configs)
        with pytest.raises(SearchInterrupted, match="SIGINT"):
            ev.run(tasks, stop_after_two)
        again = Evaluator(db, "inline", 1, "predictor", N_DEVICES, dict(DEFAULT_CHOICES), configs)
        again.run(tasks, lambda t, r: None)
        assert (again.n_cached, again.n_evaluated) == (2, 2)
    finally:
        db.close()
