"""PHAZE's fixed baseline placements as `Plan`s, and a comparison with `optimize` on accelerators.

PHAZE (Wang et al., ICML 2024; `../shared/reference/phaze.md`, "Training setup of the study")
compares its search with a TPUv4-like chip under hand-picked parallelism (pipeline p, data d,
tensor t) on 1024 accelerators, global batch 4096, 1F1B, mixed precision. Its outer loop
searches the micro-batch size and recomputation; we do the same with `optimize` restricted to
the fixed (t, p, d) and 1F1B. OPT's baseline uses 12 x 85 = 1020 chips, and 4096 sequences do
not split over 85 replicas, so its global batch is 85 * 48 = 4080 (documented deviation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pandas as pd

from coda.arch.clusters import Cluster
from coda.errors import CodaError
from coda.models.config import ModelConfig
from coda.placement.plan import Plan

# model preset -> (sequence length, pipeline p, data d, tensor t), from PHAZE's released configuration.
PHAZE_PLACEMENTS: dict[str, tuple[int, int, int, int]] = {
    "opt-350m": (2048, 12, 85, 1),
    "bert-large": (512, 8, 128, 1),
    "gpt2-xl": (1024, 32, 32, 1),
    "llama2-7b": (4096, 8, 128, 1),
    "megatron-gpt2-8.3b": (1024, 8, 16, 8),
    "gpt3-175b": (2048, 32, 8, 4),
}
PHAZE_GLOBAL_BATCH = 4096


def megatron_gpt2_8_3b() -> ModelConfig:
    """Megatron-LM's GPT-2 8.3B: 72 layers, hidden 3072, 32 heads, 4h GELU MLP, vocabulary 50257
    padded to 51200, 1024 positions (Shoeybi et al. 2019, table 2; PHAZE's model list)."""
    return ModelConfig(name="megatron-gpt2-8.3b", n_layers=72, hidden=3072, n_heads=32, ffn_hidden=4 * 3072,
                       vocab_size=51200, max_seq_len=1024)


def phaze_model(name: str) -> ModelConfig:
    """The ModelConfig of a PHAZE baseline model."""
    if name == "megatron-gpt2-8.3b":
        return megatron_gpt2_8_3b()
    from coda.models import get

    return get(name)


@dataclass(frozen=True)
class PhazeBaseline:
    """One PHAZE baseline: model, sequence length and the fixed plan (micro-batch and recompute as given)."""

    model: ModelConfig
    seq_len: int
    plan: Plan


def phaze_baselines(micro_batch: int = 1, recompute: str = "none",
                    global_batch: int = PHAZE_GLOBAL_BATCH) -> list[PhazeBaseline]:
    """PHAZE's hand-picked placements (module docstring) as 1F1B `Plan`s."""
    out = []
    for name, (seq, p, d, t) in PHAZE_PLACEMENTS.items():
        gb = global_batch - global_batch % (d * micro_batch)
        out.append(PhazeBaseline(phaze_model(name), seq, Plan(tp=t, pp=p, dp=d, micro_batch=micro_batch,
                                                              global_batch=gb, recompute=recompute)))
    return out


def phaze_comparison(cluster: Cluster, models: list[str] | None = None, layer_time: Any = None,
                     **choices: Any) -> pd.DataFrame:
    """Baseline placement (best micro-batch and recomputation for PHAZE's fixed t, p, d) next to
    the plan `optimize` finds on the same chips, per model.

    Args:
        cluster: e.g. `cluster("tpuv4-pod", 1024, device=tpuv4_like())`.
        models: subset of `PHAZE_PLACEMENTS` (default: all).
        layer_time: layer timer override (default: the ILP makespan on accelerators).
        **choices: extra restrictions applied to both searches (e.g. micro_batch=(1, 2)).
    """
    from coda.placement.optimize import optimize

    rows = []
    for b in phaze_baselines():
        if models is not None and b.model.name not in models:
            continue
        p = b.plan
        row: dict[str, Any] = dict(model=b.model.name, seq_len=b.seq_len, baseline=f"t{p.tp} p{p.pp} d{p.dp}")
        try:
            _, base, _ = optimize(b.model, cluster, p.global_batch, b.seq_len, n_devices=p.n_devices,
                                  layer_time=layer_time, tp=p.tp, pp=p.pp, dp=p.dp, schedule="1f1b", zero=0,
                                  **choices)
            row.update(baseline_plan=base.plan.describe(), baseline_tokens_per_s=base.tokens_per_s)
        except CodaError as err:
            row.update(baseline_plan=f"infeasible: {err}", baseline_tokens_per_s=float("nan"))
        try:
            _, best, _ = optimize(b.model, cluster, p.global_batch, b.seq_len, n_devices=p.n_devices,
                                  layer_time=layer_time, **choices)
            row.update(optimized_plan=best.plan.describe(), optimized_tokens_per_s=best.tokens_per_s)
        except CodaError as err:
            row.update(optimized_plan=f"infeasible: {err}", optimized_tokens_per_s=float("nan"))
        row["speedup"] = row["optimized_tokens_per_s"] / row["baseline_tokens_per_s"]
        rows.append(row)
    return pd.DataFrame(rows)
