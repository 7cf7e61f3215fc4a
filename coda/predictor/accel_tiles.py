"""Analytical tile model of the PHAZE accelerator template (no fitted parameters).

The template (Wang et al., "Integrated Hardware Architecture and Device Placement Search",
ICML 2024) has `n_tc` systolic tensor cores of `R x C` MACs, `n_vc` vector cores of `L` lanes,
one global SRAM buffer (GLB) of `G` bytes and HBM at `W` bytes/s, all clocked at `f` Hz.

Tensor ops (matmul, attention, attention_bwd) run on the tensor cores as GEMMs
`C[M x N] = A[M x K] @ B[K x N]`, `batch` times, mapped **weight-stationary** (WS): a `K x N`
tile of the stationary operand sits in the array while the rows of the other stream through.
WS is the dataflow of the TPU MXU (Jouppi et al., ISCA 2017), which the reference chip
`tpuv4_like()` models, and it suits LLM GEMMs, whose token dimension is long. Timing follows
SCALE-Sim (Samajdar et al., ISPASS 2020, sec. III): a fold that maps `Sr` reduction rows and
`Sc` columns and streams `T` rows costs `2*Sr + Sc + T - 2` cycles (`Sr` to load the weights,
`Sr + Sc - 2` to fill and drain the skewed pipeline, `T` to stream). See `gemm_mapping`.

Fused attention runs as its GEMMs per (batch, K/V head): the `g = heads / kv_heads` query heads
that share a K/V head (grouped-query attention; `g = 1` for multi-head) stream through the same
stationary K or V tile, QK^T `[g*q x d] @ [d x kv]` and PV `[g*q x kv] @ [kv x d]`, as TPU
decode kernels pack them (JAX's Pallas ragged paged attention, commit 4b49c03, 2025: "grouping
shared q heads for MXU in decode", 8x MXU utilisation for GQA; without it a decode step streams
one row per head); a causal kernel skips the `FA_BLOCK x FA_BLOCK` score tiles that are
fully masked (`causal_fraction`, about half), and the backward does 2.5x the forward's GEMM
work (five GEMMs instead of two; FlashAttention-2, Dao 2023). Because `op.flops` counts the
full score matrix, causal attention can be faster than `roofline_time_s`; it is never faster
than the roofline of the FLOPs it executes (`details["executed_flops"]`). The softmax inside
the fused kernel is assumed to overlap with the GEMMs.

Vector ops take `ceil(n / (L * P)) * flops_per_element` cycles on `P` cores (1 operation per
lane per cycle, `Accelerator.vector_flops`); an embedding is a gather moved by DMA, so it
costs only its HBM bytes.

Memory: HBM traffic is the compulsory `op.bytes` when the working set fits the GLB, otherwise
that of a blocked loop nest sized to the GLB (`gemm_hbm_bytes`, `attention_hbm_bytes`), so a
smaller GLB moves more bytes. `memory_s = hbm_bytes / (W * HBM_STREAM_FRACTION)`: no memory
system streams at its datasheet bandwidth, and the only measured fractions at hand are the
GPUs' copy kernels (A100 79%, H100 87%; their mean is used, as for GPUs without a measurement).
With double buffering, transfers overlap compute: `latency = max(compute_s, memory_s)`, and no
launch overhead (the cores are driven by a static schedule, as in PHAZE's ILP). The GLB->core
bandwidth is not modelled (no sourced figure for the template). The PHAZE local buffer
(`R*C/64` KiB = 16 B per MAC) always holds a double-buffered weight tile (`2*e` B per MAC, `e`
<= 4 B), so it never constrains the mapping and is not a parameter of the model.

Every hardware resource enters only through a minimum over mappings that grows with it, or
through a ceiling that shrinks with it, so latency never increases when a resource grows.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from coda.arch.accelerators import Accelerator
from coda.errors import ConfigError
from coda.models.graph import OpGraph
from coda.models.ops import Op, window_kv_rows
from coda.predictor.base import BasePredictor, Estimate, OpLatency, reject_collective
from coda.predictor.gpu_tiles import DEFAULT_STREAM_FRACTION
from coda.predictor.roofline import TENSOR_KINDS
from coda.units import BYTES_PER_ELEMENT

ACC_BYTES = 4
HBM_STREAM_FRACTION = DEFAULT_STREAM_FRACTION
"""Fraction of the datasheet HBM bandwidth a streaming kernel reaches: the mean of the measured
A100-80GB (79%) and H100 (87%) copy bandwidths (Azure AI-benchmarking-guide, `gpu_tiles`)."""
"""Bytes of a partial sum held in the GLB (fp32 accumulation, as the TPU MXU does)."""
PANEL_DEPTH = 128
"""Reduction depth (elements) of the double-buffered A and B panels of a blocked GEMM."""
FA_BLOCK = 128
"""FlashAttention block rows (FlashAttention-2 uses 128 for head dim 128; Dao 2023, sec. 3.3)."""
SPLIT_CAP = 16
"""The mapper splits the streamed dimension until there are >= SPLIT_CAP tiles per core
(wave quantisation then wastes <= 1/16); the candidate set grows with the core count."""


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def core_type(op: Op) -> str:
    """``"tensor"`` for matmul / attention / attention_bwd, ``"vector"`` for the other kinds.

    Raises:
        ConfigError: for a collective (a network op, timed by `Cluster.collective_time`).
    """
    reject_collective(op)
    return "tensor" if op.kind in TENSOR_KINDS else "vector"


class GemmMapping(NamedTuple):
    """The best weight-stationary mapping of a batched GEMM onto `P` systolic cores.

    Attributes:
        cycles: total cycles, `waves * tile_cycles`.
        rows: array rows used per fold, `min(R, K)` (reduction dimension).
        cols: array columns used per tile, `c` (output dimension of the stationary operand).
        stream: rows streamed per fold, `T`.
        tiles: independent output tiles, `batch * ceil(N_s / c) * s`.
        waves: `ceil(tiles / P)`.
        tile_cycles: cycles of one tile, `ceil(K/R) * (T + c - 2) + 2*K`.
        stationary: ``"B"`` (weights stationary, rows of A stream) or ``"A"`` (transposed).
    """

    cycles: int
    rows: int
    cols: int
    stream: int
    tiles: int
    waves: int
    tile_cycles: int
    stationary: str


def gemm_mapping(batch: int, m: int, k: int, n: int, rows: int, cols: int, n_cores: int) -> GemmMapping:
    """Fastest WS mapping of `batch` GEMMs `[m x k] @ [k x n]` on `n_cores` arrays of `rows x cols`.

    A tile is one output block `T x c`: the core holds a `K x c` slice of the stationary operand
    in `ceil(K/R)` folds of `r_i <= R` rows (`sum r_i = K`) and streams `T` rows through each.
    SCALE-Sim (ISPASS 2020, eq. for `tau`) gives a fold `2*r_i + c + T - 2` cycles, so

        tile_cycles = ceil(K/R) * (T + c - 2) + 2*K.

    A fold using `c < C` columns costs as a `r_i x c` array (operands enter and leave at the
    edges of the used sub-array). Tiles are independent (no split-K, so no inter-core
    reduction) and run in `waves = ceil(tiles / P)`; partial tiles waste array cells
    (quantisation). The mapper minimises `waves * tile_cycles` over:
      - which operand is stationary: B (stream `S = m` rows of A, `N_s = n`) or A (compute
        `C^T = B^T A^T`: stream `S = n`, `N_s = m`; this is what keeps a GEMV memory-bound);
      - the used width `c = min(2^i, N_s)` for every `2^i <= C`;
      - the split `s = 2^j` of the streamed dimension, `T = ceil(S/s)`, for `s <= S` until
        `tiles >= SPLIT_CAP * P`.
    Each candidate set grows with `C` and `P` and each candidate's time falls with `R`, so the
    result never increases when `R`, `C` or `P` grows.

    Args:
        batch, m, k, n: GEMM shape (elements).
        rows, cols: MAC-array rows `R` (reduction) and columns `C`.
        n_cores: tensor cores `P` used.

    Returns:
        The mapping with the fewest cycles.
    """
    best: tuple[int, int, int, int, int, int, str] | None = None
    for stationary, s_dim, n_dim in (("B", m, n), ("A", n, m)):
        if stationary == "A" and m == n:
            break
        n_folds = -(-k // rows)
        cu = min(cols, n_dim)  # widest used width first; then every smaller power of two
        while True:
            base = batch * -(-n_dim // cu)
            # Lower bound over all splits s (waves >= base*s/P, T >= S/s, waves >= 1): skip cu if it cannot win.
            if best is None or base * s_dim * n_folds / n_cores + n_folds * cu < best[0]:
                s = 1
                while True:
                    t = -(-s_dim // s)
                    tiles = base * s
                    waves = -(-tiles // n_cores)
                    tile_cycles = n_folds * (t + cu - 2) + 2 * k
                    if best is None or waves * tile_cycles < best[0]:
                        best = (waves * tile_cycles, cu, t, tiles, waves, tile_cycles, stationary)
                    if s >= s_dim or tiles >= SPLIT_CAP * n_cores:
                        break
                    s *= 2
            if cu == 1:
                break
            cu = 1 << ((cu - 1).bit_length() - 1)  # largest power of two below cu
    assert best is not None
    cycles, cu, t, tiles, waves, tile_cycles, stationary = best
    return GemmMapping(cycles, min(rows, k), cu, t, tiles, waves, tile_cycles, stationary)


def gemm_hbm_bytes(op: Op, glb_bytes: int) -> tuple[float, tuple[int, int]]:
    """HBM bytes of a (batched) matmul with a GLB of `glb_bytes`, and the GLB block `(mb, nb)`.

    Per batch item (`e` bytes per element, `G = glb_bytes`):
      - compulsory `op.bytes` if A, B and C fit (`e*(MK + KN + MN) <= G`), or if one operand
        stays resident while the other streams through in double-buffered rows
        (`e*KN + 2e*(K + N) <= G`, or `e*MK + 2e*(K + M) <= G`);
      - otherwise the classic blocked GEMM (Hong & Kung 1981; Goto & van de Geijn, ACM TOMS
        2008): an `mb x nb` block of fp32 partial sums stays in the GLB while panels of depth
        `kb = min(K, PANEL_DEPTH)` of A and B stream in, double-buffered:
        `ACC*mb*nb + 2*e*kb*(mb + nb) <= G`. A is read `ceil(N/nb)` times and B `ceil(M/mb)`
        times: `bytes = op.bytes + e*(MK*(ceil(N/nb) - 1) + KN*(ceil(M/mb) - 1))`, minimised
        over `mb = min(2^i, M)` with the widest `nb` that fits (a set that grows with `G`).
    """
    d = op.dims
    b, m, k, n = d["batch"], d["m"], d["k"], d["n"]
    e = BYTES_PER_ELEMENT[op.dtype]
    g = glb_bytes
    if e * (m * k + k * n + m * n) <= g or e * k * n + 2 * e * (k + n) <= g or e * m * k + 2 * e * (k + m) <= g:
        return op.bytes, (m, n)
    kb = min(k, PANEL_DEPTH)
    mk, kn = m * k, k * n
    best, block = e * (mk * (n - 1) + kn * (m - 1)), (1, 1)  # 1 x 1 blocks: the worst case
    # Descending over mb = min(2^i, M) that leave room for a panel; the B re-reads
    # KN*(ceil(M/mb) - 1) only grow as mb shrinks, so stop once they alone reach the best.
    mb = 1 << max(0, (min(m, max(1, (g - 1) // (2 * e * kb))) - 1).bit_length())
    while mb >= 1:
        mbe = min(mb, m)
        b_extra = e * kn * (_cdiv(m, mbe) - 1)
        if b_extra >= best:
            break
        avail = g - 2 * e * kb * mbe
        if avail > 0:
            nb = min(n, avail // (ACC_BYTES * mbe + 2 * e * kb))
            if nb >= 1:
                extra = e * mk * (_cdiv(n, nb) - 1) + b_extra
                if extra < best:
                    best, block = extra, (mbe, nb)
        mb //= 2
    return op.bytes + b * best, block


def _reread_bytes(stat_rows: int, stat_row_bytes: int, streamed: int, reserve: int, glb: int) -> int:
    """Extra bytes when `streamed` bytes must be re-read once per GLB-sized block of a stationary operand.

    Zero if the streamed operand stays resident (`streamed + reserve <= G`) or the whole
    stationary operand fits (`stat_rows * stat_row_bytes + reserve <= G`); else
    `(ceil(stat_rows / fit) - 1) * streamed`, `fit = max(1, (G - reserve) // stat_row_bytes)`.
    """
    if streamed + reserve <= glb:
        return 0
    fit = max(1, (glb - reserve) // stat_row_bytes)
    return 0 if fit >= stat_rows else (_cdiv(stat_rows, fit) - 1) * streamed


def attention_hbm_bytes(op: Op, glb_bytes: int) -> float:
    """HBM bytes of fused attention (FlashAttention-2, Dao 2023, algorithms 1 and 2) with a GLB.

    Per (batch, kv head) group, `rows = (heads / kv_heads) * q_len` queries share one K/V head
    of `kv_len` rows of width `d`:
      - forward: Q rows and their fp32 output accumulators (`d*(e + 4)` B per row) are
        stationary, K and V (`2*kv_len*d*e` B) stream in `FA_BLOCK`-row blocks; they are
        re-read once per GLB-sized Q block unless they fit the GLB;
      - backward: K, V and their fp32 gradients (`d*(2e + 8)` B per row) are stationary, and
        Q, O, dO and dQ (`4*rows*d*e` B) are re-read once per GLB-sized K/V block.
    `bytes = op.bytes + batch * kv_heads * _reread_bytes(...)`.
    """
    d = op.dims
    hd, e = d["head_dim"], BYTES_PER_ELEMENT[op.dtype]
    rows, kv = d["heads"] // d["kv_heads"] * d["q_len"], window_kv_rows(d["q_len"], d["kv_len"], d.get("window"))
    kvw = d.get("kv_width", 2 * hd)  # key + value elements per position (one latent for absorbed MLA)
    if op.kind == "attention":
        extra = _reread_bytes(rows, hd * (e + ACC_BYTES), kv * kvw * e, 2 * FA_BLOCK * kvw * e, glb_bytes)
    else:
        extra = _reread_bytes(kv, hd * (2 * e + 2 * ACC_BYTES), 4 * rows * hd * e, 8 * FA_BLOCK * hd * e, glb_bytes)
    return op.bytes + d["batch"] * d["kv_heads"] * extra


def causal_fraction(q_len: int, kv_len: int, block: int = FA_BLOCK, window: int | None = None) -> float:
    """Fraction of `block x block` score tiles a causal kernel computes (the rest are fully masked).

    Query block `j` (rows `j*block ..`) at key offset `o = kv_len - q_len` needs
    `min(j + 1 + ceil(o/block), ceil(kv_len/block))` key blocks; the last (partial) query block
    needs all `ceil(kv_len/block)`. Diagonal blocks are computed in full and masked. Summed:
    `kept = nq(nq-1)/2 + (nq-1)*ceil(o/block) + nk` of `nq * nk` (`nq, nk` = query / key
    blocks); `q_len == kv_len = 2048` gives 136/256 = 0.53. Decoding (`q_len = 1`) gives 1.
    Under a sliding window of W positions, query block `j` also skips the key blocks wholly
    before `o + j*block - W + 1` (its first query's earliest key). Returns 1 when
    `q_len > kv_len` (not produced by the graph builders).
    """
    if q_len > kv_len:
        return 1.0
    nq, nk = _cdiv(q_len, block), _cdiv(kv_len, block)
    if window is None:
        kept = nq * (nq - 1) // 2 + (nq - 1) * _cdiv(kv_len - q_len, block) + nk
        return min(kept, nq * nk) / (nq * nk)
    o = kv_len - q_len
    j = np.arange(nq)
    hi = np.minimum((o + (j + 1) * block - 1) // block + 1, nk)  # key blocks up to the diagonal
    lo = np.maximum(0, o + j * block - window + 1) // block  # first key block inside the window
    return float((hi - lo).sum()) / (nq * nk)


def _tensor_compute(op: Op, acc: Accelerator, p: int) -> tuple[int, float, dict[str, Any]]:
    """Cycles, executed FLOPs and details of a tensor op on `p` tensor cores."""
    d = op.dims
    r, c = acc.tc_rows, acc.tc_cols
    if op.kind == "matmul":
        gemms = [gemm_mapping(d["batch"], d["m"], d["k"], d["n"], r, c, p)]
        scale, executed = 1.0, op.flops
    else:  # attention: QK^T [g*q x d][d x kv] and PV [g*q x kv][kv x d] per (batch, kv head)
        bh, q, kv, hd = d["batch"] * d["heads"], d["q_len"], d["kv_len"], d["head_dim"]
        g = d["heads"] // d["kv_heads"]  # query heads sharing one K/V head stream through it together
        bg = d["batch"] * d["kv_heads"]
        gemms = [gemm_mapping(bg, g * q, hd, kv, r, c, p), gemm_mapping(bg, g * q, kv, hd, r, c, p)]
        frac = causal_fraction(q, kv, window=d.get("window")) if d["causal"] else 1.0
        # Backward: five GEMMs of these shapes per tile, 2.5x the forward's (FlashAttention-2).
        scale = frac * (2.5 if op.kind == "attention_bwd" else 1.0)
        executed = 4.0 * bh * q * kv * hd * scale  # the full score matrix's GEMMs, scaled
    cycles = math.ceil(scale * sum(g.cycles for g in gemms))
    waves = sum(g.waves for g in gemms)
    details = {
        "tile_shape": (gemms[0].rows, gemms[0].cols, gemms[0].stream),
        "stationary": gemms[0].stationary,
        "n_tiles": sum(g.tiles for g in gemms),
        "waves": waves,
        "tile_cycles": gemms[0].tile_cycles,
        "work_scale": scale,
    }
    return cycles, executed, details


def _vector_compute(op: Op, acc: Accelerator, p: int) -> tuple[int | float, dict[str, Any]]:
    """Cycles and details of a vector op on `p` vector cores: `ceil(n / (L*p)) * flops_per_element`."""
    d = op.dims
    n = d["n_elements"] if op.kind == "elementwise" else (
        d["tokens"] * d["hidden"] if op.kind == "embedding" else d["rows"] * d["cols"])
    per_element = op.flops / n
    chunks = _cdiv(n, acc.vc_lanes)
    waves = _cdiv(chunks, p)
    cycles = 0 if op.kind == "embedding" else waves * per_element  # a gather is a DMA copy
    return cycles, {"tile_shape": (acc.vc_lanes,), "n_tiles": chunks, "waves": waves,
                    "flops_per_element": per_element}


def _vector_hbm_bytes(op: Op, glb_bytes: int) -> float:
    """Compulsory bytes; a norm or softmax whose row does not fit the GLB reads its input twice."""
    if op.kind in ("norm", "softmax"):
        d = op.dims
        e = BYTES_PER_ELEMENT[op.dtype]
        if 2 * d["cols"] * e > glb_bytes:  # a double-buffered row must stay for the second pass
            return op.bytes + d["rows"] * d["cols"] * e
    return op.bytes


class AcceleratorTileModel(BasePredictor):
    """Analytical tile-level latency on an `Accelerator` (module doc for the model)."""

    name = "accelerator-tiles"

    def estimate(self, op: Op, device: Any, n_cores: int | None = None) -> Estimate:
        """Latency of `op` on `device` using `n_cores` cores of the op's type (default: all).

        Args:
            op: a non-collective op.
            device: an `Accelerator`.
            n_cores: cores of the op's type to use, 1..n_tc (tensor ops) or 1..n_vc (vector ops).

        Returns:
            `Estimate` with `bound` ``"compute"`` or ``"memory"`` and details: tile_shape,
            n_tiles, waves, wave_s (`compute_s / waves`), utilisation (executed FLOP/s over the
            peak of the cores used), compute_s, memory_s, hbm_bytes, n_cores, core_type,
            executed_flops (causal attention skips masked tiles, so it may be below `op.flops`).

        Raises:
            ConfigError: a collective, a non-Accelerator device, or `n_cores` out of range.
        """
        kind = core_type(op)
        if not isinstance(device, Accelerator):
            raise ConfigError(
                f"AcceleratorTileModel needs an Accelerator, got {type(device).__name__}; use GPUTileModel for GPUs")
        acc = device
        field_name, avail = ("n_tc", acc.n_tc) if kind == "tensor" else ("n_vc", acc.n_vc)
        p = avail if n_cores is None else n_cores
        if isinstance(p, bool) or not isinstance(p, int) or not 1 <= p <= avail:
            raise ConfigError(f"n_cores={n_cores!r} for {kind} op {op.name!r} must be an integer in "
                              f"1..Accelerator.{field_name}={avail}")
        cycles: float
        if kind == "tensor":
            cycles, executed, details = _tensor_compute(op, acc, p)
            peak = 2.0 * acc.tc_rows * acc.tc_cols * p * acc.clock_hz
            if op.kind == "matmul":
                hbm, block = gemm_hbm_bytes(op, acc.glb_bytes)
                details["glb_block"] = block
            else:
                hbm = attention_hbm_bytes(op, acc.glb_bytes)
        else:
            cycles, details = _vector_compute(op, acc, p)
            executed, peak = op.flops, float(acc.vc_lanes * p) * acc.clock_hz
            hbm = _vector_hbm_bytes(op, acc.glb_bytes)
        compute_s = cycles / acc.clock_hz
        memory_s = hbm / (acc.hbm_bw_bytes_per_s * HBM_STREAM_FRACTION)
        latency = max(compute_s, memory_s)
        details.update(
            compute_s=compute_s, memory_s=memory_s, hbm_bytes=hbm, n_cores=p, core_type=kind,
            wave_s=compute_s / details["waves"] if details["waves"] else 0.0,
            executed_flops=executed, utilisation=executed / latency / peak if latency > 0 else 0.0,
        )
        return Estimate(latency, "compute" if compute_s >= memory_s else "memory", self.name, details)

    def latency(self, op: Op, device: Any, n_cores: int | None = None) -> float:
        """Predicted seconds of `op` on `device` with `n_cores` cores of its type (default all)."""
        return self.estimate(op, device, n_cores).latency_s

    def layer_latencies(self, graph: OpGraph, acc: Accelerator) -> dict[str, OpLatency]:
        """`OpLatency` (core type, 1-core and all-core seconds) of every non-collective op of `graph`.

        Collectives are skipped: they are network ops, timed by `Cluster.collective_time`.
        """
        out = {}
        for op in graph.nodes:
            if op.kind == "collective":
                continue
            kind = core_type(op)
            out[op.name] = OpLatency(kind, self.latency(op, acc, 1), self.latency(op, acc))
        return out


def layer_latencies(graph: OpGraph, acc: Accelerator) -> dict[str, OpLatency]:
    """Per-op latencies of one layer on `acc`, keyed by op name, for the on-chip ILP scheduler.

    See `AcceleratorTileModel.layer_latencies`; collectives are skipped.
    """
    return AcceleratorTileModel().layer_latencies(graph, acc)
