"""Upper bounds on training throughput of a design, for exact pruning of a design-space search.

The bound of a design with `n` chips, each of tensor peak `P` and vector peak `V` FLOP/s
(`Accelerator.peak_flops`, `Accelerator.vector_flops`), is

    tokens_per_s  <=  n / max(F_t / P, F_v / V)       tokens_per_s_per_w = tokens_per_s / (n * tdp_w)

where `F_t` and `F_v` are lower bounds on the FLOPs the tensor and the vector cores must
execute per trained token (forward + backward of one sequence of `seq_len` tokens, over
`seq_len`), read from the operator graphs at tp = 1:

    F_t = (matmul FLOPs + c * attention FLOPs) / seq_len,   c = 1/2 if causal else 1
    F_v = FLOPs of elementwise, norm and softmax ops / seq_len (embedding gathers are DMA: 0)

Why it holds (`coda.predictor.accel_tiles`, `coda.ilp.fusion`): an op on `p` cores of its type
never takes less than its *executed* FLOPs over those cores' peak. A matmul executes all of
`op.flops`, a causal FlashAttention kernel at least half (it computes every score tile that is
not fully masked, `causal_fraction >= 1/2`; under a sliding window of W positions `op.flops`
counts `min(kv, W)` keys per query and the unmasked ones, `min(i + 1, W)` for query i, still
average at least half of that); a vector op takes `ceil(n / (L p)) * flops/n`
cycles. A fused matmul + epilogue holds one core of each type (or all of both) for the longer
of the two. So a layer's makespan is at least its tensor-core busy time over `n_tc` and at
least its vector-core busy time over `n_vc`. Tensor parallelism splits or replicates these ops
(and pads vocabularies), so summed over devices the work is at least that of tp = 1;
recomputation, the optimizer step, HBM stalls, pipeline bubbles and communication only add
time. The slowest device bounds the step: a step of `B * s` tokens takes at least
`B * s * max(F_t / P, F_v / V) / n` seconds.

This bound needs nothing but the peaks, and is about 2x the achieved throughput for large models
(pipeline bubbles, recomputation forced by memory, HBM stalls). `coda.search.refine` has three
tighter exact bounds (the placement's own step bound over the plans that fit, with FLOP, then
scheduling-instance lower bounds as layer times, then the placement optimum itself with those
layer times) and a best-first search over them.
"""

from __future__ import annotations

from typing import NamedTuple

from coda.caches import memoize
from coda.models.builder import build
from coda.models.config import ModelConfig

MATMUL_KINDS = ("matmul",)
ATTENTION_KINDS = ("attention", "attention_bwd")
VECTOR_KINDS = ("elementwise", "norm", "softmax")
CAUSAL_EXECUTED_FRACTION = 0.5
"""Least fraction of a causal attention op's FLOPs a block-skipping kernel executes (`causal_fraction`)."""


class FlopsPerToken(NamedTuple):
    """Lower bounds on FLOPs per trained token: on the tensor cores, on the vector cores."""

    tensor: float
    vector: float


@memoize("search.flops_bounds", 64)
def training_flops_per_token_lb(cfg: ModelConfig, seq_len: int, attention: str = "fused") -> FlopsPerToken:
    """Lower bounds on tensor- and vector-core FLOPs per trained token (module docstring).

    Args:
        cfg: the model.
        seq_len: tokens per sequence, s.
        attention: attention kernel of the graphs (``fused`` or ``unfused``).
    """
    tensor = vector = 0.0
    for phase in ("forward", "backward"):
        graph = build(cfg, phase, 1, seq_len, attention=attention)
        attn = graph.flops(ATTENTION_KINDS)
        tensor += graph.flops(MATMUL_KINDS) + (CAUSAL_EXECUTED_FRACTION if cfg.causal else 1.0) * attn
        vector += graph.flops(VECTOR_KINDS)
    return FlopsPerToken(tensor / seq_len, vector / seq_len)


def tokens_per_s_bound(peak_flops: float, vector_flops: float, n_devices: int, fpt: FlopsPerToken) -> float:
    """Upper bound on training tokens/s of `n_devices` devices (tensor / vector peaks in FLOP/s)."""
    return n_devices / max(fpt.tensor / peak_flops, fpt.vector / vector_flops)


def objective_bound(objective: str, peak_flops: float, vector_flops: float, tdp_w: float, n_devices: int,
                    fpt: FlopsPerToken) -> float:
    """Upper bound on `objective` (``tokens_per_s``, or ``tokens_per_s_per_w`` per cluster watt)."""
    bound = tokens_per_s_bound(peak_flops, vector_flops, n_devices, fpt)
    return bound if objective == "tokens_per_s" else bound / (n_devices * tdp_w)


DEFAULT_TIE_TOL = 0.02
"""Relative tolerance of the near ties a search reports: designs within 2% of the best. The ILP
and predictor timers differ by 1-2% on the same design, so a single best point is not the answer."""


def pruned(bound: float, best: float, tie_tol: float = DEFAULT_TIE_TOL) -> bool:
    """Whether a design with objective upper bound `bound` can be skipped when the best objective so
    far is `best`: its bound is below `best * (1 - tie_tol)`, so it can neither beat the best nor
    come within `tie_tol` of it (objectives are positive). With nothing evaluated yet, nothing is
    pruned. The one pruning rule of the visit, its replay and the read-only store check."""
    return best > float("-inf") and bound < best * (1.0 - tie_tol)
