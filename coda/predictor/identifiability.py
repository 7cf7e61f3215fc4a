"""What the GPU tile calibration's data determine, and when two calibrations agree.

At a least-squares optimum with Jacobian `J` (rows: fit rows, columns: parameters in the
optimiser's units, weighted by the soft-L1 loss as scipy's `least_squares` returns it) and
residual sum of squares `S` over `n` rows and `k` free parameters, the covariance is

    cov = s^2 (J^T J)^-1,   s^2 = S / (n - k)

(Gauss-Newton; e.g. Bates & Watts 1988, "Nonlinear Regression Analysis", section 2.3). A
parameter along a direction `J` cannot see (a singular value below `RANK_RTOL` of the largest)
has an infinite standard error. The sensitivity of a parameter is the rms over fit rows of
d log(t) / d log(theta): how much a 1% change moves the predictions, in %.

Two calibrations agree (`coda calibrate --check`, the reproducibility test) when every
parameter agrees within `PARAM_RTOL` relative, or `param_atol` absolute for values near 0,
and every prediction on the shipped measurements within `PREDICTION_RTOL`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

RANK_RTOL = 1e-10
PARAM_RTOL = 1e-3
PREDICTION_RTOL = 1e-3
# Absolute tolerance for parameters whose value is near 0 (where 1e-3 relative is no test):
# 1e-5 of the parameter's natural unit (seconds for launch_s, k-iterations for k0).
PARAM_ATOL = {"launch_s": 1e-11, "k0": 1e-3}
DEFAULT_PARAM_ATOL = 1e-5


@dataclass(frozen=True)
class ParamFit:
    """One parameter of a fitted group: its value, standard error (`nan` unless fitted; `inf`
    if the data do not determine it), sensitivity (%/%), the parameter it correlates with most
    and that correlation, its status (`fitted`, `fixed` or `tied`) and the reason if held."""

    name: str
    value: float
    se: float
    sensitivity: float
    partner: tuple[str, float]
    status: str
    reason: str


@dataclass(frozen=True)
class GroupFit:
    """The fit of one parameter group: rows fitted on, function evaluations, final cost."""

    group: str
    rows: int
    nfev: int
    cost: float
    params: tuple[ParamFit, ...]


def uncertainty(jac: np.ndarray, sum_sq: float, x: np.ndarray,
                unit: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Standard errors, correlation matrix and sensitivities of fitted parameters (module doc).

    Args:
        jac: (n, k) Jacobian of the residuals in the optimiser's units at the optimum.
        sum_sq: residual sum of squares (twice scipy's `cost`).
        x: (k,) optimum in the optimiser's units.
        unit: (k,) size of one optimiser unit in the parameter's own units.

    Returns:
        se (k,) in the parameters' units (inf where undetermined), corr (k, k), and the
        sensitivity (k,) as rms d log t / d log theta over rows.
    """
    n, k = jac.shape
    _, sv, vt = np.linalg.svd(jac, full_matrices=False)
    keep = sv > RANK_RTOL * (sv.max() if sv.size else 0.0)
    s2 = sum_sq / max(n - k, 1)
    cov = s2 * (vt[keep].T / sv[keep] ** 2) @ vt[keep]
    se = np.sqrt(np.clip(np.diag(cov), 0.0, None))
    blind = (np.abs(vt[~keep]) > 1e-8).any(axis=0)
    se = np.where(blind, np.inf, se)
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = cov / np.outer(se, se)
    sens = np.abs(x) * np.linalg.norm(jac, axis=0) / math.sqrt(max(n, 1))
    return se * unit, corr, sens


def report_frame(reports: list[GroupFit]) -> pd.DataFrame:
    """One row per parameter: group, param, value, se, rel_se, sensitivity, most correlated
    parameter and the correlation, status and reason."""
    rows = []
    for g in reports:
        for p in g.params:
            rows.append({"group": g.group, "param": p.name, "value": p.value, "se": p.se,
                         "rel_se": p.se / abs(p.value) if p.value else float("inf"),
                         "sensitivity": p.sensitivity, "corr_with": p.partner[0], "corr": p.partner[1],
                         "status": p.status, "reason": p.reason})
    return pd.DataFrame(rows)


def group_dicts(reports: list[GroupFit]) -> list[dict[str, object]]:
    """The reports as plain dictionaries (for JSON)."""
    return [asdict(g) for g in reports]


def param_atol(name: str) -> float:
    """Absolute tolerance of a parameter near 0 (`PARAM_ATOL`)."""
    return PARAM_ATOL.get(name, DEFAULT_PARAM_ATOL)


def param_differences(new: dict[str, dict[str, float]], ref: dict[str, dict[str, float]]) -> list[str]:
    """Parameters of `new` outside the tolerance of `ref`, as `group.name: new vs ref` lines.

    Args:
        new, ref: group -> parameter -> value (`Calibration.flat_params`).
    """
    out = [f"{g}: group missing" for g in sorted(set(ref) ^ set(new))]
    for g in sorted(set(ref) & set(new)):
        for name, b in ref[g].items():
            a = new[g].get(name, float("nan"))
            if not abs(a - b) <= PARAM_RTOL * abs(b) + param_atol(name):
                out.append(f"{g}.{name}: {a:.6g} vs {b:.6g}")
    return out


def prediction_differences(new: np.ndarray, ref: np.ndarray, labels: list[str]) -> list[str]:
    """Rows whose predictions differ by more than `PREDICTION_RTOL`, worst first (at most 5)."""
    rel = np.abs(new / ref - 1.0)
    bad = np.flatnonzero(~(rel <= PREDICTION_RTOL))
    worst = bad[np.argsort(-np.nan_to_num(rel[bad], nan=np.inf))][:5]
    return [f"{len(bad)} of {len(ref)} predictions differ by more than {PREDICTION_RTOL:.1%}"] + \
        [f"{labels[i]}: {new[i]:.6g} s vs {ref[i]:.6g} s ({rel[i]:+.3%})" for i in worst] if len(bad) else []
