"""Silicon area of the PHAZE accelerator template: the 22 nm model, and an optional node scaling.

The 22 nm model is PHAZE's (Wang et al., ICML 2024; Accelergy + CACTI tables), summarised in
`reference/phaze.md`. It reproduces the `area` column of all 29,360 rows of PHAZE's
`cores.json` to better than 1e-7 relative:

    area_um2 = 760.0414 * n_tc * rows * cols           (tensor-core MACs)
             + 759.8239 * n_vc * lanes                 (vector lanes)
             + n_tc * L(local_tc_KiB) + n_vc * L(local_vc_KiB)
             + G(glb_MiB)

with `local_tc_KiB = max(rows * cols / 64, 1)` and `local_vc_KiB = max(lanes / 64, 1)`.
`L` and `G` are CACTI SRAM areas tabulated at powers of two (below). Global-buffer sizes
between table points are interpolated linearly in bytes (SRAM area is close to linear in
capacity: 0.68-0.73 mm² per MiB across the table) and sizes outside 2-128 MiB are
extrapolated with the slope of the nearest segment; the table points themselves are exact.

Every function accepts scalars or numpy arrays (broadcast together), so `DesignSpace` can
evaluate the whole space at once. Inputs are assumed validated by `Accelerator`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

import numpy as np

from coda.errors import ConfigError
from coda.units import KiB, MiB

# --- 22 nm model (PHAZE; Accelergy + CACTI 22 nm tables), areas in um^2 -----------------
MAC_AREA_UM2 = 760.0414
"""Area of one 16-bit MAC of a tensor-core array at 22 nm (PHAZE, Accelergy table)."""
VECTOR_LANE_AREA_UM2 = 759.8239
"""Area of one vector lane at 22 nm (PHAZE, Accelergy table)."""

_LOCAL_KIB = np.array([1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024], dtype=float)
_LOCAL_UM2 = np.array(
    [6133.98, 8248.43, 12610.5, 22139.9, 38583.0, 63338.4, 115579, 204764, 446565, 897890, 1634130]
)
"""Local buffer area L(KiB) at 22 nm (PHAZE, CACTI), for 1..1024 KiB."""

_GLB_MIB = np.array([2, 4, 8, 16, 32, 64, 128], dtype=float)
_GLB_UM2 = np.array([3338220, 6078640, 11952400, 23745200, 46750900, 88605700, 175423000], dtype=float)
"""Global buffer area G(MiB) at 22 nm (PHAZE, CACTI), for 2..128 MiB."""

LOCAL_BUFFER_MAX_BYTES = int(_LOCAL_KIB[-1]) * KiB
"""Largest local buffer the 22 nm table covers (1 MiB, i.e. rows*cols <= 65,536)."""

AREA_MODEL_NM = 22
"""Technology node of the PHAZE area model."""

# --- Node scaling from 22 nm (optional) --------------------------------------------------
# Logic (MACs, lanes) scales with the published logic transistor density (MTr/mm^2, Bohr's
# NAND2 + scan-flip-flop metric); SRAM (local buffers, GLB) with the high-density 6T bitcell
# area, because SRAM shrinks much less than logic from 7 nm on (TSMC: N5 gives 1.84x logic but
# only 1.35x SRAM density over N7).
LOGIC_DENSITY_MTR_PER_MM2: Mapping[int, float] = MappingProxyType({
    22: 16.5,   # Intel 22 nm (WikiChip, "22 nm lithography process", Bohr metric)
    7: 91.2,    # TSMC N7 HD cells (WikiChip, "7 nm lithography process")
    5: 171.3,   # TSMC N5 = 1.84x N7 logic density (TSMC, via WikiChip, March 2020)
    4: 181.6,   # TSMC N4-class = N5 * 1.06 (TSMC N4P press release, 26 Oct 2021: "6% density")
})
SRAM_BITCELL_UM2: Mapping[int, float] = MappingProxyType({
    22: 0.092,  # Intel 22 nm HD 6T bitcell (Intel, VLSI 2012)
    7: 0.027,   # TSMC N7 HD bitcell (TSMC, ISSCC 2017 7 nm 256 Mb SRAM)
    5: 0.021,   # TSMC N5 HD bitcell (TSMC, IEDM 2019); ~1.35x over N7 as TSMC states
    4: 0.021,   # N4 is an N5-family node and keeps the N5 bitcell
})
SUPPORTED_NODES_NM = (22, 7, 5, 4)


def local_buffer_kib(cells: np.ndarray | int) -> np.ndarray:
    """Local buffer size in KiB for a core with `cells` MACs (or lanes): max(cells / 64, 1).

    Args:
        cells: rows * cols of a tensor core, or the lanes of a vector core.

    Returns:
        KiB, as in the PHAZE template (64 cells per KiB, at least 1 KiB).
    """
    return np.maximum(np.asarray(cells, dtype=float) / 64.0, 1.0)


def local_buffer_area_um2(kib: np.ndarray | float) -> np.ndarray:
    """CACTI 22 nm area L(kib) of a local buffer, exact at the tabulated powers of two.

    Args:
        kib: buffer size in KiB, 1..1024 (powers of two in the template).

    Returns:
        Area in um^2 (log-log interpolation between table points for other sizes).
    """
    kib = np.asarray(kib, dtype=float)
    if np.any(kib < _LOCAL_KIB[0]) or np.any(kib > _LOCAL_KIB[-1]):
        raise ConfigError(
            f"local buffer of {float(np.max(kib)):g} KiB is outside the 22 nm table (1..1024 KiB); "
            "use tc_rows * tc_cols <= 65536 and vc_lanes <= 65536"
        )
    return np.exp(np.interp(np.log(kib), np.log(_LOCAL_KIB), np.log(_LOCAL_UM2)))


def glb_area_um2(glb_bytes: np.ndarray | float) -> np.ndarray:
    """CACTI 22 nm area G of the global buffer, exact at 2, 4, ..., 128 MiB.

    Linear in bytes between table points; outside 2..128 MiB, linear with the slope of the
    nearest segment (below 2 MiB: proportional to size, G(2 MiB) / 2 MiB per byte).

    Args:
        glb_bytes: global buffer capacity in bytes (> 0).

    Returns:
        Area in um^2.
    """
    mib = np.asarray(glb_bytes, dtype=float) / MiB
    inside = np.interp(mib, _GLB_MIB, _GLB_UM2)
    hi_slope = (_GLB_UM2[-1] - _GLB_UM2[-2]) / (_GLB_MIB[-1] - _GLB_MIB[-2])
    above = _GLB_UM2[-1] + (mib - _GLB_MIB[-1]) * hi_slope
    below = mib * (_GLB_UM2[0] / _GLB_MIB[0])
    return np.where(mib > _GLB_MIB[-1], above, np.where(mib < _GLB_MIB[0], below, inside))


def area_breakdown_um2(
    n_tc: np.ndarray | int,
    tc_rows: np.ndarray | int,
    tc_cols: np.ndarray | int,
    n_vc: np.ndarray | int,
    vc_lanes: np.ndarray | int,
    glb_bytes: np.ndarray | float,
) -> dict[str, np.ndarray]:
    """Area of each component at 22 nm (PHAZE model), in um^2.

    Args:
        n_tc: tensor cores. tc_rows, tc_cols: MAC array shape of one tensor core.
        n_vc: vector cores. vc_lanes: lanes per vector core. glb_bytes: global buffer bytes.

    Returns:
        `{"tc_macs", "tc_local_buffers", "vc_lanes", "vc_local_buffers", "glb"}` in um^2;
        their sum is the PHAZE `area` column.
    """
    n_tc = np.asarray(n_tc, dtype=float)
    n_vc = np.asarray(n_vc, dtype=float)
    cells = np.asarray(tc_rows, dtype=float) * np.asarray(tc_cols, dtype=float)
    lanes = np.asarray(vc_lanes, dtype=float)
    return {
        "tc_macs": MAC_AREA_UM2 * n_tc * cells,
        "tc_local_buffers": n_tc * local_buffer_area_um2(local_buffer_kib(cells)),
        "vc_lanes": VECTOR_LANE_AREA_UM2 * n_vc * lanes,
        "vc_local_buffers": n_vc * local_buffer_area_um2(local_buffer_kib(lanes)),
        "glb": glb_area_um2(glb_bytes),
    }


def area_um2(
    n_tc: np.ndarray | int,
    tc_rows: np.ndarray | int,
    tc_cols: np.ndarray | int,
    n_vc: np.ndarray | int,
    vc_lanes: np.ndarray | int,
    glb_bytes: np.ndarray | float,
) -> np.ndarray:
    """Total 22 nm area in um^2 (sum of `area_breakdown_um2`); PHAZE's `area` column."""
    parts = area_breakdown_um2(n_tc, tc_rows, tc_cols, n_vc, vc_lanes, glb_bytes)
    return np.asarray(sum(parts.values()))


def _check_node(tech_nm: int) -> None:
    if tech_nm not in SUPPORTED_NODES_NM:
        raise ConfigError(
            f"tech_nm={tech_nm} has no published density factors here; use one of "
            f"{', '.join(str(n) for n in SUPPORTED_NODES_NM)}"
        )


def logic_area_factor(tech_nm: int) -> float:
    """Logic area at `tech_nm` per unit of 22 nm logic area: density(22) / density(tech_nm)."""
    _check_node(tech_nm)
    return LOGIC_DENSITY_MTR_PER_MM2[AREA_MODEL_NM] / LOGIC_DENSITY_MTR_PER_MM2[tech_nm]


def sram_area_factor(tech_nm: int) -> float:
    """SRAM area at `tech_nm` per unit of 22 nm SRAM area: bitcell(tech_nm) / bitcell(22)."""
    _check_node(tech_nm)
    return SRAM_BITCELL_UM2[tech_nm] / SRAM_BITCELL_UM2[AREA_MODEL_NM]


def scale_breakdown(parts_um2: Mapping[str, np.ndarray], tech_nm: int) -> dict[str, np.ndarray]:
    """Scale a 22 nm `area_breakdown_um2` to `tech_nm`: logic parts by logic density, SRAM by bitcell.

    This is a core-array estimate, not a die size: it leaves out HBM PHYs, link SerDes, the
    on-chip network, controllers and white space (a real TPU v4 die is < 600 mm^2 at 7 nm;
    the TPUv4-like template scales to about 70 mm^2).
    """
    logic, sram = logic_area_factor(tech_nm), sram_area_factor(tech_nm)
    sram_parts = ("tc_local_buffers", "vc_local_buffers", "glb")
    return {k: v * (sram if k in sram_parts else logic) for k, v in parts_um2.items()}
