"""Per-design network links: a design's `n_links x link_bw` sets its torus bandwidth (`design_cluster`), costs
TDP, and is part of its identity in the frame and the store."""

import json
import sqlite3
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coda.arch.accelerators import tpuv4, tpuv4_like
from coda.arch.clusters import CollectiveKind, cluster
from coda.arch.design_space import DesignSpace, design_cluster
from coda.cli import main
from coda.errors import ConfigError
from coda.models import get
from coda.placement import predictor_layer_time
from coda.placement.optimize import optimize
from coda.search import DEFAULT_CHOICES, search
from coda.units import MiB

CORES = dict(n_tc=(8,), n_vc=(2,), tc_rows=(128,), tc_cols=(64,), glb_bytes=(32 * MiB,))


def with_links(n_links, link_bw=50e9):
    return replace(tpuv4_like(), n_links=n_links, link_bw_bytes_per_s=link_bw)


@pytest.mark.parametrize("n_devices", [1, 2, 16, 64, 256, 4096])
def test_the_tpu_v4_links_give_exactly_the_preset(n_devices):
    for acc in (tpuv4_like(), tpuv4()):
        assert design_cluster(acc, n_devices) == cluster("tpuv4-pod", n_devices, device=acc)


@settings(max_examples=200, deadline=None)
@given(n_a=st.integers(1, 8), n_b=st.integers(1, 8), bw_a=st.floats(1e9, 2e11), bw_b=st.floats(1e9, 2e11),
       n_devices=st.sampled_from([2, 16, 64, 256]), kind=st.sampled_from(list(CollectiveKind)),
       n_bytes=st.floats(0, 1e10), group=st.sampled_from([2, 16, 64, 256]))
def test_more_link_bandwidth_is_never_slower(n_a, n_b, bw_a, bw_b, n_devices, kind, n_bytes, group):
    """Collective time is non-increasing in n_links * link_bw, and its bandwidth term scales as 1 / (n_links * bw)."""
    a, b = with_links(3 * n_a, bw_a), with_links(3 * n_b, bw_b)
    if a.n_links * a.link_bw_bytes_per_s > b.n_links * b.link_bw_bytes_per_s:
        a, b = b, a
    group = min(group, n_devices)
    if kind is CollectiveKind.SEND_RECV:
        group = 2
    ca, cb = design_cluster(a, n_devices), design_cluster(b, n_devices)
    assert cb.collective_time(kind, n_bytes, group) <= ca.collective_time(kind, n_bytes, group)
    cost_a, cost_b = ca.collective_cost(kind, group), cb.collective_cost(kind, group)
    assert cost_a.latency_s == cost_b.latency_s
    ratio = (b.n_links * b.link_bw_bytes_per_s) / (a.n_links * a.link_bw_bytes_per_s)
    assert cost_a.s_per_byte == pytest.approx(cost_b.s_per_byte * ratio, rel=1e-12)


def test_formula_on_the_torus():
    """Each torus level gets n_links / 3 links at 90% of their nominal rate (the preset's 45 of 50 GB/s)."""
    c = design_cluster(with_links(12, 100e9), 4096)
    assert [lv.bw_each_way_bytes_per_s for lv in c.levels] == pytest.approx([12 / 3 * 100e9 * 0.9] * 3, rel=1e-12)
    assert "scaled by the design's links" in c.levels[0].source


@pytest.mark.parametrize("acc, n_devices, match", [
    (with_links(4), 16, "not a multiple of 3"),
    (with_links(0), 16, "no inter-chip bandwidth"),
    (with_links(6, 0.0), 16, "no inter-chip bandwidth"),
    (with_links(6), 24, "16-device domains"),
])
def test_unusable_links_are_refused(acc, n_devices, match):
    with pytest.raises(ConfigError, match=match):
        design_cluster(acc, n_devices)


def test_only_the_torus_preset_is_scaled():
    assert design_cluster(with_links(4), 1) == cluster("tpuv4-pod", 1, device=with_links(4))  # one chip: no network
    with pytest.raises(ConfigError, match="not supported"):
        design_cluster(tpuv4_like(), 16, preset="dgx-a100")


def test_link_axes_multiply_the_space_cost_power_and_name_the_designs():
    base = DesignSpace(**CORES)
    space = DesignSpace(**CORES, n_links=(3, 6, 12), link_bw_bytes_per_s=(25e9, 50e9))
    assert base == DesignSpace(**CORES, n_links=6, link_bw_bytes_per_s=50e9)  # scalars are one-value axes
    assert [a.name for a in base] == ["8x128x64tc-2x128vc-32MiB"]  # no link axis: names as before
    assert len(space) == 6 * len(base)
    df = space.to_frame()
    accs = list(space)
    assert len({a.name for a in accs}) == 6 and accs[0].name.endswith("-3x25GBps")
    assert df["tdp_w"].tolist() == pytest.approx([a.tdp_w for a in accs], rel=1e-12)
    assert df["area_mm2"].nunique() == 1  # SerDes are outside the 22 nm core-array area model
    link = df["n_links"] * df["link_bw_bytes_per_s"]
    # the power model's SerDes term: 5 pJ per bit sent and received, n_links * bw * 8 bits/s
    extra = df["tdp_w"] - df["tdp_w"].min()
    assert extra.tolist() == pytest.approx(((link - link.min()) * 8 * 5e-12).tolist(), rel=1e-9)


def test_more_link_bandwidth_never_slows_a_training_step():
    cfg = get("gpt2")
    steps = [optimize(cfg, design_cluster(with_links(n), 16), 64, 512, layer_time=predictor_layer_time,
                      **DEFAULT_CHOICES)[1].step_time_s for n in (3, 6, 12, 24)]
    assert steps == sorted(steps, reverse=True) and steps[0] > steps[-1]


def test_designs_with_different_links_are_different_rows(tmp_path):
    db = tmp_path / "runs.sqlite"
    space = DesignSpace(**CORES, n_links=(3, 6))
    res = search("gpt2", space, 16, 64, 512, layer_time=predictor_layer_time, executor="inline", prune=False,
                 store=str(db))
    assert sorted(res.frame["n_links"]) == [3, 6] and res.frame["name"].nunique() == 2
    assert res.reference["n_links"] == 6 and res.reference["link_bw_bytes_per_s"] == 50e9
    with sqlite3.connect(db) as con:
        assert con.execute("SELECT COUNT(*) FROM results").fetchone()[0] == 2 + 2  # the designs, the references
    again = search("gpt2", space, 16, 64, 512, layer_time=predictor_layer_time, executor="inline", prune=False,
                   store=str(db))
    assert again.n_cached == 2 and again.n_evaluated == 0


def test_a_link_axis_changes_the_search_result():
    """More link bandwidth: more tokens/s (never fewer) and more TDP; the best per watt is interior here."""
    space = DesignSpace(**CORES, n_links=(3, 6, 12, 24))
    res = search("gpt2", space, 16, 64, 512, layer_time=predictor_layer_time, executor="inline", prune=False)
    by_links = res.frame.sort_values("n_links")
    assert by_links["tokens_per_s"].is_monotonic_increasing and by_links["tdp_w"].is_monotonic_increasing
    assert by_links["tokens_per_s"].iloc[-1] > by_links["tokens_per_s"].iloc[0]
    assert res.best["n_links"] not in (3, 24)


def test_cli_link_axes(capsys):
    args = ["search", "--model", "gpt2", "--devices", "16", "--global-batch", "64", "--seq-len", "512",
            "--n-tc", "8", "--n-vc", "2", "--tc-rows", "128", "--tc-cols", "64", "--glb-mib", "32",
            "--min-area-fraction", "0", "--timer", "predictor", "--executor", "inline"]
    assert main(args + ["--n-links", "3,6", "--link-gbps", "25,50", "--no-prune"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("designs 4:") and "links_x_GBps" in out and "3x25" in out and "6x50" in out
    assert main(args + ["--json", "--n-links", "12"]) == 0
    assert json.loads(capsys.readouterr().out)["top"][0]["n_links"] == 12
    assert main(args + ["--n-links", "4"]) == 2
    assert "n_links=4 is not a multiple of 3" in capsys.readouterr().err
    assert main(args + ["--link-gbps", "0"]) == 2
    assert "--link-gbps 0.0 is out of range" in capsys.readouterr().err
