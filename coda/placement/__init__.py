"""Device placement for training: plans, their cost (pipeline timing, memory, collectives), the optimiser.

    plan = coda.placement.Plan(tp=8, pp=16, dp=8, micro_batch=1, global_batch=1536, recompute="full",
                               schedule="interleaved", virtual_stages=2)
    plan.layout                  # its parallel dimensions alone: a `Layout`, passed whole to costs and graphs
    result = coda.placement.evaluate(cfg, cluster, plan, seq_len=2048)
    best_plan, best, ranked = coda.placement.optimize(cfg, cluster, global_batch=1536, seq_len=2048)

`coda.evaluate.training` is the user-facing entry point for one plan; this package holds the
model it runs: `costs` (layer times and sizes), `chain` (per-plan cost arrays), `pipeline`
(step time), `memory`, `dp` (the stage-split DP), `candidates` (the search space, one rule per fact from `rules`)
and `optimize` (enumeration around the DP).

Names: the pipeline schedule (1F1B, interleaved) is `PipelineSchedule`; `coda.ilp.Schedule` is
the on-chip operator schedule of one layer, a different thing.

Note: the function `coda.placement.optimize` shadows the submodule of the same name as an
attribute of the package; import the module's names with ``from coda.placement.optimize import ...``.
"""

from __future__ import annotations

from typing import Any

from coda.arch.clusters import Cluster
from coda.models.config import ModelConfig
from coda.placement.chain import FSDP, MEGATRON_2021, MEGATRON_CORE, CostModel, Software
from coda.placement.costs import IlpLayerTime, layer_profile, predictor_layer_time
from coda.placement.dp import StageSplit, best_split, brute_force_split
from coda.placement.layout import Layout, PipelineSchedule
from coda.placement.memory import memory_frame
from coda.placement.optimize import candidate_plans, optimize, search_plans
from coda.placement.phaze import phaze_baselines
from coda.placement.plan import Plan, Recompute, validate_plan
from coda.placement.result import TrainingResult
from coda.placement.software import DEEPSPEED_2021, MEGATRON_CORE_2024
from coda.placement.step import evaluate_plan


def evaluate(cfg: ModelConfig, cluster: Cluster, plan: Plan, seq_len: int, dtype: str = "bf16",
             software: Software | None = None, layer_time: Any = None, check_memory: bool = True) -> TrainingResult:
    """Evaluate one plan on all of `cluster`'s devices (see `coda.evaluate.training`)."""
    return evaluate_plan(CostModel(cfg, cluster, seq_len, dtype, software or Software(), layer_time), plan,
                         check_memory=check_memory)


__all__ = [
    "DEEPSPEED_2021", "FSDP", "MEGATRON_2021", "MEGATRON_CORE", "MEGATRON_CORE_2024", "CostModel", "IlpLayerTime",
    "Layout", "PipelineSchedule", "Plan", "Recompute", "Software", "StageSplit", "TrainingResult", "best_split",
    "brute_force_split", "candidate_plans", "evaluate", "evaluate_plan", "layer_profile", "memory_frame", "optimize",
    "phaze_baselines", "predictor_layer_time", "search_plans", "validate_plan",
]
