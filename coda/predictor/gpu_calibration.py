"""The GPU tile model's fitted parameters: their types, the strict loader, and the calibration in
use (the shipped file, or the one `$CODA_GPU_CALIBRATION` names). `coda calibrate` writes them.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from coda.caches import memoize
from coda.errors import ConfigError

log = logging.getLogger(__name__)

SCHEMA = "coda.predictor.gpu_tiles/1"
STREAM_KINDS = ("elementwise", "norm", "softmax", "embedding")
"""Bandwidth-bound op kinds, each with fitted `StreamParams`."""


@dataclass(frozen=True)
class GemmParams:
    """Fitted GEMM parameters of one core class (`tensor` or `simt`), GPU-independent."""

    u_max: float = 0.85  # fraction of the SM's peak a full tile sustains, (0, 1]
    k0: float = 64.0  # per-tile prologue/epilogue, in k-iterations
    l2_ratio: float = 4.0  # L2-to-SM bandwidth over HBM bandwidth
    mem_eff: float = 0.85  # multiple of the measured streaming bandwidth reached (capped at the peak)
    sat_frac: float = 0.5  # fraction of SMs that saturates HBM, (0, 1]
    p: float = 3.0  # smooth-max exponent between compute and memory time, >= 1
    launch_s: float = 5e-6  # fixed launch and tail cost
    stream_k: float = 0.2  # relative overhead of a stream-K (fractional-wave) schedule, >= 0 (CUDA cores)
    q: float = 1.0  # weight of whole-wave quantisation against an even spread of tiles, [0, 1]


@dataclass(frozen=True)
class AttentionParams:
    """Fitted parameters of fused attention."""

    u_max: float = 0.7  # fraction of the SM's tensor peak a query tile sustains, (0, 1]
    k0: float = 128.0  # per-tile prologue/epilogue, in keys
    mem_eff: float = 0.85
    sat_frac: float = 0.5
    p: float = 3.0
    launch_s: float = 5e-6
    causal_skip: float = 1.0  # fraction of the fully masked key blocks the kernel skips, [0, 1]


@dataclass(frozen=True)
class StreamParams:
    """Fitted parameters of one bandwidth-bound op kind."""

    mem_eff: float = 0.8
    sat: float = 4.0  # independent blocks per SM needed to saturate HBM
    launch_s: float = 4e-6


@dataclass(frozen=True)
class Calibration:
    """Everything `GPUTileModel` fitted, and the hash of the data it was fitted on."""

    gemm: dict[str, GemmParams]
    stream: dict[str, StreamParams]
    attention: AttentionParams
    data_sha256: str
    fitted_on: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> str:
        """Deterministic JSON: sorted keys, floats at 6 significant digits."""
        def rounded(obj: Any) -> Any:
            if isinstance(obj, dict):
                return {k: rounded(v) for k, v in obj.items()}
            if isinstance(obj, float):
                return float(f"{obj:.6g}")
            return obj

        data = {"schema": SCHEMA, "data_sha256": self.data_sha256, "fitted_on": self.fitted_on,
                "gemm": {k: asdict(v) for k, v in self.gemm.items()},
                "stream": {k: asdict(v) for k, v in self.stream.items()}, "attention": asdict(self.attention)}
        return json.dumps(rounded(data), indent=1, sort_keys=True) + "\n"

    def flat_params(self) -> dict[str, dict[str, float]]:
        """Every parameter by group: `attention`, `gemm.<key>`, `stream.<key>` -> name -> value."""
        out = {"attention": asdict(self.attention)}
        out.update({f"gemm.{k}": asdict(v) for k, v in self.gemm.items()})
        out.update({f"stream.{k}": asdict(v) for k, v in self.stream.items()})
        return out

    @classmethod
    def from_json(cls, text: str, source: str = "calibration") -> Calibration:
        """Parse `to_json` output strictly (every field present, no unknown one).

        Raises:
            ConfigError: malformed JSON, another schema, or a missing or unknown key, naming `source`.
        """
        try:
            d = json.loads(text)
        except json.JSONDecodeError as err:
            raise ConfigError(f"{source}: not a JSON GPU tile calibration ({err})") from None
        if not isinstance(d, dict) or d.get("schema") != SCHEMA:
            found = d.get("schema") if isinstance(d, dict) else None
            raise ConfigError(f"{source}: schema {found!r} is not {SCHEMA}; write it with `coda calibrate`")
        _check_keys(d, {"schema", "data_sha256", "fitted_on", "gemm", "stream", "attention"}, source)
        for key in ("gemm", "stream", "fitted_on"):
            if not isinstance(d[key], dict):
                raise ConfigError(f"{source}: {key} must be an object")
        for key in ("gemm.tensor", "gemm.simt", *(f"stream.{k}" for k in STREAM_KINDS)):
            group, name = key.split(".", 1)
            if name not in d[group]:
                raise ConfigError(f"{source}: {key} is missing; write the file with `coda calibrate`")
        return cls({k: _params(GemmParams, v, f"{source}: gemm.{k}") for k, v in d["gemm"].items()},
                   {k: _params(StreamParams, v, f"{source}: stream.{k}") for k, v in d["stream"].items()},
                   _params(AttentionParams, d["attention"], f"{source}: attention"), str(d["data_sha256"]),
                   {str(k): str(v) for k, v in d["fitted_on"].items()})


def _check_keys(d: Mapping[str, Any], expected: set[str], where: str) -> None:
    if set(d) != expected:
        missing, unknown = sorted(expected - set(d)), sorted(set(d) - expected)
        raise ConfigError(f"{where}: missing keys {missing}, unknown keys {unknown}; expected {sorted(expected)}")


def _params(params_type: type[Any], v: Any, where: str) -> Any:
    """A parameter dataclass from a JSON object with exactly its fields, all finite numbers."""
    if not isinstance(v, dict):
        raise ConfigError(f"{where}: must be an object of parameters")
    _check_keys(v, {f.name for f in fields(params_type)}, where)
    bad = [k for k, x in v.items() if not isinstance(x, (int, float)) or isinstance(x, bool) or not np.isfinite(x)]
    if bad:
        raise ConfigError(f"{where}: {', '.join(sorted(bad))} must be finite numbers")
    return params_type(**{k: float(x) for k, x in v.items()})


# The environment variable naming a calibration file to use instead of the shipped one.
CALIBRATION_ENV = "CODA_GPU_CALIBRATION"


def calibration_path() -> Any:
    """The shipped calibration file (inside the installed package; `coda calibrate` never writes it)."""
    return resources.files("coda.predictor").joinpath("calibration").joinpath("gpu_tiles.json")


def load_calibration(text: str, data_sha256: str, source: str = "calibration") -> Calibration:
    """Parse a calibration and check that it was fitted on the data whose hash is `data_sha256`.

    Raises:
        ConfigError: malformed file, or a hash mismatch (the data changed since the fit).
    """
    cal = Calibration.from_json(text, source)
    if cal.data_sha256 != data_sha256:
        raise ConfigError(
            f"{source} was fitted on data {cal.data_sha256[:12]}, but the shipped data hash is "
            f"{data_sha256[:12]}; run `coda calibrate` to refit"
        )
    return cal


def load_calibration_file(path: str | os.PathLike[str]) -> Calibration:
    """A calibration file written by `coda calibrate`, checked for schema and data hash.

    Raises:
        ConfigError: the file is missing, unreadable, malformed, or fitted on other data.
    """
    from coda.predictor.measured import data_sha256

    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"GPU tile calibration {path}: cannot read it ({err}); "
                          "name a file written by `coda calibrate`") from None
    return load_calibration(text, data_sha256(), f"GPU tile calibration {path}")


@lru_cache(maxsize=1)
def shipped_calibration() -> Calibration:
    """The calibration shipped in the package, after checking its data hash."""
    from coda.predictor.measured import data_sha256

    return load_calibration(calibration_path().read_text(), data_sha256(), "coda/predictor/calibration/gpu_tiles.json")


def active_calibration() -> Calibration:
    """The calibration the default model uses: the file named by `$CODA_GPU_CALIBRATION` if set
    (logging a warning the first time), else the shipped one."""
    return _calibration_for(os.environ.get(CALIBRATION_ENV, ""))


@memoize("predictor.calibrations", 8)
def _calibration_for(path: str) -> Calibration:
    if not path:
        return shipped_calibration()
    cal = load_calibration_file(path)
    log.warning("using the user GPU tile calibration %s (from $%s), not the shipped one", path, CALIBRATION_ENV)
    return cal


# -- vectorised core ---------------------------------------------------------------------------


__all__ = ["CALIBRATION_ENV", "SCHEMA", "STREAM_KINDS", "AttentionParams", "Calibration", "GemmParams", "StreamParams",
           "active_calibration", "calibration_path", "load_calibration", "load_calibration_file",
           "shipped_calibration"]
