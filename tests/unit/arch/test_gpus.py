"""GPU catalog: values against shared/reference/hardware.md, peak-FLOP physics, aliases, errors."""

from __future__ import annotations

import dataclasses
import glob
import json
from pathlib import Path

import pytest

from coda.arch.gpus import DTYPES, GPU, gpu, gpu_aliases, list_gpus, load_gpu_file
from coda.errors import CodaError, ConfigError, UnknownNameError
from coda.units import GiB, KiB, MiB

# Every `Device` string in NeuSight's kernels/*.csv (also read from the data when present below).
NEUSIGHT_DEVICES = {
    "NVIDIA A100 80GB PCIe": "a100-pcie-80gb",
    "NVIDIA A100-PCIE-40GB": "a100-pcie-40gb",
    "NVIDIA H100 80GB HBM3": "h100-sxm",
    "NVIDIA L4": "l4",
    "Tesla P100-PCIE-16GB": "p100-pcie-16gb",
    "Tesla P4": "p4",
    "Tesla T4": "t4",
    "Tesla V100-PCIE-32GB": "v100-pcie-32gb",
}
OTHER_MEASURED = {
    "NVIDIA A100-SXM4-40GB": "a100-sxm4-40gb",  # NeuSight devices/*.json
    "NVIDIA_A100-PCIE-40GB": "a100-pcie-40gb",  # NeuSight file-name form
    "a100": "a100-sxm4-80gb",  # Vidur: A100-80GB on NVSwitch (DGX / NDm A100 v4), hence SXM4
    "h100": "h100-sxm",  # Vidur: H100 SXM
}

# (gpu, field, expected) from the hardware.md table; FLOP/s in TFLOP/s, bandwidth in GB/s.
HARDWARE_MD = [
    ("h100-sxm", "tc_bf16", 989.4), ("h100-sxm", "tc_tf32", 494.7), ("h100-sxm", "tc_fp8", 1978.9),
    ("h100-sxm", "simt_fp32", 66.9), ("h100-sxm", "hbm_bw", 3352), ("h100-sxm", "sm", 132), ("h100-sxm", "tdp", 700),
    ("h100-sxm", "nvlink", 900), ("h100-sxm", "l2_mib", 50), ("h100-sxm", "smem_kib", 228), ("h100-sxm", "hbm_gib", 80),
    ("h100-pcie", "tc_bf16", 756), ("h100-pcie", "tc_tf32", 378), ("h100-pcie", "tc_fp8", 1513),
    ("h100-pcie", "simt_fp32", 51.2), ("h100-pcie", "hbm_bw", 2039), ("h100-pcie", "sm", 114),
    ("h100-pcie", "tdp", 350),
    ("a100-sxm4-40gb", "hbm_bw", 1555), ("a100-sxm4-80gb", "hbm_bw", 2039), ("a100-pcie-40gb", "hbm_bw", 1555),
    ("a100-pcie-80gb", "hbm_bw", 1935), ("a100-sxm4-40gb", "tdp", 400), ("a100-sxm4-80gb", "tdp", 400),
    ("a100-pcie-40gb", "tdp", 250), ("a100-pcie-80gb", "tdp", 300), ("a100-sxm4-40gb", "hbm_gib", 40),
    ("a100-pcie-80gb", "hbm_gib", 80), ("a100-sxm4-80gb", "nvlink", 600),
] + [(a, f, v) for a in ("a100-sxm4-40gb", "a100-sxm4-80gb", "a100-pcie-40gb", "a100-pcie-80gb")
     for f, v in (("tc_bf16", 312), ("tc_fp16", 312), ("tc_tf32", 156), ("simt_fp32", 19.5), ("sm", 108),
                  ("l2_mib", 40), ("smem_kib", 164))]


def _get(g: GPU, key: str) -> float:
    if key.startswith("tc_"):
        return g.peak_flops(key[3:]) / 1e12
    if key.startswith("simt_"):
        return g.peak_flops(key[5:], tensor_core=False) / 1e12
    return {"hbm_bw": g.hbm_bw_bytes_per_s / 1e9, "sm": g.sm_count, "tdp": g.tdp_w, "l2_mib": g.l2_bytes / MiB,
            "smem_kib": g.smem_per_sm_bytes / KiB, "hbm_gib": g.hbm_bytes / GiB,
            "nvlink": (g.nvlink_bw_bidir_bytes_per_s or 0) / 1e9}[key]


@pytest.mark.parametrize("name,key,expected", HARDWARE_MD)
def test_catalog_matches_hardware_md(name: str, key: str, expected: float) -> None:
    assert _get(gpu(name), key) == pytest.approx(expected, rel=1e-3)


def test_required_names_exist() -> None:
    required = {"a100-sxm4-40gb", "a100-sxm4-80gb", "a100-pcie-40gb", "a100-pcie-80gb", "h100-sxm", "h100-pcie",
                "h200", "v100-pcie-32gb", "l4", "t4", "p100-pcie-16gb", "p4"}
    assert required <= set(list_gpus())


# Tensor FLOP per SM per clock (dense fp16): Volta/Turing 1024 (8 TCs x 64 FMA x 2), Ampere 2048,
# Ada (L4, fp32 accumulate) 1024, Hopper 4096. Hardware.md: 108 x 2048 x 1.41e9 = 311.9e12.
@pytest.mark.parametrize("name,flop_per_clk", [
    ("a100-sxm4-80gb", 2048), ("a100-pcie-40gb", 2048), ("h100-sxm", 4096), ("h100-pcie", 4096), ("h200", 4096),
    ("v100-pcie-32gb", 1024), ("t4", 1024), ("l4", 1024),
])
def test_tensor_peak_is_sms_times_rate_times_clock(name: str, flop_per_clk: int) -> None:
    g = gpu(name)
    assert g.peak_flops("fp16") == pytest.approx(g.sm_count * flop_per_clk * g.clock_hz, rel=0.012)


# FP32 lanes per SM: Pascal GP100 / Volta / Turing / Ampere GA100 64; GP104, Ada, Hopper 128.
# Hopper's SIMT peak is quoted at the max boost clock.
@pytest.mark.parametrize("name,lanes", [
    ("a100-sxm4-80gb", 64), ("h100-sxm", 128), ("h100-pcie", 128), ("v100-pcie-32gb", 64), ("t4", 64),
    ("l4", 128), ("p100-pcie-16gb", 64), ("p4", 128),
])
def test_fp32_simt_peak_is_sms_times_lanes_times_2_times_clock(name: str, lanes: int) -> None:
    g = gpu(name)
    assert g.peak_flops("fp32", tensor_core=False) == pytest.approx(g.sm_count * lanes * 2 * g.max_clock_hz, rel=0.025)


@pytest.mark.parametrize("name", ["a100-sxm4-80gb", "h100-sxm", "h100-pcie", "h200", "l4"])
def test_dtype_ratios_on_tensor_cores(name: str) -> None:
    g = gpu(name)
    assert g.peak_flops("bf16") == g.peak_flops("fp16")
    assert g.peak_flops("tf32") == pytest.approx(g.peak_flops("fp16") / 2, rel=0.01)
    if g.supports("fp8"):
        assert g.peak_flops("fp8") == pytest.approx(2 * g.peak_flops("fp16"), rel=0.01)


def test_neusight_wrong_sm_counts_are_corrected() -> None:
    assert gpu("l4").sm_count == 58
    assert gpu("p4").sm_count == 20


def test_memory_hierarchy_is_ordered() -> None:
    for name in list_gpus():
        g = gpu(name)
        assert g.smem_per_sm_bytes < g.l2_bytes < g.hbm_bytes, name
        assert g.clock_hz <= g.max_clock_hz


@pytest.mark.parametrize("name,dtype", [("a100-sxm4-80gb", "fp8"), ("v100-pcie-32gb", "bf16"), ("t4", "tf32"),
                                        ("p100-pcie-16gb", "fp16"), ("h100-sxm", "fp32")])
def test_unsupported_dtype_raises_naming_gpu_and_dtype(name: str, dtype: str) -> None:
    with pytest.raises(CodaError) as err:
        gpu(name).peak_flops(dtype)
    assert name in str(err.value) and dtype in str(err.value)


def test_supports() -> None:
    assert not gpu("a100-sxm4-40gb").supports("fp8")
    assert not gpu("v100-pcie-32gb").supports("bf16")
    assert gpu("h100-sxm").supports("fp8") and gpu("a100-pcie-80gb").supports("bf16")
    assert gpu("p100-pcie-16gb").supports("fp16")  # on CUDA cores
    assert gpu("h100-sxm").supports("fp32") and gpu("h100-sxm").tensor_flops_per_s.fp32 is None


def test_fp32_tensor_error_points_to_simt() -> None:
    with pytest.raises(ConfigError, match="tensor_core=False"):
        gpu("a100-sxm4-80gb").peak_flops("fp32")


def test_unknown_dtype() -> None:
    with pytest.raises(UnknownNameError, match="bf16"):
        gpu("h100-sxm").peak_flops("bf61")
    with pytest.raises(UnknownNameError):
        gpu("h100-sxm").supports("int4")


def _measured_device_names() -> set[str]:
    names = set(NEUSIGHT_DEVICES)
    roots = ["/work/shared/data/neusight/kernels",
             str(Path(__file__).resolve().parents[3] / "coda/data/neusight/kernels")]
    for root in roots:
        for path in glob.glob(f"{root}/*.csv*"):
            import pandas as pd

            names |= set(pd.read_csv(path, usecols=["Device"])["Device"].unique())
    return names


def test_every_measured_device_name_maps_to_the_catalog() -> None:
    for name in _measured_device_names():
        assert gpu(name).name == NEUSIGHT_DEVICES[name], name


@pytest.mark.parametrize("alias,canonical", sorted({**NEUSIGHT_DEVICES, **OTHER_MEASURED}.items()))
def test_aliases(alias: str, canonical: str) -> None:
    assert gpu(alias).name == canonical
    assert gpu(alias.upper()) is gpu(alias.lower()) is gpu(canonical)


def test_aliases_are_unique() -> None:
    assert len(set(gpu_aliases().values())) == len(list_gpus())


def test_unknown_gpu_suggests_close_names() -> None:
    with pytest.raises(UnknownNameError, match="did you mean.*h100-sxm"):
        gpu("h100-sxm6")
    with pytest.raises(UnknownNameError, match="known: .*a100-sxm4-80gb"):
        gpu("mi300x")


def test_every_field_is_cited() -> None:
    cited = {f.name for f in dataclasses.fields(GPU)} - {"name", "aliases", "sources"}
    for name in list_gpus():
        g = gpu(name)
        assert set(g.sources) == cited, name
        assert all(len(g.source(k)) > 10 for k in cited)


def test_gpu_is_frozen_and_hashable() -> None:
    g = gpu("l4")
    assert hash(g) == hash(gpu("NVIDIA L4"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        g.sm_count = 60  # type: ignore[misc]
    assert {d: getattr(g.tensor_flops_per_s, d) for d in DTYPES}["fp32"] is None


def test_units_are_si() -> None:
    g = gpu("h100-sxm")
    assert g.hbm_bytes == 80 * GiB and isinstance(g.hbm_bytes, int)
    assert g.peak_flops("fp16") == 989.4e12  # exact: no binary rounding noise
    assert g.nvlink_bw_each_way_bytes_per_s == 450e9
    assert gpu("t4").nvlink_bw_bidir_bytes_per_s is None


def test_loader_is_strict(tmp_path: Path) -> None:
    src = Path(__file__).resolve().parents[3] / "coda/arch/gpu_catalog/l4.json"
    data = json.loads(src.read_text())
    bad = tmp_path / "l4.json"
    bad.write_text(json.dumps({**data, "hbm_bw_TBps": 0.3}))
    with pytest.raises(ConfigError, match="hbm_bw_TBps"):
        load_gpu_file(bad)
    del data["sources"]["tdp_w"]
    bad.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="tdp_w"):
        load_gpu_file(bad)
