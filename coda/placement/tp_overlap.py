"""Tensor-parallel communication overlapped with the GEMMs next to it (`Software.tp_comm_overlap`).

Megatron-Core's `--tp-comm-overlap` hands the sequence-parallel all-gathers and reduce-scatters
of a transformer block to Transformer Engine's userbuffers (TE `pytorch/module/base.py`,
`initialize_ub`; Megatron-LM `arguments.py` requires `--sequence-parallel` for it). Each
collective is paired with a GEMM of the same linear layer, by TE's default method per layer:

- ``ring_exchange`` (all-gather + GEMM: `qkv_fprop`, `fc1_fprop`, and in the backward
  `proj_dgrad`, `fc2_dgrad`): the all-gather becomes t-1 point-to-point steps around the TP ring
  (copy engines, `use_ce=True`: no SMs taken), and the GEMM t chunks of m/t rows; step i moves the
  next chunk while chunk i is multiplied. The first chunk is local, so time
  `g + (t-1) * max(g, p)` for a chunk GEMM `g` and a step `p`.
- ``pipeline`` (GEMM + reduce-scatter: `proj_fprop`, `fc2_fprop`): the GEMM in `num_splits` = 4
  chunks of m/4 rows, each chunk's reduce-scatter running on 16 SMs (`num_sm` = 16) while the next
  chunk computes; the last chunk's reduce-scatter has nothing left to hide behind:
  `g + 3 * both(g, r) + r`.
- ``bulk`` (`qkv_wgrad`, `fc1_wgrad`): the reduce-scatter of the input gradient of a
  column-parallel layer (QKV, MLP up) runs on 16 SMs beside that layer's weight-gradient GEMM,
  which does not depend on it: `both(W, R)`.

`both(g, r)` is a GEMM of `g` seconds sharing the device with a communication kernel of `r`
seconds on `COMM_SMS` of its `n` SMs (TE's default `set_sm_margin` = 0: the GEMM is launched on all
of them and runs `n/(n - COMM_SMS)` slower while both run): `max(r, g + r * (1 - (n - COMM_SMS)/n))`.
Accelerators (no SMs) move data with DMA: no slowdown. A chunk GEMM takes `G/t` or `G/4` of the
whole GEMM's predicted `G`: TE issues the chunks round-robin on `_NUM_MAX_UB_STREAMS` = 3 compute
streams (`comm_gemm_overlap.h`, `_stream_compute[i % size]`), so consecutive chunks fill each
other's last waves and run at the whole GEMM's rate. The exposed time of a collective is
`time - G` (at least 0) for its whole GEMM `G` (or `W`), timed by the cost model's layer timer. Collectives
are timed with the cluster's calibrated costs (NCCL), at the chunk sizes (each step pays the
latency term). The same decomposition is the one of Wang et al. ASPLOS'23 ("Overlap communication
with dependent computation via decomposition in large deep learning models"): the first (all-gather)
or last (reduce-scatter) chunk cannot overlap.

What stays exposed: the LM head's and the embedding's collectives (Megatron-Core builds them from
its own `ColumnParallelLinear` and embedding, not from TE modules with userbuffers), all-reduces
(no sequence parallelism: Megatron refuses `--tp-comm-overlap` then, and coda times them as
without overlap), and collectives that do not sit next to a GEMM (a parallel block's reduce-scatter
after the sum of attention and MLP).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from coda.caches import memoize
from coda.models.graph import OpGraph
from coda.models.ops import Op
from coda.placement import costs as C
from coda.placement.chain import collective_cost, collectives_time
from coda.placement.layout import Layout

if TYPE_CHECKING:
    from coda.placement.chain import CostModel

COMM_SMS = 16
"""SMs of a userbuffers reduce-scatter or bulk kernel: TE `initialize_ub`'s default `num_sm` (16) for
the `pipeline` and `bulk` methods (the `ring_exchange` steps use copy engines)."""
PIPELINE_SPLITS = 4
"""GEMM chunks of the `pipeline` method: TE `initialize_ub`'s default `num_splits` (4)."""


def applies(model: CostModel, lay: Layout) -> bool:
    """Whether `Software.tp_comm_overlap` changes this layout's costs: tp > 1 with sequence parallelism."""
    return model.software.tp_comm_overlap and lay.tp > 1 and lay.sequence_parallel


def both(gemm_s: float, comm_s: float, slowdown: float) -> float:
    """Seconds of a GEMM and a communication kernel running together, the GEMM `slowdown` times slower
    while the communication runs (`slowdown` = n/(n - COMM_SMS) on a GPU of n SMs, 1 without contention)."""
    if comm_s >= gemm_s * slowdown:
        return comm_s
    return gemm_s + comm_s * (1.0 - 1.0 / slowdown)


def ring_exchange_s(chunk_gemm_s: float, step_s: float, t: int) -> float:
    """All-gather + GEMM as t chunks around the TP ring: `g + (t-1) * max(g, p)`."""
    return chunk_gemm_s + (t - 1) * max(chunk_gemm_s, step_s)


def pipeline_s(chunk_gemm_s: float, chunk_rs_s: float, slowdown: float, splits: int = PIPELINE_SPLITS) -> float:
    """GEMM + reduce-scatter in `splits` chunks, each chunk's reduce-scatter beside the next chunk's GEMM."""
    return chunk_gemm_s + (splits - 1) * both(chunk_gemm_s, chunk_rs_s, slowdown) + chunk_rs_s


def _pairs(graph: OpGraph) -> list[tuple[Op, str, Op]]:
    """(collective, method, GEMM) of each TP collective of a block graph that TE overlaps, by the
    module docstring's rules; collectives without a partner are left out."""
    ops = set(graph.ops())
    by_name = {op.name: op for op in ops}
    out = []
    for op in graph.ops():
        if op.kind != "collective":
            continue
        kind = op.dims["collective"]
        succ = [s for s in graph.successors(op) if s.kind == "matmul"]
        pred = [p for p in graph.predecessors(op) if p.kind == "matmul"]
        if kind == "all_gather":  # forward: the column-parallel GEMM; backward: the row-parallel dgrad
            gemm = [s for s in succ if not s.name.endswith(".wgrad")]
            if len(gemm) == 1:
                out.append((op, "ring_exchange", gemm[0]))
        elif kind == "reduce_scatter" and len(pred) == 1:
            if pred[0].name.endswith(".dgrad"):  # backward of a column-parallel layer: bulk with its wgrad
                wgrad = by_name.get(pred[0].name.removesuffix(".dgrad") + ".wgrad")
                if wgrad is not None:
                    out.append((op, "bulk", wgrad))
            else:
                out.append((op, "pipeline", pred[0]))
    return out


def _alone(op: Op) -> OpGraph:
    """A graph of the one op, for the model's layer timer (so GEMMs are timed as the layers are)."""
    g = OpGraph()
    g.add(op)
    return g


def _exposed(model: CostModel, lay: Layout, graph: OpGraph) -> float:
    """Exposed seconds of one block graph's TP collectives with userbuffers overlap."""
    cl, t, device = model.cluster, lay.tp, model.device
    sms = getattr(device, "sm_count", None)
    slowdown = sms / (sms - COMM_SMS) if isinstance(sms, int) and sms > COMM_SMS else 1.0
    pairs = _pairs(graph)
    paired = {id(c) for c, _, _ in pairs}
    rest = tuple(sorted((str(op.dims["collective"]), float(op.dims["n_bytes"])) for op in graph.ops()
                        if op.kind == "collective" and id(op) not in paired
                        and op.dims["collective"] not in C.EP_COLLECTIVES))
    whole = C.time_graphs(model.layer_time, [_alone(g) for _, _, g in pairs], device)
    step = collective_cost(cl, "send_recv", (0, 1))  # neighbours of the TP ring, inside a node
    rs = collective_cost(cl, "reduce_scatter", t)
    exposed = collectives_time(cl, rest, t)
    for (coll, method, _), g_s in zip(pairs, whole):
        n_bytes = float(coll.dims["n_bytes"])
        if method == "ring_exchange":
            total = ring_exchange_s(g_s / t, step.time(n_bytes / t), t)
        elif method == "pipeline":
            total = pipeline_s(g_s / PIPELINE_SPLITS, rs.time(n_bytes / PIPELINE_SPLITS), slowdown)
        else:
            total = both(g_s, rs.time(n_bytes), slowdown)
        exposed += max(0.0, total - g_s)
    return exposed


def exposed_tp_times(model: CostModel, lay: Layout) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exposed TP-collective seconds of each distinct layer's forward and backward (embedding, blocks,
    head) with `Software.tp_comm_overlap` (`applies`): the blocks' overlapped by the module
    docstring's rules, the embedding's and the head's as without overlap. Cached per graph layout."""
    return _exposed_tp_times(model, lay.graph_layout)


@memoize("placement.tp_overlap", 512)
def _exposed_tp_times(model: CostModel, lay: Layout) -> tuple[tuple[float, ...], tuple[float, ...]]:
    gr = C.layer_graphs(model.cfg, lay, model.seq_len, model.dtype, model.software.graph_options)
    n = len(gr.fwd)

    def plain(g: OpGraph) -> float:
        return collectives_time(model.cluster, C.graph_collectives(g, expert=False), lay.tp)

    fwd = tuple(plain(g) if i in (0, n - 1) else _exposed(model, lay, g) for i, g in enumerate(gr.fwd))
    bwd = tuple(plain(g) if i in (0, n - 1) else _exposed(model, lay, g) for i, g in enumerate(gr.bwd))
    return fwd, bwd


__all__ = ["COMM_SMS", "PIPELINE_SPLITS", "applies", "both", "exposed_tp_times", "pipeline_s", "ring_exchange_s"]
