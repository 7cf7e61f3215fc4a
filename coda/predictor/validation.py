"""`coda validate predictor`: our error and the roofline's on measured kernels, split into the
rows the active calibration (shipped, or `$CODA_GPU_CALIBRATION`) was fitted on and the rows it never saw."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from coda.predictor import measured
from coda.predictor.calibrate import fit, fit_mask, with_features
from coda.predictor.gpu_tiles import (
    FEATURE_COLUMNS,
    active_calibration,
    gemm_candidate_times,
    gemm_params,
    persistent_gemm,
    predict_features,
)

LEAVE_OUT_GPU = "a100-pcie-80gb"


def _ape(pred: np.ndarray, meas: np.ndarray) -> np.ndarray:
    return np.abs(pred - meas) / meas * 100.0


def kernel_errors() -> pd.DataFrame:
    """Every shipped measurement with our prediction, the roofline's, and both APEs (%)."""
    df = measured.kernels()
    df["split"] = np.where(fit_mask(df), "fitted", "held out")
    f = with_features(df)
    f["ours_s"] = predict_features(f, active_calibration())
    f["roofline_s"] = np.maximum(f["flops"] / f["peak"], f["bytes"] / f["peak_bw"])
    f["ours_ape"] = _ape(f["ours_s"].to_numpy(), f["latency_s"].to_numpy())
    f["roofline_ape"] = _ape(f["roofline_s"].to_numpy(), f["latency_s"].to_numpy())
    return f


def best_candidate_ape(f: pd.DataFrame) -> np.ndarray:
    """Per GEMM row of `kernel_errors()`, the APE (%) of the tile/split candidate whose predicted
    time is closest to the measurement: the error if the library's kernel choice were known, a
    lower bound for any rule that picks among the model's candidates (the model itself picks
    the fastest)."""
    cal = active_calibration()
    out = np.full(len(f), np.nan)
    for (cls, arch), idx in f.groupby(["cls", "arch"]).groups.items():
        sub = f.loc[idx]
        times = gemm_candidate_times({c: sub[c].to_numpy(dtype=float) for c in FEATURE_COLUMNS},
                                     gemm_params(cal, str(cls), str(arch)), str(cls),
                                     persistent_gemm(str(cls), str(arch)))
        out[f.index.get_indexer(idx)] = np.min(_ape(times, sub["latency_s"].to_numpy()), axis=0)
    return out


def summarize(f: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    g = f.groupby(by, sort=True)
    cols = {
        "rows": g.size(),
        "median_ape": g["ours_ape"].median(), "mean_ape": g["ours_ape"].mean(),
        "p90_ape": g["ours_ape"].quantile(0.9),
        "roofline_median": g["roofline_ape"].median(), "roofline_mean": g["roofline_ape"].mean(),
    }
    if "best_tile_ape" in f:
        cols["best_tile_p90"] = g["best_tile_ape"].quantile(0.9)
    return pd.DataFrame(cols).reset_index().round(2)


TOKEN_BINS = (0, 128, 256, 512, 1024, 2048, 4096, float("inf"))


def by_token_range(linear: pd.DataFrame, gpu: str = "h100-sxm") -> pd.DataFrame:
    """Where the Vidur GEMM error on one GPU comes from, by token count (the GEMM's m): rows,
    median and p90 APE, the median signed error `bias` (%; < 0: predicted too fast), the share of
    rows predicted more than 15% too fast, and `best_tile_p90` (`best_candidate_ape`).

    Args:
        linear: Vidur GEMM rows of `kernel_errors()` with a `best_tile_ape` column.
        gpu: the GPU to break down.
    """
    f = linear[linear["gpu"] == gpu].copy()
    labels = [f"{lo + 1}-{hi}" if hi != float("inf") else f"> {lo}" for lo, hi in zip(TOKEN_BINS, TOKEN_BINS[1:])]
    f["tokens"] = pd.cut(f["tokens"], list(TOKEN_BINS), labels=labels)
    f["signed"] = (f["ours_s"] / f["latency_s"] - 1.0) * 100.0
    f["too_fast"] = (f["signed"] < -15.0) * 100.0
    g = f.groupby(["split", "tokens"], sort=True, observed=True)
    out = pd.DataFrame({"rows": g.size(), "median_ape": g["ours_ape"].median(), "p90_ape": g["ours_ape"].quantile(0.9),
                        "bias": g["signed"].median(), "too_fast_15_pct": g["too_fast"].mean(),
                        "best_tile_p90": g["best_tile_ape"].quantile(0.9)})
    out = out.reset_index()
    out["tokens"] = out["tokens"].astype(str)
    return out.round(2)


def leave_one_gpu_out(f: pd.DataFrame, gpu: str = LEAVE_OUT_GPU) -> pd.DataFrame:
    """Refit the FP32 GEMM parameters without `gpu` (and without the H100) and report on `gpu`."""
    neus = f[(f["source"] == "neusight") & (f["family"] == "gemm")]
    train = neus[(neus["gpu"] != gpu) & (neus["split"] == "fitted")]
    cal = active_calibration()
    refit = fit(train[measured.kernels().columns.intersection(train.columns)])
    test = neus[neus["gpu"] == gpu].copy()
    test["ours_s"] = predict_features(test, replace(cal, gemm={**cal.gemm, "simt": refit.gemm["simt"]}))
    test["ours_ape"] = _ape(test["ours_s"].to_numpy(), test["latency_s"].to_numpy())
    test["split"] = "held out (refit without it)"
    return summarize(test, ["gpu", "split", "layer_op"])


# Maximum achievable matmul FLOPS (MAMF), published by S. Bekman, stas00/ml-engineering
# `compute/accelerator/README.md`, "Maximum Achievable Matmul FLOPS comparison table", measured with its
# `compute/accelerator/benchmarks/mamf-finder.py` (torch.randn inputs; the best shape of a brute-force scan of
# matmul shapes): (coda GPU, dtype, M, N, K of the best shape as printed "MxNxK", TFLOP/s, table version).
# Two versions of the table: the 2024 one (CUDA 12.1) and the one current in 2026 (mean of 100 iterations after
# 50 warm-up ones; torch 2.5-2.7). "A100 SXM" does not name its memory size: the 80 GB preset (same SMs and clock).
MAMF_ROWS = (
    ("a100-sxm4-80gb", "bf16", 6912, 16384, 2048, 267.9, "2024, CUDA 12.1"),
    ("a100-pcie-80gb", "bf16", 2304, 5120, 1536, 256.4, "2024, CUDA 12.1"),
    ("h100-sxm", "bf16", 6144, 17920, 2816, 792.1, "2024, CUDA 12.1"),
    ("a100-sxm4-80gb", "bf16", 1024, 10240, 5120, 271.2, "2026, torch 2.6.0+cu126"),
    ("a100-pcie-80gb", "bf16", 2048, 5120, 6144, 252.9, "2026, torch 2.5.1+cu124"),
    ("h100-sxm", "bf16", 2048, 2048, 13312, 794.5, "2026, torch 2.7.0+cu126"),
    ("h100-sxm", "fp8", 1024, 9216, 14336, 1402.6, "2026, torch 2.7.0+cu126"),
)


def mamf_table() -> pd.DataFrame:
    """Predicted vs published maximum achievable matmul TFLOP/s at each published best shape (`MAMF_ROWS`; held
    out: never fitted). The published value is the best of a scan over shapes, so run-to-run noise can only raise
    it: an unbiased model lands somewhat under it."""
    from coda.arch.gpus import gpu
    from coda.models.ops import matmul
    from coda.predictor import op_latencies

    rows = []
    for name, dtype, m, n, k, tflops, table in MAMF_ROWS:
        dev, op = gpu(name), matmul(m, k, n, dtype=dtype)
        pred = op.flops / op_latencies([op], dev)[0] / 1e12
        rows.append(dict(gpu=name, dtype=dtype, shape=f"{m}x{n}x{k}", table=table, published_TFLOPs=tflops,
                         predicted_TFLOPs=pred, error_pct=100 * (pred / tflops - 1),
                         peak_TFLOPs=dev.peak_flops(dtype) / 1e12))
    return pd.DataFrame(rows)


def predictor_report() -> list[tuple[str, pd.DataFrame]]:
    f = kernel_errors()
    vidur = f[f["source"] == "vidur"]
    neus = f[f["source"] == "neusight"]
    linear = vidur[vidur["family"] == "gemm"]
    linear = linear.assign(best_tile_ape=best_candidate_ape(linear))
    return [
        ("Vidur FP16 linear layers (fit: Llama-2-7B; held out: the other models), APE %; best_tile_p90: p90 if "
         "each row's kernel (tile, split-K) were known, i.e. the candidate closest to the measurement",
         summarize(linear, ["gpu", "split", "model"])),
        ("Vidur FP16 linear layers on the H100 by token count (m), APE %; bias: median signed error (< 0: predicted "
         "too fast); too_fast_15_pct: % of rows predicted > 15% too fast",
         by_token_range(linear)),
        ("Vidur FP16 vector ops, APE %",
         summarize(vidur[~vidur["family"].isin(["gemm", "attention"])], ["gpu", "split", "family"])),
        ("Vidur FP16 FlashAttention on A100 (fit: <= 1024 query tokens), APE %",
         summarize(vidur[vidur["family"] == "attention"], ["gpu", "split", "layer_op"])),
        ("NeuSight FP32 bmm and linear (fit: all GPUs but H100; held out: H100), APE %",
         summarize(neus[neus["family"] == "gemm"], ["gpu", "split", "layer_op"])),
        ("NeuSight FP32 vector ops, APE %", summarize(neus[neus["family"] != "gemm"], ["split", "family"])),
        (f"NeuSight FP32 bmm and linear, leave one GPU out ({LEAVE_OUT_GPU}), APE %", leave_one_gpu_out(f)),
        ("Maximum achievable matmul TFLOP/s (Bekman, ml-engineering MAMF tables; held out) at each published best "
         "shape MxNxK", mamf_table()),
    ]
