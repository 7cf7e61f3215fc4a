"""Fit the GPU tile model's parameters to the shipped measurements (`coda calibrate`).

Each parameter group is fitted by `scipy.optimize.least_squares` on the log ratio of predicted
to measured latency (a relative error, robustified with a soft-L1 loss), from fixed starting
points, converged tightly (`TOLERANCE`), so the minimum it reaches does not depend on
floating-point noise, and a refit on any machine reproduces the shipped parameters within
`coda.predictor.identifiability.PARAM_RTOL`.

Only parameters the data determine are fitted. The others are held (`HOLDS`): fixed at a
bound or a derived value, or tied to an identified parameter of another group, each with its
reason; `coda calibrate --report` prints every parameter with its standard error and status.

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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
from scipy.optimize import least_squares

from coda.arch.gpus import gpu as lookup_gpu
from coda.paths import writable_file
from coda.predictor import measured
from coda.predictor.gpu_tiles import (
    MEASURED_STREAM_FRACTION,
    STREAM_KINDS,
    AttentionParams,
    Calibration,
    GemmParams,
    StreamParams,
    features,
    predict_features,
    stream_keys,
)
from coda.predictor.identifiability import (
    GroupFit,
    ParamFit,
    param_differences,
    prediction_differences,
    uncertainty,
)

log = logging.getLogger(__name__)

FIT_MODEL = "meta-llama/Llama-2-7b-hf"
HELD_OUT_GPU = "h100-sxm"
ATTENTION_FIT_MAX_TOKENS = 1024  # attention: fit on <= 1024 query tokens, hold out the larger ones

# Launch floor: the shortest kernel in the shipped measurements (a Vidur residual add, timed
# with CUDA events at 1 us resolution) takes 1 us, so no kernel is predicted below that.
MIN_LAUNCH_S = 1e-6
# (lower, upper, optimiser unit) of each parameter: the optimiser works on value / unit, so every
# parameter moves on a scale of about one and the step tolerance applies to each alike.
GEMM_BOUNDS = {"u_max": (0.05, 1.0, 1.0), "k0": (0.0, 4096.0, 100.0), "l2_ratio": (0.5, 50.0, 1.0),
               "mem_eff": (0.05, 1.25, 1.0), "sat_frac": (0.01, 1.0, 1.0), "p": (1.0, 20.0, 1.0),
               "launch_s": (MIN_LAUNCH_S, 1e-4, 1e-5), "stream_k": (0.0, 2.0, 1.0), "q": (0.0, 1.0, 1.0)}
ATTENTION_BOUNDS = {"u_max": (0.05, 1.0, 1.0), "k0": (0.0, 4096.0, 100.0), "mem_eff": (0.05, 1.25, 1.0),
                    "sat_frac": (0.01, 1.0, 1.0), "p": (1.0, 20.0, 1.0), "launch_s": (MIN_LAUNCH_S, 1e-4, 1e-5),
                    "causal_skip": (0.0, 1.0, 1.0)}
STREAM_BOUNDS = {"mem_eff": (0.05, 1.25, 1.0), "sat": (0.01, 1e3, 1.0), "launch_s": (MIN_LAUNCH_S, 1e-4, 1e-5)}
# Optimiser settings: the soft-L1 loss treats log errors beyond F_SCALE (5%) as outliers; the
# finite-difference step (relative, 1e-3) is wider than the kinks the fastest-candidate choice
# and the wave counts put in the cost, so the optimiser sees the trend, not the steps; the
# tolerances stop it only when a step changes the cost by < 1e-12 relative and every
# parameter by < 1e-10 of its unit.
F_SCALE = 0.05
DIFF_STEP = 1e-3
TOLERANCE = {"ftol": 1e-12, "xtol": 1e-10, "gtol": 1e-10}
MAX_NFEV = 2000
# Parameters optimised as their logarithm: `sat` spans five decades, and in linear units one
# trust-region step can jump from where it matters into the range where the cost is flat.
LOG_PARAMS = frozenset({"sat"})
LOG_STARTS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)

# NeuSight LayerNorm and softmax rows have at least 8192 rows, 75.85 blocks per SM on the A100's
# 108 SMs: below that `sat` throttles no fit row and the cost is exactly flat; above it a
# shallow optimum near 80 lowers the cost by 0.02%. The data cannot tell values below 75.85
# apart, so `sat` is fixed at that edge, the value nearest the optimum the data allow. (Vidur's
# held-out LayerNorm rows would prefer the RMSNorm fit's ~1.5; the end-to-end training checks
# prefer the edge; see docs/predictor.md.)
_UNSATURATED_ROWS = ("the fit rows have >= 75.85 blocks per SM (8192 rows, A100), so the cost is flat in sat "
                     "below that (a shallow optimum near 80 lowers it by 0.02%); fixed at that edge")
NEUSIGHT_MIN_BLOCKS_PER_SM = 8192 / 108


@dataclass(frozen=True)
class Hold:
    """A parameter the fit does not move: `fixed` at `value`, or `tied` to the fitted parameter
    `tie` (`group.name`, fitted earlier) of another group; `reason` says why."""

    status: str
    reason: str
    value: float = float("nan")
    tie: str = ""


# Held parameters per group (`gemm.tensor.*`: every per-architecture refinement). Found by the
# identifiability report: a parameter is held when its standard error is undefined or as large
# as its range, or when it sits at a bound the data push it against.
HOLDS: dict[str, dict[str, Hold]] = {
    "attention": {
        "causal_skip": Hold("fixed", "the measured kernel shows no causal savings: the fit lands on the bound 0 "
                                     "(+-0.05); fixed at the bound", value=0.0),
        "p": Hold("fixed", "the data want compute and memory time added (p -> 1, its bound; free, it "
                           "correlates 0.995 with mem_eff); fixed at the bound", value=1.0),
    },
    "gemm.tensor": {
        "stream_k": Hold("fixed", "tensor-core candidates have no stream-K schedule: unused", value=0.2),
        "sat_frac": Hold("tied", "the cost is flat in sat_frac below ~0.5 (the fit rows' fastest kernels keep "
                                 "enough SMs busy); tied to the attention fit's, identified by flash-decoding "
                                 "rows with few active SMs", tie="attention.sat_frac"),
    },
    "gemm.tensor.*": {
        "stream_k": Hold("fixed", "tensor-core candidates have no stream-K schedule: unused", value=0.2),
        "sat_frac": Hold("tied", "as for gemm.tensor: the cost is flat below ~0.5", tie="attention.sat_frac"),
    },
    "gemm.tensor.hopper": {
        "mem_eff": Hold("fixed", "the H100 rows reach the datasheet bandwidth (any mem_eff above "
                                 "peak/measured = 3.352/2.90 is capped); fixed at that ratio",
                        value=1.0 / MEASURED_STREAM_FRACTION["h100-sxm"]),
    },
    "gemm.simt": {
        "q": Hold("fixed", "whole waves (its stream-K candidate spreads tiles evenly already)", value=1.0),
        "k0": Hold("fixed", "the data push the per-tile prologue below 0 (physically meaningless); at the bound",
                   value=0.0),
        "stream_k": Hold("fixed", "the cost falls as the stream-K overhead grows until no fit row picks a "
                                  "stream-K kernel (~1.8), then is flat; fixed at the upper bound", value=2.0),
        "sat_frac": Hold("tied", "as for gemm.tensor: the cost is flat below ~0.5; tied to the attention fit's",
                         tie="attention.sat_frac"),
    },
    "stream.elementwise": {
        "launch_s": Hold("fixed", "the data push it below the launch floor MIN_LAUNCH_S; at the floor",
                         value=MIN_LAUNCH_S),
        "sat": Hold("tied", "no NeuSight row has fewer than ~64 blocks per SM, so the cost is flat in sat below "
                            "that (a dip near 128 lowers it by 0.1%); tied to the residual adds' sat, fitted on "
                            "Vidur rows down to one token", tie="stream.elementwise.add.sat"),
    },
    # LayerNorm and RMSNorm kernels share their structure (Apex/Megatron's fused LayerNorm and the
    # RMSNorm kernels launch one thread block per group of rows, reduce each row, then write it):
    # what decides their launch floor and how many rows saturate the SMs is that structure, not the
    # mean subtraction. The NeuSight LayerNorm rows (>= 8192 rows, FP32) identify neither (sat is flat
    # below 75.85 blocks per SM; launch_s had a 45% standard error); the Vidur RMSNorm rows, down to
    # one token, identify both. Held at the edge instead, sat made a 128-row LayerNorm cost 140x its
    # memory roofline (issue #16).
    "stream.norm": {
        "sat": Hold("tied", "the LayerNorm rows have >= 75.85 blocks per SM, so the cost is flat in sat below that; "
                            "tied to RMSNorm's (same kernel structure), fitted on Vidur rows down to one token",
                    tie="stream.norm.rmsnorm.sat"),
        "launch_s": Hold("tied", "the LayerNorm rows are large (standard error 45% when fitted); tied to RMSNorm's "
                                 "(same kernel structure), fitted on Vidur rows down to one token",
                         tie="stream.norm.rmsnorm.launch_s"),
    },
    "stream.softmax": {"sat": Hold("fixed", _UNSATURATED_ROWS, value=NEUSIGHT_MIN_BLOCKS_PER_SM)},
    "stream.elementwise.add": {
        "launch_s": Hold("fixed", "the data push it below the launch floor MIN_LAUNCH_S; at the floor",
                         value=MIN_LAUNCH_S),
        "mem_eff": Hold("fixed", "the residual adds run at the datasheet bandwidth: the fit presses on the "
                                 "cap peak/measured of the A100 (2.039/1.61); fixed there",
                        value=1.0 / MEASURED_STREAM_FRACTION["a100-sxm4-80gb"]),
    },
}


def holds(group: str) -> dict[str, Hold]:
    """The held parameters of a group (`HOLDS`, with the `gemm.tensor.*` entries for refinements)."""
    out = dict(HOLDS.get("gemm.tensor.*", {})) if group.startswith("gemm.tensor.") else {}
    return {**out, **HOLDS.get(group, {})}


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
Bounds = dict[str, tuple[float, float, float]]


def get_param(cal: Calibration, ref: str) -> float:
    """A parameter by reference: `attention.u_max`, `gemm.tensor.hopper.k0`, `stream.norm.rmsnorm.sat`."""
    group, name = ref.rsplit(".", 1)
    kind, _, key = group.partition(".")
    prm = cal.attention if kind == "attention" else (cal.gemm if kind == "gemm" else cal.stream)[key]
    return float(getattr(prm, name))


def fit_group(group: str, start: P, bounds: Bounds, residual: Callable[[P], np.ndarray], done: Calibration,
              x0_factor: float = 1.0) -> tuple[P, GroupFit]:
    """Least squares over the fields of `start` that `holds(group)` does not hold.

    Args:
        group: the group's name (`gemm.simt`, `stream.norm`, ...), which picks its holds.
        start: the starting point (and the type of the result).
        bounds: (lower, upper, unit) per field.
        residual: log(predicted / measured) per fit row, for given parameters.
        done: the groups fitted so far (the targets of ties).
        x0_factor: multiplies the starting point (robustness tests perturb it by 1e-6).

    Returns:
        The fitted parameters and the report of the fit.
    """
    params_type = type(start)
    hold = holds(group)
    held = {n: h.value if h.status == "fixed" else get_param(done, h.tie) for n, h in hold.items()}
    names = [f.name for f in fields(params_type) if f.name not in hold]
    lo, hi, unit = (np.array([bounds[n][i] for n in names]) for i in range(3))
    logs = np.array([n in LOG_PARAMS for n in names])

    def to_z(v: np.ndarray) -> np.ndarray:
        return np.where(logs, np.log(np.where(logs, v, 1.0)), v / unit)

    def from_z(z: np.ndarray) -> np.ndarray:
        return np.where(logs, np.exp(z), z * unit)

    def make(z: np.ndarray) -> P:
        return params_type(**held, **dict(zip(names, from_z(z).tolist())))

    x0 = to_z(np.clip(np.array([getattr(start, n) for n in names]) * x0_factor, lo, hi))
    sol = None
    # One start per value of LOG_STARTS for the log parameters (the lowest cost wins; ties go to
    # the earlier start): their cost is flat beyond the range the rows exercise, where a single
    # start can come to rest.
    for s in (LOG_STARTS if logs.any() else (float("nan"),)):
        z0 = np.where(logs, np.log(s * x0_factor), x0) if logs.any() else x0
        run = least_squares(lambda z: residual(make(z)), z0, bounds=(to_z(lo), to_z(hi)), loss="soft_l1",
                            f_scale=F_SCALE, diff_step=DIFF_STEP, max_nfev=MAX_NFEV, **TOLERANCE)
        log.debug("%s from %s: cost %.9g at %s", group, s, run.cost, from_z(run.x))
        if sol is None or run.cost < sol.cost * (1 - 1e-9):
            sol = run
    assert sol is not None
    if sol.status <= 0:
        log.warning("%s: the fit did not converge in %d evaluations (%s)", group, sol.nfev, sol.message)
    prm = make(sol.x)
    value = from_z(sol.x)
    # d theta / d z: theta for log parameters, the unit otherwise
    se, corr, sens = uncertainty(np.asarray(sol.jac), 2.0 * float(sol.cost), np.where(logs, 1.0, sol.x),
                                 np.where(logs, value, unit))
    free = {n: ParamFit(n, getattr(prm, n), float(se[i]), float(sens[i]), _partner(names, corr, i), "fitted",
                        "") for i, n in enumerate(names)}
    report = [free[f.name] if f.name in free else
              ParamFit(f.name, held[f.name], float("nan"), float("nan"), ("", float("nan")),
                       hold[f.name].status,
                       hold[f.name].reason + (f" (= {hold[f.name].tie})" if hold[f.name].tie else ""))
              for f in fields(params_type)]
    log.info("fitted %s: %d rows, %d evaluations, cost %.6g", group, sol.fun.size, sol.nfev, sol.cost)
    return prm, GroupFit(group, int(sol.fun.size), int(sol.nfev), float(sol.cost), tuple(report))


def _partner(names: list[str], corr: np.ndarray, i: int) -> tuple[str, float]:
    """The parameter most correlated with parameter `i`, and the correlation."""
    if len(names) < 2 or not np.isfinite(corr[i]).all():
        return ("", float("nan"))
    others = [j for j in range(len(names)) if j != i]
    j = max(others, key=lambda j: abs(corr[i, j]))
    return (names[j], float(corr[i, j]))


def fit_report(df: pd.DataFrame | None = None, x0_factor: float = 1.0,
               progress: Callable[[Iterable[str]], Iterable[str]] = iter) -> tuple[Calibration, list[GroupFit]]:
    """Fit every parameter group on the rows of `fit_mask` (or of the given frame).

    Args:
        df: rows of `measured.kernels()` to fit on; default, the `fit_mask` rows.
        x0_factor: multiplies every starting point (the robustness tests perturb it).
        progress: wraps the iterable of group names (e.g. `tqdm`), to show progress.

    Returns:
        The calibration and one report per fitted group, in fitting order.
    """
    if df is None:
        all_rows = measured.kernels()
        df = all_rows[fit_mask(all_rows)]
    f = with_features(df)
    y = np.log(f["latency_s"].to_numpy())
    mm = ((f["kind"] == "matmul") & (f["cls"] == "tensor")).to_numpy()
    rows: dict[str, np.ndarray] = {"attention": f["kind"].isin(["attention", "attention_bwd"]).to_numpy()}
    # Variants before kinds (a kind's sat may be tied to a variant's); a kind's shared entry is
    # fitted on all its rows, a `kind.variant` entry on its own.
    for key in sorted(stream_keys(), key=lambda k: k in STREAM_KINDS):
        rows[f"stream.{key}"] = ((f["kind"] == key) if key in STREAM_KINDS else (f["stream"] == key)).to_numpy()
    for cls in ("tensor", "simt"):
        rows[f"gemm.{cls}"] = ((f["kind"] == "matmul") & (f["cls"] == cls)).to_numpy()
    # Tensor-core generations differ (Hopper's wgmma/TMA kernels reach a larger fraction of
    # peak than Ampere's mma.sync): one refinement per architecture in the tensor fit set.
    for arch in sorted(f.loc[mm, "arch"].unique()):
        rows[f"gemm.tensor.{arch}"] = mm & (f["arch"] == arch).to_numpy()
    cal = Calibration({"tensor": TENSOR_START, "simt": GemmParams()}, {k: StreamParams() for k in stream_keys()},
                      AttentionParams(), measured.data_sha256(),
                      {"gemm.tensor": f"vidur {FIT_MODEL} (a100, h100)",
                       "gemm.simt": f"neusight bmm+linear, all GPUs except {HELD_OUT_GPU}",
                       "stream": f"neusight elem/ln/softmax + vidur {FIT_MODEL}",
                       "attention": f"vidur FlashAttention a100, <= {ATTENTION_FIT_MAX_TOKENS} query tokens"})
    reports: list[GroupFit] = []
    for group in progress([g for g, sel in rows.items() if sel.any()]):
        sel = rows[group]
        sub, ys = f[sel].reset_index(drop=True), y[sel]
        place = _placer(cal, group)
        start = _start(cal, group)

        def residual(prm: Any, sub: pd.DataFrame = sub, ys: np.ndarray = ys,
                     place: Callable[[Any], Calibration] = place) -> np.ndarray:
            return np.asarray(np.log(predict_features(sub, place(prm))) - ys)

        bounds = ATTENTION_BOUNDS if group == "attention" else GEMM_BOUNDS if group.startswith("gemm") else \
            STREAM_BOUNDS
        prm, report = fit_group(group, start, bounds, residual, cal, x0_factor)
        cal = place(prm)
        reports.append(report)
    return cal, reports


# Starting point of the shared tensor-core GEMM fit.
TENSOR_START = GemmParams(q=0.5)
# A per-architecture refinement starts from the shared fit's optimum, except those listed here,
# which start from TENSOR_START: from the shared optimum, starts 1e-6 apart bring the Ampere
# refinement to rest at points up to 2.4e-3 apart (its `q`, 0.15 of its standard error), more than
# the reproducibility tolerance; from TENSOR_START they land < 1e-5 apart. (The Hopper refinement is
# the other way round: 1.3e-3 apart from TENSOR_START, < 1e-4 from the shared optimum.) Chosen by
# that check of the optimiser alone (`coda calibrate`, x0_factor 1 +- 1e-6), not by any validation row.
FIXED_START_REFINEMENTS = frozenset({"tensor.ampere"})


def _start(cal: Calibration, group: str) -> Any:
    """Starting point of a group: the dataclass defaults; a refinement starts from its shared fit
    (or from `TENSOR_START`, `FIXED_START_REFINEMENTS`)."""
    if group == "attention":
        return cal.attention
    kind, key = group.split(".", 1)
    if kind == "gemm":
        if key.startswith("tensor."):
            return TENSOR_START if key in FIXED_START_REFINEMENTS else cal.gemm["tensor"]
        return cal.gemm[key]
    return cal.stream[key]


def _placer(cal: Calibration, group: str) -> Callable[[Any], Calibration]:
    """A function putting a group's parameters into (a copy of) `cal`."""
    if group == "attention":
        return lambda prm: replace(cal, attention=prm)
    kind, key = group.split(".", 1)
    if kind == "gemm":
        return lambda prm: replace(cal, gemm={**cal.gemm, key: prm})
    return lambda prm: replace(cal, stream={**cal.stream, key: prm})


def fit(df: pd.DataFrame | None = None) -> Calibration:
    """Fit every parameter group on the rows of `fit_mask` (or of the given frame)."""
    return fit_report(df)[0]


def check_out_path(path: str | Path) -> Path:
    """The path `coda calibrate` will write, checked before fitting (`coda.paths.writable_file`)."""
    return writable_file(Path(path).expanduser(), "--out")


def write(cal: Calibration, path: str | Path) -> Path:
    """Write the calibration to `path` (never into the installed package); returns the path."""
    out = check_out_path(path)
    out.write_text(cal.to_json())
    return out


def differences(new: Calibration, ref: Calibration) -> list[str]:
    """Where `new` and `ref` disagree beyond the reproducibility tolerances (empty if they agree):
    parameters (`identifiability.PARAM_RTOL`, `param_atol` near 0) and predictions on every row
    of `measured.kernels()` (`PREDICTION_RTOL`)."""
    out = param_differences(new.flat_params(), ref.flat_params())
    f = with_features(measured.kernels())
    labels = [f"{r.source} {r.gpu} {r.layer_op} #{i}" for i, r in enumerate(f.itertuples(index=False))]
    return out + prediction_differences(predict_features(f, new), predict_features(f, ref), labels)
