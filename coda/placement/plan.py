"""`Plan`: how a model is laid out on a cluster for training, and its validation.

Glossary: tp = tensor-parallel width (Megatron column/row split inside a layer), pp = pipeline
stages, dp = data-parallel replicas, m = micro-batches per pipeline per step
(`global_batch / (dp * micro_batch)`), v = virtual stages (model chunks per device in the
interleaved schedule), ZeRO stage (Rajbhandari et al., SC'20): 0 = replicated optimizer,
1 = optimizer states sharded over dp, 3 = weights, gradients and optimizer states sharded (FSDP).

Rank layout (Megatron-LM's, Megatron-Core's order tp-cp-dp-pp): tensor-parallel groups are `tp`
consecutive ranks, context-parallel groups (cp > 1: each device holds 1/cp of every sequence)
are strided by `tp`, data-parallel groups by `tp*cp`, and pipeline stages are blocks of
`tp*cp*dp` ranks. Stage `s` owns ranks `s*tp*cp*dp .. (s+1)*tp*cp*dp - 1`. Gradients are
reduced (and ZeRO states sharded) over the `cp*dp` ranks that hold the same weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from coda.errors import ConfigError, InfeasibleDesign
from coda.models.config import ModelConfig


def _h(text: str) -> dict[str, str]:
    return {"help": text}


class _Choice(str, Enum):
    """A string option parsed case-insensitively; bad values raise `ConfigError` naming the field
    (the class name, lower-case) and the valid values."""

    @classmethod
    def from_str(cls, name: Any) -> Any:
        try:
            return cls(str(getattr(name, "value", name)).strip().lower())
        except ValueError:
            raise ConfigError(f"{cls.__name__.lower()}={name!r} must be one of "
                              f"{', '.join(c.value for c in cls)}") from None


class Recompute(_Choice):
    """Activation recomputation (Korthikanti et al. 2022, section 5)."""

    NONE = "none"
    SELECTIVE = "selective"
    FULL = "full"


class Schedule(_Choice):
    """Pipeline schedule: 1F1B (PipeDream-Flush) or interleaved 1F1B (Narayanan et al. SC'21)."""

    ONE_F_ONE_B = "1f1b"
    INTERLEAVED = "interleaved"


ZERO_STAGES = (0, 1, 3)


@dataclass(frozen=True)
class Plan:
    """A parallel training plan. Check it against a model and a cluster with `validate_plan`.

    `stage_layers` gives the transformer blocks of each pipeline stage (length pp), or of each
    model chunk with the interleaved schedule (length pp*v, chunk c on device stage c % pp);
    None means balanced. The embedding always sits in the first stage and the head + loss in
    the last, so the first and last entries may be 0; middle ones must be >= 1.
    """

    tp: int = field(default=1, metadata=_h("tensor-parallel width"))
    pp: int = field(default=1, metadata=_h("pipeline stages"))
    dp: int = field(default=1, metadata=_h("data-parallel replicas"))
    micro_batch: int = field(default=1, metadata=_h("sequences per micro-batch"))
    global_batch: int = field(default=1, metadata=_h("sequences per optimizer step"))
    recompute: str = field(default="none", metadata=_h("none | selective | full activation recomputation"))
    sequence_parallel: bool = field(default=False, metadata=_h("Megatron sequence parallelism (needs tp > 1)"))
    schedule: str = field(default="1f1b", metadata=_h("1f1b | interleaved"))
    virtual_stages: int = field(default=1, metadata=_h("model chunks per device (interleaved schedule)"))
    zero: int = field(default=0, metadata=_h("ZeRO stage 0, 1 or 3"))
    stage_layers: tuple[int, ...] | None = field(default=None,
                                                 metadata=_h("blocks per stage (or chunk); None = balanced"))
    cp: int = field(default=1, metadata=_h("context-parallel width (sequence split over cp devices)"))
    ep: int = field(default=1, metadata=_h("expert-parallel width (MoE: experts spread over ep of the tp*cp*dp "
                                           "devices)"))

    def __post_init__(self) -> None:
        for name in ("tp", "pp", "dp", "micro_batch", "global_batch", "virtual_stages", "cp", "ep"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ConfigError(f"Plan.{name}={v!r} must be a positive integer")
        object.__setattr__(self, "recompute", Recompute.from_str(self.recompute).value)
        object.__setattr__(self, "schedule", Schedule.from_str(self.schedule).value)
        if self.zero not in ZERO_STAGES or isinstance(self.zero, bool):
            raise ConfigError(f"Plan.zero={self.zero!r} must be one of {ZERO_STAGES}")
        if not isinstance(self.sequence_parallel, bool):
            raise ConfigError(f"Plan.sequence_parallel={self.sequence_parallel!r} must be True or False")
        if self.sequence_parallel and self.tp == 1:
            object.__setattr__(self, "sequence_parallel", False)  # no-op without tensor parallelism
        if self.schedule == "1f1b" and self.virtual_stages != 1:
            raise ConfigError(f"virtual_stages={self.virtual_stages} needs schedule='interleaved'; use 1 with 1f1b")
        if self.schedule == "interleaved" and self.pp == 1:
            raise ConfigError("the interleaved schedule needs pp > 1; use schedule='1f1b'")
        if self.stage_layers is not None:
            sl = tuple(self.stage_layers)
            if any(isinstance(x, bool) or not isinstance(x, int) or x < 0 for x in sl):
                raise ConfigError(f"Plan.stage_layers={sl!r} must be non-negative integers")
            object.__setattr__(self, "stage_layers", sl)

    @property
    def n_devices(self) -> int:
        """Devices the plan uses, tp * cp * pp * dp."""
        return self.tp * self.cp * self.pp * self.dp

    @property
    def micro_batches(self) -> int:
        """Micro-batches per pipeline per step, m = global_batch / (dp * micro_batch) (exact after validation)."""
        return self.global_batch // (self.dp * self.micro_batch)

    @property
    def chunks(self) -> int:
        """Model chunks in the pipeline, pp * v."""
        return self.pp * self.virtual_stages

    def replace(self, **changes: Any) -> Plan:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def describe(self) -> str:
        """One line, e.g. `tp8 pp16 dp8 mb1 gb1536 full sp interleaved(v=2) zero0` (`cp2` after tp when cp > 1,
        `ep8` after dp when ep > 1)."""
        cp = f" cp{self.cp}" if self.cp > 1 else ""
        ep = f" ep{self.ep}" if self.ep > 1 else ""
        s = f"tp{self.tp}{cp} pp{self.pp} dp{self.dp}{ep} mb{self.micro_batch} gb{self.global_batch} {self.recompute}"
        s += " sp" if self.sequence_parallel else ""
        s += f" interleaved(v={self.virtual_stages})" if self.schedule == "interleaved" else " 1f1b"
        return s + f" zero{self.zero}"


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _nearest(values: list[int], target: int, k: int = 3) -> str:
    best = sorted(values, key=lambda v: (abs(v - target), v))[:k]
    return ", ".join(str(v) for v in sorted(best))


def balanced_stage_layers(n_layers: int, chunks: int) -> tuple[int, ...]:
    """Blocks per chunk, as even as possible, remainder to the middle chunks first.

    The first and last chunks also hold the embedding and the head, so the remainder goes to
    the chunks between them before the ends.
    """
    base, extra = divmod(n_layers, chunks)
    order = list(range(1, chunks - 1)) + [0, chunks - 1] if chunks > 2 else list(range(chunks))
    out = [base] * chunks
    for i in order[:extra]:
        out[i] += 1
    return tuple(out)


def lighter_ends_stage_layers(n_layers: int, chunks: int) -> tuple[int, ...] | None:
    """Blocks per chunk with the embedding and the loss counted as one layer each, as
    Megatron-Bridge lays out pipelines (`account_for_embedding_in_pipeline_split`,
    `account_for_loss_in_pipeline_split`): `c = (n_layers + 2) / chunks` per chunk, `c - 1` in the
    first and the last; None unless chunks divides n_layers + 2 (and c >= 2)."""
    c, rem = divmod(n_layers + 2, chunks)
    if rem or c < 2 or chunks < 2:
        return None
    return (c - 1, *[c] * (chunks - 2), c - 1)


def stage_layers_of(plan: Plan, n_layers: int) -> tuple[int, ...]:
    """The plan's blocks per chunk (pp entries for 1F1B, pp*v for interleaved)."""
    if plan.stage_layers is not None:
        return plan.stage_layers
    return balanced_stage_layers(n_layers, plan.chunks)


def validate_plan(plan: Plan, cfg: ModelConfig, n_devices: int | None = None) -> None:
    """Check a plan against a model and a device count; raise with the numbers and nearby fixes.

    Raises:
        InfeasibleDesign: sizes that do not multiply to the devices, tp not dividing the heads,
            a micro-batch count that is not a positive integer, a pipeline deeper than the layers,
            interleaving that does not divide the layers, bad stage_layers.
    """
    if n_devices is not None and plan.n_devices != n_devices:
        inner = plan.tp * plan.cp
        other = n_devices // (inner * plan.pp) if n_devices % (inner * plan.pp) == 0 else None
        tp = "tp*cp" if plan.cp > 1 else "tp"
        if other:
            hint = f"use dp={other}"
        elif n_devices % inner == 0:
            hint = f"{tp}*pp must divide {n_devices}; e.g. pp in {{{_nearest(_divisors(n_devices // inner), plan.pp)}}}"
        else:
            hint = f"{tp} must divide {n_devices}"
        sizes = f"tp*cp*pp*dp = {plan.tp}*{plan.cp}*" if plan.cp > 1 else f"tp*pp*dp = {plan.tp}*"
        raise InfeasibleDesign(f"{sizes}{plan.pp}*{plan.dp} = {plan.n_devices} devices, but the cluster "
                               f"has {n_devices}; {hint}")
    if cfg.n_heads % plan.tp:
        ok = [d for d in _divisors(cfg.n_heads) if d <= max(plan.tp * 2, 8)]
        raise InfeasibleDesign(f"{cfg.name}: tp={plan.tp} must divide its {cfg.n_heads} attention heads; "
                               f"nearest valid tp: {_nearest(ok, plan.tp)}")
    if cfg.ffn_hidden % plan.tp:
        raise InfeasibleDesign(f"{cfg.name}: tp={plan.tp} must divide ffn_hidden={cfg.ffn_hidden}")
    per_replica, rem = divmod(plan.global_batch, plan.dp * plan.micro_batch)
    if rem or per_replica < 1:
        per_dp = plan.global_batch / plan.dp
        mbs = _divisors(plan.global_batch // plan.dp) if plan.global_batch % plan.dp == 0 else []
        below, above = (plan.global_batch // plan.dp) * plan.dp or plan.dp, (plan.global_batch // plan.dp + 1) * plan.dp
        hint = (f"micro_batch must divide {plan.global_batch}/{plan.dp} = {plan.global_batch // plan.dp}; nearest: "
                f"{_nearest(mbs, plan.micro_batch)}" if mbs else
                f"dp={plan.dp} must divide global_batch={plan.global_batch}; nearest global batches: {below}, {above}")
        raise InfeasibleDesign(f"micro-batches per pipeline = global_batch/(dp*micro_batch) = {plan.global_batch}/"
                               f"({plan.dp}*{plan.micro_batch}) = {per_dp / plan.micro_batch:g} is not a positive "
                               f"integer; {hint}")
    if plan.ep > 1:
        if not cfg.is_moe or cfg.n_experts % plan.ep:
            raise InfeasibleDesign(f"{cfg.name}: ep={plan.ep} must divide its {cfg.n_experts} experts"
                                   + ("" if cfg.is_moe else " (expert parallelism needs an MoE model)"))
        inner = plan.tp * plan.cp * plan.dp
        if inner % plan.ep:
            raise InfeasibleDesign(f"ep={plan.ep} must divide tp*cp*dp = {inner} (the devices of a pipeline stage, "
                                   f"over which the expert layers are laid out); valid ep: "
                                   f"{[e for e in _divisors(inner) if cfg.n_experts % e == 0]}")
        if plan.tp > 1 and not plan.sequence_parallel:
            raise InfeasibleDesign(f"expert parallelism with tp={plan.tp} needs sequence_parallel=True "
                                   "(Megatron-Core: the MoE layer routes each device's sequence-parallel shard)")
    if plan.pp > cfg.n_layers:
        raise InfeasibleDesign(f"pp={plan.pp} pipeline stages exceed the {cfg.n_layers} layers of {cfg.name}; "
                               f"use pp <= {cfg.n_layers}, e.g. {_nearest(_divisors(cfg.n_layers), plan.pp)}")
    if plan.schedule == "interleaved":
        if plan.stage_layers is None and cfg.n_layers % plan.chunks:
            ok = [v for v in range(2, cfg.n_layers // plan.pp + 1) if cfg.n_layers % (plan.pp * v) == 0]
            raise InfeasibleDesign(f"interleaving {plan.pp} stages x {plan.virtual_stages} chunks = {plan.chunks} must "
                                   f"divide the {cfg.n_layers} layers of {cfg.name}; valid virtual_stages: "
                                   f"{ok or 'none (use schedule=1f1b)'}, or give stage_layers with fewer "
                                   "layers in the first and last chunks")
        if plan.micro_batches % plan.pp:
            raise InfeasibleDesign(f"the interleaved schedule needs the {plan.micro_batches} micro-batches per "
                                   f"pipeline to be a multiple of pp={plan.pp} (Megatron-LM); change global_batch "
                                   "or micro_batch")
    if plan.stage_layers is not None:
        sl, want = plan.stage_layers, plan.chunks
        if len(sl) != want:
            raise InfeasibleDesign(f"stage_layers has {len(sl)} entries; the plan has {want} "
                                   f"{'chunks (pp*v)' if plan.schedule == 'interleaved' else 'stages'}")
        if sum(sl) != cfg.n_layers:
            raise InfeasibleDesign(f"stage_layers {list(sl)} sums to {sum(sl)}; {cfg.name} has {cfg.n_layers} layers")
        if any(x < 1 for x in sl[1:-1]) or (len(sl) == 1 and sl[0] < 1):
            raise InfeasibleDesign(f"stage_layers {list(sl)}: every middle stage needs at least one layer")
        if plan.schedule == "interleaved" and (len(set(sl[1:-1])) > 1 or max(sl[0], sl[-1]) > max(sl[1:-1])):
            raise InfeasibleDesign("the interleaved schedule needs equal layers in the middle chunks and no more in "
                                   "the first and last (Megatron-Core's uneven first/last pipeline layers, e.g. "
                                   "with the embedding and the loss counted as layers); got "
                                   f"{list(sl)}")
