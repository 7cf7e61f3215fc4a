"""The TPU v5e-like preset: each field against Google's published figures (Google Cloud TPU v5e docs;
Austin et al., "How to Scale Your Model", 2025, part 2)."""

import pytest

from coda.arch.accelerators import (
    PRESETS,
    REFERENCE_POWER_W,
    TPUV5E_CLOCK_HZ,
    TPUV5E_VMEM_BYTES,
    accelerator_preset,
    tpuv4,
    tpuv5e,
)
from coda.units import GiB, KiB, MiB


def test_registered():
    assert "tpuv5e" in PRESETS and accelerator_preset("TPUv5e") == tpuv5e()
    assert tpuv5e().name == "tpuv5e"


def test_fields_match_the_published_chip():
    t = tpuv5e()
    # one TensorCore with four 128 x 128 MXUs
    assert (t.n_tc, t.tc_rows, t.tc_cols) == (4, 128, 128)
    # one VPU of 8 sublanes x 128 lanes
    assert (t.n_vc, t.vc_lanes) == (1, 1024)
    # all on-chip SRAM is the 128 MiB VMEM
    assert TPUV5E_VMEM_BYTES == 128 * MiB and t.sram_bytes == 128 * MiB
    assert t.glb_bytes == 128 * MiB - 4 * (128 * 128 // 64) * KiB - 1024 // 64 * KiB
    assert (t.hbm_bytes, t.hbm_bw_bytes_per_s) == (16 * GiB, 819e9)
    # 4 ICI ports, 400 GB/s bidirectional per chip
    assert t.n_links == 4 and 2 * t.n_links * t.link_bw_bytes_per_s == pytest.approx(400e9)
    assert (t.clock_hz, t.dtype_bytes) == (TPUV5E_CLOCK_HZ, 2)


def test_peak_is_googles_197_tflops():
    t = tpuv5e()
    assert t.peak_flops == pytest.approx(2 * 4 * 128 * 128 * 1.5e9)
    assert t.peak_flops / 1e12 == pytest.approx(197, rel=3e-3)
    # the clock Google's peak implies: 197e12 / (2 * 4 * 16384) = 1.503 GHz
    assert 197e12 / (2 * t.n_macs) == pytest.approx(t.clock_hz, rel=3e-3)
    # half a TPU v4 in MXUs and vector units, at a 1.43x faster clock
    assert t.n_macs * 2 == tpuv4().n_macs and t.vector_flops == pytest.approx(tpuv4().vector_flops * 1.5 / 1.05 / 2)


def test_no_published_power():
    assert "tpuv5e" not in REFERENCE_POWER_W
    assert 0 < tpuv5e().tdp_w < tpuv4().tdp_w  # a model figure only (7 nm assumed, unpublished)
