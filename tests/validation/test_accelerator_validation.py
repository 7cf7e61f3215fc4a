"""`coda.evaluate.accelerator_validation`: the template's A100/H100 kernels, power and TPU v4 end to end.

Structure and computed-ness only (the targets and their misses are checked in test_acceptance.py).
"""

import dataclasses

import numpy as np
import pytest

from coda.arch.accelerators import a100_like
from coda.evaluate import accelerator_validation as av
from coda.predictor.accel_tiles import AcceleratorTileModel


@pytest.fixture(scope="module")
def pred():
    return av.kernel_predictions()


def test_predictions_cover_both_gpus_and_are_the_tile_model(pred):
    assert set(pred["gpu"]) == {"a100-sxm4-80gb", "h100-sxm"}
    assert {"gemm", "elementwise", "norm", "attention (prefill)", "attention (decode)"} <= set(pred["family"])
    assert pred["predicted_s"].gt(0).all() and pred["measured_s"].gt(0).all()
    assert np.allclose(pred["error"], pred["predicted_s"] / pred["measured_s"] - 1)
    # recompute a few rows independently
    from coda.predictor.measured import kernels

    k = kernels()
    k = k[(k["source"] == "vidur") & (k["gpu"] == "a100-sxm4-80gb")]
    row = k.iloc[0]
    got = pred[(pred["gpu"] == "a100-sxm4-80gb")].iloc[0]
    assert got["predicted_s"] == pytest.approx(AcceleratorTileModel().latency(row["op"], a100_like()))
    assert got["measured_s"] == row["latency_s"]


def test_error_table_is_computed_from_the_rows(pred):
    errs = av.kernel_errors(pred)
    assert list(errs.columns[:4]) == ["gpu", "template", "family", "n"]
    g = pred[(pred["gpu"] == "h100-sxm") & (pred["family"] == "gemm")]
    row = errs[(errs["gpu"] == "h100-sxm") & (errs["family"] == "gemm")].iloc[0]
    assert row["n"] == len(g)
    assert row["median_ape_%"] == pytest.approx(g["ape_%"].median())
    assert row["p90_ape_%"] == pytest.approx(g["ape_%"].quantile(0.9))
    assert "% of tensor peak" in row["cause"]
    # a perturbed prediction changes the table: nothing is a constant
    shifted = pred.assign(predicted_s=pred["predicted_s"] * 2, error=pred["predicted_s"] * 2 / pred["measured_s"] - 1)
    shifted["ape_%"] = 100 * shifted["error"].abs()
    assert not np.allclose(av.kernel_errors(shifted)["median_ape_%"], errs["median_ape_%"])


def test_power_table_and_sensitivity():
    df = av.power_table()
    assert list(df["name"]) == ["tpuv4-like", "tpuv4", "a100-like", "h100-like"]
    assert np.allclose(df["error_%"], 100 * (df["tdp_w"] / df["reference_w"] - 1))
    s = av.power_sensitivity().set_index("variant")
    assert s.loc["HBM 80 GiB", "tdp_w"] > s.loc["base", "tdp_w"] > s.loc["HBM 16 GiB", "tdp_w"]
    assert s.loc["GLB 2 MiB", "tdp_w"] < s.loc["GLB 32 MiB", "tdp_w"] < s.loc["GLB 128 MiB", "tdp_w"]
    base = av.tpuv4()
    other = av.power_sensitivity(dataclasses.replace(base, hbm_bw_bytes_per_s=600e9, name=""))
    assert other["tdp_w"].iloc[0] < s.loc["base", "tdp_w"]


def test_palm_config_matches_published_size():
    # PaLM 540B: 540.35e9 parameters (Chowdhery et al. 2022, Table 2)
    assert av.palm_540b().param_count() == pytest.approx(540.35e9, rel=0.01)


def test_tpuv4_end_to_end_published_layout():
    df = av.tpuv4_end_to_end(search_all=False)
    row = df.iloc[0]
    assert row["case"] == "published layout" and row["plan"].startswith("tp=12 pp=1")
    assert 0 < row["mfu"] <= row["hfu"] <= 1
    assert row["mfu"] < row["mfu_palm_count"] < row["mfu"] * 1.1  # PaLM's full attention matrix: a few % more
    assert row["mfu_error_%"] == pytest.approx(100 * (row["mfu_palm_count"] / 0.462 - 1))


def test_gemm_cause_states_the_sustained_tensor_ceiling(pred):
    errs = av.kernel_errors(pred).set_index(["gpu", "family"])
    for gpu in ("a100-sxm4-80gb", "h100-sxm"):
        g = pred[(pred["gpu"] == gpu) & (pred["family"] == "gemm") & (pred["bound"] == "compute")
                 & (pred["measured_s"] >= av.SUSTAINED_KERNEL_S)]
        assert len(g) > 100
        measured = g["measured_tensor_fraction"].median()
        template = (g["measured_tensor_fraction"] * g["measured_s"] / g["predicted_s"]).median()
        assert template > measured  # the template is too fast even where launch and fill cannot matter
        assert f"sustains a median {100 * measured:.0f}% of tensor peak" in errs.loc[(gpu, "gemm"), "cause"]
        assert f"the template {100 * template:.0f}%" in errs.loc[(gpu, "gemm"), "cause"]


def test_tpuv5e_pod_is_a_16x16_torus_of_the_chips_links():
    pod = av.tpuv5e_pod()
    assert pod.n_devices == 256 and [lv.size for lv in pod.levels] == [16, 256]
    chip = av.tpuv5e()
    assert all(lv.bw_each_way_bytes_per_s == 2 * chip.link_bw_bytes_per_s for lv in pod.levels)
    assert av.tpuv5e_pod(16).levels[-1].size == 16


def test_maxtext_32b_config_matches_its_name():
    # MaxText global_parameter_scale=32: about 32e9 parameters
    assert av.maxtext_32b().param_count() == pytest.approx(32e9, rel=0.03)


def test_tpuv5e_end_to_end_maxtext_layout():
    row = av.tpuv5e_end_to_end().iloc[0]
    assert row["plan"] == "tp=1 pp=1 dp=256 mb=4 zero=3 recompute=full"
    assert 0 < row["mfu"] < row["mfu_full_count"] < row["mfu"] * 1.05  # full attention matrix: a few % more
    assert row["tflops_per_chip"] == pytest.approx(row["mfu_full_count"] * av.tpuv5e().peak_flops / 1e12)
    assert row["error_%"] == pytest.approx(100 * (row["tflops_per_chip"] / 132 - 1))
