"""TDP model of the accelerator template: every unit busy at once, from per-operation energies.

    TDP = P_mac + P_glb + P_local + P_vector + P_hbm + P_hbm_capacity + P_links + P_static

Dynamic terms are energy per operation x operations per second at full activity (every cycle,
every MAC, every lane), which is what a thermal design power must cover. Per tensor core and
cycle the model assumes a weight-stationary systolic array (TPU MXU style):

* `rows * cols` MACs, each a `dtype` multiply plus a 32-bit accumulate;
* `rows` input operands (`dtype_bytes` each) streamed from the global buffer (GLB);
* `cols` 32-bit accumulators read and written in the core's local buffer;
* weight tiles are stationary; their loads are amortised and not counted.

Per vector core and cycle: `lanes` ALU operations (a `dtype` multiply and add, the lane's
widest operation) with two operand reads and one result write in the vector core's local
buffer. HBM is charged per bit at full bandwidth (plus the GLB writes that land the data),
and per GiB of capacity for the DRAM dies' standby and refresh power (`hbm_capacity_w`);
links per bit at full bandwidth in both directions, and leakage per mm^2 of node-scaled area
(SRAM included: the GLB's share of the static term grows with its capacity, because its area
does).

Sources of the constants (no constant is fitted to any chip's TDP):

* [J21] Jouppi et al., "Ten Lessons From Three Generations Shaped Google's TPUv4i", ISCA 2021,
  Table 2: 7 nm update of Horowitz's 45 nm energy table (Horowitz, "Computing's energy problem",
  ISSCC 2014; 45 nm: fp16 mult 1.1 pJ, fp16 add 0.4 pJ, 8 KB SRAM 64-bit read 10 pJ).
* [OC17] O'Connor et al., "Fine-Grained DRAM", MICRO 2017: HBM2 about 3.9 pJ/bit
  (also the low end of [J21]'s HBM2 250-450 pJ per 64-bit access = 3.9-7.0 pJ/bit).
* [TSMC] TSMC N5 page: ~30% lower power than N7 at the same speed; TSMC N4P press release
  (26 Oct 2021): 22% better power efficiency than N5.
* [J23] Jouppi et al., "TPU v4", ISCA 2023: TPU v4 chip + HBM power min 90 W, die < 600 mm^2.
* [MT40A] Micron MT40A2G4 DDR4-2400 8 Gb datasheet (as tabulated in gem5's
  `DDR4_2400_16x4`, src/mem/DRAMInterface.py): IDD2N 34 mA, IDD3N 38 mA, IDD5 (burst
  refresh) 250 mA at VDD 1.2 V, tRFC 350 ns for an 8 Gb die.
* [JESD235] JEDEC JESD235 HBM: average refresh interval tREFI 3.9 us (as gem5's HBM
  interfaces use; twice DDR4's 7.8 us below 85 C). HBM2/HBM2e core supply VDD is 1.2 V.

All functions take scalars or numpy arrays (broadcast), so a design space is evaluated at once.
"""

from __future__ import annotations

import numpy as np

from coda.arch import area as area_model
from coda.arch.technology import DEFAULT_TECHNOLOGY, Technology
from coda.errors import ConfigError
from coda.units import KiB

PJ = 1e-12

ACCUMULATOR_BYTES = 4
"""Width of an accumulator (fp32 or int32) in the tensor core's local buffer."""
SRAM_ACCESS_BYTES = 8
"""[J21] quotes SRAM energy per 64-bit (8-byte) access."""
DRAM_DIE_BYTES = 2**30
"""One 8 Gb DRAM die (1 GiB): the die `Technology.hbm_w_per_gib` is quoted for."""

# The energy, leakage and HBM constants, with their sources, are a `Technology`
# (`coda/arch/technology.py`); every function below takes one (default `DEFAULT_TECHNOLOGY`).
# With the defaults, HBM standby + refresh is 1.2 * (0.034 + 0.212 * 0.0897) = 0.0636 W/GiB
# (40.8 mW standby, 22.8 mW refresh): 32 GiB 2.0 W, 80 GiB 5.1 W; the HBM I/O and access energy
# is the per-bit term, charged at full bandwidth.

COMPONENTS = ("mac", "glb", "local_buffers", "vector", "hbm", "hbm_capacity", "links", "static")
"""Keys of `power_breakdown_w`, in display order."""


def energy_factor(tech_nm: int, tech: Technology = DEFAULT_TECHNOLOGY) -> float:
    """On-chip dynamic energy at `tech_nm` relative to 7 nm (1.0 at 7 nm)."""
    factors = dict(tech.energy_factor_vs_7nm)
    try:
        return factors[tech_nm]
    except KeyError:
        raise ConfigError(
            f"tech_nm={tech_nm} has no sourced energy factors in technology {tech.name!r}; use one of "
            f"{', '.join(str(n) for n in tech.nodes_nm)} (the area model itself is 22 nm)"
        ) from None


def _by_dtype(table: tuple[tuple[int, float], ...], dtype_bytes: int) -> float:
    try:
        return dict(table)[dtype_bytes]
    except KeyError:
        raise ConfigError(f"dtype_bytes={dtype_bytes} is not modelled; use 1, 2 or 4") from None


def sram_pj_per_byte(capacity_bytes: np.ndarray | float, tech_nm: int = 7,
                     tech: Technology = DEFAULT_TECHNOLOGY) -> np.ndarray:
    """Energy per byte of one SRAM access at `tech_nm`, for an array of `capacity_bytes`.

    [J21] gives 7.5, 8.5 and 14 pJ per 64-bit access for 8 KiB, 32 KiB and 1 MiB at 7 nm. The
    model interpolates linearly in log2(capacity), holds 7.5 pJ below 8 KiB (no smaller data
    point), and extrapolates above 1 MiB with the 32 KiB-1 MiB slope (+1.1 pJ per doubling:
    banked arrays whose cost grows with the wire distance to the bank), e.g. 21.7 pJ at 128 MiB.

    Args:
        capacity_bytes: SRAM capacity in bytes.
        tech_nm: technology node (7, 5 or 4).
        tech: the constants (`sram_pj_per_64b`, `energy_factor_vs_7nm`).

    Returns:
        pJ per byte.
    """
    sizes = np.array([b for b, _ in tech.sram_pj_per_64b], dtype=float)
    pj_pts = np.array([e for _, e in tech.sram_pj_per_64b], dtype=float)
    log_cap = np.log2(np.maximum(np.asarray(capacity_bytes, dtype=float), sizes[0]))
    log_pts = np.log2(sizes)
    slope = (pj_pts[-1] - pj_pts[-2]) / (log_pts[-1] - log_pts[-2])
    pj = np.where(log_cap > log_pts[-1], pj_pts[-1] + slope * (log_cap - log_pts[-1]),
                  np.interp(log_cap, log_pts, pj_pts))
    return pj / SRAM_ACCESS_BYTES * energy_factor(tech_nm, tech)


def mac_pj(dtype_bytes: int, tech_nm: int = 7, tech: Technology = DEFAULT_TECHNOLOGY) -> float:
    """Energy of one MAC: a `dtype` multiply plus a 32-bit accumulate [J21], at `tech_nm`."""
    return (_by_dtype(tech.mult_pj, dtype_bytes) + _by_dtype(tech.accumulate_pj, dtype_bytes)) \
        * energy_factor(tech_nm, tech)


def vector_op_pj(dtype_bytes: int, tech_nm: int = 7, tech: Technology = DEFAULT_TECHNOLOGY) -> float:
    """ALU energy of one vector-lane operation: a `dtype` multiply and add [J21], at `tech_nm`."""
    return (_by_dtype(tech.mult_pj, dtype_bytes) + _by_dtype(tech.add_pj, dtype_bytes)) * energy_factor(tech_nm, tech)


def hbm_capacity_w(hbm_bytes: np.ndarray | float, tech: Technology = DEFAULT_TECHNOLOGY) -> np.ndarray:
    """Standby and refresh power of `hbm_bytes` of HBM, W (`tech.hbm_w_per_gib` per GiB; 0 for 0 bytes).

    Args:
        hbm_bytes: HBM capacity in bytes.

    Returns:
        Watts, proportional to capacity (one 8 Gb die per GiB, each drawing IDD2N and refreshing
        every tREFI).
    """
    return np.asarray(hbm_bytes, dtype=float) / DRAM_DIE_BYTES * tech.hbm_w_per_gib


def power_breakdown_w(
    n_tc: np.ndarray | int,
    tc_rows: np.ndarray | int,
    tc_cols: np.ndarray | int,
    n_vc: np.ndarray | int,
    vc_lanes: np.ndarray | int,
    glb_bytes: np.ndarray | float,
    hbm_bw_bytes_per_s: np.ndarray | float,
    clock_hz: np.ndarray | float,
    dtype_bytes: int,
    link_bw_bytes_per_s: np.ndarray | float,
    n_links: np.ndarray | int,
    tech_nm: int,
    hbm_bytes: np.ndarray | float = 32 * 2**30,
    tech: Technology = DEFAULT_TECHNOLOGY,
) -> dict[str, np.ndarray]:
    """TDP components in watts at full activity (see the module docstring for the dataflow).

    Formulas (f = clock, E_* at `tech_nm`, S(c) = `sram_pj_per_byte(c)`):
        mac           = n_tc * rows * cols * f * (E_mult + E_acc)
        glb           = (n_tc * rows * dtype_bytes * f + hbm_bw) * S(glb_bytes)
        local_buffers = n_tc * cols * 2 * 4 B * f * S(local_tc) + n_vc * lanes * 3 * dtype_bytes * f * S(local_vc)
        vector        = n_vc * lanes * f * (E_mult + E_add)
        hbm           = hbm_bw * 8 * 3.9 pJ
        hbm_capacity  = hbm_bytes / GiB * 0.0636 W   (standby + refresh of the DRAM dies)
        links         = n_links * link_bw * 8 * 5 pJ   (link_bw per direction; TX of the bits
                        sent + RX of the bits received = one full link energy per bit)
        static        = 0.15 W/mm^2 * area scaled from 22 nm to `tech_nm`

    Args:
        n_tc, tc_rows, tc_cols, n_vc, vc_lanes, glb_bytes: on-chip resources (as `Accelerator`).
        hbm_bw_bytes_per_s: HBM bandwidth, bytes/s.
        clock_hz: core clock, Hz.
        dtype_bytes: operand width (1, 2 or 4).
        link_bw_bytes_per_s: bandwidth of one inter-chip link per direction, bytes/s.
        n_links: inter-chip links.
        tech_nm: technology node (7, 5 or 4).
        hbm_bytes: HBM capacity, bytes (default 32 GiB, `Accelerator`'s default).
        tech: the energy, leakage and HBM constants (`coda.arch.technology`).

    Returns:
        `{component: watts}` with the keys of `COMPONENTS`.
    """
    f = np.asarray(clock_hz, dtype=float)
    n_tc = np.asarray(n_tc, dtype=float)
    n_vc = np.asarray(n_vc, dtype=float)
    rows = np.asarray(tc_rows, dtype=float)
    cols = np.asarray(tc_cols, dtype=float)
    lanes = np.asarray(vc_lanes, dtype=float)
    hbm_bw = np.asarray(hbm_bw_bytes_per_s, dtype=float)

    local_tc_bytes = area_model.local_buffer_kib(rows * cols) * KiB
    local_vc_bytes = area_model.local_buffer_kib(lanes) * KiB
    glb_bytes_per_s = n_tc * rows * dtype_bytes * f + hbm_bw
    local_tc_bytes_per_s = n_tc * cols * 2 * ACCUMULATOR_BYTES * f
    local_vc_bytes_per_s = n_vc * lanes * 3 * dtype_bytes * f

    static_area_mm2 = sum(
        area_model.scale_breakdown(
            area_model.area_breakdown_um2(n_tc, rows, cols, n_vc, lanes, glb_bytes), tech_nm
        ).values()
    ) / 1e6
    return {
        "mac": n_tc * rows * cols * f * mac_pj(dtype_bytes, tech_nm, tech) * PJ,
        "glb": glb_bytes_per_s * sram_pj_per_byte(glb_bytes, tech_nm, tech) * PJ,
        "local_buffers": (
            local_tc_bytes_per_s * sram_pj_per_byte(local_tc_bytes, tech_nm, tech)
            + local_vc_bytes_per_s * sram_pj_per_byte(local_vc_bytes, tech_nm, tech)
        ) * PJ,
        "vector": n_vc * lanes * f * vector_op_pj(dtype_bytes, tech_nm, tech) * PJ,
        "hbm": hbm_bw * 8 * tech.hbm_pj_per_bit * PJ,
        "hbm_capacity": hbm_capacity_w(hbm_bytes, tech) * np.ones_like(hbm_bw),
        "links": np.asarray(n_links, dtype=float) * np.asarray(link_bw_bytes_per_s, dtype=float)
        * 8 * tech.link_pj_per_bit * PJ,
        "static": tech.static_w_per_mm2 * static_area_mm2,
    }


def tdp_w(*args: object, **kwargs: object) -> np.ndarray:
    """Total TDP in watts: the sum of `power_breakdown_w(*args, **kwargs)`."""
    parts = power_breakdown_w(*args, **kwargs)  # type: ignore[arg-type]
    return sum(parts[k] for k in COMPONENTS)  # type: ignore[return-value]
