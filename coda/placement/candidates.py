"""The plan search space of `optimize`, declared as data and enumerated with `itertools.product`
plus filters (`coda.placement.rules`, one function per fact).

Search space: tp (powers of two dividing the heads, within the innermost network domain), pp
(dividing the devices left, at most the layers), dp (the rest), micro-batch (dividing the batch
per replica, <= 16), recomputation, sequence parallelism (tp > 1), ZeRO stage (dp > 1), schedule
(1F1B, or interleaved with v chunks dividing the layers per stage, or with the embedding and the
loss counted as layers when the chunks divide layers + 2), and context and expert parallelism
only when asked for (`cp=2` or `cp=(1, 2, 4)`, which needs fused attention; `ep=(1, 8)` for MoE
models, ep dividing the experts and tp*cp*dp, with sequence parallelism when tp > 1). Any of them
can be fixed or restricted by a keyword. Selective recomputation is enumerated only with unfused
attention: with FlashAttention the scores are never stored and its backward already recomputes
them, so selective equals none.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from coda.errors import ConfigError
from coda.models.config import ModelConfig
from coda.placement import rules as R
from coda.placement.plan import (
    ZERO_STAGES,
    PipelineSchedule,
    Plan,
    Recompute,
    lighter_ends_stage_layers,
)
from coda.placement.rules import plan_reasons

CHOICES = ("tp", "pp", "dp", "micro_batch", "recompute", "sequence_parallel", "zero", "schedule", "virtual_stages",
           "stage_layers", "cp", "ep", "recompute_every", "hsdp")
MAX_MICRO_BATCH = 16
MAX_VIRTUAL_STAGES = 8


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
    bad = [v for v in values if name == "zero" and R.zero_stage(v) or name in SIZE_CHOICES and R.positive_size(name, v)]
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
    return candidates_with_reasons(cfg, n_devices, global_batch, max_tp, attention, Counter(), **choices)


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


def candidates_with_reasons(cfg: ModelConfig, n_devices: int, global_batch: int, max_tp: int, attention: str,
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


__all__ = ["CHOICES", "MAX_MICRO_BATCH", "MAX_VIRTUAL_STAGES", "SIZE_CHOICES", "candidate_plans",
           "candidates_with_reasons", "check_choices"]
