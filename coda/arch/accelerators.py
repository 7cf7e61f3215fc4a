"""The PHAZE-style accelerator template, its reference instances and the TDP check.

An `Accelerator` is `n_tc` systolic tensor cores of `tc_rows x tc_cols` MACs, `n_vc` vector
cores of `vc_lanes` lanes, a local buffer per core (sizes derived as in PHAZE:
`max(rows*cols/64, 1)` KiB per tensor core, `max(lanes/64, 1)` KiB per vector core), one
global SRAM buffer (GLB) shared by all cores, HBM, and inter-chip links. Area is PHAZE's 22 nm
model (`coda.arch.area`), TDP the full-activity power model of `coda.arch.power`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from types import MappingProxyType
from typing import Any

import pandas as pd

from coda.arch import area as area_model
from coda.arch import power as power_model
from coda.arch.technology import DEFAULT_TECHNOLOGY, Technology
from coda.errors import ConfigError, UnknownNameError
from coda.fields import help_meta as _h
from coda.units import GiB, KiB, MiB, fmt_bytes

_POW2_FIELDS = ("tc_rows", "tc_cols", "vc_lanes")
_POSITIVE_INT_FIELDS = ("n_tc", "tc_rows", "tc_cols", "n_vc", "vc_lanes", "glb_bytes", "hbm_bytes")
_POSITIVE_FLOAT_FIELDS = ("hbm_bw_bytes_per_s", "clock_hz")


@dataclass(frozen=True)
class Accelerator:
    """One accelerator chip of the PHAZE template. All quantities in SI units (bytes, Hz, B/s).

    Derived quantities (properties): local buffer sizes, `peak_flops`, `vector_flops`,
    `area_mm2` (22 nm), `area_mm2_at_node`, `tdp_w`, `power_breakdown()`.
    """

    n_tc: int = field(metadata=_h("tensor cores"))
    tc_rows: int = field(metadata=_h("MAC-array rows of a tensor core (PHAZE 'width'), power of two"))
    tc_cols: int = field(metadata=_h("MAC-array columns of a tensor core (PHAZE 'depth'), power of two"))
    n_vc: int = field(metadata=_h("vector cores"))
    vc_lanes: int = field(metadata=_h("lanes per vector core (PHAZE 'width_vc'), power of two"))
    glb_bytes: int = field(metadata=_h("global SRAM buffer shared by all cores, bytes"))
    hbm_bytes: int = field(default=32 * GiB, metadata=_h("HBM capacity, bytes"))
    hbm_bw_bytes_per_s: float = field(default=1200e9, metadata=_h("HBM bandwidth, bytes/s"))
    clock_hz: float = field(default=1.05e9, metadata=_h("core clock, Hz"))
    dtype_bytes: int = field(default=2, metadata=_h("operand width of the MACs: 1, 2 or 4 bytes"))
    link_bw_bytes_per_s: float = field(default=50e9, metadata=_h("one inter-chip link, per direction, bytes/s"))
    n_links: int = field(default=6, metadata=_h("inter-chip links"))
    tech_nm: int = field(default=7, metadata=_h("technology node for power and scaled area: 7, 5 or 4"))
    name: str = field(default="", metadata=_h("display name; derived from the configuration when empty"))
    technology: Technology = field(default=DEFAULT_TECHNOLOGY,
                                   metadata=_h("energy, leakage and HBM constants of the power model, with sources"))

    def __post_init__(self) -> None:
        self._normalise_numbers()
        self._check_array_shapes()
        self._check_technology()
        if not isinstance(self.name, str):
            raise ConfigError(f"Accelerator.name={self.name!r} must be a string")
        if not self.name:
            object.__setattr__(self, "name", self.default_name())

    def _normalise_numbers(self) -> None:
        """Whole-number fields as ints and rate fields as floats, each of the right sign."""
        for name in _POSITIVE_INT_FIELDS + ("dtype_bytes", "n_links", "tech_nm"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral):
                if isinstance(value, numbers.Real) and float(value).is_integer():
                    value = int(float(value))
                else:
                    raise ConfigError(f"Accelerator.{name}={value!r} must be a whole number")
            object.__setattr__(self, name, int(value))
        for name in _POSITIVE_INT_FIELDS:
            if getattr(self, name) <= 0:
                raise ConfigError(f"Accelerator.{name}={getattr(self, name)} must be positive; use at least 1")
        for name in _POSITIVE_FLOAT_FIELDS + ("link_bw_bytes_per_s",):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Real):
                raise ConfigError(f"Accelerator.{name}={value!r} must be a number")
            object.__setattr__(self, name, float(value))
        for name in _POSITIVE_FLOAT_FIELDS:
            if not getattr(self, name) > 0:
                raise ConfigError(f"Accelerator.{name}={getattr(self, name)} must be positive")
        if self.link_bw_bytes_per_s < 0 or self.n_links < 0:
            raise ConfigError("Accelerator.n_links and link_bw_bytes_per_s must be >= 0 (0 links: a single chip)")

    def _check_array_shapes(self) -> None:
        """Power-of-two arrays and lanes within the PHAZE template's 22 nm tables."""
        for name in _POW2_FIELDS:
            value = getattr(self, name)
            if value & (value - 1):
                lo = 1 << (value.bit_length() - 1)
                raise ConfigError(
                    f"Accelerator.{name}={value} must be a power of two (PHAZE template: local buffers "
                    f"are rows*cols/64 KiB); use {lo} or {2 * lo}"
                )
        if self.tc_rows * self.tc_cols * KiB // 64 > area_model.LOCAL_BUFFER_MAX_BYTES:
            raise ConfigError(
                f"Accelerator.tc_rows*tc_cols={self.tc_rows * self.tc_cols} exceeds 65536, the largest "
                "array whose local buffer the 22 nm table covers; use a smaller array and more tensor cores"
            )
        if self.vc_lanes > 65536:
            raise ConfigError(f"Accelerator.vc_lanes={self.vc_lanes} exceeds 65536; use more vector cores instead")

    def _check_technology(self) -> None:
        """The technology is a `Technology` with energies for this operand width and node."""
        if not isinstance(self.technology, Technology):
            raise ConfigError(f"Accelerator.technology must be a coda.arch.technology.Technology, got "
                              f"{type(self.technology).__name__} (load one with Technology.from_json)")
        if self.dtype_bytes not in dict(self.technology.mult_pj):
            raise ConfigError(f"Accelerator.dtype_bytes={self.dtype_bytes} is not modelled; use 1, 2 or 4")
        if self.tech_nm not in self.technology.nodes_nm:
            raise ConfigError(
                f"Accelerator.tech_nm={self.tech_nm} has no sourced energy factors in technology "
                f"{self.technology.name!r}; use {_one_of(self.technology.nodes_nm)} "
                "(area_mm2 is always PHAZE's 22 nm model)"
            )

    def default_name(self) -> str:
        """A name derived from the on-chip configuration, e.g. `8x128x128tc-2x128vc-128MiB`."""
        glb = fmt_bytes(self.glb_bytes).replace(" ", "")
        return f"{self.n_tc}x{self.tc_rows}x{self.tc_cols}tc-{self.n_vc}x{self.vc_lanes}vc-{glb}"

    # --- derived sizes and throughput ---------------------------------------------------
    @property
    def local_tc_bytes(self) -> int:
        """Local buffer of one tensor core: max(rows*cols/64, 1) KiB (PHAZE template)."""
        return max(self.tc_rows * self.tc_cols // 64, 1) * KiB

    @property
    def local_vc_bytes(self) -> int:
        """Local buffer of one vector core: max(lanes/64, 1) KiB (PHAZE template)."""
        return max(self.vc_lanes // 64, 1) * KiB

    @property
    def sram_bytes(self) -> int:
        """All on-chip SRAM: GLB plus every local buffer."""
        return self.glb_bytes + self.n_tc * self.local_tc_bytes + self.n_vc * self.local_vc_bytes

    @property
    def n_macs(self) -> int:
        """MACs over all tensor cores: n_tc * rows * cols."""
        return self.n_tc * self.tc_rows * self.tc_cols

    @property
    def peak_flops(self) -> float:
        """Tensor-core peak: 2 FLOP per MAC per cycle, 2 * n_tc * rows * cols * clock (FLOP/s)."""
        return 2.0 * self.n_macs * self.clock_hz

    @property
    def vector_flops(self) -> float:
        """Vector peak: lanes * n_vc * clock (FLOP/s), 1 FLOP per lane per cycle.

        One, not two: PHAZE's vector cores run elementwise operators (add, multiply, GELU,
        softmax and norm steps) at one operation per lane per cycle; they are not FMA-counted.
        """
        return float(self.vc_lanes * self.n_vc) * self.clock_hz

    # --- area -------------------------------------------------------------------------
    def area_breakdown_mm2(self, at_node: bool = False) -> dict[str, float]:
        """Area per component in mm^2: 22 nm PHAZE model, or scaled to `tech_nm` if `at_node`."""
        parts = area_model.area_breakdown_um2(
            self.n_tc, self.tc_rows, self.tc_cols, self.n_vc, self.vc_lanes, self.glb_bytes
        )
        if at_node:
            parts = area_model.scale_breakdown(parts, self.tech_nm)
        return {k: float(v) / 1e6 for k, v in parts.items()}

    @property
    def area_mm2(self) -> float:
        """Die area of the template in the 22 nm PHAZE model (mm^2); the design-space budget unit."""
        return sum(self.area_breakdown_mm2().values())

    @property
    def area_mm2_at_node(self) -> float:
        """Area scaled to `tech_nm` (logic by density, SRAM by bitcell); a core-array estimate."""
        return sum(self.area_breakdown_mm2(at_node=True).values())

    # --- power ------------------------------------------------------------------------
    def power_breakdown(self) -> dict[str, float]:
        """TDP components in watts (`coda.arch.power.COMPONENTS`), at full activity."""
        parts = power_model.power_breakdown_w(
            self.n_tc, self.tc_rows, self.tc_cols, self.n_vc, self.vc_lanes, self.glb_bytes,
            self.hbm_bw_bytes_per_s, self.clock_hz, self.dtype_bytes, self.link_bw_bytes_per_s,
            self.n_links, self.tech_nm, hbm_bytes=self.hbm_bytes, tech=self.technology,
        )
        return {k: float(parts[k]) for k in power_model.COMPONENTS}

    @property
    def tdp_w(self) -> float:
        """Thermal design power in watts: sum of `power_breakdown()`."""
        return sum(self.power_breakdown().values())

    @property
    def peak_flops_per_w(self) -> float:
        """Tensor peak per TDP watt (FLOP/s/W)."""
        return self.peak_flops / self.tdp_w

    def summary(self) -> dict[str, Any]:
        """Fields plus derived quantities, SI units, for tables and JSON."""
        out = asdict(self)
        out.update(
            technology=self.technology.name, local_tc_bytes=self.local_tc_bytes, local_vc_bytes=self.local_vc_bytes,
            sram_bytes=self.sram_bytes, peak_flops=self.peak_flops, vector_flops=self.vector_flops,
            area_mm2=self.area_mm2, area_mm2_at_node=self.area_mm2_at_node, tdp_w=self.tdp_w,
            peak_flops_per_w=self.peak_flops_per_w,
        )
        return out


def _one_of(values: tuple[int, ...]) -> str:
    """`7, 5 or 4`."""
    words = [str(v) for v in values]
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} or {words[-1]}"


# --- reference chips -------------------------------------------------------------------
def tpuv4_like() -> Accelerator:
    """The TPUv4-like reference chip of PHAZE: 8 x 128x128 tensor cores, 2 x 128-lane vector cores.

    128 MiB GLB (TPU v4 CMEM), 32 GiB HBM2 at 1200 GB/s, 1.05 GHz, bf16 (2 bytes), 6 ICI links
    at 50 GB/s per direction, 7 nm (Google Cloud TPU v4 docs; Jouppi et al., ISCA 2023).
    Peak 2 * 8 * 16384 * 1.05e9 = 275.3e12 FLOP/s; 22 nm area 278.83 mm^2 (PHAZE).
    """
    return Accelerator(
        n_tc=8, tc_rows=128, tc_cols=128, n_vc=2, vc_lanes=128, glb_bytes=128 * MiB,
        hbm_bytes=32 * GiB, hbm_bw_bytes_per_s=1200e9, clock_hz=1.05e9, dtype_bytes=2,
        link_bw_bytes_per_s=50e9, n_links=6, tech_nm=7, name="tpuv4-like",
    )


TPUV4_CMEM_BYTES = 128 * MiB
"""TPU v4 CMEM, the on-chip memory shared by both TensorCores (Jouppi et al., ISCA 2023, sec. 2 and Table 1)."""
TPUV4_VMEM_BYTES = 16 * MiB
"""TPU v4 VMEM per TensorCore, the vector memory the MXUs and VPU are fed from (ISCA 2023, Table 1: 2 x 16 MiB)."""
TPUV4_VPU_LANES = 128
TPUV4_VPU_SUBLANES = 8
"""TPU v2/v3/v4 vector unit: 128 lanes x 8 sublanes of 32-bit elements per TensorCore (Norrie et al.,
"The Design Process for Google's Training Chips: TPUv2 and TPUv3", IEEE Micro 41(2), 2021, sec.
"Vector unit"; v4 keeps the TensorCore microarchitecture, Jouppi et al., ISCA 2023)."""


def tpuv4() -> Accelerator:
    """A faithful TPU v4 chip in the template (beside PHAZE's simplified `tpuv4_like`).

    Each field and where it comes from (Jouppi et al., "TPU v4", ISCA 2023 [J23]; Google Cloud
    TPU v4 documentation [GC]; Norrie et al., IEEE Micro 2021 [N21] for the TensorCore
    microarchitecture v4 shares with v2/v3):

    - tensor cores: 2 TensorCores x 4 MXUs = 8 systolic arrays of 128 x 128 bf16 MACs [J23, GC];
      peak 2 * 8 * 16384 * 1.05e9 = 275.3e12 FLOP/s [GC: 275 TFLOP/s bf16].
    - vector cores: one VPU per TensorCore, `n_vc = 2`, of 128 lanes x 8 sublanes = 1024
      element slots (`vc_lanes = 1024`) [N21], 8x the 2 x 128 lanes of `tpuv4_like`. [N21]
      describes two vector ALUs per slot (VLIW); the template issues one operation per lane per
      cycle, so the second ALU is not expressed: a streamed elementwise op is limited by the
      vector load/store slots, not the ALUs, and one operation per slot is the sustained rate.
    - on-chip memory: CMEM 128 MiB shared by both TensorCores plus VMEM 16 MiB per TensorCore
      [J23]. The template has one global buffer and fixed local buffers (PHAZE's rows*cols/64
      KiB per tensor core, lanes/64 KiB per vector core), so VMEM cannot be a separate level:
      the GLB is all on-chip SRAM (CMEM + 2 x VMEM = 160 MiB) minus the template's local
      buffers, 157.97 MiB, as `a100_like` does for L2 + SMEM + registers. This is right for
      the HBM traffic a tile sees (CMEM and VMEM both keep data off HBM) and overstates the
      energy of an operand read (charged at a 158 MiB array's, where the MXUs read the 16 MiB
      VMEM). Vector and scalar register files, SMEM and the SparseCores' memories are left out.
    - HBM: 32 GiB HBM2 at 1200 GB/s [GC, J23].
    - clock: 1050 MHz [J23, GC]; bf16 operands (`dtype_bytes = 2`); TSMC 7 nm [J23].
    - ICI: 6 links per chip [J23, GC] at 50 GB/s per direction, the figure `tpuv4_like` uses
      (the `tpuv4-pod` cluster preset takes the lower end of 45-50 GB/s for its collectives).

    Not in the template: the 4 SparseCores (embedding lookups, about 5% of die area and power
    [J23]), the scalar units, PCIe, and the real die's < 600 mm^2 (the template's area is
    PHAZE's 22 nm core-array model).
    """
    n_tc, rows, cols = 8, 128, 128
    n_vc, lanes = 2, TPUV4_VPU_LANES * TPUV4_VPU_SUBLANES
    sram = TPUV4_CMEM_BYTES + 2 * TPUV4_VMEM_BYTES
    return Accelerator(
        n_tc=n_tc, tc_rows=rows, tc_cols=cols, n_vc=n_vc, vc_lanes=lanes,
        glb_bytes=_sram_matched_glb(sram, n_tc, rows * cols, n_vc, lanes),
        hbm_bytes=32 * GiB, hbm_bw_bytes_per_s=1200e9, clock_hz=1.05e9, dtype_bytes=2,
        link_bw_bytes_per_s=50e9, n_links=6, tech_nm=7, name="tpuv4",
    )


TPUV5E_VMEM_BYTES = 128 * MiB
"""TPU v5e VMEM, the on-chip scratchpad of its one TensorCore (Austin et al., "How to Scale Your Model",
Google DeepMind 2025, part 2 "How to Think About TPUs": "128 MiB on TPU v5e")."""
TPUV5E_CLOCK_HZ = 1.5e9
"""TPU v5e clock (Austin et al. 2025, part 2: "5e13 bf16 FLOPs/s per MXU at 1.5GHz on TPU v5e"); it agrees
with Google's 197 TFLOP/s: 197e12 / (2 FLOP * 4 MXUs * 128 * 128) = 1.503e9 Hz."""


def tpuv5e() -> Accelerator:
    """A TPU v5e-like chip in the template: one TensorCore of 4 MXUs, 16 GiB HBM2e, 4 ICI links.

    Each field and where it comes from (Google Cloud TPU v5e documentation, "System architecture"
    [GC]; Austin et al., "How to Scale Your Model", Google DeepMind 2025, part 2 [SB]):

    - tensor cores: one TensorCore with four MXUs [GC] of 128 x 128 bf16 MACs ([SB], appendix B:
      every generation before v6e uses 128 x 128) = `n_tc = 4`; peak
      2 * 4 * 16384 * 1.5e9 = 196.6e12 FLOP/s [GC: 197 TFLOP/s bf16].
    - clock: 1.5 GHz [SB]; derived check: 197e12 / (2 * 4 * 16384) = 1.503 GHz.
    - vector core: one VPU [GC: "a vector unit"] of 8 sublanes x 128 lanes ([SB], appendix C, the
      VPU's (8, 128) shape) = `n_vc = 1`, `vc_lanes = 1024`; one operation per slot per cycle,
      as `tpuv4()` (the second ALU per slot is not expressed).
    - on-chip memory: VMEM 128 MiB [SB]; the GLB is that minus the template's local buffers
      (126.98 MiB). Google publishes no CMEM for v5e, so none is added. Vector registers, SMEM
      and the scalar unit are left out.
    - HBM: 16 GiB [SB: "16GiB of HBM"; GC: 16 GB] at 819 GB/s [GC] (HBM2e).
    - ICI: 4 ports per chip [GC], 400 GB/s bidirectional per chip [GC] = 4 links x 50 GB/s per
      direction ([SB]'s table gives 45 GB/s one-way per link, as for TPU v4). The pod is a 16 x 16
      2D torus of 256 chips [GC], not the `tpuv4-pod` 3D torus.
    - operands: bf16 (`dtype_bytes = 2`).
    - node: **not published**. `tech_nm = 7` is an assumption (TPU v4's node [J23]), marked: the
      TDP this preset reports is the power model at 7 nm, not a checked figure.
    - power: **not published** (no TDP or measured power for v5e that we could find), so the
      preset has no reference power and no TDP check.
    """
    n_tc, rows, cols = 4, 128, 128
    n_vc, lanes = 1, TPUV4_VPU_LANES * TPUV4_VPU_SUBLANES
    return Accelerator(
        n_tc=n_tc, tc_rows=rows, tc_cols=cols, n_vc=n_vc, vc_lanes=lanes,
        glb_bytes=_sram_matched_glb(TPUV5E_VMEM_BYTES, n_tc, rows * cols, n_vc, lanes),
        hbm_bytes=16 * GiB, hbm_bw_bytes_per_s=819e9, clock_hz=TPUV5E_CLOCK_HZ, dtype_bytes=2,
        link_bw_bytes_per_s=50e9, n_links=4, tech_nm=7, name="tpuv5e",
    )


def _sram_matched_glb(total_sram_bytes: int, n_tc: int, cells: int, n_vc: int, lanes: int) -> int:
    """GLB size that makes GLB + template local buffers equal a chip's total on-chip SRAM."""
    local = n_tc * max(cells // 64, 1) * KiB + n_vc * max(lanes // 64, 1) * KiB
    return total_sram_bytes - local


def a100_like() -> Accelerator:
    """NVIDIA A100 SXM4 80GB in the template, for checking the power model (not the GPU catalog).

    108 SMs x 4 tensor cores = 432 tensor cores of 16x16 (256 dense FP16 FMA per tensor core per
    clock) at 1.41 GHz: 2 * 432 * 256 * 1.41e9 = 311.9e12 FLOP/s (NVIDIA: 312). 432 vector
    cores of 16 lanes = the 6912 FP32 CUDA cores. On-chip SRAM as the chip's: 40 MiB L2 +
    108 x (256 KiB registers + 192 KiB L1/shared) = 87.25 MiB, of which the template's local
    buffers take 2.1 MiB and the GLB the rest. HBM2e 80 GiB at 2039 GB/s; NVLink 3: 12 links x
    25 GB/s per direction (600 GB/s bidirectional); TSMC N7. Sources: NVIDIA A100 whitepaper
    and datasheet (`reference/hardware.md`). The array shape is chosen to match MACs per clock;
    NVIDIA does not publish it.
    """
    n_tc, rows, cols, n_vc, lanes = 432, 16, 16, 432, 16
    sram = 40 * MiB + 108 * (256 + 192) * KiB
    return Accelerator(
        n_tc=n_tc, tc_rows=rows, tc_cols=cols, n_vc=n_vc, vc_lanes=lanes,
        glb_bytes=_sram_matched_glb(sram, n_tc, rows * cols, n_vc, lanes),
        hbm_bytes=80 * GiB, hbm_bw_bytes_per_s=2039e9, clock_hz=1.41e9, dtype_bytes=2,
        link_bw_bytes_per_s=25e9, n_links=12, tech_nm=7, name="a100-like",
    )


def h100_like() -> Accelerator:
    """NVIDIA H100 SXM5 in the template, for checking the power model (not the GPU catalog).

    132 SMs x 4 tensor cores = 528 tensor cores of 16x32 (512 dense FP16 FMA per tensor core per
    clock, twice A100's) at 1.83 GHz: 2 * 528 * 512 * 1.83e9 = 989.4e12 FLOP/s. 528 vector cores
    of 32 lanes = the 16896 FP32 cores. On-chip SRAM: 50 MiB L2 + 132 x (256 KiB registers +
    256 KiB L1/shared) = 116 MiB (GLB = that minus the template's local buffers). HBM3 80 GiB at
    3352 GB/s; NVLink 4: 18 links x 25 GB/s per direction (900 GB/s bidirectional); TSMC 4N,
    modelled as 4 nm. Sources: NVIDIA H100 whitepaper v1.04 (`reference/hardware.md`).
    """
    n_tc, rows, cols, n_vc, lanes = 528, 16, 32, 528, 32
    sram = 50 * MiB + 132 * (256 + 256) * KiB
    return Accelerator(
        n_tc=n_tc, tc_rows=rows, tc_cols=cols, n_vc=n_vc, vc_lanes=lanes,
        glb_bytes=_sram_matched_glb(sram, n_tc, rows * cols, n_vc, lanes),
        hbm_bytes=80 * GiB, hbm_bw_bytes_per_s=3352e9, clock_hz=1.83e9, dtype_bytes=2,
        link_bw_bytes_per_s=25e9, n_links=18, tech_nm=4, name="h100-like",
    )


PRESETS: Mapping[str, Callable[[], Accelerator]] = MappingProxyType({
    "tpuv4-like": tpuv4_like,
    "tpuv4": tpuv4,
    "tpuv5e": tpuv5e,
    "a100-like": a100_like,
    "h100-like": h100_like,
})
"""Named reference accelerators (read-only)."""

REFERENCE_POWER_W: Mapping[str, tuple[float, str]] = MappingProxyType({
    "tpuv4-like": (192.0, "TPU v4 measured max power, chip + HBM (Jouppi et al., ISCA 2023, Table 4)"),
    "tpuv4": (192.0, "TPU v4 measured max power, chip + HBM (Jouppi et al., ISCA 2023, Table 4)"),
    "a100-like": (400.0, "A100 SXM4 TDP (NVIDIA A100 datasheet)"),
    "h100-like": (700.0, "H100 SXM5 TDP (NVIDIA H100 whitepaper v1.04)"),
})
"""Published power of the chip each preset describes, with its source (`tpuv5e` has none: Google publishes
no power for TPU v5e)."""
NO_PUBLISHED_POWER = "no published power"
"""`tdp_comparison`'s source for a preset without a published power figure."""


def accelerator_preset(name: str) -> Accelerator:
    """The reference accelerator called `name` (`tpuv4-like`, `tpuv4`, `tpuv5e`, `a100-like`, `h100-like`)."""
    try:
        return PRESETS[name.lower()]()
    except KeyError:
        raise UnknownNameError("accelerator", name, PRESETS) from None


def tdp_comparison() -> pd.DataFrame:
    """Model TDP of each preset against its published power, with the component breakdown (W).

    Returns:
        One row per preset: name, tech_nm, peak_flops, tdp_w, reference_w, error (relative),
        then one column per power component, and the reference's source. A preset without a
        published power (`tpuv5e`) has NaN reference_w and error and source `NO_PUBLISHED_POWER`.
    """
    rows = []
    for name in PRESETS:
        acc = accelerator_preset(name)
        ref_w, source = REFERENCE_POWER_W.get(name, (math.nan, NO_PUBLISHED_POWER))
        parts = acc.power_breakdown()
        rows.append({
            "name": name, "tech_nm": acc.tech_nm, "peak_flops": acc.peak_flops, "tdp_w": acc.tdp_w,
            "reference_w": ref_w, "error": acc.tdp_w / ref_w - 1.0, **parts, "source": source,
        })
    return pd.DataFrame(rows)
