"""A node limit makes the schedule independent of machine load (issue: results must not depend on
how busy the machine is); the wall clock is only a safety net, and it says when it was hit."""

import multiprocessing as mp
import time

import pytest

from coda import models
from coda.arch.accelerators import Accelerator
from coda.errors import ConfigError
from coda.ilp import highs_available, make_problem, predicted_latencies, schedule
from coda.ilp.schedule import check_schedule
from coda.units import GiB, MiB

# Two 256x256 tensor cores and two vector cores: the llama2-7b backward block needs branch and
# bound here (75 binaries; CBC at a 1% gap takes ~0.1-3 s), unlike most layers, which the list
# heuristic already solves to a lower bound.
FEW_LARGE = Accelerator(n_tc=2, tc_rows=256, tc_cols=256, n_vc=2, vc_lanes=256, glb_bytes=128 * MiB,
                        hbm_bytes=32 * GiB, name="few-large")
SOLVERS = ["cbc", *(["highs"] if highs_available() else [])]


def _case():
    g = models.build(models.get("llama2-7b"), "backward", batch=1, seq_len=4096).layers[1][0]
    return g, predicted_latencies(g, FEW_LARGE)


def _spin(stop_at: float) -> None:
    while time.perf_counter() < stop_at:
        pass


@pytest.mark.parametrize("solver", SOLVERS)
def test_node_limit_gives_the_same_schedule_idle_and_under_load(solver):
    g, lat = _case()
    idle = schedule(g, FEW_LARGE, lat, solver=solver, time_limit_s=120, node_limit=200)
    ctx = mp.get_context("spawn")
    hogs = [ctx.Process(target=_spin, args=(time.perf_counter() + 60,), daemon=True) for _ in range(3)]
    for h in hogs:
        h.start()
    try:
        busy = schedule(g, FEW_LARGE, lat, solver=solver, time_limit_s=120, node_limit=200)
    finally:
        for h in hogs:
            h.terminate()
            h.join()
    assert idle.n_binaries > 0  # the solver really ran
    assert not idle.wall_clock_limited and not busy.wall_clock_limited and not idle.solver_error
    assert busy == idle  # every field but the solve time
    check_schedule(busy, make_problem(g, FEW_LARGE, lat))


def test_wall_clock_cut_is_reported():
    g, lat = _case()
    s = schedule(g, FEW_LARGE, lat, solver="cbc", time_limit_s=1e-3)
    assert s.wall_clock_limited
    check_schedule(s, make_problem(g, FEW_LARGE, lat))


@pytest.mark.parametrize("bad", [0, -5, 2.5, True, "100"])
def test_node_limit_must_be_a_positive_integer(bad):
    g, lat = _case()
    with pytest.raises(ConfigError, match="node_limit"):
        schedule(g, FEW_LARGE, lat, node_limit=bad)
