"""`Layout`: the parallel dimensions of a run, in one frozen value passed whole.

A layout says how one model replica's work is spread over devices, independently of the batch
and of where the layer boundaries fall (those are `Plan`'s). It travels unchanged from `Plan`
down to graph building (`coda.models.build(..., layout=...)`), the layer profiles, the chain
costs and memory, so a new parallel dimension is a field here, a rule in
`coda.placement.rules`, and the code that uses it (see CONTRIBUTING.md).

Glossary: tp = tensor-parallel width (Megatron column/row split inside a layer), cp = context-
parallel width (each device holds 1/cp of every sequence), ep = expert-parallel width (MoE
experts spread over ep of the tp*cp*dp devices of a stage), pp = pipeline stages, dp =
data-parallel replicas, v = virtual stages (model chunks per device, interleaved schedule),
k = `recompute_every` (with full recomputation, blocks 0, k, 2k, ... of the model are checkpointed
and recomputed, the others keep their activations: PyTorch FSDP's and torchtitan's `ac_freq`),
hsdp = replica groups of hybrid sharding (PyTorch FSDP `HYBRID_SHARD`: ZeRO states sharded over the
first dp*cp/hsdp members of each data-parallel group, e.g. one node, and replicated over hsdp
such groups, whose gradient shards are all-reduced),
ZeRO stage (Rajbhandari et al., SC'20): 0 = replicated optimizer, 1 = optimizer states sharded
over dp*cp, 2 = gradients and optimizer states sharded (each micro-batch's gradients
reduce-scattered as they are produced), 3 = weights, gradients and optimizer states sharded (FSDP).

Rank order (Megatron-Core's tp-cp-dp-pp): tensor-parallel groups are `tp` consecutive ranks,
context-parallel groups are strided by `tp`, data-parallel groups by `tp*cp`, and pipeline stages
are blocks of `tp*cp*dp` ranks.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from enum import Enum
from functools import cached_property
from typing import Any

from coda.errors import ConfigError
from coda.fields import help_meta as _h
from coda.placement import rules as R


class _Choice(str, Enum):
    """A string option parsed case-insensitively; bad values raise `ConfigError` naming the field
    (the class name, lower-case) and the valid values."""

    @classmethod
    def from_str(cls, name: Any) -> Any:
        if isinstance(name, str) and name in cls._value2member_map_:  # already canonical
            return cls._value2member_map_[name]
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


class PipelineSchedule(_Choice):
    """Pipeline schedule: 1F1B (PipeDream-Flush) or interleaved 1F1B (Narayanan et al. SC'21)."""

    ONE_F_ONE_B = "1f1b"
    INTERLEAVED = "interleaved"


SIZE_FIELDS = ("tp", "pp", "dp", "micro_batch", "virtual_stages", "cp", "ep", "recompute_every", "hsdp")
"""The layout's sizes: positive integers."""

GRAPH_FIELDS = ("tp", "cp", "ep", "micro_batch", "sequence_parallel")
"""The fields a layer's operator graphs depend on (the rest only change how graphs are combined)."""


@dataclass(frozen=True)
class Layout:
    """The parallel dimensions of a training or serving run (module docstring), validated once.

    Derived group sizes are properties: `n_devices`, `stage_devices` (tp*cp*dp), `replicas`
    (dp*cp, the devices holding the same weights) and `expert_replicas` (tp*cp*dp/ep, the devices
    holding the same experts), `chunks` (pp*v).
    """

    tp: int = field(default=1, metadata=_h("tensor-parallel width"))
    pp: int = field(default=1, metadata=_h("pipeline stages"))
    dp: int = field(default=1, metadata=_h("data-parallel replicas"))
    micro_batch: int = field(default=1, metadata=_h("sequences per micro-batch"))
    recompute: str = field(default="none", metadata=_h("none | selective | full activation recomputation"))
    sequence_parallel: bool = field(default=False, metadata=_h("Megatron sequence parallelism (needs tp > 1)"))
    schedule: str = field(default="1f1b", metadata=_h("1f1b | interleaved"))
    virtual_stages: int = field(default=1, metadata=_h("model chunks per device (interleaved schedule)"))
    zero: int = field(default=0, metadata=_h("ZeRO stage 0, 1, 2 or 3"))
    cp: int = field(default=1, metadata=_h("context-parallel width (sequence split over cp devices)"))
    ep: int = field(default=1, metadata=_h("expert-parallel width (MoE: experts spread over ep of the tp*cp*dp "
                                           "devices)"))
    recompute_every: int = field(default=1, metadata=_h("with recompute='full', checkpoint every k-th block (blocks "
                                                        "0, k, 2k, ...); the others keep their activations"))
    hsdp: int = field(default=1, metadata=_h("hybrid sharding: ZeRO shards over dp*cp/hsdp devices, replicated over "
                                             "hsdp groups (1 = shard over all dp*cp replicas)"))

    def __post_init__(self) -> None:
        reasons = R.layout_value_reasons(self, SIZE_FIELDS)
        if reasons:
            owner = type(self).__name__
            raise ConfigError("; ".join(f"{owner}.{r}" for r in reasons))
        object.__setattr__(self, "recompute", Recompute.from_str(self.recompute).value)
        object.__setattr__(self, "schedule", PipelineSchedule.from_str(self.schedule).value)
        if R.sequence_parallel_needs_tp(self.sequence_parallel, self.tp):
            object.__setattr__(self, "sequence_parallel", False)  # a no-op without tensor parallelism
        reasons = R.layout_reasons(self)
        if reasons:
            raise ConfigError("; ".join(reasons))

    @property
    def n_devices(self) -> int:
        """Devices the layout uses, tp * cp * pp * dp."""
        return self.tp * self.cp * self.pp * self.dp

    @property
    def stage_devices(self) -> int:
        """Devices of one pipeline stage, tp * cp * dp."""
        return self.tp * self.cp * self.dp

    @property
    def replicas(self) -> int:
        """Devices holding the same (dense) weights, dp * cp: gradients are reduced, ZeRO states sharded, over them."""
        return self.dp * self.cp

    @property
    def shard_replicas(self) -> int:
        """Devices one ZeRO shard set is spread over, dp * cp / hsdp (all the replicas without hybrid sharding)."""
        return self.replicas // self.hsdp

    @property
    def expert_replicas(self) -> int:
        """Devices holding the same experts (the expert-data-parallel group), tp * cp * dp / ep."""
        return self.stage_devices // self.ep

    @property
    def chunks(self) -> int:
        """Model chunks in the pipeline, pp * v."""
        return self.pp * self.virtual_stages

    @cached_property
    def layout(self) -> Layout:
        """The parallel dimensions alone (a `Plan` drops its batch and stage split); computed once."""
        if type(self) is Layout:
            return self
        return _trusted({name: getattr(self, name) for name in _FIELDS})

    @cached_property
    def graph_layout(self) -> Layout:
        """The fields a layer's operator graphs depend on (`GRAPH_FIELDS`), the others at their defaults:
        the key of a layer profile; computed once."""
        values = {name: getattr(self, name) for name in GRAPH_FIELDS}
        return _trusted({**_NON_GRAPH_DEFAULTS, **values})

    def with_(self, **changes: Any) -> Layout:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)


_FIELDS = tuple(f.name for f in fields(Layout))
_NON_GRAPH_DEFAULTS = {f.name: f.default for f in fields(Layout) if f.name not in GRAPH_FIELDS}


def _trusted(values: dict[str, Any]) -> Layout:
    """A `Layout` of values taken from validated layouts (or the defaults), without validating again."""
    out = object.__new__(Layout)
    out.__dict__.update(values)
    return out


__all__ = ["GRAPH_FIELDS", "SIZE_FIELDS", "Layout", "PipelineSchedule", "Recompute"]
