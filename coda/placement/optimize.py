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
import operator
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NoReturn

import pandas as pd

from coda.arch.clusters import Cluster
from coda.errors import ConfigError, InfeasibleDesign
from coda.models.config import ModelConfig
from coda.objectives import objective as as_objective
from coda.placement import rules as R
from coda.placement.chain import CostModel, Software, collective_cost
from coda.placement.dp import best_split
from coda.placement.layout import GRAPH_FIELDS
from coda.placement.pipeline import evaluate_split, split_problem, stage_layers_from_bounds
from coda.placement.plan import (
    ZERO_STAGES,
    PipelineSchedule,
    Plan,
    Recompute,
    lighter_ends_stage_layers,
    stage_layers_of,
)
from coda.placement.result import TrainingResult, make_result
from coda.placement.rules import plan_reasons
from coda.units import fmt_bytes

OBJECTIVES = ("tokens_per_s",)
"""What `optimize` can rank by (`coda.objectives`; ``throughput`` is an alias of ``tokens_per_s``)."""
CHOICES = ("tp", "pp", "dp", "micro_batch", "recompute", "sequence_parallel", "zero", "schedule", "virtual_stages",
           "stage_layers", "cp", "ep", "recompute_every", "hsdp")
MAX_MICRO_BATCH = 16
MAX_VIRTUAL_STAGES = 8

_graph_key = operator.attrgetter(*GRAPH_FIELDS)
"""A plan's `GRAPH_FIELDS` as a tuple: equal exactly when the plans' `graph_layout`s are equal, and far
cheaper to build and hash per candidate than the `Layout` itself (the search groups tens of
thousands of candidates by it)."""


def _as_set(value: Any) -> set[Any] | None:
    if value is None:
        return None
    if isinstance(value, (str, bool, int)) or not isinstance(value, Iterable):
        return {value}
    return set(value)


SIZE_CHOICES = ("tp", "pp", "dp", "micro_batch", "virtual_stages", "cp", "ep", "recompute_every", "hsdp")


def _checked(name: str, values: set[Any]) -> set[Any]:
    """A choice's values, with string options normalised; bad values raise `ConfigError` naming them."""
    if name == "recompute":
        return {Recompute.from_str(v).value for v in values}
    if name == "schedule":
        return {PipelineSchedule.from_str(v).value for v in values}
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


@dataclass(frozen=True)
class _Space:
    """One enumeration: the fixed inputs, the caller's restrictions (`want`) and the counter of the
    reasons (`coda.placement.rules`) values were dropped for."""

    cfg: ModelConfig
    n_devices: int
    global_batch: int
    max_tp: int
    attention: str
    want: dict[str, set[Any]]
    rejected: Counter[str]
    given: Any  # stage_layers, or None
    schedules: dict[tuple[int, int], tuple[list[tuple[str, int, Any]], list[str]]] = field(default_factory=dict)
    """`_schedules` by (pp, m): its choices and the reasons it counted (counted again on a hit)."""

    def keep(self, name: str, values: Iterable[Any]) -> list[Any]:
        """The values the caller allows for `name`."""
        allowed = self.want.get(name)
        return [v for v in values if allowed is None or v in allowed]

    def passes(self, reasons: list[str], asked: bool = True) -> bool:
        """Whether no rule fails; the reasons are counted when the caller asked for the value."""
        if reasons and asked:
            self.rejected.update(reasons)
        return not reasons

    def asked(self, *names: str) -> bool:
        return any(n in self.want for n in names)


def _tps(sp: _Space) -> list[int]:
    """Tensor-parallel widths: the caller's (dividing the devices), or the powers of two within the
    innermost network domain that split the model."""
    tp_set = sp.want.get("tp")
    if tp_set:  # an explicit tp may exceed the default range
        return [t for t in sorted(tp_set) if sp.passes(R.tp_divides_devices(t, sp.n_devices))]
    return [t for t in (2 ** i for i in range(13)) if t <= min(sp.max_tp, sp.n_devices)
            and not R.tp_divides_model(sp.cfg, t)]


def _recomputes(sp: _Space) -> list[str]:
    """Recomputation modes: selective only with unfused attention (module docstring)."""
    rec_set = sp.want.get("recompute")
    if rec_set:
        return sorted(str(r) for r in rec_set)
    return ["none", "full"] + ([] if sp.attention == "fused" else ["selective"])


def _cps(sp: _Space) -> list[int]:
    """Context-parallel widths (1 unless asked for; they need fused attention)."""
    return sorted(sp.want["cp"]) if sp.want.get("cp") else [1]


def _check_fused(sp: _Space, cps: list[int]) -> None:
    """Context parallelism runs in fused attention kernels: asking for it otherwise is an error."""
    fused = [R.cp_needs_fused_attention(c, sp.attention) for c in cps]
    if any(fused):
        raise ConfigError("; ".join(next(f for f in fused if f)))


def _eps(sp: _Space) -> list[int]:
    """Expert-parallel widths (1 unless asked for; an MoE model whose experts they divide)."""
    ep_set = sp.want.get("ep")
    if not ep_set:
        return [1]
    return [e for e in sorted(ep_set) if sp.passes(R.ep_needs_moe(sp.cfg, e) + R.ep_divides_experts(sp.cfg, e))]


def _pps(sp: _Space, tp: int, cp: int) -> list[int]:
    """Pipeline depths: the caller's, or every divisor of the devices left, at most the layers."""
    pp_set = sp.want.get("pp")
    if pp_set:
        return [p for p in sorted(pp_set) if sp.passes(R.pp_divides_devices(tp, cp, p, sp.n_devices))
                and sp.passes(R.pp_within_layers(sp.cfg, p))]
    return [p for p in R.divisors(sp.n_devices // (tp * cp)) if p <= sp.cfg.n_layers]


def _mbs(sp: _Space, dp: int) -> list[int]:
    """Micro-batch sizes: the caller's, or the divisors of the batch per replica up to `MAX_MICRO_BATCH`."""
    mb_set = sp.want.get("micro_batch")
    if mb_set:
        return [b for b in sorted(mb_set) if sp.passes(R.whole_micro_batches(sp.global_batch, dp, b))]
    return [b for b in R.divisors(sp.global_batch // dp) if b <= MAX_MICRO_BATCH]


def _schedules(sp: _Space, pp: int, m: int) -> list[tuple[str, int, Any]]:
    """(schedule, virtual stages, stage_layers) choices for pp stages and m micro-batches, computed
    once per (pp, m) in a search (the reasons they drop are counted at every call, as if computed again)."""
    hit = sp.schedules.get((pp, m))
    if hit is None:
        hit = sp.schedules[(pp, m)] = _schedules_of(sp, pp, m)
    out, counted = hit
    sp.rejected.update(counted)
    return out


def _schedules_of(sp: _Space, pp: int, m: int) -> tuple[list[tuple[str, int, Any]], list[str]]:
    """`_schedules`, and the reasons to count (those of values the caller asked for)."""
    out: list[tuple[str, int, Any]] = []
    counted: list[str] = []
    v_set, asked = sp.want.get("virtual_stages"), sp.asked("schedule", "virtual_stages")
    for sched in sp.keep("schedule", ("1f1b", "interleaved")):
        vs = sorted(v_set) if v_set else [1] if sched == "1f1b" else range(2, MAX_VIRTUAL_STAGES + 1)
        for v in vs:
            why = (R.virtual_stages_need_interleaving(sched, v) + R.interleaving_needs_chunks(sched, v)
                   + R.interleaving_needs_pipeline(sched, pp) + R.interleaved_micro_batches(sched, pp, m))
            if why:
                counted += why if asked else []
                continue
            layers = sp.given
            if sched == "interleaved" and sp.given is None and sp.cfg.n_layers % (pp * v):
                layers = lighter_ends_stage_layers(sp.cfg.n_layers, pp * v)  # embedding, loss as layers
                if layers is None:
                    counted += R.chunks_divide_layers(sp.cfg, sched, pp, v, None) if asked else []
                    continue
            out.append((sched, v, layers))
    return out, counted


def _plans_at(sp: _Space, tp: int, cp: int, pp: int, dp: int, recomputes: list[str], eps: list[int]) -> list[Plan]:
    """The valid plans with sizes tp, cp, pp, dp."""
    out = []
    asked_sp, asked_zero = sp.asked("sequence_parallel"), sp.asked("zero")
    every = sorted(sp.want.get("recompute_every") or (1,))  # every k-th block checkpointed: searched when asked
    hsdps = sorted(sp.want.get("hsdp") or (1,))  # hybrid sharding's replica groups: searched when asked
    for mb, rec, seq_par, zero, ep, k, h in itertools.product(_mbs(sp, dp), recomputes,
                                                              sp.keep("sequence_parallel", (False, True)),
                                                              sp.keep("zero", ZERO_STAGES), eps, every, hsdps):
        if not sp.passes(R.sequence_parallel_needs_tp(seq_par, tp), asked_sp) or \
                not sp.passes(R.zero_needs_replicas(zero, dp, cp), asked_zero) or \
                not sp.passes(R.recompute_every_needs_full(rec, k)) or \
                not sp.passes(R.hsdp_divides_replicas(h, dp, cp) + R.hsdp_needs_zero(zero, h)
                              + R.hsdp_without_experts(ep, h)):
            continue
        for sched, v, layers in _schedules(sp, pp, sp.global_batch // (dp * mb)):
            plan = Plan(tp=tp, pp=pp, dp=dp, micro_batch=mb, global_batch=sp.global_batch, recompute=rec,
                        sequence_parallel=seq_par, schedule=sched, virtual_stages=v, zero=zero, stage_layers=layers,
                        cp=cp, ep=ep, recompute_every=k, hsdp=h)
            if sp.passes(plan_reasons(plan, sp.cfg, sp.n_devices)):
                out.append(plan)
    return out


def _candidates(cfg: ModelConfig, n_devices: int, global_batch: int, max_tp: int, attention: str,
                rejected: Counter[str], **choices: Any) -> list[Plan]:
    """`candidate_plans`, counting in `rejected` the reasons (`coda.placement.rules`) candidates
    were dropped for: every rule a value the caller asked for breaks, and every rule a complete
    plan breaks; values outside the default ranges are not candidates and leave no reason."""
    sp = _Space(cfg, n_devices, global_batch, max_tp, attention, check_choices(choices), rejected,
                choices.get("stage_layers"))
    tps, recomputes, cps, eps = _tps(sp), _recomputes(sp), _cps(sp), _eps(sp)
    _check_fused(sp, cps)
    out: list[Plan] = []
    for tp, cp in itertools.product(tps, cps):
        if not sp.passes(R.cp_divides_devices(tp, cp, n_devices), sp.want.get("cp") is not None):
            continue
        for pp in _pps(sp, tp, cp):
            dp = n_devices // (tp * cp * pp)
            if not sp.keep("dp", [dp]):
                rejected.update(R.devices_match(tp, cp, pp, d, n_devices)[0] for d in sp.want["dp"])
                continue
            if sp.passes(R.whole_micro_batches(global_batch, dp, 1)):
                out += _plans_at(sp, tp, cp, pp, dp, recomputes, eps)
    return out


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
            coll = sum(m * collective_cost(cl, k, plan.tp).time(b) for i, m in enumerate(mult)
                       for k, b in pr.fwd_coll[i] + pr.bwd_coll[i])
            rec = sum(m * {"none": 0.0, "selective": pr.selective_s[i], "full": pr.fwd_s[i] + sum(
                collective_cost(cl, k, plan.tp).time(b) for k, b in pr.fwd_coll[i])}[plan.recompute]
                for i, m in enumerate(mult) if 0 < i < len(mult) - 1)
            if plan.recompute_every > 1:  # a lower bound: at least 1 in k blocks, of the cheapest kind, runs again
                rec = -(-cfg.n_layers // plan.recompute_every) * min(
                    pr.fwd_s[i] + sum(collective_cost(cl, k, plan.tp).time(b) for k, b in pr.fwd_coll[i])
                    for i in range(1, len(mult) - 1))
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
            shards = (n if plan.zero == 3 else 1, n if plan.zero else 1, n if plan.zero >= 2 else 1)
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


def _buildable(model: CostModel, plans: list[Plan]) -> tuple[list[Plan], int, list[Plan]]:
    """The plans whose layer graphs can be built at this sequence length (`rules.graph_reasons`),
    how many were dropped, and one of them per graph layout (what `CostModel.prefetch` needs).
    Context parallelism that cannot split the sequence is refused outright when it is all that
    was asked for."""
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
    _candidates(model.cfg, n_devices, global_batch, max_tp, model.software.attention, rejected, **choices)
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


def _order(model: CostModel, plans: list[Plan]) -> tuple[list[tuple[float, Plan]], int, float]:
    """The plans whose static memory bound fits, by step-time lower bound; the count pruned by
    memory and the least static memory of any plan."""
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
    plans, unbuildable, per_graph = _buildable(model, candidate_plans(model.cfg, n_devices, global_batch, max_tp,
                                                                      model.software.attention, **choices))
    if not plans:
        _no_plan(model, n_devices, global_batch, max_tp, choices)
    model.prefetch(per_graph)
    scored, mem_pruned, least_static = _order(model, plans)
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
    if isinstance(global_batch, bool) or not isinstance(global_batch, int) or global_batch < 1:
        raise ConfigError(f"global_batch={global_batch!r} must be a positive integer")
    if isinstance(seq_len, bool) or not isinstance(seq_len, int) or seq_len < 1:
        raise ConfigError(f"seq_len={seq_len!r} must be a positive integer")
    too_many = R.batch_tokens_bound(global_batch, seq_len)
    if too_many:
        raise ConfigError(too_many[0])
    model = CostModel(cfg, cluster, seq_len, dtype, software or Software(), layer_time)
    best, df = search_plans(model, n, global_batch, **choices)
    return best.plan, best, df
