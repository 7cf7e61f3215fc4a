"""Fit the GPU tile model's parameters to the shipped measurements (`coda calibrate`).

Each parameter group is fitted by `scipy.optimize.least_squares` on the log ratio of predicted
to measured latency (a relative error, robustified with a soft-L1 loss), from fixed starting
points, so a refit on the same data writes the same file byte for byte.

What each group is fitted on (everything else is held out and reported by
`coda validate predictor`):
- `gemm.tensor`: Vidur FP16 linear layers of Llama-2-7B (A100 and H100, all token counts and
  tensor-parallel widths); Llama-2-70B, Llama-3-8B and phi-2 are held out.
- `gemm.simt`: NeuSight FP32 bmm and linear on every GPU except the H100, which is held out.
- `stream.*`: NeuSight FP32 elementwise, LayerNorm and softmax kernels (no H100 rows exist)
  and Vidur FP16 activation, norm, residual add, rotary and embedding of Llama-2-7B.
- `attention`: Vidur FP16 FlashAttention on A100 (Llama-2-70B heads at tp 2), prefill chunks
  and decode batches with at most 1024 query tokens; larger ones are held out.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import fields
from functools import partial
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from coda.arch.gpus import gpu as lookup_gpu
from coda.predictor import measured
from coda.predictor.gpu_tiles import (
    STREAM_KINDS,
    AttentionParams,
    Calibration,
    GemmParams,
    StreamParams,
    calibration_path,
    features,
    predict_features,
    stream_keys,
)

log = logging.getLogger(__name__)

FIT_MODEL = "meta-llama/Llama-2-7b-hf"
HELD_OUT_GPU = "h100-sxm"
ATTENTION_FIT_MAX_TOKENS = 1024  # attention: fit on <= 1024 query tokens, hold out the larger ones

# Launch floor: the shortest kernel in the shipped measurements (a Vidur residual add, timed
# with CUDA events at 1 us resolution) takes 1 us, so no kernel is predicted below that.
MIN_LAUNCH_S = 1e-6
# (lower, upper) bounds of each parameter
GEMM_BOUNDS = {"u_max": (0.05, 1.0), "k0": (0.0, 4096.0), "l2_ratio": (0.5, 50.0), "mem_eff": (0.05, 1.25),
               "sat_frac": (0.01, 1.0), "p": (1.0, 20.0), "launch_s": (MIN_LAUNCH_S, 1e-4), "stream_k": (0.0, 2.0),
               "q": (0.0, 1.0)}
# Parameters a core class does not fit: tensor-core candidates have no stream-K schedule; the
# CUDA-core fit keeps whole waves (q = 1; its stream-K candidate spreads tiles evenly already).
GEMM_FIXED = {"tensor": ("stream_k",), "simt": ("q",)}
ATTENTION_BOUNDS = {"u_max": (0.05, 1.0), "k0": (0.0, 4096.0), "mem_eff": (0.05, 1.25), "sat_frac": (0.01, 1.0),
                    "p": (1.0, 20.0), "launch_s": (MIN_LAUNCH_S, 1e-4), "causal_skip": (0.0, 1.0)}
STREAM_BOUNDS = {"mem_eff": (0.05, 1.25), "sat": (0.01, 1e3), "launch_s": (MIN_LAUNCH_S, 1e-4)}


def fit_mask(df: pd.DataFrame) -> pd.Series:
    """Rows the shipped calibration is fitted on (module doc)."""
    vidur_fit = (df["source"] == "vidur") & (df["model"] == FIT_MODEL)
    neusight_fit = (df["source"] == "neusight") & (df["gpu"] != HELD_OUT_GPU)
    attention_fit = (df["family"] == "attention") & (df["tokens"] <= ATTENTION_FIT_MAX_TOKENS)
    return vidur_fit | neusight_fit | attention_fit


def with_features(df: pd.DataFrame) -> pd.DataFrame:
    """`measured.kernels()` rows joined with their model features."""
    gpus = {name: lookup_gpu(name) for name in df["gpu"].unique()}
    f = pd.DataFrame(features(list(df["op"]), [gpus[g] for g in df["gpu"]])).drop(columns=["kind"])
    return pd.concat([df.reset_index(drop=True), f], axis=1)


P = TypeVar("P", GemmParams, StreamParams, AttentionParams)


def _fit(params_type: type[P], bounds: dict[str, tuple[float, float]], start: P,
         residual: Callable[[P], np.ndarray], fixed: tuple[str, ...] = ()) -> P:
    """Least squares over the fields of `params_type` except `fixed` (held at `start`)."""
    names = [f.name for f in fields(params_type) if f.name not in fixed]
    held = {n: getattr(start, n) for n in fixed}
    x0 = np.array([getattr(start, n) for n in names])
    lo = np.array([bounds[n][0] for n in names])
    hi = np.array([bounds[n][1] for n in names])
    scale = np.where(hi > 1, hi, 1.0)  # optimise in units where every parameter is O(1)

    def res(z: np.ndarray) -> np.ndarray:
        return residual(params_type(**held, **dict(zip(names, (z * scale).tolist()))))

    sol = least_squares(res, np.clip(x0, lo, hi) / scale, bounds=(lo / scale, hi / scale), loss="soft_l1",
                        f_scale=0.05, diff_step=1e-3, max_nfev=400)
    log.info("fitted %s: %d evaluations, cost %.4g", params_type.__name__, sol.nfev, sol.cost)
    return params_type(**held, **dict(zip(names, (sol.x * scale).tolist())))


def _with_gemm(base: Calibration, gemm: dict[str, GemmParams], key: str, prm: GemmParams) -> Calibration:
    return Calibration({**gemm, key: prm}, base.stream, base.attention, "")


def _with_stream(base: Calibration, gemm: dict[str, GemmParams], stream: dict[str, StreamParams], key: str,
                 prm: StreamParams) -> Calibration:
    return Calibration(gemm, {**stream, key: prm}, base.attention, "")


def fit(df: pd.DataFrame | None = None) -> Calibration:
    """Fit every parameter group on the rows of `fit_mask` (or of the given frame)."""
    base = Calibration({"tensor": GemmParams(q=0.5), "simt": GemmParams()},
                       {k: StreamParams() for k in stream_keys()},
                       AttentionParams(), measured.data_sha256(),
                       {"gemm.tensor": f"vidur {FIT_MODEL} (a100, h100)",
                        "gemm.simt": f"neusight bmm+linear, all GPUs except {HELD_OUT_GPU}",
                        "stream": f"neusight elem/ln/softmax + vidur {FIT_MODEL}",
                        "attention": f"vidur FlashAttention a100, <= {ATTENTION_FIT_MAX_TOKENS} query tokens"})
    if df is None:
        all_rows = measured.kernels()
        df = all_rows[fit_mask(all_rows)]
    f = with_features(df)
    y = np.log(f["latency_s"].to_numpy())

    def group_residual(sel: np.ndarray, make: Callable[[Any], Calibration]) -> Callable[[Any], np.ndarray]:
        sub, ys = f[sel].reset_index(drop=True), y[sel]
        return lambda prm: np.log(predict_features(sub, make(prm))) - ys

    gemm = dict(base.gemm)
    for cls in ("tensor", "simt"):
        sel = ((f["kind"] == "matmul") & (f["cls"] == cls)).to_numpy()
        if sel.any():
            gemm[cls] = _fit(GemmParams, GEMM_BOUNDS, gemm[cls], group_residual(
                sel, partial(_with_gemm, base, gemm, cls)), GEMM_FIXED[cls])
    # Tensor-core generations differ (Hopper's wgmma/TMA kernels reach a larger fraction of
    # peak than Ampere's mma.sync): one refinement per architecture in the tensor fit set.
    mm = ((f["kind"] == "matmul") & (f["cls"] == "tensor")).to_numpy()
    for arch in sorted(f.loc[mm, "arch"].unique()):
        key = f"tensor.{arch}"
        sel = mm & (f["arch"] == arch).to_numpy()
        gemm[key] = _fit(GemmParams, GEMM_BOUNDS, gemm["tensor"], group_residual(
            sel, partial(_with_gemm, base, gemm, key)), GEMM_FIXED["tensor"])
    stream = dict(base.stream)
    for kind in stream:
        # a kind's shared entry is fitted on all its rows; a `kind.variant` entry on its own
        sel = ((f["kind"] == kind) if kind in STREAM_KINDS else (f["stream"] == kind)).to_numpy()
        if sel.any():
            stream[kind] = _fit(StreamParams, STREAM_BOUNDS, stream[kind], group_residual(
                sel, partial(_with_stream, base, gemm, stream, kind)))
    attention = base.attention
    sel = f["kind"].isin(["attention", "attention_bwd"]).to_numpy()
    if sel.any():
        attention = _fit(AttentionParams, ATTENTION_BOUNDS, attention, group_residual(
            sel, partial(Calibration, gemm, stream, data_sha256="")))
    return Calibration(gemm, stream, attention, base.data_sha256, base.fitted_on)


def write(cal: Calibration) -> str:
    """Write the calibration into the package; returns the path written."""
    path = str(calibration_path())
    with open(path, "w") as fh:
        fh.write(cal.to_json())
    return path
