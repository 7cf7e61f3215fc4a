"""`optimize`: the fastest plan that fits, by enumeration around the stage-split DP.

The search space (tp, pp, dp, micro-batch, recomputation, sequence parallelism, ZeRO stage,
schedule and virtual stages, and context and expert parallelism, checkpointing every k-th block
and hybrid sharding when asked for) is enumerated by `coda.placement.candidates`; any dimension
can be fixed or restricted by a keyword.

Exactness: for each candidate the stage split is the DP optimum (1F1B) or the balanced split
Megatron-LM requires (interleaved). Candidates are visited in order of a lower bound on their
step time, `sum of per-micro-batch unit times * (m + (p-1)/v) / p` (perfect balance, no
pipeline messages, no data-parallel or optimizer time), and the search stops when the bound
reaches the best step found, so the result is the optimum over the whole space. A candidate
whose weights, gradients and optimizer states alone (averaged over its stages) exceed memory is
skipped without evaluation.
"""

from __future__ import annotations

import math
import operator
import time
from collections import Counter
from typing import Any, NoReturn

import pandas as pd

from coda.arch.clusters import Cluster
from coda.errors import ConfigError, InfeasibleDesign
from coda.models.config import ModelConfig
from coda.objectives import objective as as_objective
from coda.placement import rules as R
from coda.placement import tp_overlap
from coda.placement.candidates import (
    CHOICES,
    MAX_MICRO_BATCH,
    MAX_VIRTUAL_STAGES,
    SIZE_CHOICES,
    candidate_plans,
    candidates_with_reasons,
    check_choices,
)
from coda.placement.chain import CostModel, Software, collective_cost
from coda.placement.dp import best_split
from coda.placement.layout import GRAPH_FIELDS
from coda.placement.pipeline import evaluate_split, split_problem, stage_layers_from_bounds
from coda.placement.plan import Plan, stage_layers_of
from coda.placement.result import TrainingResult, make_result
from coda.units import fmt_bytes

OBJECTIVES = ("tokens_per_s",)
"""What `optimize` can rank by (`coda.objectives`; ``throughput`` is an alias of ``tokens_per_s``)."""

_graph_key = operator.attrgetter(*GRAPH_FIELDS)
"""A plan's `GRAPH_FIELDS` as a tuple: equal exactly when the plans' `graph_layout`s are equal, and far
cheaper to build and hash per candidate than the `Layout` itself (the search groups tens of
thousands of candidates by it)."""


def _bound_data(model: CostModel) -> Any:
    """Per-graph-layout sums for the lower bound, computed once per search."""
    cache: dict[tuple[Any, str, int], tuple[float, float, float, float]] = {}
    per_param_bytes: dict[tuple[int, int, int], float] = {}  # by (weight, state, gradient shards)
    cfg, cl = model.cfg, model.cluster
    mult = (1, *cfg.block_counts, 1)  # how often each distinct layer occurs

    def sums(plan: Plan) -> tuple[float, float, float, float]:
        """(time, parameters, expert parameters, embedding table parameters) of the plan's layers."""
        key = (_graph_key(plan), plan.recompute, plan.recompute_every)
        if key not in cache:
            pr = model.profile(plan)
            # with TP communication overlap a block's collectives may hide entirely: 0 bounds them (tp_overlap)
            hid = tp_overlap.applies(model, plan)

            def tp_s(i: int, colls: tuple[tuple[str, float], ...]) -> float:
                blk = 0 < i < len(mult) - 1
                return 0.0 if hid and blk else sum(collective_cost(cl, k, plan.tp).time(b) for k, b in colls)

            coll = sum(m * tp_s(i, pr.fwd_coll[i] + pr.bwd_coll[i]) for i, m in enumerate(mult))
            rec = sum(m * {"none": 0.0, "selective": pr.selective_s[i], "full": pr.fwd_s[i] + tp_s(
                i, pr.fwd_coll[i])}[plan.recompute]
                for i, m in enumerate(mult) if 0 < i < len(mult) - 1)
            if plan.recompute_every > 1:  # a lower bound: at least 1 in k blocks, of the cheapest kind, runs again
                rec = -(-cfg.n_layers // plan.recompute_every) * min(
                    pr.fwd_s[i] + tp_s(i, pr.fwd_coll[i]) for i in range(1, len(mult) - 1))
            t = sum(m * (pr.fwd_s[i] + pr.bwd_s[i]) for i, m in enumerate(mult)) + rec + coll
            params = sum(m * pr.params[i] for i, m in enumerate(mult))
            experts = sum(m * pr.expert_params[i] for i, m in enumerate(mult)) if plan.ep > 1 else 0.0
            cache[key] = (t, params + (pr.table_params if cfg.tied_embeddings else 0.0), experts, pr.table_params)
        return cache[key]

    def bound(plan: Plan) -> tuple[float, float]:
        """(step-time lower bound, static-memory lower bound per device)."""
        t, params, experts, table_params = sums(plan)
        p, v, m = plan.pp, plan.virtual_stages, plan.micro_batches
        if p == 1 and cfg.tied_embeddings:
            params -= table_params

        def per_param(n: int) -> float:  # weight, gradient and optimizer bytes of a parameter sharded over n
            shards = R.zero_shards(plan.zero, n)
            if shards not in per_param_bytes:
                per_param_bytes[shards] = R.static_bytes_per_param(model.storage_dtype, model.dtype, *shards)
            return per_param_bytes[shards]

        static = (params - experts) * per_param(plan.replicas) + experts * per_param(plan.expert_replicas)
        return t * (m + (p - 1) / v) / p, static / p

    return bound


def best_for_plan(model: CostModel, plan: Plan) -> TrainingResult | None:
    """The plan with its best stage split (DP for 1F1B without fixed stage_layers), or None if nothing fits."""
    terms = model.terms(plan)
    if plan.schedule == "1f1b" and plan.stage_layers is None:
        split = best_split(split_problem(terms, plan), plan.pp)
        if split is None:
            return None
        layers = stage_layers_from_bounds(split.segments())
    else:
        layers = stage_layers_of(plan, model.cfg.n_layers)
    pr = evaluate_split(terms, plan, layers)
    if not pr.fits:
        return None
    return make_result(model, plan.replace(stage_layers=layers), pr)


def _row(r: TrainingResult) -> dict[str, Any]:
    p = r.plan
    return dict(tp=p.tp, cp=p.cp, pp=p.pp, dp=p.dp, ep=p.ep, micro_batch=p.micro_batch, recompute=p.recompute,
                recompute_every=p.recompute_every, hsdp=p.hsdp,
                sequence_parallel=p.sequence_parallel, schedule=p.schedule, virtual_stages=p.virtual_stages,
                zero=p.zero, stage_layers=str(list(p.stage_layers or ())), step_s=r.step_time_s,
                tokens_per_s=r.tokens_per_s, mfu=r.mfu, hfu=r.hfu, peak_memory_bytes=float(r.peak_memory_bytes))


def buildable_plans(model: CostModel, plans: list[Plan]) -> tuple[list[Plan], int, list[Plan]]:
    """The plans whose layer graphs can be built at `model`'s sequence length (`rules.graph_reasons`).

    Context parallelism that cannot split the sequence is dropped, and refused outright when it is
    all that was asked for. The design search (`coda.search.refine`) filters its candidates the
    same way.

    Args:
        model: the cost model (its configuration, sequence length and graph options).
        plans: candidate plans, e.g. from `candidate_plans`.

    Returns:
        The buildable plans in their given order, how many plans were dropped because their graphs
        cannot be built, and one buildable plan per graph layout (what `CostModel.prefetch` needs).

    Raises:
        ConfigError: every plan's context parallelism fails to split the sequence.
    """
    split = [p for p in plans if not R.cp_splits_sequence(p.cp, model.seq_len)]
    if plans and not split:
        raise ConfigError("; ".join(dict.fromkeys(r for p in plans for r in R.cp_splits_sequence(p.cp, model.seq_len))))
    first: dict[Any, Plan] = {}
    for p in split:
        first.setdefault(_graph_key(p), p)
    builds = {key: not model.graph_reasons(p.graph_layout) for key, p in first.items()}
    ok = [p for p in split if builds[_graph_key(p)]]
    return ok, len(split) - len(ok), [p for key, p in first.items() if builds[key]]


def _no_plan(model: CostModel, n_devices: int, global_batch: int, max_tp: int, choices: dict[str, Any]) -> NoReturn:
    """Raise the reasons no candidate is left (`rules.explain`)."""
    rejected: Counter[str] = Counter()
    candidates_with_reasons(model.cfg, n_devices, global_batch, max_tp, model.software.attention, rejected,
                            **choices)
    raise InfeasibleDesign(f"no valid plan of {model.cfg.name} on {n_devices} devices with global batch "
                           f"{global_batch} and choices {choices or 'default'}: {R.explain(rejected)}")


def _nothing_fits(model: CostModel, n_devices: int, global_batch: int, least_static: float) -> NoReturn:
    """Raise: no candidate fits in memory (with the static memory any plan needs)."""
    limit = model.memory_limit
    total = model.cfg.param_count() * R.static_bytes_per_param(model.storage_dtype, model.dtype)
    raise InfeasibleDesign(
        f"{model.cfg.name} fits under no plan on {n_devices} x {model.cluster.device_name} "
        f"({fmt_bytes(limit)} each) with global batch {global_batch}, seq {model.seq_len}: the least static memory "
        f"per device of any plan is {fmt_bytes(least_static)} and activations come on top; weights, gradients "
        f"and optimizer states total {fmt_bytes(total)}, i.e. at least {math.ceil(total / limit)} devices even "
        f"fully sharded; add devices, lower the micro-batch, or use recompute='full' with zero=3")


def order_by_bound(model: CostModel, plans: list[Plan]) -> tuple[list[tuple[float, Plan]], int, float]:
    """The plans whose static memory fits, sorted by their step-time lower bound (the branch and bound's order).

    Args:
        model: the cost model whose layer times and memory limit the bounds use.
        plans: buildable plans (`buildable_plans`).

    Returns:
        `(lower bound on the step time in s, plan)` pairs, ascending; the number of plans pruned
        because their static memory exceeds `model.memory_limit`; the least static memory of
        any plan in bytes (`math.inf` for no plans).
    """
    bound = _bound_data(model)
    scored, mem_pruned, least_static = [], 0, math.inf
    for plan in plans:
        t_lb, static_lb = bound(plan)
        least_static = min(least_static, static_lb)
        if static_lb > model.memory_limit:
            mem_pruned += 1
            continue
        scored.append((t_lb, plan))
    scored.sort(key=lambda x: x[0])
    return scored, mem_pruned, least_static


def search_plans(model: CostModel, n_devices: int, global_batch: int,
                 **choices: Any) -> tuple[TrainingResult, pd.DataFrame]:
    """Branch and bound over `candidate_plans` (module docstring); returns the best and the ranking.

    Feasibility is decided by the rules (`coda.placement.rules`) and the memory check of each
    evaluated plan; an exception from the cost model is a bug and propagates.
    """
    t0 = time.perf_counter()
    max_tp = model.cluster.levels[0].size if model.cluster.levels else 1
    candidates = candidate_plans(model.cfg, n_devices, global_batch, max_tp, model.software.attention, **choices)
    plans, unbuildable, per_graph = buildable_plans(model, candidates)
    if not plans:
        _no_plan(model, n_devices, global_batch, max_tp, choices)
    model.prefetch(per_graph)
    scored, mem_pruned, least_static = order_by_bound(model, plans)
    results: list[TrainingResult] = []
    best, infeasible, visited = math.inf, 0, 0
    for t_lb, plan in scored:
        if t_lb >= best:
            break
        visited += 1
        r = best_for_plan(model, plan)
        if r is None:
            infeasible += 1
            continue
        results.append(r)
        best = min(best, r.step_time_s)
    if not results:
        _nothing_fits(model, n_devices, global_batch, least_static)
    results.sort(key=lambda r: r.step_time_s)
    df = pd.DataFrame([_row(r) for r in results])
    df.attrs.update(candidates=len(plans) + unbuildable, evaluated=visited, pruned_by_bound=len(scored) - visited,
                    pruned_by_memory=mem_pruned, infeasible=infeasible, unbuildable=unbuildable,
                    seconds=time.perf_counter() - t0)
    return results[0], df


def optimize(cfg: ModelConfig | str, cluster: Cluster, global_batch: int, seq_len: int, n_devices: int | None = None,
             objective: str = "tokens_per_s", dtype: str = "bf16", software: Software | None = None,
             layer_time: Any = None, **choices: Any) -> tuple[Plan, TrainingResult, pd.DataFrame]:
    """The plan with the highest training throughput that fits in memory.

    Args:
        cfg: the model (or a preset name).
        cluster: the cluster; its device is a GPU, or an Accelerator timed with the on-chip ILP.
        global_batch: sequences per optimizer step.
        seq_len: tokens per sequence.
        n_devices: devices to use (default: all of the cluster's).
        objective: ``tokens_per_s`` (alias ``throughput``; with fixed devices and batch, the shortest step).
        dtype: element type of weights and activations.
        software: framework behaviour (`Software`), default FlashAttention + overlapped DP.
        layer_time: layer timer override (see `costs`).
        **choices: restrict the space: tp, pp, dp, micro_batch, recompute, sequence_parallel,
            zero, schedule, virtual_stages, cp, ep (a value or an iterable of values), stage_layers;
            recompute_every and hsdp (default 1) are searched only over the values given.

    Returns:
        (plan, its TrainingResult, ranked DataFrame of the evaluated alternatives; `df.attrs`
        counts candidates, evaluated, pruned and infeasible plans and the search time).

    Raises:
        InfeasibleDesign: no plan fits (with the memory it would need).
        ConfigError: unknown objective or choice.
    """
    as_objective(objective, OBJECTIVES)
    if isinstance(cfg, str):
        from coda.models import get

        cfg = get(cfg)
    n = cluster.n_devices if n_devices is None else n_devices
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= cluster.n_devices:
        raise ConfigError(f"n_devices={n_devices!r} must be between 1 and the cluster's {cluster.n_devices}")
    bad = R.positive_size("global_batch", global_batch) + R.positive_size("seq_len", seq_len)
    if bad:
        raise ConfigError(bad[0])
    too_many = R.batch_tokens_bound(global_batch, seq_len)
    if too_many:
        raise ConfigError(too_many[0])
    model = CostModel(cfg, cluster, seq_len, dtype, software or Software(), layer_time)
    best, df = search_plans(model, n, global_batch, **choices)
    return best.plan, best, df


__all__ = ["CHOICES", "MAX_MICRO_BATCH", "MAX_VIRTUAL_STAGES", "OBJECTIVES", "SIZE_CHOICES", "best_for_plan",
           "buildable_plans", "candidate_plans", "check_choices", "optimize", "order_by_bound", "search_plans"]
