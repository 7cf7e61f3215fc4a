"""Step time and memory of a plan with a given stage split, from its `PlanTerms`.

Per micro-batch, device stage i takes `T_i` = the sum over its units of forward, backward,
recomputation, TP collectives and exposed ZeRO-3 traffic, plus its pipeline send/recv. With
m micro-batches, p stages and v chunks per device, the pipeline takes

    1F1B:          S + (m - 1) * max_i T_i                 (S = sum_i T_i)
    interleaved:   m * max_i T_i + (S - max_i T_i) / v

For balanced stages (T_i = T) both give `(m + (p - 1)/v) * T`: the bubble fraction
`(p - 1)/(v*m)` of Narayanan et al. SC'21 (section 2.2), with v = 1 for 1F1B. For unequal
stages it is the critical path through the slowest stage: the first micro-batch's forward
reaches it, it runs all m micro-batches, the last backward leaves it (the formula PHAZE and
Alpa optimise). After the pipeline drains, each stage reduces its gradients over its
data-parallel group and steps its optimizer; the step ends with the slowest stage:

    step = pipeline + max_i (DP_i + optimizer_i) + tied-embedding all-reduce
    DP_i = max(0, sync_i - backward_i) if the sync overlaps the last micro-batch's backward, else sync_i

Activations in flight (stashed micro-batches) on device stage i: 1F1B `min(p - i, m)`
(PipeDream-Flush); interleaved `min(v*m, 2*(p - i - 1) + (v - 1)*p + 1)` chunks, which for
i = 0 is the `p*(1 + (p - 1)/(p*v))` micro-batches of Korthikanti et al. 2022 (section 4.2.3).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from coda.errors import InfeasibleDesign
from coda.placement.chain import PlanTerms
from coda.placement.plan import Plan


def inflight(plan: Plan, stage: int) -> float:
    """Micro-batches of activations device stage `stage` keeps at its peak (in micro-batch units)."""
    p, m, v = plan.pp, plan.micro_batches, plan.virtual_stages
    if plan.schedule == "1f1b":
        return float(min(p - stage, m))
    chunks = min(v * m, 2 * (p - stage - 1) + (v - 1) * p + 1)
    return chunks / v


def chunk_bounds(stage_layers: tuple[int, ...]) -> list[tuple[int, int]]:
    """Unit ranges `[start, end)` of each chunk; unit 0 is the embedding, the last the head."""
    bounds, start = [], 0
    last = len(stage_layers) - 1
    for c, k in enumerate(stage_layers):
        end = start + k + (1 if c == 0 else 0) + (1 if c == last else 0)
        bounds.append((start, end))
        start = end
    return bounds


def stage_layers_from_bounds(bounds: list[tuple[int, int]]) -> tuple[int, ...]:
    """Inverse of `chunk_bounds`."""
    last = len(bounds) - 1
    return tuple(e - s - (1 if c == 0 else 0) - (1 if c == last else 0) for c, (s, e) in enumerate(bounds))


@dataclass(frozen=True)
class StageCosts:
    """One device stage (all its chunks), per micro-batch unless named `*_step`.

    Memory fields are bytes per device; `units` counts embedding, blocks and head.
    """

    stage: int
    blocks: int
    has_embedding: bool
    has_head: bool
    fwd_s: float
    bwd_s: float
    rec_s: float
    tp_s: float
    z3_s: float
    z3_hidden_s: float
    p2p_s: float
    p2p_hidden_s: float
    time_s: float
    dp_sync_s: float
    dp_exposed_s: float
    dp_gather_s: float
    opt_s: float
    weight_bytes: float
    grad_bytes: float
    optim_bytes: float
    act_bytes: float
    inflight: float
    work_bytes: float
    model_flops: float
    hw_flops: float
    ep_s: float = 0.0
    ep_hidden_s: float = 0.0

    @property
    def activation_bytes(self) -> float:
        """In-flight activations: inflight micro-batches x stashed bytes per micro-batch."""
        return self.inflight * self.act_bytes

    @property
    def memory_bytes(self) -> float:
        return self.weight_bytes + self.grad_bytes + self.optim_bytes + self.activation_bytes + self.work_bytes

    @property
    def end_s(self) -> float:
        """Work after the pipeline drains: exposed gradient sync, weight gather, optimizer step."""
        return self.dp_exposed_s + self.dp_gather_s + self.opt_s


@dataclass(frozen=True)
class PipelineResult:
    """Timing of one plan with one split: per-stage costs and the step composition."""

    stages: tuple[StageCosts, ...]
    stage_layers: tuple[int, ...]
    pipeline_s: float
    bubble_s: float
    bottleneck: int
    end_stage: int
    emb_sync_s: float
    step_s: float
    memory_limit: float

    @property
    def peak_memory_bytes(self) -> float:
        return max(s.memory_bytes for s in self.stages)

    @property
    def fits(self) -> bool:
        return self.peak_memory_bytes <= self.memory_limit


def pipeline_time(times: np.ndarray, m: int, v: int) -> float:
    """Pipeline makespan from per-device stage times (module docstring)."""
    s, t = float(np.sum(times)), float(np.max(times))
    return s + (m - 1) * t if v == 1 else m * t + (s - t) / v


_SUMMED = ("fwd_s", "bwd_s", "rec_s", "tp_s", "ep_s", "ep_hidden_s", "z3_s", "z3_hidden_s", "sync_bytes", "window_s",
           "opt_s", "weight_bytes", "grad_bytes", "optim_bytes", "act_bytes", "model_flops", "hw_flops")


def gather_exposed_s(terms: PlanTerms, stage: int, nbytes: float, fwd_s: float) -> float:
    """Exposed seconds of stage `stage`'s ZeRO-1/2 weight all-gather of `nbytes`: all of it, or, overlapped
    with the next step's first forward of `fwd_s` seconds (`PlanTerms.gather_bucket_bytes`, Megatron-Core
    `--overlap-param-gather`), the first bucket's gather or the excess of the whole over the forward."""
    gc = terms.dp_gather[stage]
    full = gc.time(nbytes)
    if terms.gather_bucket_bytes is None:
        return full
    return max(gc.time(min(nbytes, terms.gather_bucket_bytes)), full - fwd_s)


def evaluate_split(terms: PlanTerms, plan: Plan, stage_layers: tuple[int, ...]) -> PipelineResult:
    """Time and memory of `plan` with chunks holding `stage_layers` blocks (see `chunk_bounds`)."""
    ch, p, v, m = terms.chain, plan.pp, plan.virtual_stages, plan.micro_batches
    bounds = chunk_bounds(stage_layers)
    if len(bounds) != p * v or bounds[-1][1] != ch.n or any(e <= s for s, e in bounds):
        raise InfeasibleDesign(f"stage_layers {list(stage_layers)} do not cover the {ch.n - 2} layers in {p * v} "
                               "non-empty chunks")
    starts = np.array([s for s, _ in bounds])
    # per-chunk sums, then chunks c, c+p, c+2p, ... summed onto device stage c % p
    sums = np.add.reduceat(np.stack([getattr(ch, f) for f in _SUMMED]), starts, axis=1).reshape(len(_SUMMED), v, p)
    per = dict(zip(_SUMMED, sums.sum(axis=1)))
    work = np.maximum.reduceat(ch.work_bytes, starts).reshape(v, p).max(axis=0)
    blocks = np.array(stage_layers).reshape(v, p).sum(axis=0)
    time = per["fwd_s"] + per["bwd_s"] + per["rec_s"] + per["tp_s"] + per["ep_s"] + per["z3_s"] + terms.p2p_s
    stages = []
    for i in range(p):
        nbytes = float(per["sync_bytes"][i])
        sync = terms.dp_sync[i].time(nbytes)
        exposed = max(0.0, sync - float(per["window_s"][i])) if terms.dp_overlap else sync
        stages.append(StageCosts(
            stage=i, blocks=int(blocks[i]), has_embedding=i == 0, has_head=i == (p * v - 1) % p,
            fwd_s=float(per["fwd_s"][i]), bwd_s=float(per["bwd_s"][i]), rec_s=float(per["rec_s"][i]),
            tp_s=float(per["tp_s"][i]), z3_s=float(per["z3_s"][i]), z3_hidden_s=float(per["z3_hidden_s"][i]),
            p2p_s=terms.p2p_s, p2p_hidden_s=terms.p2p_hidden_s, time_s=float(time[i]), dp_sync_s=sync,
            dp_exposed_s=exposed, dp_gather_s=gather_exposed_s(terms, i, nbytes, float(per["fwd_s"][i])),
            opt_s=float(per["opt_s"][i]),
            weight_bytes=float(per["weight_bytes"][i]), grad_bytes=float(per["grad_bytes"][i]),
            optim_bytes=float(per["optim_bytes"][i]), act_bytes=float(per["act_bytes"][i]),
            inflight=inflight(plan, i), work_bytes=float(work[i]), model_flops=float(per["model_flops"][i]),
            hw_flops=float(per["hw_flops"][i]), ep_s=float(per["ep_s"][i]),
            ep_hidden_s=float(per["ep_hidden_s"][i])))
    pipe = pipeline_time(time, m, v)
    b = int(np.argmax(time))
    ends = [s.end_s for s in stages]
    k = int(np.argmax(ends))
    step = pipe + ends[k] + terms.emb_sync_s
    return PipelineResult(tuple(stages), tuple(stage_layers), pipe, pipe - m * float(time[b]), b, k,
                          terms.emb_sync_s, step, terms.memory_limit)


@dataclass(frozen=True, eq=False)
class SplitProblem:
    """The 1F1B stage-split problem as segment matrices (for `dp.best_split`).

    For stage i covering units `[j, k)`: `time[j, k]` (same for every stage), `extra[i, j, k]`
    (its end-of-step work) and `feasible[i, j, k]` (fits in memory). The step time of a split is
    `constant + weight * max_i time_i + max_i extra_i`.
    """

    time: np.ndarray
    extra: np.ndarray
    feasible: np.ndarray
    weight: float
    constant: float


def _segments(a: np.ndarray) -> np.ndarray:
    """S[j, k] = sum(a[j:k]) for 0 <= j <= k <= n (garbage below the diagonal)."""
    c = np.concatenate(([0.0], np.cumsum(a)))
    return c[None, :] - c[:, None]


def _segment_max(a: np.ndarray) -> np.ndarray:
    n = len(a)
    out = np.zeros((n + 1, n + 1))
    for j in range(n):
        out[j, j + 1:] = np.maximum.accumulate(a[j:])
    return out


def split_problem(terms: PlanTerms, plan: Plan) -> SplitProblem:
    """Segment matrices of the 1F1B stage split of `plan` (v = 1)."""
    assert plan.virtual_stages == 1, "the stage-split DP covers the 1F1B schedule"
    ch, p, m = terms.chain, plan.pp, plan.micro_batches
    n = ch.n
    j, k = np.meshgrid(np.arange(n + 1), np.arange(n + 1), indexing="ij")
    valid = k > j
    # rounded to 1e-12 s so that equal stages built from different prefix sums compare equal
    time = np.round(_segments(ch.time_s) + terms.p2p_s, 12)
    sync_b = _segments(ch.sync_bytes)
    window = _segments(ch.window_s)
    fwd = _segments(ch.fwd_s)
    opt = _segments(ch.opt_s)
    static = _segments(ch.static_bytes)
    act = _segments(ch.act_bytes)
    work = _segment_max(ch.work_bytes)
    extra = np.empty((p, n + 1, n + 1))
    feasible = np.empty((p, n + 1, n + 1), dtype=bool)
    for i in range(p):
        sc, gc = terms.dp_sync[i], terms.dp_gather[i]
        sync = np.where(sync_b > 0, sc.latency_s + sc.s_per_byte * sync_b, 0.0)
        gather = np.where(sync_b > 0, gc.latency_s + gc.s_per_byte * sync_b, 0.0)
        if terms.gather_bucket_bytes is not None:  # overlapped with the first forward (gather_exposed_s)
            first = np.where(sync_b > 0, gc.latency_s + gc.s_per_byte * np.minimum(sync_b, terms.gather_bucket_bytes),
                             0.0)
            gather = np.maximum(first, gather - fwd)
        exposed = np.maximum(0.0, sync - window) if terms.dp_overlap else sync
        extra[i] = exposed + gather + opt
        mem = static + inflight(plan, i) * act + work
        feasible[i] = valid & (mem <= terms.memory_limit)
    constant = float(np.sum(ch.time_s)) + p * terms.p2p_s + terms.emb_sync_s
    return SplitProblem(np.where(valid, time, np.inf), extra, feasible, float(m - 1), constant)
