"""The serving validation's points and harness, the closed loop, the fast interpolation path, and
the plots."""

import numpy as np
import pandas as pd
import pytest

from coda.errors import ConfigError
from coda.serving.costs import BatchShape, CostTable, _bilinear, _Grid
from coda.serving.deployment import Deployment
from coda.serving.plots import cdf, plot_result
from coda.serving.schedulers import SchedulerConfig
from coda.serving.simulate import simulate
from coda.serving.trace import Lengths, Trace, generate
from coda.serving.validation import COLUMNS, METRICS, SPLITS, load_points, summarise, validate


def test_points_are_cited_and_split():
    df = load_points()
    assert len(df) >= 20
    assert set(df["split"]) == set(SPLITS)
    assert (df["split"] == "held_out").sum() >= 20
    assert df["where"].str.len().min() > 40  # every point says where it was published
    assert set(df["metric"]) <= set(METRICS)
    assert df["gpu"].isin(["h100-sxm", "a100-sxm-80gb"]).all()


def test_bad_points_file_is_refused(tmp_path):
    df = load_points().head(2).copy()
    df.loc[0, "split"] = "train"
    p = tmp_path / "p.csv"
    df.to_csv(p, index=False)
    with pytest.raises(ConfigError, match="split 'train'"):
        load_points(str(p))
    df.drop(columns=["split"]).to_csv(p, index=False)
    with pytest.raises(ConfigError, match="columns"):
        load_points(str(p))


def test_validate_compares_one_setting():
    """The NIM concurrency-1 setting (three metrics, one simulation): the error is (pred - meas)/meas,
    and a single closed-loop client sees the single-request closed form."""
    df = load_points()
    one = df[(df["source"].str.startswith("NVIDIA NIM")) & (df["concurrency"] == 1)]
    out = validate(one)
    assert list(out["metric"]) == list(one["metric"])
    np.testing.assert_allclose(out["error"], (out["predicted"] - out["measured"]) / out["measured"])
    assert out["predicted"].notna().all()
    s = summarise(out)
    assert list(s.columns) == ["split", "source", "metric", "points", "median_abs_error", "max_abs_error",
                               "mean_error"]
    assert tuple(df.columns) == COLUMNS


def test_closed_loop_one_client_is_sequential(llama70, h100x8):
    """One client: each request arrives when the previous one finishes, so nothing queues and the
    makespan is the sum of the end-to-end latencies."""
    dep = Deployment(llama70, h100x8, tp=8, scheduler=SchedulerConfig(kind="orca"))
    tr = Trace(np.zeros(6), np.full(6, 700, dtype=np.int64), np.full(6, 9, dtype=np.int64))
    r = simulate(dep, tr, concurrency=1)
    rq = r.requests
    np.testing.assert_allclose(rq["arrival_s"].to_numpy()[1:], (rq["arrival_s"] + rq["e2e_s"]).to_numpy()[:-1])
    assert (rq["queue_s"] == 0).all()
    assert r.summary()["makespan_s"] == pytest.approx(rq["e2e_s"].sum(), rel=1e-12)


def test_closed_loop_caps_requests_in_flight(llama70, h100x8):
    dep = Deployment(llama70, h100x8, tp=8, scheduler=SchedulerConfig(kind="sarathi", max_batch=64))
    tr = generate(60, 1.0, Lengths("uniform", 50, 400), Lengths("uniform", 5, 60), seed=2)
    r = simulate(dep, tr, concurrency=4)
    rq = r.requests
    start, end = rq["arrival_s"].to_numpy(), (rq["arrival_s"] + rq["e2e_s"]).to_numpy()
    for t in np.linspace(0, end.max(), 200):
        assert ((start <= t) & (end > t)).sum() <= 4
    assert r.iterations["sequences"].max() <= 4
    with pytest.raises(ConfigError, match="concurrency"):
        simulate(dep, tr, concurrency=0)


def test_grid_point_equals_vectorised():
    """The scalar interpolation of the hot path gives the bits of the vectorised one."""
    rng = np.random.default_rng(0)
    xg, yg = np.array([1.0, 2, 5, 9, 30]), np.array([0.0, 3, 10, 100])
    z = rng.uniform(size=(2, len(xg), len(yg)))
    g = _Grid(xg, yg, z)
    x, y = rng.uniform(1, 30, 50), rng.uniform(0, 100, 50)
    many = g.many(x, y)
    np.testing.assert_array_equal(many, _bilinear(xg, yg, z, x, y))
    for k in range(50):
        np.testing.assert_array_equal(g.at(float(x[k]), float(y[k])), many[k])
    np.testing.assert_array_equal(g.along_y(7.0, y), _bilinear(xg, yg, z[:1], np.full(50, 7.0), y)[:, 0])


def test_table_stage_times_follow_the_direct_model(llama70, h100x8):
    """Single chunk, several chunks, equal chunks and decodes: the table's fast paths stay within
    its stated error of the direct evaluation."""
    tab = CostTable.for_deployment(Deployment(llama70, h100x8, tp=8), max_context=4096)
    shapes = [BatchShape.of([300], [0]), BatchShape.of([300, 77], [0, 900], [1000, 20]),
              BatchShape.of([128, 128], [0, 0], [5] * 30), BatchShape.of(decode_context=[700] * 17)]
    for s in shapes:
        assert tab.stage_times(s).sum() == pytest.approx(tab.cost.stage_times(s).sum(), rel=5e-3)


def test_cdf():
    x, y = cdf(np.array([3.0, 1.0, np.nan, 2.0]))
    np.testing.assert_array_equal(x, [1, 2, 3])
    np.testing.assert_allclose(y, [1 / 3, 2 / 3, 1])
    x, y = cdf(np.arange(10_000.0), points=100)
    assert len(x) == 100 and x[0] == 0 and x[-1] == 9999 and y[-1] == 1.0


def test_plot_result_writes_a_figure(tmp_path, llama70, h100x8):
    pytest.importorskip("matplotlib")
    dep = Deployment(llama70, h100x8, tp=4, scheduler=SchedulerConfig(kind="vllm"))
    r = simulate(dep, generate(40, 4.0, Lengths("uniform", 50, 500), Lengths("uniform", 5, 50), seed=1))
    out = tmp_path / "r.png"
    plot_result(r, str(out))
    assert out.stat().st_size > 20_000
    assert isinstance(r.iterations, pd.DataFrame)


@pytest.mark.parametrize("kind", ["orca", "sarathi"])
def test_long_stretches_beyond_the_probe_change_nothing(llama70, h100x8, kind):
    """Sparse arrivals and long outputs: aggregated decode stretches run past `PROBE_STEPS` (the
    simulator evaluates them a second time in full); results equal the step-by-step run."""
    from coda.serving.simulate import PROBE_STEPS

    dep = Deployment(llama70, h100x8, tp=8, scheduler=SchedulerConfig(kind=kind))
    tr = generate(30, 0.3, Lengths("uniform", 50, 600), Lengths("uniform", 100, 400), seed=5)
    a, b = simulate(dep, tr), simulate(dep, tr, aggregate=False)
    assert a.iterations["steps"].max() > PROBE_STEPS
    cols = ["ttft_s", "e2e_s", "queue_s", "tpot_s", "max_tbt_s"]
    np.testing.assert_allclose(a.requests[cols].to_numpy(float), b.requests[cols].to_numpy(float), rtol=1e-9,
                               atol=1e-9)
    assert len(a.tbt) == len(b.tbt)


def test_serving_report_sections(monkeypatch):
    """`coda validate serving`'s sections (on the three concurrency-1 points, to stay quick)."""
    import coda.serving.validation as v

    few = load_points()
    few = few[few["id"].isin(["nim-01", "nim-02", "nim-03"])]
    monkeypatch.setattr(v, "load_points", lambda path=None: few)
    sections = v.serving_report()
    assert [t for t, _ in sections][-1] == "summary"
    table, summary = sections[0][1], sections[1][1]
    assert len(table) == 3 and {"measured", "predicted", "error"} <= set(table.columns)
    assert summary["points"].sum() == 3
