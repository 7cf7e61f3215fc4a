"""Bad input: a CodaError that names the op or the design field."""

from types import SimpleNamespace

import pytest

import coda.ilp
from coda.arch.accelerators import Accelerator
from coda.errors import CodaError, ConfigError, InfeasibleDesign
from coda.ilp import schedule, solve_exhaustive
from coda.ilp.fusion import TENSOR, VECTOR, make_problem
from coda.models import ops as O
from coda.models.graph import OpGraph
from coda.predictor.base import OpLatency
from coda.units import MiB

US = 1e-6


def small_layer():
    g = OpGraph(name="tiny")
    a = g.add(O.matmul(8, 8, 8, name="mm"))
    g.add(O.elementwise(64, name="act"), after=[a])
    g.add(O.elementwise(64, name="other"))
    lat = {"mm": OpLatency(TENSOR, 4 * US, 1 * US), "act": OpLatency(VECTOR, 2 * US, 1 * US),
           "other": OpLatency(VECTOR, 1 * US, 1 * US)}
    return g, lat


def acc(n_tc=2, n_vc=2):
    return Accelerator(n_tc=n_tc, tc_rows=2, tc_cols=2, n_vc=n_vc, vc_lanes=2, glb_bytes=2 * MiB, name="test-chip")


def test_cyclic_graph_names_the_ops():
    g, lat = small_layer()
    mm, act = g.by_name("mm"), g.by_name("act")
    g.add_edge(act, mm)
    with pytest.raises(ConfigError, match=r"cycle.*(mm -> act|act -> mm)"):
        schedule(g, acc(), lat)


def test_missing_latency_names_the_op():
    g, lat = small_layer()
    del lat["act"]
    with pytest.raises(ConfigError, match="'act'"):
        schedule(g, acc(), lat)


@pytest.mark.parametrize("bad", [
    OpLatency(VECTOR, float("nan"), 1 * US),
    OpLatency(VECTOR, 1 * US, -1.0),
    OpLatency(VECTOR, None, 1 * US),
    OpLatency("systolic", 1 * US, 1 * US),
])
def test_invalid_latency_names_the_op(bad):
    g, lat = small_layer()
    lat["other"] = bad
    with pytest.raises(ConfigError, match="'other'"):
        schedule(g, acc(), lat)


def test_zero_cores_of_a_needed_type_names_the_field_and_op():
    g, lat = small_layer()
    no_tensor = SimpleNamespace(n_tc=0, n_vc=2, name="vector-only")
    with pytest.raises(InfeasibleDesign, match=r"n_tc=0.*'mm'"):
        schedule(g, no_tensor, lat)
    # the Accelerator itself rejects zero cores, naming the field
    with pytest.raises(CodaError, match="n_vc"):
        acc(n_vc=0)


def test_zero_cores_of_an_unused_type_is_fine():
    g = OpGraph(name="vector-only")
    g.add(O.elementwise(64, name="a"))
    g.add(O.elementwise(64, name="b"))
    lat = {n: OpLatency(VECTOR, 2 * US, 1 * US) for n in ("a", "b")}
    s = schedule(g, SimpleNamespace(n_tc=0, n_vc=2, name="vector-only"), lat)
    assert s.makespan_s == pytest.approx(2 * US)
    assert s.utilisation["tensor"] == 0.0


@pytest.mark.parametrize("kwargs, pattern", [
    ({"solver": "gurobi"}, "unknown solver 'gurobi'"),
    ({"time_limit_s": -1}, "time_limit_s"),
    ({"gap": 1.5}, "gap"),
    ({"fused_latency": "min"}, "fused_latency"),
])
def test_bad_options(kwargs, pattern):
    g, lat = small_layer()
    with pytest.raises(ConfigError, match=pattern):
        schedule(g, acc(), lat, **kwargs)


def test_highs_missing_is_actionable(monkeypatch):
    g, lat = small_layer()
    monkeypatch.setattr(coda.ilp, "highs_available", lambda: False)
    with pytest.raises(ConfigError, match=r"highspy.*pip install"):
        schedule(g, acc(), lat, solver="highs")


def test_exhaustive_refuses_large_graphs():
    g = OpGraph(name="chain")
    prev = []
    for i in range(8):
        prev = [g.add(O.elementwise(64, name=f"e{i}"), after=prev)]
    lat = {f"e{i}": OpLatency(VECTOR, US, US) for i in range(8)}
    with pytest.raises(ConfigError, match="at most 7"):
        solve_exhaustive(make_problem(g, acc(), lat))


def test_time_limit_zero_returns_the_heuristic():
    g, lat = small_layer()
    lat["other"] = OpLatency(VECTOR, 3 * US, 2.9 * US)
    s = schedule(g, acc(n_tc=1, n_vc=1), lat, time_limit_s=0)
    assert s.status.value in ("heuristic", "optimal")
    assert s.solver == "heuristic"
