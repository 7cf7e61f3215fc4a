"""The Accelerator template: reference chip, derived quantities, validation, presets, CLI."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from coda.arch import power
from coda.arch.accelerators import (
    PRESETS,
    Accelerator,
    a100_like,
    accelerator_preset,
    h100_like,
    tdp_comparison,
    tpuv4_like,
)
from coda.cli import main
from coda.errors import CodaError, ConfigError, UnknownNameError
from coda.units import GiB, KiB, MiB


def test_tpuv4_like_reference_numbers():
    t = tpuv4_like()
    assert t.name == "tpuv4-like"
    assert (t.n_tc, t.tc_rows, t.tc_cols, t.n_vc, t.vc_lanes) == (8, 128, 128, 2, 128)
    assert t.glb_bytes == 128 * MiB and t.hbm_bytes == 32 * GiB
    assert t.hbm_bw_bytes_per_s == 1200e9 and t.clock_hz == 1.05e9 and t.n_links == 6
    assert t.peak_flops == pytest.approx(275.3e12, rel=1e-3)
    assert t.area_mm2 == pytest.approx(278.83, abs=0.01)
    assert 160.0 <= t.tdp_w <= 230.0  # TPU v4 measured max 192 W


def test_derived_buffers_and_vector_flops():
    t = tpuv4_like()
    assert t.local_tc_bytes == 256 * KiB  # 128*128/64 KiB
    assert t.local_vc_bytes == 2 * KiB  # 128/64 KiB
    assert t.sram_bytes == 128 * MiB + 8 * 256 * KiB + 2 * 2 * KiB
    assert t.vector_flops == pytest.approx(2 * 128 * 1.05e9)  # 1 FLOP per lane per cycle
    small = Accelerator(n_tc=1, tc_rows=4, tc_cols=4, n_vc=1, vc_lanes=8, glb_bytes=2 * MiB)
    assert small.local_tc_bytes == KiB and small.local_vc_bytes == KiB  # max(., 1) KiB floor


def test_default_name_is_derived_and_explicit_name_kept():
    a = Accelerator(n_tc=4, tc_rows=64, tc_cols=32, n_vc=2, vc_lanes=64, glb_bytes=16 * MiB)
    assert a.name == "4x64x32tc-2x64vc-16MiB"
    assert Accelerator(n_tc=4, tc_rows=64, tc_cols=32, n_vc=2, vc_lanes=64, glb_bytes=16 * MiB, name="x").name == "x"


def test_frozen_and_hashable():
    t = tpuv4_like()
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.n_tc = 4  # type: ignore[misc]
    assert {t, tpuv4_like()} == {t}


def test_power_breakdown_sums_to_tdp():
    t = tpuv4_like()
    parts = t.power_breakdown()
    assert tuple(parts) == power.COMPONENTS
    assert sum(parts.values()) == pytest.approx(t.tdp_w)
    assert all(v > 0 for v in parts.values())


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("n_tc", 0, "positive"),
        ("n_vc", -2, "positive"),
        ("glb_bytes", 0, "positive"),
        ("hbm_bytes", -1, "positive"),
        ("tc_rows", 100, "power of two"),
        ("tc_cols", 48, "power of two"),
        ("vc_lanes", 3, "power of two"),
        ("clock_hz", 0.0, "positive"),
        ("hbm_bw_bytes_per_s", -1e9, "positive"),
        ("dtype_bytes", 3, "1, 2 or 4"),
        ("tech_nm", 22, "7, 5 or 4"),
        ("n_links", -1, ">= 0"),
        ("n_tc", 2.5, "whole number"),
    ],
)
def test_bad_fields_raise_config_error_naming_the_field(field, value, fragment):
    kwargs = dict(n_tc=8, tc_rows=128, tc_cols=128, n_vc=2, vc_lanes=128, glb_bytes=128 * MiB)
    kwargs[field] = value
    with pytest.raises(ConfigError) as info:
        Accelerator(**kwargs)
    assert field in str(info.value) and fragment in str(info.value)
    assert isinstance(info.value, CodaError)


def test_power_of_two_error_suggests_neighbours():
    with pytest.raises(ConfigError, match="use 64 or 128"):
        Accelerator(n_tc=1, tc_rows=100, tc_cols=2, n_vc=1, vc_lanes=2, glb_bytes=MiB)


def test_array_beyond_local_buffer_table_rejected():
    with pytest.raises(ConfigError, match="65536"):
        Accelerator(n_tc=1, tc_rows=512, tc_cols=256, n_vc=1, vc_lanes=2, glb_bytes=MiB)


def test_gpu_like_presets_match_published_peaks_and_sram():
    a, h = a100_like(), h100_like()
    assert a.peak_flops == pytest.approx(312e12, rel=1e-3)
    assert h.peak_flops == pytest.approx(989.4e12, rel=1e-3)
    assert a.sram_bytes == 40 * MiB + 108 * (256 + 192) * KiB
    assert h.sram_bytes == 50 * MiB + 132 * (256 + 256) * KiB
    assert (a.tech_nm, h.tech_nm) == (7, 4)
    assert a.n_links * a.link_bw_bytes_per_s * 2 == pytest.approx(600e9)  # NVLink 3, bidirectional
    assert h.n_links * h.link_bw_bytes_per_s * 2 == pytest.approx(900e9)  # NVLink 4


@pytest.mark.parametrize(("name", "reference_w"), [("a100-like", 400.0), ("h100-like", 700.0)])
def test_same_power_model_lands_within_35_percent_of_gpu_tdp(name, reference_w):
    tdp = accelerator_preset(name).tdp_w
    assert abs(tdp / reference_w - 1.0) <= 0.35, tdp


def test_tdp_comparison_table():
    df = tdp_comparison()
    assert list(df["name"]) == list(PRESETS)
    ref = df.set_index("name")["reference_w"]
    assert ref.drop("tpuv5e").tolist() == [192.0, 192.0, 400.0, 700.0]
    assert np.isnan(ref["tpuv5e"])  # Google publishes no power for TPU v5e
    pub = df[df["reference_w"].notna()]
    assert (pub["error"] == pub["tdp_w"] / pub["reference_w"] - 1).all()
    assert df[list(power.COMPONENTS)].sum(axis=1).round(9).tolist() == df["tdp_w"].round(9).tolist()


def test_unknown_preset_suggests_close_name():
    with pytest.raises(UnknownNameError, match="tpuv4"):
        accelerator_preset("tpu-v4")
    assert accelerator_preset("TPUv4-like") == tpuv4_like()


def test_cli_show_table_and_json(capsys):
    assert main(["accelerators", "show"]) == 0
    out = capsys.readouterr().out
    assert "tpuv4-like" in out and "275.3 TFLOP/s" in out and "278.83 mm^2" in out and "static" in out
    assert main(["accelerators", "show", "a100-like", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["accelerator"]["name"] == "a100-like"
    assert sum(data["power_w"].values()) == pytest.approx(data["accelerator"]["tdp_w"])


def test_cli_space_and_tdp_check(capsys):
    assert main(["accelerators", "space", "--limit", "3"]) == 0
    out = capsys.readouterr().out
    assert "29360 admitted" in out and "top 3 by flops-per-w" in out
    assert main(["accelerators", "space", "--max-tdp-w", "150", "--json", "--limit", "2"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert 0 < data["n_admitted"] < 29360 and all(r["tdp_w"] <= 150 for r in data["top"])
    assert main(["accelerators", "tdp-check"]) == 0
    assert "h100-like" in capsys.readouterr().out


def test_cli_bad_input_exits_2_with_one_line(capsys):
    assert main(["accelerators", "show", "nope"]) == 2
    assert main(["accelerators", "space", "--max-tdp-w", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "max_tdp_w" in err[1] and "raise max_tdp_w" in err[1]
