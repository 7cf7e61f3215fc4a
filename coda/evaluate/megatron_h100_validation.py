"""The Megatron-LM README's H100 weak-scaling rows (development data for `coda validate training`).

Source: NVIDIA/Megatron-LM `README.md`, "Training Speed and Scalability", and the table it shows,
`images/model_table.png` (both added in commit f2e5db4, "New scaling figures on H100 GPUs", July
2024; Megatron-Core r0.8.0), transcribed in `../shared/reference/published.md` and checked against the
image: GPT models of 1.7B to 462B parameters on up to 6144 H100 GPUs (DGX H100), vocabulary
131072, sequence 4096, with the data-parallel (`--overlap-grad-reduce --overlap-param-gather`),
tensor-parallel (`--tp-comm-overlap`) and pipeline communication overlapped; per-GPU TFLOP/s
measured end to end. BF16: the table's MFU is its TFLOP/s over H100 SXM's 989 dense BF16 TFLOP/s
(408.8 / 989 = 41%). Untied embeddings and a 4h MLP: 12*l*h^2 + 2*V*h gives the table's sizes
(1.7B: 1.21e9 + 0.54e9). The rest are Megatron-LM's defaults at that commit
(`megatron/training/arguments.py`): LayerNorm, GELU, learned absolute positions, biases, dropout 0.1;
distributed optimizer (zero 1) and sequence parallelism with TP, which `--tp-comm-overlap` requires.
Software `MEGATRON_CORE_2024`: Megatron-Core's kernels with the TP collectives overlapped with their
GEMMs (`Software.tp_comm_overlap`) and the weight all-gather with the next forward
(`Software.dp_gather_overlap`), as the README's flags say.

The README's count of FLOPs is Megatron's `num_floating_point_operations`
(`megatron/training/training.py` at that commit), `megatron_core_flops` below: three passes (no
recomputation counted), the full s x s score matrix (not halved for causality), and the logit layer.

Not published: micro-batch, recomputation, virtual pipeline stages. The rule: those of Megatron-LM's
own GPT-3 example at the same commit, `examples/gpt3/train_gpt3_175b_distributed.sh`
(`--micro-batch-size 1`, no `--recompute-*` flag, no `--num-layers-per-virtual-pipeline-stage`): micro-batch
1, no recomputation, 1F1B without interleaving. Every row fits in 80 GB that way (at most ~50 GiB).
`sensitivity_table` gives each row's error under the other reasonable choices (micro-batch 2, selective
recomputation, 2 model chunks per device where they divide the layers): nothing is chosen per row.
"""

from __future__ import annotations

import statistics
from dataclasses import replace
from typing import Any

import pandas as pd

from coda.arch.clusters import cluster
from coda.errors import CodaError
from coda.models.config import ModelConfig
from coda.placement import MEGATRON_CORE_2024, optimize
from coda.placement.result import TrainingResult
from coda.units import GiB

SEQ = 4096
VOCAB = 131072
# Megatron-LM README model_table.png: (model, layers, hidden, heads, t, p, d, global batch, TFLOP/s per GPU, MFU %).
ROWS = (
    ("1.7B", 24, 2048, 16, 1, 1, 48, 192, 408.8, 41),
    ("7.1B", 30, 4096, 32, 2, 1, 48, 192, 465.9, 47),
    ("16B", 32, 6144, 48, 4, 1, 48, 192, 489.1, 49),
    ("32B", 48, 7168, 56, 8, 1, 48, 192, 459.6, 46),
    ("70B", 84, 8192, 64, 8, 2, 48, 384, 419.7, 42),
    ("119B", 92, 10240, 80, 8, 4, 48, 768, 420.5, 43),
    ("177B", 96, 12288, 96, 8, 6, 48, 1152, 432.8, 44),
    ("314B", 96, 16384, 128, 8, 8, 48, 1536, 474.4, 48),
    ("462B", 112, 18432, 144, 8, 16, 48, 3072, 459.9, 47),
)
# The rule for what is not published (module docstring): examples/gpt3/train_gpt3_175b_distributed.sh.
RULE: dict[str, Any] = dict(micro_batch=1, recompute="none", virtual_stages=1)


def gpt_config(name: str, layers: int, hidden: int, heads: int) -> ModelConfig:
    """A README weak-scaling GPT: Megatron-LM's default block (LayerNorm, GELU MLP of 4h, biases,
    learned absolute positions), vocabulary 131072, untied embeddings, 4096 positions."""
    return ModelConfig(name=f"megatron-gpt-{name.lower()}", n_layers=layers, hidden=hidden, n_heads=heads,
                       ffn_hidden=4 * hidden, vocab_size=VOCAB, max_seq_len=SEQ, tied_embeddings=False)


def megatron_core_flops(cfg: ModelConfig, batch: int, seq: int) -> float:
    """FLOPs per step as Megatron-LM counts them for its TFLOP/s (`num_floating_point_operations` in
    `megatron/training/training.py`, July 2024): `12*B*s*l*h^2 * ((1 + g/a + s/h) * a*d/h + f/h * k *
    (3/2 if gated) + V/(2*l*h))` for B sequences of s tokens, a query and g key/value heads of width d,
    an MLP of width f (k experts per token), vocabulary V; full score matrix, no recomputation."""
    L, h, a = cfg.n_layers, cfg.hidden, cfg.n_heads
    g, d = cfg.n_kv_heads or a, cfg.head_dim or h // a
    gated = 1.5 if cfg.mlp in ("swiglu", "geglu") else 1.0
    k = cfg.experts_per_token if cfg.n_experts > 1 else 1
    return 12.0 * batch * seq * L * h * h * ((1 + g / a + seq / h) * (a * d / h) + cfg.ffn_hidden / h * k * gated
                                             + cfg.vocab_size / (2 * L * h))


def _run(row: tuple[Any, ...], micro_batch: int, recompute: str, virtual_stages: int,
         tp_comm_overlap: bool = True) -> tuple[float, TrainingResult]:
    """(predicted TFLOP/s per GPU by the README's count, result) of one row under the given choices."""
    name, layers, hidden, heads, t, p, d, gb = row[:8]
    cfg = gpt_config(name, layers, hidden, heads)
    n = t * p * d
    sw = replace(MEGATRON_CORE_2024, tp_comm_overlap=tp_comm_overlap)
    _, r, _ = optimize(cfg, cluster("dgx-h100", n), gb, SEQ, dtype="bf16", software=sw, tp=t, pp=p, dp=d,
                       micro_batch=micro_batch, recompute=recompute, zero=1, sequence_parallel=t > 1,
                       schedule="interleaved" if virtual_stages > 1 else "1f1b", virtual_stages=virtual_stages)
    return megatron_core_flops(cfg, gb, SEQ) / r.step_time_s / n / 1e12, r


def megatron_h100_table() -> pd.DataFrame:
    """Predicted vs published TFLOP/s per GPU under the rule (module docstring), with the exposed TP,
    pipeline-bubble and DP shares of the step, and the prediction without TP communication overlap (the
    weight-gather overlap kept)."""
    out = []
    for row in ROWS:
        name, layers, hidden, heads, t, p, d, gb, published, mfu = row
        pred, r = _run(row, **RULE)
        bd = r.breakdown()
        without, _ = _run(row, **RULE, tp_comm_overlap=False)
        out.append(dict(model=name, layers=layers, hidden=hidden, GPUs=t * p * d, global_batch=gb,
                        plan=r.plan.describe(), published_TFLOPs=published, predicted_TFLOPs=pred,
                        error_pct=100 * (pred / published - 1), published_mfu_pct=mfu,
                        tp_comm_pct=100 * bd["tp_comm"] / r.step_time_s,
                        bubble_pct=100 * bd["bubble"] / r.step_time_s, dp_comm_pct=100 * bd["dp_comm"] / r.step_time_s,
                        without_tp_overlap_TFLOPs=without, peak_memory_GiB=r.peak_memory_bytes / GiB))
    return pd.DataFrame(out)


def _choices(layers: int, p: int) -> list[tuple[str, dict[str, Any]]]:
    """The reasonable choices for what the README leaves out: micro-batch 1 or 2, no or selective
    recomputation, and with pipelining 1 or 2 model chunks per device (when 2*p divides the layers)."""
    out = [(f"mb{mb} {rec}", dict(micro_batch=mb, recompute=rec, virtual_stages=1))
           for mb in (1, 2) for rec in ("none", "selective")]
    if p > 1 and layers % (2 * p) == 0:
        out.append(("mb1 none vp2", dict(micro_batch=1, recompute="none", virtual_stages=2)))
    return out


def sensitivity_table() -> pd.DataFrame:
    """Each row's error (%) under each reasonable choice of the unpublished plan parts (one column per
    choice; the rule's is `mb1 none`), and the median of the absolute errors per choice as the last row."""
    out = []
    for row in ROWS:
        name, layers, p, published = row[0], row[1], row[5], row[8]
        errs: dict[str, Any] = dict(model=name)
        for label, kw in _choices(layers, p):
            try:
                errs[label] = 100 * (_run(row, **kw)[0] / published - 1)
            except CodaError:  # does not fit, or not a valid layout
                errs[label] = float("nan")
        out.append(errs)
    df = pd.DataFrame(out)
    cols = [c for c in df.columns if c != "model"]
    med = {c: statistics.median(df[c].abs().dropna()) if df[c].notna().any() else float("nan") for c in cols}
    return pd.concat([df, pd.DataFrame([dict(model="median |error|", **med)])], ignore_index=True)


__all__ = ["ROWS", "RULE", "SEQ", "VOCAB", "gpt_config", "megatron_core_flops", "megatron_h100_table",
           "sensitivity_table"]
