"""A Pareto search prunes against the front and returns the front, best and near ties of an exhaustive one."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coda.arch.design_space import DesignSpace
from coda.cli import main
from coda.errors import ConfigError
from coda.placement import predictor_layer_time
from coda.search import search
from coda.search.pareto import Front, dominates
from coda.units import MiB

MODEL, DEVICES, BATCH, SEQ = "gpt2", 16, 64, 512
SPACE = DesignSpace(n_tc=(2, 8), n_vc=(1, 2), tc_rows=(64, 128), tc_cols=(64, 128), glb_bytes=(32 * MiB, 128 * MiB))
FAST = dict(layer_time=predictor_layer_time, executor="inline")


def run(space=SPACE, **kw):
    return search(MODEL, space, DEVICES, BATCH, SEQ, **{**FAST, **kw})


def points(frame):
    """The front as comparable rows: name, TDP and tokens/s."""
    return [(r.name, r.tdp_w, r.tokens_per_s) for r in frame.itertuples()]


def assert_same_answer(pareto, exhaustive):
    """Same front, best, near ties and counters as the exhaustive search; every skipped design is dominated."""
    assert points(pareto.front()) == points(exhaustive.front())
    assert pareto.best["name"] == exhaustive.best["name"]
    assert pareto.best["tokens_per_s_per_w"] == exhaustive.best["tokens_per_s_per_w"]
    assert pareto.near_ties()["name"].tolist() == exhaustive.near_ties()["name"].tolist()
    assert pareto.n_pruned + pareto.n_evaluated == exhaustive.n_evaluated == len(exhaustive.frame)
    visited = set(pareto.frame["name"])  # names are unique in these spaces (one HBM size, one link setting)
    front = pareto.front()
    for row in exhaustive.frame.itertuples():
        if row.name not in visited:
            assert any(dominates(f.tdp_w, f.tokens_per_s, row.tdp_w, row.bound_tokens_per_s)
                       for f in front.itertuples())


@pytest.fixture(scope="module")
def exhaustive():
    return run(prune=False)


def test_pareto_search_prunes_and_keeps_the_exhaustive_front(exhaustive):
    pareto = run(pareto=True)
    assert pareto.n_pruned > 0 and pareto.complete and pareto.pareto
    assert_same_answer(pareto, exhaustive)
    # more rows than the plain search (the front's), fewer than all
    plain = run()
    assert plain.n_evaluated < pareto.n_evaluated < exhaustive.n_evaluated
    assert set(plain.frame["name"]) <= set(pareto.frame["name"])


axis = dict(n_tc=st.sets(st.sampled_from([1, 2, 4, 8]), min_size=1, max_size=3),
            n_vc=st.sets(st.sampled_from([1, 2, 4]), min_size=1, max_size=2),
            tc_rows=st.sets(st.sampled_from([32, 64, 128]), min_size=1, max_size=2),
            tc_cols=st.sets(st.sampled_from([32, 64, 128]), min_size=1, max_size=2),
            glb_mib=st.sets(st.sampled_from([8, 32, 128]), min_size=1, max_size=2),
            objective=st.sampled_from(["tokens_per_s_per_w", "tokens_per_s"]),
            tie_tol=st.sampled_from([0.0, 0.02, 0.1]))


@settings(max_examples=6, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(**axis)
def test_generated_subspaces_have_the_exhaustive_front(n_tc, n_vc, tc_rows, tc_cols, glb_mib, objective, tie_tol):
    space = DesignSpace(n_tc=tuple(n_tc), n_vc=tuple(n_vc), tc_rows=tuple(tc_rows), tc_cols=tuple(tc_cols),
                        glb_bytes=tuple(m * MiB for m in glb_mib), max_area_mm2=300.0)
    kw = dict(objective=objective, tie_tol=tie_tol)
    assert_same_answer(run(space, pareto=True, **kw), run(space, prune=False, **kw))


def test_pool_returns_the_inline_pareto_frame():
    inline = run(pareto=True)
    pool = run(pareto=True, executor="process", workers=2)
    cols = [c for c in inline.frame.columns if c != "seconds"]
    assert inline.frame[cols].equals(pool.frame[cols])
    assert (inline.n_pruned, inline.n_evaluated) == (pool.n_pruned, pool.n_evaluated)


def test_resumed_pareto_search_reads_its_rows_back(tmp_path):
    db = tmp_path / "runs.sqlite"
    first = run(pareto=True, store=str(db), max_designs=5)
    assert not first.complete and first.n_evaluated == 5
    with pytest.raises(ConfigError, match="max_designs"):
        first.front()
    again = run(pareto=True, store=str(db))
    assert again.complete and again.n_cached == 5
    assert points(again.front()) == points(run(pareto=True).front())


def test_front_needs_a_pareto_search():
    with pytest.raises(ConfigError, match="pareto=True"):
        run().front()
    with pytest.raises(ConfigError, match="must be True or False"):
        run(pareto="yes")


pts = st.lists(st.tuples(st.integers(1, 6), st.integers(0, 6)), max_size=20)


@settings(max_examples=300, deadline=None)
@given(pts, st.integers(1, 6), st.integers(0, 6))
def test_front_covers_exactly_what_an_added_point_dominates(added, cost, value):
    front = Front()
    for c, v in added:
        front.add(c, v)
    assert front.covers(cost, value) == any(dominates(c, v, cost, value) for c, v in added)
    assert all(not dominates(a[0], a[1], b[0], b[1]) for a in front.points for b in front.points)


def test_cli_pareto_prunes_and_no_prune_evaluates_everything(capsys):
    args = ["search", "--model", MODEL, "--devices", str(DEVICES), "--global-batch", str(BATCH), "--seq-len", str(SEQ),
            "--n-tc", "2,8", "--n-vc", "1,2", "--tc-rows", "64,128", "--tc-cols", "64,128", "--glb-mib", "32,128",
            "--min-area-fraction", "0", "--timer", "predictor", "--executor", "inline", "--json", "--pareto"]
    assert main(args) == 0
    pruned = json.loads(capsys.readouterr().out)
    assert main(args + ["--no-prune"]) == 0
    full = json.loads(capsys.readouterr().out)
    assert pruned["counts"]["pruned_by_bound"] > 0 and full["counts"]["pruned_by_bound"] == 0
    assert full["counts"]["evaluated"] == 32
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(pruned["pareto"]) == strip(full["pareto"]) and pruned["summary"] == full["summary"]


def test_pool_cut_by_max_designs_resumes_to_the_same_front(tmp_path):
    db = str(tmp_path / "runs.sqlite")
    first = run(pareto=True, store=db, max_designs=4, executor="process", workers=2)
    assert not first.complete and first.n_evaluated <= 4
    again = run(pareto=True, store=db, executor="process", workers=2)
    assert again.complete and points(again.front()) == points(run(pareto=True).front())


SETPRIV = shutil.which("setpriv")
DROP = "-dac_override,-dac_read_search"
CODA = str(Path(sys.executable).with_name("coda"))
EIGHT = ["search", "--model", MODEL, "--devices", str(DEVICES), "--global-batch", str(BATCH), "--seq-len", str(SEQ),
         "--n-tc", "2,8", "--n-vc", "1,2", "--tc-rows", "64,128", "--tc-cols", "128", "--glb-mib", "32",
         "--min-area-fraction", "0", "--timer", "predictor", "--executor", "inline", "--pareto", "--json"]


@pytest.mark.skipif(not hasattr(os, "geteuid") or (os.geteuid() == 0 and SETPRIV is None),
                    reason="needs POSIX permissions that apply (as root: setpriv to drop CAP_DAC_OVERRIDE)")
def test_read_only_store_serves_a_pareto_search_it_holds(tmp_path):
    """A read-only store serves the Pareto search whose visited designs it holds, and refuses, before any work,
    the same search without pruning (it needs the designs the front pruned) and a Pareto search from a store of
    the plain search (it needs the front's designs past the objective bound)."""
    d = Path(tempfile.mkdtemp(prefix="coda-ro-"))
    try:
        os.chmod(d, 0o755)
        assert main([*EIGHT, "--store", str(d / "runs.sqlite")]) == 0
        assert main([*EIGHT[:-2], "--json", "--store", str(d / "plain.sqlite")]) == 0
        for name in ("runs.sqlite", "plain.sqlite"):
            os.chmod(d / name, 0o444)
        os.chmod(d, 0o555)
        prefix = [SETPRIV, f"--inh-caps={DROP}", f"--bounding-set={DROP}"] if os.geteuid() == 0 else []
        held = subprocess.run([*prefix, CODA, *EIGHT, "--store", str(d / "runs.sqlite")], capture_output=True,
                              text=True, timeout=120)
        assert held.returncode == 0, held.stderr
        counts = json.loads(held.stdout)["counts"]
        assert counts["evaluated"] == 0 and counts["pruned_by_bound"] > 0
        full = subprocess.run([*prefix, CODA, *EIGHT, "--no-prune", "--store", str(d / "runs.sqlite")],
                              capture_output=True, text=True, timeout=120)
        assert full.returncode == 2 and "is read-only and this search must evaluate designs" in full.stderr
        front = subprocess.run([*prefix, CODA, *EIGHT, "--store", str(d / "plain.sqlite")], capture_output=True,
                               text=True, timeout=120)
        assert front.returncode == 2 and "is read-only and this search must evaluate designs" in front.stderr
        assert front.stdout == "" and len(front.stderr.strip().splitlines()) == 1
    finally:
        os.chmod(d, 0o755)
        shutil.rmtree(d)
