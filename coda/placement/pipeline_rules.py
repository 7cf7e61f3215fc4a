"""Whether a pipeline layout is valid: the schedule, the virtual stages and the stage split, one
small pure function per fact (re-exported by `coda.placement.rules`, whose conventions they follow:
each returns the reasons it fails, empty when the fact holds; *enumeration* marks a choice the
optimiser never makes although a `Plan` may hold it)."""

from __future__ import annotations

from collections.abc import Sequence

from coda.models.config import ModelConfig
from coda.placement.divisors import divisors, nearest


def virtual_stages_need_interleaving(schedule: str, virtual_stages: int) -> list[str]:
    """Model chunks per device (v > 1) exist only in the interleaved schedule."""
    if schedule == "1f1b" and virtual_stages != 1:
        return [f"virtual_stages={virtual_stages} needs schedule='interleaved'; use 1 with 1f1b"]
    return []


def interleaving_needs_pipeline(schedule: str, pp: int) -> list[str]:
    """Interleaving splits a pipeline: it needs pp > 1."""
    if schedule == "interleaved" and pp == 1:
        return ["the interleaved schedule needs pp > 1; use schedule='1f1b'"]
    return []


def interleaving_needs_chunks(schedule: str, virtual_stages: int) -> list[str]:
    """*enumeration*: interleaving one chunk per device is 1F1B."""
    if schedule == "interleaved" and virtual_stages < 2:
        return ["the interleaved schedule needs virtual_stages >= 2 (with one chunk per device it is 1f1b); "
                "use schedule=1f1b or virtual_stages=2"]
    return []


def pp_within_layers(cfg: ModelConfig, pp: int) -> list[str]:
    """Each pipeline stage holds at least one layer."""
    if pp > cfg.n_layers:
        return [f"pp={pp} pipeline stages exceed the {cfg.n_layers} layers of {cfg.name}; use pp <= "
                f"{cfg.n_layers}, e.g. {nearest(divisors(cfg.n_layers), pp)}"]
    return []


def chunks_divide_layers(cfg: ModelConfig, schedule: str, pp: int, virtual_stages: int,
                         stage_layers: Sequence[int] | None) -> list[str]:
    """Balanced interleaving: pp * v chunks divide the layers (unless stage_layers are given)."""
    chunks = pp * virtual_stages
    if schedule == "interleaved" and stage_layers is None and cfg.n_layers % chunks:
        ok = [v for v in range(2, cfg.n_layers // pp + 1) if cfg.n_layers % (pp * v) == 0]
        return [f"interleaving {pp} stages x {virtual_stages} chunks = {chunks} must divide the {cfg.n_layers} "
                f"layers of {cfg.name}; valid virtual_stages: {ok or 'none (use schedule=1f1b)'}, or give "
                "stage_layers with fewer layers in the first and last chunks"]
    return []


def interleaved_micro_batches(schedule: str, pp: int, micro_batches: int) -> list[str]:
    """Megatron-LM's interleaved schedule runs the micro-batches in groups of pp."""
    if schedule == "interleaved" and micro_batches % pp:
        return [f"the interleaved schedule needs the {micro_batches} micro-batches per pipeline to be a multiple of "
                f"pp={pp} (Megatron-LM); change global_batch or micro_batch"]
    return []


def stage_layers_count(stage_layers: Sequence[int] | None, schedule: str, chunks: int) -> list[str]:
    """stage_layers has one entry per stage (1F1B) or chunk (interleaved)."""
    if stage_layers is not None and len(stage_layers) != chunks:
        what = "chunks (pp*v)" if schedule == "interleaved" else "stages"
        return [f"stage_layers has {len(stage_layers)} entries; the plan has {chunks} {what}"]
    return []


def stage_layers_sum(cfg: ModelConfig, stage_layers: Sequence[int] | None) -> list[str]:
    """stage_layers add up to the model's layers."""
    if stage_layers is not None and sum(stage_layers) != cfg.n_layers:
        return [f"stage_layers {list(stage_layers)} sums to {sum(stage_layers)}; {cfg.name} has {cfg.n_layers} "
                "layers"]
    return []


def stage_layers_middle(stage_layers: Sequence[int] | None) -> list[str]:
    """Every middle stage holds a layer (the first and last also hold the embedding and head)."""
    sl = stage_layers
    if sl is not None and (any(x < 1 for x in sl[1:-1]) or (len(sl) == 1 and sl[0] < 1)):
        return [f"stage_layers {list(sl)}: every middle stage needs at least one layer"]
    return []


def stage_layers_interleaved_shape(schedule: str, stage_layers: Sequence[int] | None) -> list[str]:
    """Interleaved chunks: equal middle chunks, no heavier ends (Megatron-Core's uneven first/last)."""
    sl = stage_layers
    if schedule == "interleaved" and sl is not None and len(sl) > 2 and (
            len(set(sl[1:-1])) > 1 or max(sl[0], sl[-1]) > max(sl[1:-1])):
        return ["the interleaved schedule needs equal layers in the middle chunks and no more in the first and last "
                "(Megatron-Core's uneven first/last pipeline layers, e.g. with the embedding and the loss counted "
                f"as layers); got {list(sl)}"]
    return []


__all__ = [
    "chunks_divide_layers", "interleaved_micro_batches", "interleaving_needs_chunks", "interleaving_needs_pipeline",
    "pp_within_layers", "stage_layers_count", "stage_layers_interleaved_shape", "stage_layers_middle",
    "stage_layers_sum", "virtual_stages_need_interleaving",
]
