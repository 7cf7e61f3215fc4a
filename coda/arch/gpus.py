"""The GPU catalog: one JSON file per GPU in `coda/arch/gpu_catalog/`, every field cited.

Files use external units in their key names (`clock_MHz`, `hbm_GiB`, `hbm_bw_GBps`,
`tensor_TFLOPs`, ...); `load_gpu_file` converts them once into the SI fields of `GPU`.
Peaks are dense (no 2:4 sparsity). A dtype a GPU cannot run (fp8 on A100, bf16 on V100) is
`null` in the file and `None` here; asking for its peak raises `ConfigError`.

Lookup (`gpu(name)`) is case-insensitive and treats `_`, ` ` and `-` alike, so the device
strings found in measured data (`NVIDIA A100-PCIE-40GB`, `Tesla T4`, Vidur's `a100`) resolve
to catalog entries through each file's `aliases`.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

from coda.errors import ConfigError, UnknownNameError
from coda.units import GB, GiB, KiB, MiB, T

_CATALOG = Path(__file__).resolve().parent / "gpu_catalog"
DTYPES: tuple[str, ...] = ("fp32", "tf32", "fp16", "bf16", "fp8")


@dataclass(frozen=True)
class DtypePeaks:
    """Dense peak FLOP/s per dtype (None: not supported or not published)."""

    fp32: float | None = None
    tf32: float | None = None
    fp16: float | None = None
    bf16: float | None = None
    fp8: float | None = None


@dataclass(frozen=True)
class GPU:
    """An NVIDIA GPU. SI units throughout; `sources` maps each field to its citation.

    Attributes:
        name: canonical catalog name, e.g. `a100-sxm4-80gb`.
        full_name: marketing name, e.g. `NVIDIA A100 SXM4 80GB`.
        architecture: `pascal`, `volta`, `turing`, `ampere`, `ada`, `hopper`.
        aliases: other names that resolve to this GPU (device strings of measured data).
        sm_count: streaming multiprocessors.
        clock_hz: boost clock at which the dense tensor-core peaks are quoted.
        max_clock_hz: maximum boost clock (the SIMT peaks of Hopper are quoted at it).
        tensor_flops_per_s: dense tensor-core peaks (fp32 is always None: tensor cores run tf32).
        simt_flops_per_s: CUDA-core (non-tensor) peaks.
        hbm_bytes: device memory capacity (HBM or GDDR).
        hbm_bw_bytes_per_s: device memory bandwidth.
        l2_bytes: L2 cache.
        smem_per_sm_bytes: maximum shared memory per SM.
        tdp_w: board power (TDP).
        nvlink_bw_bidir_bytes_per_s: NVLink bandwidth per GPU, both directions summed (None:
            no NVLink); the PCIe cards' value is the 2-GPU NVLink bridge.
        host_link_bw_bidir_bytes_per_s: the GPU's link to host memory (its PCIe x16 slot), both
            directions summed, nominal as the datasheets give it (the serving simulator's KV swap
            moves blocks over it; `host_link_bw_each_way_bytes_per_s`).
        die_area_mm2: die area.
        memory_kind: `HBM2`, `HBM2e`, `HBM3`, `HBM3e`, `GDDR5`, `GDDR6`.
        sources: field -> citation.
    """

    name: str
    full_name: str
    architecture: str
    aliases: tuple[str, ...]
    sm_count: int
    clock_hz: float
    max_clock_hz: float
    tensor_flops_per_s: DtypePeaks
    simt_flops_per_s: DtypePeaks
    hbm_bytes: int
    hbm_bw_bytes_per_s: float
    l2_bytes: int
    smem_per_sm_bytes: int
    tdp_w: float
    nvlink_bw_bidir_bytes_per_s: float | None
    host_link_bw_bidir_bytes_per_s: float
    die_area_mm2: float
    memory_kind: str
    sources: Mapping[str, str] = field(default_factory=dict, compare=False, hash=False, repr=False)

    @property
    def nvlink_bw_each_way_bytes_per_s(self) -> float | None:
        """NVLink bandwidth per direction: half the bidirectional figure."""
        bw = self.nvlink_bw_bidir_bytes_per_s
        return None if bw is None else bw / 2

    @property
    def host_link_bw_each_way_bytes_per_s(self) -> float:
        """Host link bandwidth per direction: half the bidirectional figure. Nominal: copies of
        pinned host memory reach less (the CUDA `bandwidthTest` sample measures a system's), so
        times computed with it are lower bounds."""
        return self.host_link_bw_bidir_bytes_per_s / 2

    def __getstate__(self) -> dict[str, Any]:
        """Pickle support (process pools, Ray): `sources` is a read-only view, stored as a dict."""
        state = dict(self.__dict__)
        state["sources"] = dict(self.sources)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        for k, v in state.items():
            object.__setattr__(self, k, MappingProxyType(dict(v)) if k == "sources" else v)

    def supports(self, dtype: str) -> bool:
        """True if the GPU has a published peak for `dtype` on tensor cores or CUDA cores."""
        _check_dtype(dtype)
        return getattr(self.tensor_flops_per_s, dtype) is not None or getattr(self.simt_flops_per_s, dtype) is not None

    def peak_flops(self, dtype: str, tensor_core: bool = True) -> float:
        """Dense peak FLOP/s for `dtype` on tensor cores (default) or CUDA cores.

        Example: A100 bf16 tensor = 108 SMs x 2048 FLOP/clk x 1.41e9 Hz = 3.119e14.

        Raises:
            UnknownNameError: `dtype` is not one of `fp32, tf32, fp16, bf16, fp8`.
            ConfigError: the GPU has no such peak (names the GPU, the dtype and what it does have).
        """
        _check_dtype(dtype)
        peaks = self.tensor_flops_per_s if tensor_core else self.simt_flops_per_s
        value = getattr(peaks, dtype)
        if value is None:
            unit = "tensor cores" if tensor_core else "CUDA cores (SIMT)"
            have = [d for d in DTYPES if getattr(peaks, d) is not None]
            hint = f"use one of {', '.join(have)}" if have else f"it has no {unit}"
            other = self.simt_flops_per_s if tensor_core else self.tensor_flops_per_s
            if getattr(other, dtype) is not None:
                hint += f"; or pass tensor_core={not tensor_core} for {dtype}"
            raise ConfigError(f"GPU {self.name!r} has no {dtype} peak on {unit} (unsupported or unpublished); {hint}")
        return value

    def source(self, field_name: str) -> str:
        """Citation of one field."""
        return self.sources[field_name]


def _check_dtype(dtype: str) -> None:
    if dtype not in DTYPES:
        raise UnknownNameError("dtype", str(dtype), DTYPES)


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]+", "-", str(name).strip().lower())


# file key -> (GPU field, factor to SI)
_SCALAR_KEYS: dict[str, tuple[str, float]] = {
    "sm_count": ("sm_count", 1), "clock_MHz": ("clock_hz", 1e6), "max_clock_MHz": ("max_clock_hz", 1e6),
    "hbm_GiB": ("hbm_bytes", GiB), "hbm_bw_GBps": ("hbm_bw_bytes_per_s", GB), "l2_MiB": ("l2_bytes", MiB),
    "smem_per_sm_KiB": ("smem_per_sm_bytes", KiB), "tdp_W": ("tdp_w", 1),
    "nvlink_bidir_GBps": ("nvlink_bw_bidir_bytes_per_s", GB), "die_area_mm2": ("die_area_mm2", 1),
    "host_link_bidir_GBps": ("host_link_bw_bidir_bytes_per_s", GB),
}
_TEXT_KEYS = ("name", "full_name", "architecture", "memory_kind")
_PEAK_KEYS = {"tensor_TFLOPs": "tensor_flops_per_s", "simt_TFLOPs": "simt_flops_per_s"}
_INT_FIELDS = {"sm_count", "hbm_bytes", "l2_bytes", "smem_per_sm_bytes"}


def _scale(value: float, factor: float) -> float:
    """`value * factor` without binary rounding noise for decimal factors (133.8 TFLOP/s -> 1.338e14)."""
    exp = math.log10(factor)
    return float(f"{value}e{round(exp)}") if factor > 1 and exp == round(exp) else float(value * factor)


def load_gpu_file(path: str | Path) -> GPU:
    """Read one catalog file strictly: unknown or missing keys, or a field without a source, raise.

    Raises:
        ConfigError: naming the file and the offending keys.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ConfigError(f"{path}: cannot read GPU description ({err})") from None
    allowed = set(_SCALAR_KEYS) | set(_TEXT_KEYS) | set(_PEAK_KEYS) | {"aliases", "sources"}
    unknown, missing = set(data) - allowed, allowed - set(data)
    if unknown or missing:
        raise ConfigError(f"{path.name}: unknown keys {sorted(unknown)}, missing keys {sorted(missing)}")
    kw: dict[str, Any] = {k: str(data[k]) for k in _TEXT_KEYS}
    kw["aliases"] = tuple(data["aliases"])
    for key, (fname, factor) in _SCALAR_KEYS.items():
        v = data[key]
        if v is None:
            if fname != "nvlink_bw_bidir_bytes_per_s":
                raise ConfigError(f"{path.name}: {key} may not be null")
            kw[fname] = None
        else:
            kw[fname] = int(round(v * factor)) if fname in _INT_FIELDS else _scale(v, factor)
    for key, fname in _PEAK_KEYS.items():
        peaks = data[key]
        if set(peaks) != set(DTYPES):
            raise ConfigError(f"{path.name}: {key} must list exactly {list(DTYPES)} (null when unsupported)")
        kw[fname] = DtypePeaks(**{d: None if peaks[d] is None else _scale(peaks[d], T) for d in DTYPES})
    sources = dict(data["sources"])
    cited = {f.name for f in fields(GPU)} - {"name", "aliases", "sources"}
    uncited = sorted(cited - set(sources))
    if uncited or set(sources) - cited:
        raise ConfigError(f"{path.name}: sources must cite exactly the fields {sorted(cited)}; "
                          f"uncited {uncited}, unknown {sorted(set(sources) - cited)}")
    kw["sources"] = MappingProxyType(sources)
    if _norm(kw["name"]) != path.stem:
        raise ConfigError(f"{path.name}: name {kw['name']!r} must match the file name")
    return GPU(**kw)


@lru_cache(maxsize=1)
def _catalog() -> tuple[dict[str, GPU], dict[str, str]]:
    gpus = {p.stem: load_gpu_file(p) for p in sorted(_CATALOG.glob("*.json"))}
    index: dict[str, str] = {}
    for name, g in gpus.items():
        for alias in (name, g.full_name, *g.aliases):
            key = _norm(alias)
            if index.get(key, name) != name:
                raise ConfigError(f"GPU alias {alias!r} is claimed by both {index[key]!r} and {name!r}")
            index[key] = name
    return gpus, index


def list_gpus() -> list[str]:
    """Canonical names of the catalog's GPUs, sorted."""
    return sorted(_catalog()[0])


def gpu_aliases() -> dict[str, str]:
    """Every accepted (normalised) name -> canonical GPU name."""
    return dict(_catalog()[1])


def gpu(name: str | GPU) -> GPU:
    """Look a GPU up by canonical name or alias (case-insensitive; `_`, ` `, `-` alike).

    Args:
        name: e.g. `h100-sxm`, `NVIDIA H100 80GB HBM3`, `Tesla T4`, `a100` (Vidur's A100-80GB,
            the SXM4 board of its NVSwitch systems). A `GPU` is returned unchanged.

    Raises:
        UnknownNameError: with the closest names.
    """
    if isinstance(name, GPU):
        return name
    gpus, index = _catalog()
    key = _norm(name)
    if key not in index:
        close = difflib.get_close_matches(key, index, n=3, cutoff=0.5)
        raise UnknownNameError("gpu", str(name), sorted(index) if close else list_gpus())
    return gpus[index[key]]
