"""Evaluate one plan: validate it, build its cost arrays, time its stage split, check memory."""

from __future__ import annotations

from coda.errors import InfeasibleDesign
from coda.placement.chain import CostModel
from coda.placement.pipeline import evaluate_split
from coda.placement.plan import Plan, stage_layers_of, validate_plan
from coda.placement.result import TrainingResult, make_result


def evaluate_plan(model: CostModel, plan: Plan, n_devices: int | None = None,
                  check_memory: bool = True) -> TrainingResult:
    """Step time, breakdown and memory of `plan` under `model` (its stage split as given or balanced).

    Args:
        model: model, cluster, sequence length, dtype and software.
        plan: the plan.
        n_devices: devices the plan must use; None = all of the cluster's.
        check_memory: raise `InfeasibleDesign` if a device runs out of memory.

    Raises:
        InfeasibleDesign: the plan does not match the model or device count (with the nearest
            valid choices), or does not fit in memory (with what it needs and what would fit).
        InfeasibleDesign: also sizes the graph builder would reject at this sequence length
            (`rules.graph_reasons`: tokens not divisible by tp with SP, seq_len not split by 2*cp).
    """
    n = model.cluster.n_devices if n_devices is None else n_devices
    if n > model.cluster.n_devices:
        raise InfeasibleDesign(f"{n} devices requested but cluster {model.cluster.name!r} has "
                               f"{model.cluster.n_devices}; build a larger cluster")
    validate_plan(plan, model.cfg, n)
    reasons = model.graph_reasons(plan)  # sequence and context parallelism against this sequence length
    if reasons:
        raise InfeasibleDesign("; ".join(reasons))
    terms = model.terms(plan)
    pr = evaluate_split(terms, plan, stage_layers_of(plan, model.cfg.n_layers))
    result = make_result(model, plan, pr)
    if check_memory and not result.fits:
        from coda.placement.memory import memory_error

        raise memory_error(model, result, n)
    return result
