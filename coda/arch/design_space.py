"""A design space of accelerators: ranges per template field plus area and TDP constraints.

Declared as data (one tuple of values per dimension), enumerated as the Cartesian product
with numpy (area and TDP of every point computed at once), filtered by the constraints, and
exposed as a DataFrame (`to_frame()`), a length (`len()`, no `Accelerator` built) and a lazy
iterator of `Accelerator`. Each dimension is deduplicated, so the product has no duplicates.

PHAZE's space (`DesignSpace.phaze()`): `n_tc`, `n_vc` in 1..4096, `tc_rows`, `tc_cols` in
2..256, vector lanes tied to `tc_rows`, GLB 2..128 MiB (all powers of two); admitted when
area <= the TPUv4-like chip's 22 nm area and (area >= 30% of it, or `n_tc == 1`, or
`n_vc == 1`). That gives exactly the 29,360 configurations of PHAZE's `cores.json`.

Inter-chip links are axes too (`n_links`, `link_bw_bytes_per_s`; default one value each, the
TPUv4-like chip's 6 links at 50 GB/s per direction). A design's links cost power (the TDP model's
5 pJ/bit SerDes term, `coda.arch.power`; no area: the 22 nm model covers the core array only) and
set the bandwidth of its cluster (`design_cluster`), so more links buy faster collectives.
"""

from __future__ import annotations

import gzip
import itertools
import json
import math
import numbers
from collections.abc import Iterator
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd

from coda.arch import area as area_model
from coda.arch import power as power_model
from coda.arch.accelerators import Accelerator, tpuv4, tpuv4_like
from coda.arch.clusters import Cluster, cluster
from coda.arch.technology import DEFAULT_TECHNOLOGY, Technology
from coda.errors import ConfigError, InfeasibleDesign
from coda.fields import help_meta as _h
from coda.units import GiB, MiB

# PHAZE's cores.json columns, and the same fields of a `DesignSpace` frame
PHAZE_KEY = ("num_tc", "num_vc", "width", "depth", "width_vc", "GLB_Buffer")
SPACE_KEY = ("n_tc", "n_vc", "tc_rows", "tc_cols", "vc_lanes", "glb_bytes")


def phaze_cores() -> pd.DataFrame:
    """PHAZE's 29,360 accelerator configurations with their area (shipped: coda/data/phaze)."""
    with resources.files("coda").joinpath("data/phaze/cores.json.gz").open("rb") as raw, gzip.open(raw, "rt") as fh:
        return pd.DataFrame(json.load(fh))


def powers_of_two(lo: int, hi: int) -> tuple[int, ...]:
    """All powers of two p with lo <= p <= hi."""
    return tuple(1 << i for i in range(max(lo, 1).bit_length() - 1, hi.bit_length()) if lo <= 1 << i <= hi)


# The dimensions, in enumeration order (`vc_lanes` is special: None ties it to `tc_rows`).
# The link axes come last, so a space with one link setting enumerates in the order it always had.
_DIMS = ("n_tc", "n_vc", "tc_rows", "tc_cols", "vc_lanes", "glb_bytes", "hbm_bytes", "hbm_bw_bytes_per_s", "clock_hz",
         "n_links", "link_bw_bytes_per_s")
_LINK_DIMS = ("n_links", "link_bw_bytes_per_s")
_POW2_DIMS = ("tc_rows", "tc_cols", "vc_lanes")
_INT_DIMS = ("n_tc", "n_vc", "tc_rows", "tc_cols", "vc_lanes", "glb_bytes", "hbm_bytes", "n_links")
_AREA_TOL = 1e-12  # relative slack so a design exactly at the budget (e.g. the TPUv4-like) is admitted


def _axis_values(name: str, values: Any) -> tuple[Any, ...]:
    """A design-space axis as a sorted tuple of distinct values: finite and positive, whole numbers
    for integer axes, powers of two where the template needs them."""
    if isinstance(values, (numbers.Real, str)) or values is None:
        values = (values,)
    values = tuple(values)
    if not values:
        raise ConfigError(f"DesignSpace.{name} is empty; give at least one value")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not 0 < float(v) < math.inf:
            raise ConfigError(f"DesignSpace.{name} contains {v!r}; every value must be a finite positive "
                              "number")
        if name in _INT_DIMS and not float(v).is_integer():
            raise ConfigError(f"DesignSpace.{name} contains {v!r}; use whole numbers")
        if name in _POW2_DIMS and int(float(v)) & (int(float(v)) - 1):
            lo = 1 << (int(float(v)).bit_length() - 1)
            raise ConfigError(f"DesignSpace.{name} contains {v}, not a power of two; use {lo} or {2 * lo}")
    cast = int if name in _INT_DIMS else float
    return tuple(sorted({cast(v) for v in values}))


@dataclass(frozen=True)
class DesignSpace:
    """Ranges of the `Accelerator` template and the constraints a design must meet.

    Defaults are PHAZE's ranges with no constraint; `DesignSpace.phaze()` adds PHAZE's area
    budget. Sequences are deduplicated and sorted on construction.
    """

    n_tc: tuple[int, ...] = field(default=powers_of_two(1, 4096), metadata=_h("tensor cores"))
    n_vc: tuple[int, ...] = field(default=powers_of_two(1, 4096), metadata=_h("vector cores"))
    tc_rows: tuple[int, ...] = field(default=powers_of_two(2, 256), metadata=_h("tensor-core rows (powers of two)"))
    tc_cols: tuple[int, ...] = field(default=powers_of_two(2, 256), metadata=_h("tensor-core columns (powers of two)"))
    vc_lanes: tuple[int, ...] | None = field(default=None, metadata=_h("vector lanes; None = equal to tc_rows (PHAZE)"))
    glb_bytes: tuple[int, ...] = field(default=tuple(m * MiB for m in powers_of_two(2, 128)), metadata=_h("GLB bytes"))
    hbm_bytes: tuple[int, ...] = field(default=(32 * GiB,), metadata=_h("HBM capacities, bytes"))
    hbm_bw_bytes_per_s: tuple[float, ...] = field(default=(1200e9,), metadata=_h("HBM bandwidths, bytes/s"))
    clock_hz: tuple[float, ...] = field(default=(1.05e9,), metadata=_h("clocks, Hz"))
    dtype_bytes: int = field(default=2, metadata=_h("operand width, bytes"))
    link_bw_bytes_per_s: tuple[float, ...] = field(default=(50e9,),
                                                   metadata=_h("bandwidths of one link, per direction, bytes/s"))
    n_links: tuple[int, ...] = field(default=(6,), metadata=_h("inter-chip link counts per chip"))
    tech_nm: int = field(default=7, metadata=_h("node for TDP (area budget stays in the 22 nm model)"))
    technology: Technology = field(default=DEFAULT_TECHNOLOGY,
                                   metadata=_h("energy, leakage and HBM constants of the TDP model, with sources"))
    max_area_mm2: float | None = field(default=None, metadata=_h("area budget, 22 nm model, mm^2"))
    min_area_fraction: float = field(default=0.0, metadata=_h("minimum fraction of max_area_mm2 used"))
    exempt_single_core: bool = field(default=True, metadata=_h("n_tc == 1 or n_vc == 1 skip min_area_fraction (PHAZE)"))
    max_tdp_w: float | None = field(default=None, metadata=_h("TDP budget, W"))

    def __post_init__(self) -> None:
        """Validate in steps: each axis's values, the budgets and fractions, the template's scalars."""
        for name in _DIMS:
            values = getattr(self, name)
            if name == "vc_lanes" and values is None:
                continue
            object.__setattr__(self, name, _axis_values(name, values))
        self._check_budgets()

    def _check_budgets(self) -> None:
        # Budgets are finite: an infinite area budget times a zero fraction is NaN, which admits designs silently.
        for budget in ("max_area_mm2", "max_tdp_w"):
            v = getattr(self, budget)
            bad = isinstance(v, bool) or not isinstance(v, numbers.Real) or not 0 < float(v) < math.inf
            if v is not None and bad:
                raise ConfigError(f"DesignSpace.{budget}={v!r} must be a finite positive number (or None for no "
                                  "budget)")
        if len(self.clock_hz) > 1:
            # The power model's energies per operation are at one (nominal) voltage, so a faster clock
            # would cost only its extra operations per second: free per unit of work, and a search would
            # always pick the fastest. Until a voltage-frequency model (with its range of validity) is
            # in coda/arch/power.py, the clock is a fixed parameter of a space, not an axis.
            raise ConfigError(f"DesignSpace.clock_hz has {len(self.clock_hz)} values; the clock is not a search axis "
                              "(the power model has no voltage-frequency relation, so higher clocks would cost "
                              "nothing per operation): give one clock and compare clocks in separate searches")
        f = self.min_area_fraction
        if isinstance(f, bool) or not isinstance(f, numbers.Real) or not 0.0 <= float(f) <= 1.0:
            raise ConfigError(f"DesignSpace.min_area_fraction={f!r} must lie in [0, 1] (0: no minimum area)")
        if self.min_area_fraction > 0 and self.max_area_mm2 is None:
            raise ConfigError("DesignSpace.min_area_fraction needs max_area_mm2 (it is a fraction of that budget)")
        # Validate the scalar fields once, through the template itself.
        Accelerator(n_tc=1, tc_rows=2, tc_cols=2, n_vc=1, vc_lanes=2, glb_bytes=1, dtype_bytes=self.dtype_bytes,
                    tech_nm=self.tech_nm, technology=self.technology)
        cells = max(self.tc_rows) * max(self.tc_cols)
        if cells > 65536 or max(self.vc_lanes or (0,)) > 65536:
            raise ConfigError("DesignSpace: tc_rows*tc_cols and vc_lanes must stay <= 65536 (22 nm local-buffer table)")

    @classmethod
    def phaze(cls, **overrides: Any) -> DesignSpace:
        """PHAZE's space: its ranges, area <= TPUv4-like (278.83 mm^2, 22 nm), >= 30% of it.

        Args:
            **overrides: any field to change, e.g. `max_tdp_w=200` or `hbm_bytes=(32*GiB, 64*GiB)`.
        """
        base = cls(max_area_mm2=tpuv4_like().area_mm2, min_area_fraction=0.3, exempt_single_core=True)
        return replace(base, **overrides)

    # --- enumeration --------------------------------------------------------------------
    @property
    def n_points(self) -> int:
        """Size of the unconstrained product of the ranges."""
        sizes = [len(getattr(self, d)) for d in _DIMS if not (d == "vc_lanes" and self.vc_lanes is None)]
        return math.prod(sizes)

    def _grid(self) -> dict[str, np.ndarray]:
        dims = [d for d in _DIMS if not (d == "vc_lanes" and self.vc_lanes is None)]
        axes = [np.asarray(getattr(self, d), dtype=np.int64 if d in _INT_DIMS else float) for d in dims]
        mesh = np.meshgrid(*axes, indexing="ij")
        grid = {d: m.ravel() for d, m in zip(dims, mesh)}
        if self.vc_lanes is None:
            grid["vc_lanes"] = grid["tc_rows"].copy()
        return {d: grid[d] for d in _DIMS}

    def _evaluate(self, grid: dict[str, np.ndarray]) -> pd.DataFrame:
        area = area_model.area_um2(grid["n_tc"], grid["tc_rows"], grid["tc_cols"], grid["n_vc"], grid["vc_lanes"],
                                   grid["glb_bytes"]) / 1e6
        df = pd.DataFrame(grid)
        df["area_mm2"] = area
        return df

    def _with_power(self, df: pd.DataFrame) -> pd.DataFrame:
        tdp = power_model.tdp_w(
            df["n_tc"].to_numpy(), df["tc_rows"].to_numpy(), df["tc_cols"].to_numpy(), df["n_vc"].to_numpy(),
            df["vc_lanes"].to_numpy(), df["glb_bytes"].to_numpy(), df["hbm_bw_bytes_per_s"].to_numpy(),
            df["clock_hz"].to_numpy(), self.dtype_bytes, df["link_bw_bytes_per_s"].to_numpy(),
            df["n_links"].to_numpy(), self.tech_nm,
            hbm_bytes=df["hbm_bytes"].to_numpy(), tech=self.technology,
        )
        df = df.assign(tdp_w=np.broadcast_to(tdp, len(df)).astype(float))
        df["peak_flops"] = 2.0 * df["n_tc"] * df["tc_rows"] * df["tc_cols"] * df["clock_hz"]
        df["peak_flops_per_w"] = df["peak_flops"] / df["tdp_w"]
        return df

    @cached_property
    def _admitted(self) -> pd.DataFrame:
        df = self._evaluate(self._grid())
        if self.max_area_mm2 is not None:
            budget = self.max_area_mm2 * (1 + _AREA_TOL)
            under = df[df["area_mm2"] <= budget]
            if under.empty:
                raise InfeasibleDesign(
                    f"max_area_mm2={self.max_area_mm2:.4g} admits no design: areas in the ranges span "
                    f"{df['area_mm2'].min():.4g}-{df['area_mm2'].max():.4g} mm^2 (22 nm model); raise "
                    f"max_area_mm2 to at least {df['area_mm2'].min():.4g} or shrink the ranges"
                )
            floor = self.min_area_fraction * self.max_area_mm2 * (1 - _AREA_TOL)
            keep = under["area_mm2"] >= floor
            if self.exempt_single_core:
                keep |= (under["n_tc"] == 1) | (under["n_vc"] == 1)
            df = under[keep]
            if df.empty:
                raise InfeasibleDesign(
                    f"min_area_fraction={self.min_area_fraction:g} (area >= {floor:.4g} mm^2) leaves no design "
                    f"under max_area_mm2={self.max_area_mm2:.4g}: admitted areas reach only "
                    f"{under['area_mm2'].max():.4g} mm^2; lower min_area_fraction to at most "
                    f"{under['area_mm2'].max() / self.max_area_mm2:.3g} or widen the ranges"
                )
        df = self._with_power(df)
        if self.max_tdp_w is not None:
            cool = df[df["tdp_w"] <= self.max_tdp_w]
            if cool.empty:
                raise InfeasibleDesign(
                    f"max_tdp_w={self.max_tdp_w:.4g} admits none of the {len(df)} designs that meet the area "
                    f"constraints: their TDP spans {df['tdp_w'].min():.4g}-{df['tdp_w'].max():.4g} W at "
                    f"{self.tech_nm} nm; raise max_tdp_w to at least {df['tdp_w'].min():.4g}"
                )
            df = cool
        return df.reset_index(drop=True)

    def to_frame(self) -> pd.DataFrame:
        """Admitted designs, one row each: the varying template fields, area_mm2 (22 nm), tdp_w,
        peak_flops and peak_flops_per_w. Raises `InfeasibleDesign` if no design is admitted."""
        return self._admitted.copy()

    def __len__(self) -> int:
        """Number of admitted designs (vectorised; no `Accelerator` is built)."""
        return len(self._admitted)

    def __iter__(self) -> Iterator[Accelerator]:
        """Admitted designs as `Accelerator`s, built lazily in `to_frame()` order."""
        cols = list(_DIMS)
        fixed: dict[str, Any] = dict(dtype_bytes=self.dtype_bytes, tech_nm=self.tech_nm, technology=self.technology)
        link_axis = len(self.n_links) * len(self.link_bw_bytes_per_s) > 1
        for row in self._admitted[cols].itertuples(index=False, name=None):
            values: dict[str, Any] = {k: (int(v) if k in _INT_DIMS else float(v)) for k, v in zip(cols, row)}
            acc = Accelerator(**values, **fixed)
            # with a link axis, designs differing only in their links get different names
            yield replace(acc, name=f"{acc.name}-{links_label(acc)}") if link_axis else acc

    def head(self, n: int) -> list[Accelerator]:
        """The first `n` admitted designs as `Accelerator`s."""
        return list(itertools.islice(iter(self), n))

    def describe(self) -> dict[str, Any]:
        """The ranges and constraints as plain data (for printing next to results)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["technology"] = self.technology.name
        return out


def links_label(acc: Accelerator) -> str:
    """The links of a design in a name: `6x50GBps` (links x GB/s per link per direction)."""
    return f"{acc.n_links}x{acc.link_bw_bytes_per_s / 1e9:g}GBps"


LINK_PRESET = "tpuv4-pod"
"""The cluster preset whose per-level bandwidths `design_cluster` scales: the TPU v4 pod's 3D torus."""
TORUS_AXES = 3
"""Axes of the `tpuv4-pod` torus: each gets a third of a chip's links (2 of the TPU v4's 6)."""


def design_cluster(acc: Accelerator, n_devices: int, preset: str = LINK_PRESET) -> Cluster:
    """`n_devices` copies of `acc` in the topology of `preset`, each level's bandwidth set by the chip's links.

    The `tpuv4-pod` preset describes TPU v4 chips (`tpuv4()`: L_0 = 6 links of b_0 = 50 GB/s per
    direction) in a 3D torus: each of its levels (one torus axis) gives a device B_l = 90 GB/s each
    way, 2 links at the 45 GB/s lower end of the 45-50 GB/s Google quotes. A design of L links of b
    bytes/s each (per direction) gets, on every level l,

        B_l(design) = B_l(preset) * (L * b) / (L_0 * b_0)      = (L / 3) * b * 0.9 on the torus

    i.e. its links spread evenly over the three axes (L / 3 per axis), each running at the
    preset's 90% of its nominal rate. Latencies and efficiencies are the preset's. A chip with the
    TPU v4's links (the TPUv4-like reference, the default of a `DesignSpace`) gets exactly the
    preset's cluster.

    Args:
        acc: the chip; its `n_links` and `link_bw_bytes_per_s` set the bandwidth.
        n_devices: devices (chips) in the cluster (the preset's sizes: at most 16, or a multiple of 16).
        preset: the topology; only `tpuv4-pod` (the preset whose chip the link scaling refers to).

    Raises:
        ConfigError: another preset, a link count that is not a multiple of the torus's 3 axes, or no
            links (or zero bandwidth) on more than one chip; a chip count the torus cannot hold.
    """
    if preset != LINK_PRESET:
        raise ConfigError(f"design_cluster: preset={preset!r} is not supported; the link scaling refers to "
                          f"{LINK_PRESET!r} (TPU v4 chips, 6 links of 50 GB/s)")
    base = cluster(preset, n_devices, device=acc)
    if n_devices == 1:
        return base
    if acc.n_links == 0 or acc.link_bw_bytes_per_s == 0:
        raise ConfigError(f"design {acc.name}: n_links={acc.n_links} x link_bw_bytes_per_s="
                          f"{acc.link_bw_bytes_per_s:g} gives no inter-chip bandwidth, so it cannot join a cluster of "
                          f"{n_devices} chips; give it links (the TPU v4 has 6 of 50e9 bytes/s)")
    if acc.n_links % TORUS_AXES:
        lo = acc.n_links - acc.n_links % TORUS_AXES
        raise ConfigError(f"design {acc.name}: n_links={acc.n_links} is not a multiple of {TORUS_AXES}: the "
                          f"{LINK_PRESET} torus gives each of its {TORUS_AXES} axes the same links; use "
                          f"{lo or TORUS_AXES} or {lo + TORUS_AXES}")
    ref = tpuv4()
    scale = (acc.n_links * acc.link_bw_bytes_per_s) / (ref.n_links * ref.link_bw_bytes_per_s)
    if scale == 1.0:
        return base
    levels = tuple(replace(lv, bw_each_way_bytes_per_s=lv.bw_each_way_bytes_per_s * scale,
                           source=f"{lv.source}; scaled by the design's links: {acc.n_links} x "
                                  f"{acc.link_bw_bytes_per_s:g} B/s over the TPU v4's {ref.n_links} x "
                                  f"{ref.link_bw_bytes_per_s:g} B/s")
                   for lv in base.levels)
    return replace(base, levels=levels)
