"""`Plan`: how a model is laid out on a cluster for training, and its validation.

Glossary: tp = tensor-parallel width (Megatron column/row split inside a layer), pp = pipeline
stages, dp = data-parallel replicas, m = micro-batches per pipeline per step
(`global_batch / (dp * micro_batch)`), v = virtual stages (model chunks per device in the
interleaved schedule), ZeRO stage (Rajbhandari et al., SC'20): 0 = replicated optimizer,
1 = optimizer states sharded over dp, 2 = gradients and optimizer states sharded, 3 = weights,
gradients and optimizer states sharded (FSDP).

Rank layout (Megatron-LM's, Megatron-Core's order tp-cp-dp-pp): tensor-parallel groups are `tp`
consecutive ranks, context-parallel groups (cp > 1: each device holds 1/cp of every sequence)
are strided by `tp`, data-parallel groups by `tp*cp`, and pipeline stages are blocks of
`tp*cp*dp` ranks. Stage `s` owns ranks `s*tp*cp*dp .. (s+1)*tp*cp*dp - 1`. Gradients are
reduced (and ZeRO states sharded) over the `cp*dp` ranks that hold the same weights.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from typing import Any

from coda.errors import ConfigError, InfeasibleDesign
from coda.fields import help_meta as _h
from coda.models.config import ModelConfig
from coda.placement.layout import Layout, PipelineSchedule, Recompute
from coda.placement.rules import ZERO_STAGES, plan_reasons, positive_size


@dataclass(frozen=True, kw_only=True)
class Plan(Layout):
    """A parallel training plan: a `Layout` plus the batch and the stage split. Check it against a
    model and a cluster with `validate_plan`; `plan.layout` is its parallel dimensions alone.

    `stage_layers` gives the transformer blocks of each pipeline stage (length pp), or of each
    model chunk with the interleaved schedule (length pp*v, chunk c on device stage c % pp);
    None means balanced. The embedding always sits in the first stage and the head + loss in
    the last, so the first and last entries may be 0; middle ones must be >= 1.
    """

    global_batch: int = field(default=1, metadata=_h("sequences per optimizer step"))
    stage_layers: tuple[int, ...] | None = field(default=None,
                                                 metadata=_h("blocks per stage (or chunk); None = balanced"))

    def __post_init__(self) -> None:
        reasons = positive_size("global_batch", self.global_batch)
        if reasons:
            raise ConfigError(f"Plan.{reasons[0]}")
        super().__post_init__()
        if self.stage_layers is not None:
            if isinstance(self.stage_layers, (str, bytes)) or not isinstance(self.stage_layers, Iterable):
                raise ConfigError(f"Plan.stage_layers={self.stage_layers!r} must be a sequence of layer counts")
            sl = tuple(self.stage_layers)
            if any(isinstance(x, bool) or not isinstance(x, int) or x < 0 for x in sl):
                raise ConfigError(f"Plan.stage_layers={sl!r} must be non-negative integers")
            object.__setattr__(self, "stage_layers", sl)

    @classmethod
    def of(cls, layout: Layout, global_batch: int, stage_layers: tuple[int, ...] | None = None) -> Plan:
        """The plan running `layout` on `global_batch` sequences per step."""
        lay = layout.layout
        return cls(**{f.name: getattr(lay, f.name) for f in fields(Layout)}, global_batch=global_batch,
                   stage_layers=stage_layers)

    @property
    def micro_batches(self) -> int:
        """Micro-batches per pipeline per step, m = global_batch / (dp * micro_batch) (exact after validation)."""
        return self.global_batch // (self.dp * self.micro_batch)

    def replace(self, **changes: Any) -> Plan:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def describe(self) -> str:
        """One line, e.g. `tp8 pp16 dp8 mb1 gb1536 full sp interleaved(v=2) zero0` (`cp2` after tp when cp > 1,
        `ep8` after dp when ep > 1, `full/4` when every 4th block is checkpointed, `hsdp2` after the ZeRO
        stage with 2 replica groups of hybrid sharding)."""
        cp = f" cp{self.cp}" if self.cp > 1 else ""
        ep = f" ep{self.ep}" if self.ep > 1 else ""
        rec = f"{self.recompute}/{self.recompute_every}" if self.recompute_every > 1 else self.recompute
        s = f"tp{self.tp}{cp} pp{self.pp} dp{self.dp}{ep} mb{self.micro_batch} gb{self.global_batch} {rec}"
        s += " sp" if self.sequence_parallel else ""
        s += f" interleaved(v={self.virtual_stages})" if self.schedule == "interleaved" else " 1f1b"
        return s + f" zero{self.zero}" + (f" hsdp{self.hsdp}" if self.hsdp > 1 else "")


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

    The facts are the rules of `coda.placement.rules` (`plan_reasons`); every one that fails is
    named in the message.

    Raises:
        InfeasibleDesign: sizes that do not multiply to the devices, tp not dividing the heads,
            a micro-batch count that is not a positive integer, a pipeline deeper than the layers,
            interleaving that does not divide the layers, bad stage_layers, expert parallelism
            on a dense model or not dividing the experts.
    """
    reasons = plan_reasons(plan, cfg, n_devices)
    if reasons:
        raise InfeasibleDesign("; ".join(reasons))


__all__ = ["ZERO_STAGES", "Layout", "PipelineSchedule", "Plan", "Recompute", "balanced_stage_layers",
           "lighter_ends_stage_layers", "stage_layers_of", "validate_plan"]
