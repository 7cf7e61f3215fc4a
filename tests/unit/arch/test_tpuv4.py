"""The faithful TPU v4 preset beside PHAZE's `tpuv4_like`, and what capacity costs in the power model."""

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coda.arch.accelerators import (
    PRESETS,
    TPUV4_CMEM_BYTES,
    TPUV4_VMEM_BYTES,
    Accelerator,
    accelerator_preset,
    tpuv4,
    tpuv4_like,
)
from coda.arch.technology import DEFAULT_TECHNOLOGY
from coda.units import GiB, KiB, MiB


def test_registered_and_distinct_from_phaze_reference():
    assert "tpuv4" in PRESETS and accelerator_preset("TPUv4") == tpuv4()
    assert tpuv4() != tpuv4_like() and tpuv4().name == "tpuv4"


def test_fields_match_the_published_chip():
    t = tpuv4()
    # 2 TensorCores x 4 MXUs of 128 x 128 (Jouppi et al. ISCA 2023; Google Cloud TPU v4 docs)
    assert (t.n_tc, t.tc_rows, t.tc_cols) == (8, 128, 128)
    # one VPU per TensorCore, 128 lanes x 8 sublanes (Norrie et al. IEEE Micro 2021)
    assert (t.n_vc, t.vc_lanes) == (2, 128 * 8)
    # all on-chip SRAM = CMEM 128 MiB + 2 x VMEM 16 MiB
    assert TPUV4_CMEM_BYTES == 128 * MiB and TPUV4_VMEM_BYTES == 16 * MiB
    assert t.sram_bytes == 160 * MiB
    assert t.glb_bytes == 160 * MiB - 8 * (128 * 128 // 64) * KiB - 2 * (1024 // 64) * KiB
    assert (t.hbm_bytes, t.hbm_bw_bytes_per_s, t.clock_hz) == (32 * GiB, 1200e9, 1.05e9)
    assert (t.n_links, t.link_bw_bytes_per_s, t.tech_nm, t.dtype_bytes) == (6, 50e9, 7, 2)


def test_derived_peaks_follow_closed_forms():
    t, ref = tpuv4(), tpuv4_like()
    assert t.peak_flops == pytest.approx(2 * 8 * 128 * 128 * 1.05e9)
    assert t.peak_flops / 1e12 == pytest.approx(275, rel=2e-3)  # Google: 275 TFLOP/s bf16
    assert t.vector_flops == pytest.approx(2 * 1024 * 1.05e9)
    assert t.vector_flops == pytest.approx(8 * ref.vector_flops)  # the 8 sublanes PHAZE's reference lacks


def test_phaze_reference_unchanged():
    ref = tpuv4_like()
    assert ref.area_mm2 == pytest.approx(278.83, abs=0.01)
    assert (ref.n_vc, ref.vc_lanes, ref.glb_bytes) == (2, 128, 128 * MiB)


def test_tdp_near_measured_power():
    # Jouppi et al. ISCA 2023, Table 4: measured mean 170 W, max 192 W (chip + HBM)
    assert abs(tpuv4().tdp_w / 192.0 - 1) <= 0.20
    assert tpuv4().tdp_w > 170.0


def test_hbm_capacity_power_closed_form():
    per_gib = 1.2 * (0.034 + (0.250 - 0.038) * 350e-9 / 3.9e-6)
    assert DEFAULT_TECHNOLOGY.hbm_w_per_gib == pytest.approx(per_gib)
    t = tpuv4()
    assert t.power_breakdown()["hbm_capacity"] == pytest.approx(32 * per_gib)
    big = dataclasses.replace(t, hbm_bytes=80 * GiB)
    assert big.tdp_w - t.tdp_w == pytest.approx(48 * per_gib)
    assert big.area_mm2 == t.area_mm2


@settings(max_examples=40, deadline=None)
@given(hbm_gib=st.integers(1, 192), extra_gib=st.integers(1, 64),
       glb_mib=st.integers(1, 256), extra_mib=st.integers(1, 64))
def test_power_monotone_in_hbm_and_sram_capacity(hbm_gib, extra_gib, glb_mib, extra_mib):
    base = Accelerator(n_tc=4, tc_rows=128, tc_cols=128, n_vc=4, vc_lanes=256, glb_bytes=glb_mib * MiB,
                       hbm_bytes=hbm_gib * GiB)
    more_hbm = dataclasses.replace(base, hbm_bytes=(hbm_gib + extra_gib) * GiB, name="")
    more_sram = dataclasses.replace(base, glb_bytes=(glb_mib + extra_mib) * MiB, name="")
    assert more_hbm.tdp_w > base.tdp_w
    assert more_sram.tdp_w > base.tdp_w
    # SRAM costs both access energy (GLB term) and leakage (static term, by area)
    b, s = base.power_breakdown(), more_sram.power_breakdown()
    assert s["glb"] >= b["glb"] and s["static"] > b["static"]
