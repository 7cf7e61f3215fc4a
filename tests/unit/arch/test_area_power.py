"""Area (PHAZE 22 nm model, node scaling) and the TDP model: data checks and monotonicity."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coda.arch import area, power
from coda.arch.accelerators import Accelerator, tpuv4_like
from coda.arch.design_space import phaze_cores
from coda.arch.technology import DEFAULT_TECHNOLOGY
from coda.errors import ConfigError
from coda.units import KiB, MiB


@pytest.fixture(scope="module")
def cores() -> pd.DataFrame:
    return phaze_cores()


def test_area_model_reproduces_every_phaze_row(cores):
    assert len(cores) == 29360
    model = area.area_um2(cores["num_tc"], cores["width"], cores["depth"], cores["num_vc"], cores["width_vc"],
                          cores["GLB_Buffer"])
    rel = np.abs(model / cores["area"].to_numpy() - 1.0)
    assert rel.max() < 1e-4  # acceptance: 0.01%; the model actually matches to ~1e-7
    assert rel.max() < 1e-6


def test_tpuv4_area_breakdown_matches_phaze_reference():
    parts = tpuv4_like().area_breakdown_mm2()
    assert parts["tc_macs"] == pytest.approx(99.62, abs=0.01)
    assert parts["tc_local_buffers"] == pytest.approx(3.57, abs=0.01)
    assert parts["vc_lanes"] + parts["vc_local_buffers"] == pytest.approx(0.21, abs=0.01)
    assert parts["glb"] == pytest.approx(175.42, abs=0.01)
    assert sum(parts.values()) * 1e6 == pytest.approx(278_826_678, abs=1)


def test_glb_area_exact_at_table_points_and_continuous():
    table = {2: 3338220, 4: 6078640, 8: 11952400, 16: 23745200, 32: 46750900, 64: 88605700, 128: 175423000}
    for mib, um2 in table.items():
        assert float(area.glb_area_um2(mib * MiB)) == pytest.approx(um2, rel=1e-12)
    # linear between points, continuous at the ends of the table
    assert float(area.glb_area_um2(3 * MiB)) == pytest.approx((3338220 + 6078640) / 2)
    eps = 1.0
    assert float(area.glb_area_um2(128 * MiB + eps)) == pytest.approx(175423000, abs=5)
    assert float(area.glb_area_um2(2 * MiB - eps)) == pytest.approx(3338220, abs=5)
    sizes = np.geomspace(1e5, 1e9, 200)
    assert np.all(np.diff(area.glb_area_um2(sizes)) > 0)


def test_local_buffer_table_bounds():
    assert float(area.local_buffer_area_um2(1024)) == pytest.approx(1634130)
    with pytest.raises(ConfigError, match="1..1024 KiB"):
        area.local_buffer_area_um2(2048)


def test_node_scaling_shrinks_area_and_orders_nodes():
    t = tpuv4_like()
    at = {n: dataclasses.replace(t, tech_nm=n).area_mm2_at_node for n in (7, 5, 4)}
    assert t.area_mm2 > at[7] > at[5] >= at[4] > 0
    assert area.logic_area_factor(22) == 1.0 and area.sram_area_factor(22) == 1.0
    # SRAM shrinks less than logic from 7 to 5 nm (TSMC: 1.84x logic, ~1.3x SRAM)
    assert area.sram_area_factor(5) / area.sram_area_factor(7) > area.logic_area_factor(5) / area.logic_area_factor(7)
    with pytest.raises(ConfigError, match="tech_nm=3"):
        area.logic_area_factor(3)


def test_energy_constants_from_sources():
    assert power.mac_pj(2, 7) == pytest.approx(0.34 + 0.38)  # fp16 mult + fp32 accumulate, 7 nm
    assert power.sram_pj_per_byte(8 * KiB) == pytest.approx(7.5 / 8)
    assert power.sram_pj_per_byte(32 * KiB) == pytest.approx(8.5 / 8)
    assert power.sram_pj_per_byte(1 * MiB) == pytest.approx(14.0 / 8)
    assert power.sram_pj_per_byte(1 * KiB) == pytest.approx(7.5 / 8)  # held below 8 KiB
    assert power.energy_factor(7) == 1.0 > power.energy_factor(5) > power.energy_factor(4)
    assert power.mac_pj(2, 4) < power.mac_pj(2, 5) < power.mac_pj(2, 7)
    sizes = np.geomspace(1 * KiB, 1 * 2**30, 100)
    assert np.all(np.diff(power.sram_pj_per_byte(sizes)) >= 0)
    with pytest.raises(ConfigError, match="7, 5, 4"):
        power.energy_factor(22)


def test_hbm_and_link_terms_follow_their_formulas():
    t = tpuv4_like()
    parts = t.power_breakdown()
    assert parts["hbm"] == pytest.approx(1200e9 * 8 * 3.9e-12)
    assert parts["links"] == pytest.approx(6 * 50e9 * 8 * 5e-12)
    assert parts["mac"] == pytest.approx(8 * 128 * 128 * 1.05e9 * 0.72e-12)
    assert parts["static"] == pytest.approx(0.15 * t.area_mm2_at_node)


# --- monotonicity (hypothesis) ---------------------------------------------------------
pow2 = st.sampled_from([2, 4, 8, 16, 32, 64, 128])
configs = st.builds(
    Accelerator,
    n_tc=st.integers(1, 2048),
    tc_rows=pow2,
    tc_cols=pow2,
    n_vc=st.integers(1, 2048),
    vc_lanes=pow2,
    glb_bytes=st.integers(256 * KiB, 512 * MiB),
    hbm_bytes=st.integers(1, 2**37),
    hbm_bw_bytes_per_s=st.floats(1e10, 1e13),
    clock_hz=st.floats(1e8, 3e9),
    dtype_bytes=st.sampled_from([1, 2, 4]),
    link_bw_bytes_per_s=st.floats(1e9, 2e11),
    n_links=st.integers(1, 24),
    tech_nm=st.sampled_from([7, 5, 4]),
)

ON_CHIP = {
    "n_tc": lambda a: a.n_tc + 1,
    "tc_rows": lambda a: a.tc_rows * 2,
    "tc_cols": lambda a: a.tc_cols * 2,
    "n_vc": lambda a: a.n_vc + 1,
    "vc_lanes": lambda a: a.vc_lanes * 2,
    "glb_bytes": lambda a: a.glb_bytes + MiB,
}
OFF_CHIP = {
    "hbm_bw_bytes_per_s": lambda a: a.hbm_bw_bytes_per_s * 1.5,
    "clock_hz": lambda a: a.clock_hz * 1.1,
    "link_bw_bytes_per_s": lambda a: a.link_bw_bytes_per_s * 2,
    "n_links": lambda a: a.n_links + 1,
}


@settings(max_examples=60, deadline=None)
@given(acc=configs, resource=st.sampled_from(sorted(ON_CHIP)))
def test_area_and_tdp_increase_with_every_on_chip_resource(acc, resource):
    bigger = dataclasses.replace(acc, **{resource: ON_CHIP[resource](acc)})
    assert bigger.area_mm2 > acc.area_mm2
    assert bigger.area_mm2_at_node > acc.area_mm2_at_node
    assert bigger.tdp_w > acc.tdp_w


@settings(max_examples=60, deadline=None)
@given(acc=configs, resource=st.sampled_from(sorted(OFF_CHIP)))
def test_tdp_increases_with_bandwidth_clock_and_links_area_unchanged(acc, resource):
    bigger = dataclasses.replace(acc, **{resource: OFF_CHIP[resource](acc)})
    assert bigger.tdp_w > acc.tdp_w
    assert bigger.area_mm2 == acc.area_mm2


@settings(max_examples=30, deadline=None)
@given(acc=configs)
def test_hbm_capacity_costs_power_not_die_area_and_newer_nodes_use_less_power(acc):
    # HBM capacity costs standby + refresh power per GiB (issue #17), and no 22 nm die area.
    more_hbm = dataclasses.replace(acc, hbm_bytes=acc.hbm_bytes * 2)
    assert more_hbm.tdp_w > acc.tdp_w and more_hbm.area_mm2 == acc.area_mm2
    extra = more_hbm.power_breakdown()["hbm_capacity"] - acc.power_breakdown()["hbm_capacity"]
    assert extra == pytest.approx(acc.hbm_bytes / 2**30 * DEFAULT_TECHNOLOGY.hbm_w_per_gib)
    tdp = {n: dataclasses.replace(acc, tech_nm=n).tdp_w for n in (7, 5, 4)}
    assert tdp[7] > tdp[5] > tdp[4]


def test_vectorised_power_matches_scalar():
    accs = [tpuv4_like(), Accelerator(n_tc=3, tc_rows=16, tc_cols=64, n_vc=5, vc_lanes=32, glb_bytes=3 * MiB,
                                      hbm_bytes=80 * 2**30)]
    cols = {k: np.array([getattr(a, k) for a in accs]) for k in
            ("n_tc", "tc_rows", "tc_cols", "n_vc", "vc_lanes", "glb_bytes", "hbm_bw_bytes_per_s", "clock_hz",
             "hbm_bytes")}
    vec = power.tdp_w(**cols, dtype_bytes=2, link_bw_bytes_per_s=50e9, n_links=6, tech_nm=7)
    assert vec == pytest.approx([a.tdp_w for a in accs])
