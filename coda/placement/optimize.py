"""`optimize`: the fastest plan that fits, by enumeration around the stage-split DP.

Search space (declared as data, `itertools.product` plus filters): tp (powers of two dividing
the heads, within the innermost network domain), pp (dividing the devices left, at most the
layers), dp (the rest), micro-batch (dividing the batch per replica, <= 16), recomputation,
sequence parallelism (tp > 1), ZeRO stage (dp > 1), schedule (1F1B, or interleaved with v
chunks dividing the layers per stage, or with the embedding and the loss counted as layers when
the chunks divide layers + 2), and context and expert parallelism only when asked for
(`cp=2` or `cp=(1, 2, 4)`, which needs fused attention; `ep=(1, 8)` for MoE models, ep dividing
the experts and tp*cp*dp, with sequence parallelism when tp > 1). Any of them can be fixed or restricted by a keyword.
Selective recomputation is enumerated only with unfused attention: with FlashAttention the
scores are never stored and its backward already recomputes them, so selective equals none.

Exactness: for each candidate the stage split is the DP optimum (1F1B) or the balanced split
Megatron-LM requires (interleaved). Candidates are visited in order of a lower bound on their
step time, `sum of per-micro-batch unit times * (m + (p-1)/v) / p` (perfect balance, no
pipeline messages, no data-parallel or optimizer time), and the search stops when the bound
reaches the best step found, so the result is the optimum over the whole space. A candidate
whose weights, gradients and optimizer states alone (averaged over its stages) exceed memory is
skipped without evaluation.
"""

from __future__ import annotations

import itertools
import math
import time
from collections import Counter
from collections.abc import Iterable
from typing import Any

import pandas as pd

from coda.arch.clusters import Cluster
from coda.errors import CodaError, ConfigError, InfeasibleDesign
from coda.models.config import ModelConfig
from coda.placement import rules as R
from coda.placement.chain import CostModel, Software, collective_cost, optimizer_bytes_per_param
from coda.placement.dp import best_split
from coda.placement.pipeline import evaluate_split, split_problem, stage_layers_from_bounds
from coda.placement.plan import (
    ZERO_STAGES,
    Plan,
    Recompute,
    Schedule,
    lighter_ends_stage_layers,
    stage_layers_of,
)
from coda.placement.result import TrainingResult, make_result
from coda.placement.rules import plan_reasons
from coda.units import GiB, dtype_bytes, fmt_bytes

OBJECTIVES = ("throughput",)
CHOICES = ("tp", "pp", "dp", "micro_batch", "recompute", "sequence_parallel", "zero", "schedule", "virtual_stages",
           "stage_layers", "cp", "ep")
MAX_MICRO_BATCH = 16
MAX_VIRTUAL_STAGES = 8


def _as_set(value: Any) -> set[Any] | None:
    if value is None:
        return None
    if isinstance(value, (str, bool, int)) or not isinstance(value, Iterable):
        return {value}
    return set(value)


SIZE_CHOICES = ("tp", "pp", "dp", "micro_batch", "virtual_stages", "cp", "ep")


def _checked(name: str, values: set[Any]) -> set[Any]:
    """A choice's values, with string options normalised; bad values raise `ConfigError` naming them."""
    if name == "recompute":
        return {Recompute.from_str(v).value for v in values}
    if name == "schedule":
        return {Schedule.from_str(v).value for v in values}
    bad = [v for v in values if name == "zero" and v not in ZERO_STAGES
           or name in SIZE_CHOICES and (isinstance(v, bool) or not isinstance(v, int) or v < 1)]
    if bad:
        allowed = f"one of {ZERO_STAGES}" if name == "zero" else "positive integers"
        raise ConfigError(f"optimize choice {name}={sorted(bad, key=str)} is invalid: values must be {allowed}")
    return values


def check_choices(choices: dict[str, Any]) -> dict[str, set[Any]]:
    """`optimize`'s keyword choices as sets of allowed values (string options normalised), without
    `stage_layers` and unrestricted (None) entries.

    Raises:
        ConfigError: an unknown choice, or a value outside its option's range (both named).
    """
    unknown = set(choices) - set(CHOICES)
    if unknown:
        raise ConfigError(f"unknown optimize choice(s) {sorted(unknown)}; allowed: {', '.join(CHOICES)}")
    return {k: _checked(k, vs) for k, v in choices.items() if k != "stage_layers" and (vs := _as_set(v)) is not None}


def candidate_plans(cfg: ModelConfig, n_devices: int, global_batch: int, max_tp: int, attention: str = "fused",
                    **choices: Any) -> list[Plan]:
    """Every valid plan of the search space (module docstring), restricted by `choices`."""
    return _candidates(cfg, n_devices, global_batch, max_tp, attention, Counter(), **choices)


def _candidates(cfg: ModelConfig, n_devices: int, global_batch: int, max_tp: int, attention: str,
                rejected: Counter[str], **choices: Any) -> list[Plan]:
    """`candidate_plans`, counting in `rejected` the reasons (`coda.placement.rules`) candidates
    were dropped for: every rule a value the caller asked for breaks, and every rule a complete
    plan breaks; values outside the default ranges are not candidates and leave no reason."""
    want = check_choices(choices)

    def keep(name: str, values: Iterable[Any]) -> list[Any]:
        allowed = want.get(name)
        return [v for v in values if allowed is None or v in allowed]

    def passes(reasons: list[str], asked: bool = True) -> bool:
        """Whether no rule fails; the reasons are counted when the caller asked for the value."""
        if reasons and asked:
            rejected.update(reasons)
        return not reasons

    tp_set, rec_set, mb_set = want.get("tp"), want.get("recompute"), want.get("micro_batch")
    if tp_set:  # an explicit tp may exceed the default range
        tps = [t for t in sorted(tp_set) if passes(R.tp_divides_devices(t, n_devices))]
    else:
        tps = [t for t in (2 ** i for i in range(13)) if t <= min(max_tp, n_devices)
               and cfg.n_heads % t == 0 and cfg.ffn_hidden % t == 0]
    recomputes = ["none", "full"] + ([] if attention == "fused" else ["selective"])
    if rec_set:
        recomputes = sorted(str(r) for r in rec_set)
    cp_set, ep_set, v_set, pp_set = want.get("cp"), want.get("ep"), want.get("virtual_stages"), want.get("pp")
    cps = sorted(cp_set) if cp_set else [1]
    eps = [e for e in sorted(ep_set) if passes(R.ep_needs_moe(cfg, e) + R.ep_divides_experts(cfg, e))] \
        if ep_set else [1]
    fused = [R.cp_needs_fused_attention(c, attention) for c in cps]
    if any(fused):
        raise ConfigError("; ".join(next(f for f in fused if f)))
    given = choices.get("stage_layers")
    out: list[Plan] = []
    for tp, cp in itertools.product(tps, cps):
        if not passes(R.cp_divides_devices(tp, cp, n_devices), cp_set is not None):
            continue
        rest = n_devices // (tp * cp)
        if pp_set:
            pps = [p for p in sorted(pp_set) if passes(R.pp_divides_devices(tp, cp, p, n_devices))
                   and passes(R.pp_within_layers(cfg, p))]
        else:
            pps = [p for p in R.divisors(rest) if p <= cfg.n_layers]
        for pp in pps:
            dp = n_devices // (tp * cp * pp)
            if not keep("dp", [dp]):
                rejected.update(R.devices_match(tp, cp, pp, d, n_devices)[0] for d in want["dp"])
                continue
            if not passes(R.whole_micro_batches(global_batch, dp, 1)):
                continue
            if mb_set:
                mbs = [b for b in sorted(mb_set) if passes(R.whole_micro_batches(global_batch, dp, b))]
            else:
                mbs = [b for b in R.divisors(global_batch // dp) if b <= MAX_MICRO_BATCH]
            for mb, rec, sp, zero, ep in itertools.product(mbs, recomputes, keep("sequence_parallel", (False, True)),
                                                           keep("zero", (0, 1, 3)), eps):
                if not passes(R.sequence_parallel_needs_tp(sp, tp), "sequence_parallel" in want) or \
                        not passes(R.zero_needs_replicas(zero, dp, cp), "zero" in want):
                    continue
                m = global_batch // (dp * mb)
                schedules: list[tuple[str, int, Any]] = []
                for sched in keep("schedule", ("1f1b", "interleaved")):
                    vs = sorted(v_set) if v_set else [1] if sched == "1f1b" else range(2, MAX_VIRTUAL_STAGES + 1)
                    for v in vs:
                        why = (R.virtual_stages_need_interleaving(sched, v) + R.interleaving_needs_chunks(sched, v)
                               + R.interleaving_needs_pipeline(sched, pp) + R.interleaved_micro_batches(sched, pp, m))
                        if not passes(why, "schedule" in want or "virtual_stages" in want):
                            continue
                        layers = given
                        if sched == "interleaved" and given is None and cfg.n_layers % (pp * v):
                            layers = lighter_ends_stage_layers(cfg.n_layers, pp * v)  # embedding, loss as layers
                            if layers is None:
                                passes(R.chunks_divide_layers(cfg, sched, pp, v, None), "schedule" in want
                                       or "virtual_stages" in want)
                                continue
                        schedules.append((sched, v, layers))
                for sched, v, layers in schedules:
                    plan = Plan(tp, pp, dp, mb, global_batch, rec, sp, sched, v, zero, layers, cp, ep)
                    if passes(plan_reasons(plan, cfg, n_devices)):
                        out.append(plan)
    return out


def _bound_data(model: CostModel) -> Any:
    """Per-(tp, mb, sp, recompute) sums for the lower bound, computed once per search."""
    cache: dict[tuple[Any, ...], tuple[float, float, float]] = {}
    cfg, cl, e = model.cfg, model.cluster, dtype_bytes(model.storage_dtype)

    def sums(plan: Plan) -> tuple[float, float, float]:
        key = (plan.tp, plan.micro_batch, plan.sequence_parallel, plan.recompute, plan.cp, plan.ep)
        if key not in cache:
            pr = model.profile(plan.tp, plan.micro_batch, plan.sequence_parallel, plan.cp, plan.ep)
            mult = (1, *cfg.block_counts, 1)  # how often each distinct layer occurs
            coll = sum(m * collective_cost(cl, k, plan.tp).time(b) for i, m in enumerate(mult)
                       for k, b in pr.fwd_coll[i] + pr.bwd_coll[i])
            rec = sum(m * {"none": 0.0, "selective": pr.selective_s[i], "full": pr.fwd_s[i] + sum(
                collective_cost(cl, k, plan.tp).time(b) for k, b in pr.fwd_coll[i])}[plan.recompute]
                for i, m in enumerate(mult) if 0 < i < len(mult) - 1)
            t = sum(m * (pr.fwd_s[i] + pr.bwd_s[i]) for i, m in enumerate(mult)) + rec + coll
            params = sum(m * pr.params[i] for i, m in enumerate(mult))
            experts = sum(m * pr.expert_params[i] for i, m in enumerate(mult)) if plan.ep > 1 else 0.0
            cache[key] = (t, params + (pr.table_params if cfg.tied_embeddings else 0.0), experts)
        return cache[key]

    def bound(plan: Plan) -> tuple[float, float]:
        """(step-time lower bound, static-memory lower bound per device)."""
        t, params, experts = sums(plan)
        p, v, m = plan.pp, plan.virtual_stages, plan.micro_batches
        if p == 1 and cfg.tied_embeddings:
            params -= model.profile(plan.tp, plan.micro_batch, plan.sequence_parallel, plan.cp, plan.ep).table_params
        shard = plan.dp * plan.cp
        e_shard = plan.tp * shard // plan.ep  # devices holding the same experts

        opt = optimizer_bytes_per_param(model.dtype)

        def per_param(n: int) -> float:  # weight, gradient and optimizer bytes of a parameter sharded over n
            return 2 * e / (n if plan.zero == 3 else 1) + opt / (n if plan.zero else 1)

        static = (params - experts) * per_param(shard) + experts * per_param(e_shard)
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
                sequence_parallel=p.sequence_parallel, schedule=p.schedule, virtual_stages=p.virtual_stages,
                zero=p.zero, stage_layers=str(list(p.stage_layers or ())), step_s=r.step_time_s,
                tokens_per_s=r.tokens_per_s, mfu=r.mfu, hfu=r.hfu, peak_memory_GiB=r.peak_memory_bytes / GiB)


def search(model: CostModel, n_devices: int, global_batch: int, **choices: Any) -> tuple[TrainingResult, pd.DataFrame]:
    """Branch and bound over `candidate_plans` (module docstring); returns the best and the ranking."""
    t0 = time.perf_counter()
    max_tp = model.cluster.levels[0].size if model.cluster.levels else 1
    plans = candidate_plans(model.cfg, n_devices, global_batch, max_tp, model.software.attention, **choices)
    split = [p for p in plans if not R.cp_splits_sequence(p.cp, model.seq_len)]
    if plans and not split:
        raise ConfigError("; ".join(dict.fromkeys(r for p in plans for r in R.cp_splits_sequence(p.cp, model.seq_len))))
    plans = split
    if not plans:
        rejected: Counter[str] = Counter()
        _candidates(model.cfg, n_devices, global_batch, max_tp, model.software.attention, rejected, **choices)
        raise InfeasibleDesign(f"no valid plan of {model.cfg.name} on {n_devices} devices with global batch "
                               f"{global_batch} and choices {choices or 'default'}: {R.explain(rejected)}")
    model.prefetch(sorted({(p.tp, p.micro_batch, p.sequence_parallel, p.cp, p.ep) for p in plans}))
    bound = _bound_data(model)
    limit = model.memory_limit
    scored, mem_pruned, least_static = [], 0, math.inf
    for plan in plans:
        try:
            t_lb, static_lb = bound(plan)
        except CodaError:
            continue
        least_static = min(least_static, static_lb)
        if static_lb > limit:
            mem_pruned += 1
            continue
        scored.append((t_lb, plan))
    scored.sort(key=lambda x: x[0])
    results: list[TrainingResult] = []
    best, infeasible, visited = math.inf, 0, 0
    for t_lb, plan in scored:
        if t_lb >= best:
            break
        visited += 1
        try:
            r = best_for_plan(model, plan)
        except CodaError:
            r = None
        if r is None:
            infeasible += 1
            continue
        results.append(r)
        best = min(best, r.step_time_s)
    if not results:
        per_param = 2 * dtype_bytes(model.storage_dtype) + optimizer_bytes_per_param(model.dtype)
        total = model.cfg.param_count() * per_param
        raise InfeasibleDesign(
            f"{model.cfg.name} fits under no plan on {n_devices} x {model.cluster.device_name} "
            f"({fmt_bytes(limit)} each) with global batch {global_batch}, seq {model.seq_len}: the least static memory "
            f"per device of any plan is {fmt_bytes(least_static)} and activations come on top; weights, gradients "
            f"and optimizer states total {fmt_bytes(total)}, i.e. at least {math.ceil(total / limit)} devices even "
            f"fully sharded; add devices, lower the micro-batch, or use recompute='full' with zero=3")
    results.sort(key=lambda r: r.step_time_s)
    df = pd.DataFrame([_row(r) for r in results])
    df.attrs.update(candidates=len(plans), evaluated=visited, pruned_by_bound=len(scored) - visited,
                    pruned_by_memory=mem_pruned, infeasible=infeasible, seconds=time.perf_counter() - t0)
    return results[0], df


def optimize(cfg: ModelConfig | str, cluster: Cluster, global_batch: int, seq_len: int, n_devices: int | None = None,
             objective: str = "throughput", dtype: str = "bf16", software: Software | None = None,
             layer_time: Any = None, **choices: Any) -> tuple[Plan, TrainingResult, pd.DataFrame]:
    """The plan with the highest training throughput that fits in memory.

    Args:
        cfg: the model (or a preset name).
        cluster: the cluster; its device is a GPU, or an Accelerator timed with the on-chip ILP.
        global_batch: sequences per optimizer step.
        seq_len: tokens per sequence.
        n_devices: devices to use (default: all of the cluster's).
        objective: ``throughput`` (tokens/s; with fixed devices and batch, the shortest step).
        dtype: element type of weights and activations.
        software: framework behaviour (`Software`), default FlashAttention + overlapped DP.
        layer_time: layer timer override (see `costs`).
        **choices: restrict the space: tp, pp, dp, micro_batch, recompute, sequence_parallel,
            zero, schedule, virtual_stages, cp, ep (a value or an iterable of values), stage_layers.

    Returns:
        (plan, its TrainingResult, ranked DataFrame of the evaluated alternatives; `df.attrs`
        counts candidates, evaluated, pruned and infeasible plans and the search time).

    Raises:
        InfeasibleDesign: no plan fits (with the memory it would need).
        ConfigError: unknown objective or choice.
    """
    if objective not in OBJECTIVES:
        raise ConfigError(f"objective={objective!r} must be one of {', '.join(OBJECTIVES)}")
    if isinstance(cfg, str):
        from coda.models import get

        cfg = get(cfg)
    n = cluster.n_devices if n_devices is None else n_devices
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= cluster.n_devices:
        raise ConfigError(f"n_devices={n_devices!r} must be between 1 and the cluster's {cluster.n_devices}")
    if isinstance(global_batch, bool) or not isinstance(global_batch, int) or global_batch < 1:
        raise ConfigError(f"global_batch={global_batch!r} must be a positive integer")
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1:
        raise ConfigError(f"seq_len={seq_len!r} must be a positive integer")
    too_many = R.batch_tokens_bound(global_batch, seq_len)
    if too_many:
        raise ConfigError(too_many[0])
    model = CostModel(cfg, cluster, seq_len, dtype, software or Software(), layer_time)
    best, df = search(model, n, global_batch, **choices)
    return best.plan, best, df
