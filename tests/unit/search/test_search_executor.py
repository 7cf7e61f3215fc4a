"""`coda.search` executors: the process pool returns the inline frame, resumes from the store, survives Ctrl-C."""

import importlib.util
import sqlite3

import pandas as pd
import pytest

import coda.search.run as run_mod
from coda.arch.design_space import DesignSpace
from coda.cli import main
from coda.errors import CodaError, ConfigError
from coda.placement import predictor_layer_time
from coda.search import search
from coda.units import MiB

MODEL, DEVICES, BATCH, SEQ = "gpt2", 16, 64, 512
SPACE = DesignSpace(n_tc=(2, 8), n_vc=(1, 2), tc_rows=(64, 128), tc_cols=(64, 128), glb_bytes=(32 * MiB, 128 * MiB))

FAST = dict(layer_time=predictor_layer_time)  # ~50 ms per design
POOL = dict(executor="process", workers=2)


def run(**kw):
    return search(MODEL, SPACE, DEVICES, BATCH, SEQ, **{**FAST, **kw})


def same(a, b):
    pd.testing.assert_frame_equal(a.frame.drop(columns="seconds"), b.frame.drop(columns="seconds"))
    pd.testing.assert_series_equal(a.reference.drop("seconds"), b.reference.drop("seconds"))
    assert a.best["name"] == b.best["name"] and a.best["tokens_per_s_per_w"] == b.best["tokens_per_s_per_w"]


@pytest.fixture(scope="module")
def inline():
    return run(executor="inline")


def test_process_pool_returns_the_inline_frame(inline):
    par = run(**POOL)
    same(par, inline)
    assert inline.n_speculative == 0 and par.n_speculative <= 1  # at most workers - 1 past the stop
    for f in ("n_pruned", "n_evaluated", "n_cached", "n_infeasible", "n_unvisited", "complete"):
        assert getattr(par, f) == getattr(inline, f), f


def test_process_pool_resumes_from_the_store(tmp_path, inline):
    db = tmp_path / "runs.sqlite"
    cut = run(store=db, max_designs=3, **POOL)
    assert cut.n_evaluated == 3 and not cut.complete
    resumed = run(store=db, **POOL)
    assert resumed.complete and resumed.n_cached == 3
    same(resumed, inline)


def test_interrupt_keeps_finished_designs_and_resumes(tmp_path, monkeypatch, inline):
    db = tmp_path / "runs.sqlite"
    update = run_mod._Progress.update
    calls = []

    def interrupting(self, best):
        update(self, best)
        calls.append(best)
        if len(calls) == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(run_mod._Progress, "update", interrupting)
    with pytest.raises(KeyboardInterrupt):
        run(store=db, **POOL)
    monkeypatch.setattr(run_mod._Progress, "update", update)
    with sqlite3.connect(db) as con:
        kept = con.execute("SELECT COUNT(*) FROM results").fetchone()[0]
    assert kept >= 4  # the reference and the three designs that finished before the interrupt
    resumed = run(store=db, **POOL)
    assert resumed.n_cached >= 3
    same(resumed, inline)


def test_executor_arguments():
    with pytest.raises(ConfigError, match="executor"):
        run(executor="threads")
    with pytest.raises(ConfigError, match="workers"):
        run(workers=0)
    with pytest.raises(ConfigError, match="cannot be sent"):
        run(layer_time=lambda graph, device: 1e-3, **POOL)
    if importlib.util.find_spec("ray") is None:
        with pytest.raises(CodaError, match=r"pip install coda-llm\[ray\]"):
            run(executor="ray")


def test_cli_executor_flags(capsys):
    args = ["search", "--model", MODEL, "--devices", str(DEVICES), "--global-batch", str(BATCH), "--seq-len", str(SEQ),
            "--n-tc", "2,8", "--n-vc", "1", "--tc-rows", "128", "--tc-cols", "128", "--glb-mib", "32",
            "--min-area-fraction", "0", "--timer", "predictor"]
    outs = []
    for extra in (["--executor", "inline"], ["--executor", "process", "--workers", "2"]):
        assert main(args + extra) == 0
        outs.append(capsys.readouterr().out.splitlines())
    assert outs[0][0].startswith("designs 2:") and outs[0][2:] == outs[1][2:]
