"""Memory per device, and what to change when a plan does not fit.

Per device stage (bytes): weights + gradients + optimizer states (16 bytes per parameter split
by the ZeRO stage, see `chain` and `terms`), in-flight activations (`pipeline.inflight` micro-batches x the
Korthikanti bytes of `costs`), and workspace: the largest transient of one layer (a recomputed
block's full activations, the fp32 logit gradient, ZeRO-3's gathered weights, ZeRO-2's
unreduced gradient of one unit).
"""

from __future__ import annotations

import pandas as pd

from coda.errors import InfeasibleDesign
from coda.placement.chain import CostModel
from coda.placement.plan import Plan
from coda.placement.result import TrainingResult
from coda.placement.rules import plan_reasons
from coda.units import GiB, fmt_bytes


def memory_frame(result: TrainingResult) -> pd.DataFrame:
    """Memory per device by stage, GiB, with the limit."""
    cols = ["stage", "layers", "weights_GiB", "grads_GiB", "optimizer_GiB", "activations_GiB", "inflight",
            "workspace_GiB", "total_GiB"]
    df = result.stages_frame()[cols].copy()
    df["limit_GiB"] = result.memory_limit_bytes / GiB
    return df


def _variants(plan: Plan, n_layers: int, max_tp: int, n_experts: int = 1) -> list[tuple[str, Plan]]:
    """Single changes that reduce memory, on the same devices."""
    out: list[tuple[str, Plan]] = []

    def add(label: str, **kw: object) -> None:  # each change keeps a valid layout (pp and tp only grow)
        out.append((label, plan.replace(stage_layers=None, **kw)))

    if plan.recompute != "full":
        add("recompute='full'", recompute="full")
    elif plan.recompute_every > 1:
        add("recompute_every=1 (checkpoint every block)", recompute_every=1)
    if plan.micro_batch > 1:
        add("micro_batch=1", micro_batch=1)
    if plan.tp > 1 and not plan.sequence_parallel:
        add("sequence_parallel=True", sequence_parallel=True)
    if plan.hsdp > 1:
        add("hsdp=1 (shard over all replicas)", hsdp=1)
    if plan.dp > 1:
        for z in (1, 2, 3):
            if z > plan.zero:
                add(f"zero={z}", zero=z)
                add(f"zero={z}, recompute='full'", zero=z, recompute="full")
    group = plan.dp * plan.pp
    for pp in range(plan.pp + 1, min(n_layers, group) + 1):
        if group % pp == 0:
            add(f"pp={pp} (dp={group // pp})", pp=pp, dp=group // pp)
            add(f"pp={pp} (dp={group // pp}), recompute='full'", pp=pp, dp=group // pp, recompute="full")
    for ep in range(plan.ep + 1, n_experts + 1):  # MoE: spread the experts over more devices
        if n_experts % ep == 0:  # the others are refused when evaluated
            add(f"ep={ep}", ep=ep)
    tp = plan.tp * 2
    while tp <= max_tp and (plan.dp * plan.tp) % tp == 0:
        add(f"tp={tp} (dp={plan.dp * plan.tp // tp})", tp=tp, dp=plan.dp * plan.tp // tp)
        tp *= 2
    return out


def memory_error(model: CostModel, result: TrainingResult, n_devices: int) -> InfeasibleDesign:
    """An `InfeasibleDesign` saying what the plan needs per device, where, and which changes fit."""
    from coda.placement.step import evaluate_plan

    pr, plan = result.pipeline, result.plan
    s = max(pr.stages, key=lambda st: st.memory_bytes)
    msg = (f"{model.cfg.name} with {plan.describe()} needs {fmt_bytes(s.memory_bytes)} per device on stage "
           f"{s.stage} (weights {fmt_bytes(s.weight_bytes)}, gradients {fmt_bytes(s.grad_bytes)}, optimizer states "
           f"{fmt_bytes(s.optim_bytes)}, activations {fmt_bytes(s.activation_bytes)} with {s.inflight:g} "
           f"micro-batch(es) in flight, workspace {fmt_bytes(s.work_bytes)}), but each {result.device} has "
           f"{fmt_bytes(pr.memory_limit)}")
    fits: list[tuple[float, str, float]] = []
    max_tp = model.cluster.levels[0].size if model.cluster.levels else 1
    for label, variant in _variants(plan.replace(stage_layers=None), model.cfg.n_layers, max_tp,
                                    model.cfg.n_experts):
        if plan_reasons(variant, model.cfg, n_devices) or model.graph_reasons(variant):
            continue  # the rules refuse it (e.g. ep not dividing the stage, tokens not split by tp)
        r = evaluate_plan(model, variant, n_devices, check_memory=False)
        if r.fits:
            fits.append((r.step_time_s, label, r.peak_memory_bytes))
    if fits:
        fits.sort()
        msg += "; it fits with " + "; or ".join(f"{label} ({fmt_bytes(mem)})" for _, label, mem in fits[:4])
    else:
        msg += ("; no single change fits: combine tp, pp, zero=3 and recompute='full', add devices, or let "
                "coda.placement.optimize search")
    return InfeasibleDesign(msg)
