"""GPU tile model: ops become output tiles, tiles become waves over the SMs, each wave costs a
per-SM roofline divided by a fitted utilisation. Calibrated on measured A100/H100 (and older)
kernels; parameters are normalised per SM so they transfer to GPUs they were not fitted on.

GEMM `C[b, m, n] = A[b, m, k] B[b, k, n]` (cuBLAS/CUTLASS-style, NeuSight-like tiling):
for every candidate output tile `TM x TN` and split-K factor `S` of the core class (tensor
cores: the tiles cuBLAS's FP16/BF16 kernels use, `TENSOR_TILES`; CUDA cores: `TILES`, with
a stream-K candidate),

    tiles  = b * ceil(m/TM) * ceil(n/TN);   units = tiles * S;   c = co-resident tiles per SM
    t_k    = max(2*TM*TN / (u_max * P/SMs),                              # tensor/SIMT pipes
                 (TM+TN)*e / (l2_ratio * BW/SMs))                        # operand panels via L2
    waves  = q * ceil(units / (c*SMs)) + (1 - q) * max(units / (c*SMs), 1)
    T_c    = waves * c * (ceil(k/S) + k0) * t_k    (stream-K: units/SMs * (k + k0) * t_k * (1 + stream_k))
    T_c    = (waves * c * ceil(k/S) + k0) * t_k    (persistent kernels, `PERSISTENT_ARCHITECTURES`)
    bytes  = op.bytes + [S > 1] * 2*S*b*m*n*4                            # fp32 split-K partials
    T_m    = bytes / (min(BW * mem_eff, BW_peak) * min(1, min(units, SMs) / (sat_frac * SMs)))
    t      = launch + (T_c^p + T_m^p)^(1/p)

and the library is assumed to pick the fastest candidate (the model takes the minimum), as
cuBLAS heuristics and autotuners aim to. `q` in [0, 1] weighs whole waves (the last, partial
wave costs a full one) against an even spread of the tiles over the SMs (stream-K-like
schedules, and the measured curves, which step with every row of tiles rather than every wave).
On Hopper the tensor-core GEMMs are persistent, warp-specialised kernels (one block per SM loops
over its tiles; a producer warp loads the next tile's operands with TMA while the consumer
warpgroups finish the current one, and ping-pong kernels overlap one tile's epilogue with
another's main loop), so the prologue/epilogue `k0` is paid once per SM, not once per tile. P is
the tensor-core peak of the dtype (CUDA-core peak for fp32: PyTorch runs fp32 matmuls without
TF32 by default), BW the measured streaming bandwidth (`stream_bw`), BW_peak the datasheet one,
e the element size. Since u_max <= 1, the bandwidth is capped at the peak, p >= 1, k0 >= 0,
tiles cover the output, S*ceil(k/S) >= k and waves >= units / (c*SMs), every prediction is at or
above the roofline (tested). Tensor-core parameters may be refined per GPU architecture
(`gemm_params`).

Bandwidth-bound ops (elementwise, norm, softmax, embedding), per kind or variant:
    t = launch + max(flops / P_simt, bytes / (min(BW * mem_eff, BW_peak) * min(1, units / (sat * SMs))))
with `units` the independent blocks (rows for norm/softmax, 1024-element chunks otherwise).

Fused attention (FlashAttention-2 forward; Dao 2023): query tiles of `ATTN_BLOCK_Q` rows per
(batch, head); each tile streams the keys it needs (under causal masking, FlashAttention-2
skips the fully masked key blocks; `causal_skip` is the fitted fraction skipped, since not
every implementation does; under a sliding window of W positions a tile needs at most
`W + Bq - 1` keys) at
    t_tile = (kv_eff + k0) * 4*Bq*d / (u_max * P/SMs)
over waves of SMs (on Hopper the tensor ceiling is scaled by FlashAttention-2's published
utilisation, `FLASH_ATTENTION_FRACTION`), against HBM traffic as for GEMMs. Decode (one query) splits the KV cache
across SMs (flash-decoding), so it is bandwidth-bound. The backward (`attention_bwd`) does
2.5x the forward's GEMM work at the forward's fitted utilisation (no backward measurements
are shipped: unvalidated).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

import numpy as np
import pandas as pd

from coda.arch.gpus import GPU
from coda.arch.gpus import gpu as lookup_gpu
from coda.caches import memoize
from coda.models.ops import Op
from coda.predictor.base import BasePredictor, Estimate, reject_collective
from coda.predictor.gpu_calibration import (
    CALIBRATION_ENV,
    SCHEMA,
    STREAM_KINDS,
    AttentionParams,
    Calibration,
    GemmParams,
    StreamParams,
    _calibration_for,
    active_calibration,
    calibration_path,
    load_calibration,
    load_calibration_file,
    shipped_calibration,
)
from coda.predictor.roofline import gpu_peak_flops, roofline_time_s
from coda.units import dtype_bytes

log = logging.getLogger(__name__)

TILES = ((256, 128), (128, 256), (128, 128), (128, 64), (64, 128), (64, 64), (128, 32), (32, 128), (64, 32),
         (32, 64), (32, 32))
TENSOR_TILES = TILES[:6]  # FP16/BF16 tensor-core kernels: no 32-wide tiles (they never win for n, k >= 512)
SPLIT_K = (1, 2, 4, 8, 16)
STREAM_K = 0  # candidate "split" value for a stream-K schedule (no wave quantisation)
TILE_SLOT = 128 * 128  # output elements of one SM's worth of tile; smaller tiles share an SM
MIN_SPLIT_K_DEPTH = 128  # a split must keep at least this much of k per unit
ATTN_BLOCK_Q = 128  # FlashAttention-2 query block on A100/H100
DECODE_KV_SPLIT = 256  # keys per split in flash-decoding
STREAM_CHUNK = 1024  # elements per thread block of an elementwise kernel
# Variants with their own fitted parameters, as (kind, shape field, values): their kernels
# differ (a residual add streams at full speed, rotary embedding and gated activations do not;
# RMSNorm kernels are not LayerNorm kernels). Other ops of a kind share the kind's entry.
STREAM_VARIANTS = (("elementwise", "fn", ("add", "rope", "swiglu")), ("norm", "norm", ("rmsnorm",)))


def stream_keys() -> tuple[str, ...]:
    """Every `Calibration.stream` entry: the kinds, then `kind.variant`."""
    return STREAM_KINDS + tuple(f"{kind}.{v}" for kind, _, values in STREAM_VARIANTS for v in values)


# Variants timed with another's parameters: a GeGLU kernel, like SwiGLU's, reads the gate and the
# up projection and writes their gated product (no GeGLU kernel is in the measured data).
STREAM_ALIASES = {"geglu": "swiglu"}


def stream_key(op: Op) -> str:
    """Which `Calibration.stream` entry times `op`: `kind.variant` or the op kind."""
    for kind, field_name, values in STREAM_VARIANTS:
        value = op.dims.get(field_name)
        value = STREAM_ALIASES.get(value, value) if isinstance(value, str) else value
        if op.kind == kind and value in values:
            return f"{kind}.{value}"
    return op.kind

# Architectures whose FP16/BF16 tensor-core GEMMs are persistent, warp-specialised kernels, so a
# tile's prologue (pipeline fill) and epilogue overlap the neighbouring tiles' main loops and only
# the first fill and the last epilogue of each SM are exposed: Hopper (sm90). Sources: CUTLASS 3.x
# `media/docs/efficient_gemm.md` ("Hopper Warp Specialization": TMA producer warp, consumer
# warpgroups, persistent cooperative and ping-pong kernels whose epilogue overlaps the other
# warpgroup's main loop), and the kernels cuBLAS 12 runs on H100 (`sm90_xmma_gemm_*` with TMA and
# warpgroup MMA, the same design). Ampere's cuBLAS kernels (`ampere_*_gemm`, `sm80_xmma_*`) launch
# one block per tile, which pays its prologue and epilogue.
PERSISTENT_ARCHITECTURES = frozenset({"hopper"})

# Measured HBM streaming (copy) bandwidth as a fraction of the peak, the ceiling kernels
# actually reach (Azure AI-benchmarking-guide, via shared/reference/hardware.md): H100 SXM
# 2.90 of 3.352 TB/s (87%), A100-SXM4-80GB 1.61 of 2.039 TB/s (79%). GPUs without a published
# measurement use the mean of these fractions; `mem_eff` is fitted on top of this ceiling.
MEASURED_STREAM_FRACTION = {"h100-sxm": 2.90 / 3.352, "a100-sxm4-80gb": 1.61 / 2.039}
DEFAULT_STREAM_FRACTION = sum(MEASURED_STREAM_FRACTION.values()) / len(MEASURED_STREAM_FRACTION)


# FlashAttention-2's best forward utilisation per architecture: up to 73% of peak on A100
# (Dao 2023, "FlashAttention-2", section 4.1) but 35% on H100 (Shah et al. 2024,
# "FlashAttention-3", section 1), which its Ampere-style mma.sync kernels cannot feed.
# FlashAttention-3-class kernels (FA3, cuDNN fused attention) reach 75% on H100 in BF16 (740
# TFLOP/s, Shah et al. 2024, section 1); on Ampere they are FlashAttention-2. The attention fit
# is on A100 (FA2), so other architectures and kernels scale its tensor ceiling by the ratio.
FLASH_ATTENTION_FRACTION = {"fa2": {"ampere": 0.73, "hopper": 0.35}, "fa3": {"hopper": 0.75}}


@memoize("predictor.default_warnings", 1024)
def warn_default(constant: str, device: str, used: str) -> None:
    """Log, once per (constant, device) until `coda.clear_caches()`, that a per-device constant
    the tables lack was replaced by its documented default `used`."""
    log.warning("%s has no %s; using %s (a documented default)", device, constant, used)


def attention_peak_scale(g: GPU, kernel: str = "fa2") -> float:
    """Factor on the tensor peak for fused attention with `kernel` on `g`, relative to the Ampere fit.

    FA3-class kernels exist on Hopper; elsewhere they are FlashAttention-2 (its fraction). An
    architecture without a published FlashAttention-2 fraction (Volta, Turing, Ada, ...) gets
    Ampere's, with a warning (`warn_default`)."""
    fa2 = FLASH_ATTENTION_FRACTION["fa2"]
    if g.architecture not in fa2:
        warn_default(f"published FlashAttention-2 utilisation ({g.architecture})", g.name,
                     f"Ampere's {fa2['ampere']}")
    frac = FLASH_ATTENTION_FRACTION.get(kernel, fa2).get(g.architecture, fa2.get(g.architecture, fa2["ampere"]))
    return frac / fa2["ampere"]


def stream_bw(g: GPU) -> float:
    """Achievable HBM bandwidth of `g` in bytes/s (see MEASURED_STREAM_FRACTION); a GPU without a
    published measurement gets the mean fraction `DEFAULT_STREAM_FRACTION`, with a warning."""
    if g.name not in MEASURED_STREAM_FRACTION:
        warn_default("measured HBM streaming bandwidth", g.name,
                     f"{DEFAULT_STREAM_FRACTION:.3f} of the peak (mean of the measured GPUs)")
    return g.hbm_bw_bytes_per_s * MEASURED_STREAM_FRACTION.get(g.name, DEFAULT_STREAM_FRACTION)


def _smooth_max(a: np.ndarray, b: np.ndarray, p: float) -> np.ndarray:
    hi = np.maximum(a, b)
    safe = np.where(hi > 0, hi, 1.0)
    return np.where(hi > 0, hi * ((a / safe) ** p + (b / safe) ** p) ** (1.0 / p), 0.0)


Features = Mapping[str, np.ndarray]


def gemm_candidate_times(x: Features, prm: GemmParams, cls: str, persistent: bool = False) -> np.ndarray:
    """Predicted seconds of many GEMMs of one core class (`tensor` or `simt`) under every
    candidate, as a (candidates x GEMMs) array in `candidates(cls)` order (inf where a split
    leaves too little of k).

    `x` holds equal-length arrays (one entry per GEMM) of the `features` columns batch, m, k,
    n, e, bytes, peak, sms, bw and peak_bw; see the module doc. `persistent`: the kernels are
    persistent and warp-specialised (`PERSISTENT_ARCHITECTURES`), so `k0` is paid once per SM.
    """
    batch, m, k, n, e, op_bytes = x["batch"], x["m"], x["k"], x["n"], x["e"], x["bytes"]
    peak, sms, bw, peak_bw = x["peak"], x["sms"], x["bw"], x["peak_bw"]
    tm, tn, s, ctas = (c[:, None] for c in _candidate_arrays(cls))  # candidates x 1, against 1 x ops
    stream = s == STREAM_K
    splits = np.maximum(s, 1)
    ks = np.ceil(k / splits)
    tiles = batch * np.ceil(m / tm) * np.ceil(n / tn)
    units = tiles * splits
    per_k = np.maximum(2.0 * tm * tn / (prm.u_max * peak / sms), (tm + tn) * e / (prm.l2_ratio * bw / sms))
    waves = prm.q * np.ceil(units / (sms * ctas)) + (1.0 - prm.q) * np.maximum(units / (sms * ctas), 1.0)
    # k-iterations per SM: each tile's main loop, plus the prologue/epilogue k0 per tile, or once per
    # SM when a persistent kernel overlaps them with its other tiles' main loops
    iters = waves * ctas * ks + prm.k0 if persistent else waves * ctas * (ks + prm.k0)
    t_c = np.where(stream,  # stream-K: work split evenly over the SMs, at a fix-up overhead
                   np.maximum(units / sms, 1.0) * (k + prm.k0) * per_k * (1.0 + prm.stream_k),
                   iters * per_k)
    traffic = op_bytes + np.where(s > 1, 2.0 * s * batch * m * n * 4, 0.0)
    active = np.minimum(units, sms)
    t_m = traffic / (np.minimum(bw * prm.mem_eff, peak_bw) * np.minimum(1.0, active / (prm.sat_frac * sms)))
    times = prm.launch_s + _smooth_max(t_c, t_m, prm.p)
    return np.where((s > 1) & (ks < MIN_SPLIT_K_DEPTH), np.inf, times)


def gemm_times(x: Features, prm: GemmParams, cls: str, persistent: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Predicted seconds of many GEMMs of one core class at once (the fastest candidate of
    `gemm_candidate_times`), and the index of that candidate in `candidates(cls)`."""
    times = gemm_candidate_times(x, prm, cls, persistent)
    choice = np.argmin(times, axis=0)
    return times[choice, np.arange(times.shape[1])], choice


@lru_cache(maxsize=2)
def candidates(cls: str) -> tuple[tuple[int, int, int], ...]:
    """(TM, TN, split-K) candidates of a core class, in the order `gemm_times` indexes them."""
    if cls == "tensor":
        return tuple((tm, tn, s) for s in SPLIT_K for tm, tn in TENSOR_TILES)
    return tuple((tm, tn, s) for s in (*SPLIT_K, STREAM_K) for tm, tn in TILES)


@lru_cache(maxsize=2)
def _candidate_arrays(cls: str) -> tuple[np.ndarray, ...]:
    """TM, TN, split and co-resident tiles per SM (smaller tiles share an SM's pipes) per candidate."""
    c = np.array(candidates(cls), dtype=float)
    ctas = np.clip(TILE_SLOT // (c[:, 0] * c[:, 1]), 1, 4)
    return c[:, 0], c[:, 1], c[:, 2], ctas


def stream_times(x: Features, prm: StreamParams) -> np.ndarray:
    """Predicted seconds of bandwidth-bound ops (see the module doc)."""
    flops, op_bytes, units, simt_peak = x["flops"], x["bytes"], x["units"], x["simt_peak"]
    sms, bw, peak_bw = x["sms"], x["bw"], x["peak_bw"]
    eff = np.minimum(bw * prm.mem_eff, peak_bw) * np.minimum(1.0, units / (prm.sat * sms))
    return prm.launch_s + np.maximum(flops / simt_peak, op_bytes / eff)


def attention_times(x: Features, prm: AttentionParams) -> np.ndarray:
    """Predicted seconds of fused attention ops; `work` is 1 forward, 2.5 backward."""
    batch, heads, kv_heads, q, kv, d = x["batch"], x["heads"], x["kv_heads"], x["q"], x["kv"], x["d"]
    causal, work, op_bytes = x["causal"].astype(bool), x["work"], x["bytes"]
    peak, sms, bw, peak_bw = x["peak"], x["sms"], x["bw"], x["peak_bw"]
    n_q = np.ceil(q / ATTN_BLOCK_Q)
    # mean keys per query tile under causal masking: the tile of rows [iBq, (i+1)Bq) sees
    # kv - q + (i+1)Bq keys, capped at kv; averaged over the n_q tiles.
    causal_kv = np.minimum(kv, kv - q + ATTN_BLOCK_Q * (n_q + 1) / 2)
    kv_eff = np.where(causal, kv - prm.causal_skip * (kv - causal_kv), kv)
    # a sliding window of W positions: a query tile needs at most W + Bq - 1 keys
    window = x["window"]
    kv_eff = np.where(window > 0, np.minimum(kv_eff, window + np.minimum(q, ATTN_BLOCK_Q) - 1), kv_eff)
    decode = q == 1
    splits = np.where(decode, np.ceil(np.minimum(kv, np.where(window > 0, window, kv)) / DECODE_KV_SPLIT), 1)
    tiles = batch * heads * n_q * splits
    waves = np.ceil(tiles / sms)
    t_tile = (kv_eff / splits + prm.k0) * 4.0 * np.minimum(q, ATTN_BLOCK_Q) * d / (prm.u_max * peak / sms)
    t_c = work * waves * t_tile
    active = np.minimum(np.where(decode, batch * kv_heads * splits, tiles), sms)
    t_m = op_bytes / (np.minimum(bw * prm.mem_eff, peak_bw) * np.minimum(1.0, active / (prm.sat_frac * sms)))
    return prm.launch_s + _smooth_max(t_c, t_m, prm.p)


# -- features of ops on devices ----------------------------------------------------------------

def _core_class(op: Op) -> str:
    return "simt" if op.dtype == "fp32" else "tensor"


FEATURE_COLUMNS = ("flops", "bytes", "e", "peak", "simt_peak", "sms", "bw", "peak_bw", "batch", "m", "k", "n",
                   "heads", "kv_heads", "q", "kv", "d", "causal", "window", "work", "units")
LABEL_COLUMNS = ("kind", "stream", "cls", "arch")


@memoize("predictor.device_features", 64)
def _device_features(g: GPU, dtype: str, tensor: bool) -> tuple[float, ...]:
    """(peak, simt_peak, sms, bw, peak_bw) of a GPU for ops of a dtype (cached: GPUs are frozen)."""
    probe = Op("probe", "matmul" if tensor else "elementwise", (), 0.0, 0.0, 0.0, 0.0, dtype)
    return (gpu_peak_flops(g, probe), g.peak_flops("fp32", tensor_core=False), float(g.sm_count), stream_bw(g),
            g.hbm_bw_bytes_per_s)


def features(ops: list[Op], gpus: list[GPU]) -> dict[str, np.ndarray]:
    """Column arrays, one entry per (op, gpu) pair, with the numbers the vectorised models need."""
    labels: list[tuple[str, str, str, str]] = []
    numbers: list[tuple[float, ...]] = []
    device: dict[tuple[int, str, bool, str], tuple[float, ...]] = {}
    for op, g in zip(ops, gpus):
        reject_collective(op)
        d = op.dims
        attn = op.kind in ("attention", "attention_bwd")
        tensor = attn or op.kind == "matmul"
        key = (id(g), op.dtype, tensor, d.get("kernel", "fa2"))
        if key not in device:
            peak, simt_peak, sms, bw, peak_bw = _device_features(g, op.dtype, tensor)
            device[key] = (peak, peak * attention_peak_scale(g, key[3]), simt_peak, sms, bw, peak_bw)
        peak, attn_peak, simt_peak, sms, bw, peak_bw = device[key]
        labels.append((op.kind, stream_key(op), _core_class(op), g.architecture))
        numbers.append((op.flops, op.bytes, dtype_bytes(op.dtype), attn_peak if attn else peak, simt_peak, sms, bw,
                        peak_bw, d.get("batch", 0), d.get("m", 0), d.get("k", 0), d.get("n", 0), d.get("heads", 0),
                        d.get("kv_heads", 0), d.get("q_len", 0), d.get("kv_len", 0), d.get("head_dim", 0),
                        bool(d.get("causal", False)), d.get("window") or 0, 2.5 if op.kind == "attention_bwd" else 1.0,
                        _units(op)))
    num = np.array(numbers, dtype=float).reshape(len(numbers), len(FEATURE_COLUMNS))
    lab = np.array(labels, dtype=object).reshape(len(labels), len(LABEL_COLUMNS))
    out = {c: lab[:, i] for i, c in enumerate(LABEL_COLUMNS)}
    out.update({c: num[:, i] for i, c in enumerate(FEATURE_COLUMNS)})
    return out


def _units(op: Op) -> int:
    """Independent thread blocks of a bandwidth-bound op (rows of a norm or softmax)."""
    d = op.dims
    if op.kind in ("norm", "softmax"):
        return d["rows"]
    if op.kind == "embedding":
        return max(1, d["tokens"] * d["hidden"] // STREAM_CHUNK)
    if op.kind == "elementwise":
        return max(1, d["n_elements"] // STREAM_CHUNK)
    return 0


def predict_features(f: Any, cal: Calibration) -> np.ndarray:
    """Seconds for every entry of a `features` mapping (or a DataFrame with those columns)."""
    if isinstance(f, pd.DataFrame):
        f = {c: f[c].to_numpy(dtype=object if c in LABEL_COLUMNS else float)
             for c in (*LABEL_COLUMNS, *FEATURE_COLUMNS)}
    kind = f["kind"]
    out = np.full(len(kind), np.nan)

    def rows(sel: np.ndarray) -> dict[str, np.ndarray]:
        return {c: v[sel] for c, v in f.items()}

    matmul = kind == "matmul"
    for cls, arch in {(c, a) for c, a in zip(f["cls"][matmul], f["arch"][matmul])}:
        sel = matmul & (f["cls"] == cls) & (f["arch"] == arch)
        out[sel] = gemm_times(rows(sel), gemm_params(cal, cls, arch), cls, persistent_gemm(cls, arch))[0]
    sel = (kind == "attention") | (kind == "attention_bwd")
    if sel.any():
        out[sel] = attention_times(rows(sel), cal.attention)
    stream = np.isin(kind, STREAM_KINDS)
    for key in set(f["stream"][stream]):
        sel = stream & (f["stream"] == key)
        out[sel] = stream_times(rows(sel), cal.stream.get(key) or cal.stream[key.split(".")[0]])
    return out


def persistent_gemm(cls: str, arch: str) -> bool:
    """Whether GEMMs of a core class on an architecture run persistent, warp-specialised kernels:
    tensor-core GEMMs on `PERSISTENT_ARCHITECTURES` (CUDA-core FP32 GEMMs run SIMT kernels)."""
    return cls == "tensor" and arch in PERSISTENT_ARCHITECTURES


def gemm_params(cal: Calibration, cls: str, arch: str) -> GemmParams:
    """GEMM parameters of a core class on an architecture: `cls.arch` if fitted, else `cls`
    (the parameters shared by all architectures, used for GPUs of an unseen architecture, with a
    warning)."""
    own = cal.gemm.get(f"{cls}.{arch}")
    if own is None:
        if any(k.startswith(f"{cls}.") for k in cal.gemm):  # fitted per architecture, but not this one
            warn_default(f"fitted {cls} GEMM parameters", f"the {arch} architecture",
                         "the parameters shared by all architectures")
        return cal.gemm[cls]
    return own


class GPUTileModel(BasePredictor):
    """The calibrated tile model (module doc). `GPUTileModel.default()` uses the shipped fit."""

    name = "gpu-tiles"

    def __init__(self, calibration: Calibration) -> None:
        self.calibration = calibration

    @classmethod
    def default(cls) -> GPUTileModel:
        """The model with the active calibration (`active_calibration`: `$CODA_GPU_CALIBRATION` or shipped)."""
        return _default_model(os.environ.get(CALIBRATION_ENV, ""))

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> GPUTileModel:
        """The model with a calibration file written by `coda calibrate` (checked as `load_calibration_file`)."""
        return cls(load_calibration_file(path))

    def predict(self, ops: list[Op], gpu: GPU | str) -> np.ndarray:
        """Vectorised: seconds of each op on one GPU."""
        g = lookup_gpu(gpu)
        return predict_features(features(ops, [g] * len(ops)), self.calibration)

    def estimate(self, op: Op, device: Any) -> Estimate:
        g = lookup_gpu(device)
        f = features([op], [g])
        latency_s = float(predict_features(f, self.calibration)[0])
        r = {c: v[0] for c, v in f.items()}
        compute_s, memory_s = roofline_time_s(op, g)
        details: dict[str, Any] = {"compute_roofline_s": compute_s, "memory_roofline_s": memory_s,
                                   "utilisation": compute_s / latency_s}
        if op.kind == "matmul":
            prm = gemm_params(self.calibration, r["cls"], r["arch"])
            _, idx = gemm_times(f, prm, r["cls"], persistent_gemm(r["cls"], r["arch"]))
            tm, tn, s = candidates(r["cls"])[int(idx[0])]
            tiles = r["batch"] * -(-r["m"] // tm) * -(-r["n"] // tn)
            waves = max(1, -(-tiles * max(s, 1) // r["sms"]))
            details.update(tile=(tm, tn), split_k="stream-K" if s == STREAM_K else s, tiles=int(tiles),
                           waves=int(waves), per_wave_s=float((latency_s - prm.launch_s) / waves))
        launch = (self.calibration.gemm[r["cls"]].launch_s if op.kind == "matmul" else
                  self.calibration.attention.launch_s if op.kind.startswith("attention") else
                  self.calibration.stream.get(r["stream"], self.calibration.stream[op.kind]).launch_s)
        if launch >= 0.5 * latency_s:
            bound = "launch"
        else:
            bound = "compute" if compute_s >= memory_s else "memory"
        return Estimate(latency_s, bound, self.name, details)


@memoize("predictor.gpu_tile_models", 8)
def _default_model(path: str) -> GPUTileModel:
    """The default model per calibration path ("" for the shipped file), cached by the path."""
    return GPUTileModel(_calibration_for(path))


__all__ = [
    "CALIBRATION_ENV", "FEATURE_COLUMNS", "LABEL_COLUMNS", "PERSISTENT_ARCHITECTURES", "SCHEMA", "STREAM_KINDS",
    "AttentionParams", "Calibration", "GPUTileModel", "GemmParams", "StreamParams", "active_calibration",
    "attention_peak_scale", "calibration_path", "features", "gemm_params", "load_calibration", "load_calibration_file",
    "persistent_gemm", "predict_features", "shipped_calibration", "stream_bw", "stream_keys", "warn_default",
]
