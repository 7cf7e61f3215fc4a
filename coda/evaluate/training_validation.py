"""`coda validate training`: predicted training throughput against published multi-GPU runs.

Nothing here is fitted to these rows: layer times come from the predictor calibrated on kernel
data, collectives from the cluster model calibrated on NCCL data (see docs/training.md).

1. Megatron-LM, Narayanan et al. SC'21 table 1 (`../shared/reference/published.md`): Selene
   DGX A100 80GB, fp16, full recomputation. The plan of each row is the paper's reproduction
   script, `examples/sc21/run_table_1.sh` in NVIDIA/Megatron-LM: micro-batch 16, 8, 2, 1;
   interleaved 1F1B with 5 and 3 layers per virtual stage for 76.1B and 310.1B (3 and 2 model
   chunks per device); PyTorch DDP (gradient all-reduce overlapped with the backward pass) for
   1.7B and 18.4B, Megatron's local DDP (all-reduce after the backward pass) for the others.
   Software `MEGATRON_2021` otherwise (no FlashAttention, blocking p2p with scatter/gather).
   TFLOP/s per GPU uses the paper's own count `96*B*s*l*h^2*(1 + s/(6h) + V/(16*l*h))` over
   the predicted step time.
2. MosaicML llm-foundry MPT benchmarks (`scripts/train/benchmarking/README.md`): PyTorch FSDP
   FULL_SHARD (zero=3), bf16, activation checkpointing = recompute="full", micro-batch and
   gradient accumulation as listed, 8 GPUs per node with 8 x 200 Gb/s per node.
3. NVIDIA Megatron-Bridge performance summary (release 25.11), H100 FP8, seq 8192: tokens/s per
   GPU for the published TP/PP/VP and batch sizes, with Megatron Core's defaults
   (`MEGATRON_CORE`: fused attention, gradient reduce-scatter and pipeline p2p overlapped,
   distributed optimizer = zero 1, sequence parallelism with TP, context parallelism as
   published); recomputation is left to `optimize` (not published). The 405B row's 8 model
   chunks per device over 126 layers count the embedding and the loss as pipeline layers
   (Megatron-Bridge's layout): chunks of 1, 2 x 62 and 1 blocks (`bridge_layout`).
4. The same performance summaries' DGX-H100 MoE rows for Qwen3-30B-A3B (16 GPUs, expert
   parallelism 8 inside a node) and Qwen3-235B-A22B (256 GPUs, tp 2 folded into ep 32), FP8,
   seq 4096, releases 25.09, 25.11 and 26.02, with the published layout. The same layout's
   throughput changed by up to 2x between releases (token dropping in 25.09, dropless routing
   force-balanced later), which says how much of an MoE step is routing software that coda's
   balanced-routing blocks do not see; the rows are reported, not a target.
5. Narayanan et al. SC'21 table 2 (development data for sharded data parallelism): GPT-3 175B
   (vocabulary 51200) on 384, 768 and 1536 DGX A100 GPUs, global batch 1536, fp16, full
   recomputation, TFLOP/s per GPU by the paper's count. PTD-P with t=8, p=12, micro-batch 1
   (`MEGATRON_2021`, 1F1B: the table gives no interleaving); ZeRO-3 without model parallelism at
   4, 2 and 1 sequences per GPU (one micro-batch per step), with `DEEPSPEED_2021`: one
   collective per weight tensor, waited for in the module hooks, three gathers per step with
   recomputation, tensor-list collectives (docs/training.md). Nothing is fitted to these rows.
6. The Megatron-LM README's H100 weak-scaling table (development data): nine GPT models of 1.7B to
   462B parameters on 48 to 6144 H100 GPUs, BF16, seq 4096, TP communication and the weight
   all-gather overlapped (`MEGATRON_CORE_2024`), micro-batch 1 without recomputation or interleaving by the rule of
   Megatron-LM's own GPT-3 example script; TFLOP/s per GPU by Megatron's count; the error under each
   other reasonable choice of the unpublished parts beside it (`coda.evaluate.megatron_h100_validation`).
7. NeuSight 4-GPU GPT2-large runs (FP32, PyTorch eager, forward + backward without the
   optimizer step): `-dp4` (DDP), `-tp4`, `-pp4_1` (4 stages, 1 micro-batch). Compute of dp4
   and pp4 uses the eager single-GPU iteration (`coda.evaluate.iteration`, framework="eager");
   tp4 uses the fused tensor-parallel graphs (the eager kernel model covers tp = 1 only).
"""

from __future__ import annotations

import json
import statistics
from dataclasses import replace
from importlib import resources
from typing import Any

import pandas as pd

from coda.arch.clusters import cluster
from coda.arch.gpus import gpu
from coda.errors import CodaError
from coda.models import get
from coda.models.config import ModelConfig
from coda.placement import FSDP, MEGATRON_2021, MEGATRON_CORE, Software, optimize
from coda.placement.flops import full_matrix_mfu
from coda.placement.plan import lighter_ends_stage_layers
from coda.placement.software import DEEPSPEED_2021
from coda.units import GiB

SEQ = 2048
# Narayanan et al. SC'21 table 1: (preset, tp, pp, GPUs, global batch, TFLOP/s per GPU), and
# from its reproduction script (NVIDIA/Megatron-LM examples/sc21/run_table_1.sh): micro-batch,
# model chunks per device (layers per stage / --num-layers-per-virtual-pipeline-stage), and
# whether gradients are reduced by PyTorch DDP (overlapped) or Megatron's local DDP (DDP=torch|local).
MEGATRON_ROWS = (
    ("megatron-1.7b", 1, 1, 32, 512, 137.0, 16, 1, "torch"),
    ("megatron-18.4b", 8, 1, 256, 1024, 135.0, 8, 1, "torch"),
    ("megatron-76.1b", 8, 4, 1024, 1792, 140.0, 2, 3, "local"),
    ("megatron-310.1b", 8, 16, 1920, 2160, 155.0, 1, 2, "local"),
)
# Narayanan et al. SC'21 table 2, GPT-3 175B, global batch 1536 (development data): (system, GPUs, tp, pp,
# micro-batch, TFLOP/s per GPU); `../shared/reference/published.md`.
SC21_TABLE2_BATCH = 1536
SC21_TABLE2_ROWS = (
    ("PTD-P", 384, 8, 12, 1, 153.0),
    ("PTD-P", 768, 8, 12, 1, 149.0),
    ("PTD-P", 1536, 8, 12, 1, 141.0),
    ("ZeRO-3", 384, 1, 1, 4, 144.0),
    ("ZeRO-3", 768, 1, 1, 2, 88.0),
    ("ZeRO-3", 1536, 1, 1, 1, 44.0),
)
# llm-foundry benchmark tables, seq 2048: (cluster, MPT size, GPUs, micro-batch, grad accum, AC, MFU %, tokens/s/GPU).
MPT_ROWS = (
    ("dgx-h100", "70b", 64, 8, 4, True, 42.57, 1039.0),
    ("dgx-h100", "30b", 32, 14, 3, True, 43.92, 2308.0),
    ("dgx-h100", "13b", 8, 2, 1, False, 39.79, 4792.0),
    ("dgx-h100", "7b", 8, 6, 1, False, 46.44, 10643.0),
    ("dgx-h100", "1b", 8, 14, 1, False, 41.82, 45455.0),
    ("dgx-a100", "70b", 64, 8, 4, True, 53.33, 410.0),
    ("dgx-a100", "30b", 8, 3, 21, True, 55.30, 916.0),
    ("dgx-a100", "13b", 8, 2, 3, False, 59.57, 2262.0),
    ("dgx-a100", "7b", 8, 6, 2, False, 64.23, 4641.0),
    ("dgx-a100", "1b", 8, 14, 4, False, 59.86, 20513.0),
)
# Megatron-Bridge 25.11 H100 FP8 table: (preset, GPUs, global batch, TP, PP, CP, VP, tokens/s/GPU). Its model
# TFLOP/s use another attention FLOP convention than coda's (full score matrix), so tokens/s are compared.
BRIDGE_SEQ = 8192
BRIDGE_ROWS = (
    ("llama3-8b", 8, 128, 1, 1, 1, 1, 14451.0),
    ("llama3-70b", 64, 128, 4, 8, 1, 5, 1602.0),
    ("llama3.1-405b", 1024, 512, 8, 8, 2, 8, 292.0),
)
# Megatron-Bridge DGX-H100 MoE rows, FP8, seq 4096 (performance-summary.md and
# performance-summary-archive.md): (preset, release, routing, GPUs, global batch, micro-batch, TP, PP, VP,
# EP, tokens/s/GPU). The same layouts changed by up to 2x between releases (Qwen3-30B-A3B: 10494
# tokens/s in 25.09 with token dropping, 5275 in 25.11 dropless with routing force-balanced);
# coda's MoE blocks route evenly and drop nothing.
BRIDGE_MOE_SEQ = 4096
BRIDGE_MOE_ROWS = (
    ("qwen3-30b-a3b", "25.09", "token drop", 16, 512, 2, 1, 2, 24, 8, 10494.0),
    ("qwen3-30b-a3b", "25.11", "dropless, balanced", 16, 512, 2, 1, 2, 24, 8, 5275.0),
    ("qwen3-30b-a3b", "26.02", "dropless, balanced", 16, 1024, 1, 1, 2, 12, 8, 5113.0),
    ("qwen3-235b-a22b", "25.09", "token drop", 256, 2048, 1, 2, 8, 4, 32, 1204.0),
    ("qwen3-235b-a22b", "25.11", "dropless, balanced", 256, 2048, 1, 2, 8, 4, 32, 1575.0),
    ("qwen3-235b-a22b", "26.02", "dropless, balanced", 256, 8192, 1, 2, 8, 4, 32, 1633.0),
)
# (layers, d_model, heads). MPT-7B and MPT-30B: Hugging Face mosaicml/mpt-7b and mpt-30b
# config.json; MPT-1B, 13B, 70B: llm-foundry scripts/train/yamls/pretrain/mpt-{1b,13b,70b}.yaml.
MPT_SIZES = {"1b": (24, 2048, 16), "7b": (32, 4096, 32), "13b": (40, 5120, 40), "30b": (48, 7168, 64),
             "70b": (80, 8192, 64)}
NEUSIGHT_GPUS = {"NVIDIA_A100-SXM4-40GB": ("dgx-a100", "a100-sxm4-40gb"),
                 "NVIDIA_H100_80GB_HBM3": ("dgx-h100", "h100-sxm")}


def mpt_config(size: str) -> ModelConfig:
    """MPT-1B/7B/13B/30B/70B (MosaicML): no biases, LayerNorm, GELU MLP of 4x d_model, vocabulary
    50432, tied embeddings, 2048 positions, ALiBi positions (computed inside the fused attention
    kernel: no position table, no extra memory traffic)."""
    layers, d, heads = MPT_SIZES[size]
    return ModelConfig(name=f"mpt-{size}", n_layers=layers, hidden=d, n_heads=heads, ffn_hidden=4 * d,
                       vocab_size=50432, max_seq_len=SEQ, position="alibi", bias=False, tied_embeddings=True)


def megatron_flops(cfg: ModelConfig, batch: int, seq: int) -> float:
    """Narayanan et al. SC'21 eq. 3: FLOPs per iteration with full recomputation."""
    L, h, V = cfg.n_layers, cfg.hidden, cfg.vocab_size
    return 96.0 * batch * seq * L * h * h * (1 + seq / (6 * h) + V / (16 * L * h))


def megatron_table() -> pd.DataFrame:
    """Predicted vs published TFLOP/s per GPU for the Megatron-LM rows."""
    rows = []
    for name, tp, pp, n, gb, published, mb, chunks, ddp in MEGATRON_ROWS:
        cfg = get(name)
        dp = n // (tp * pp)
        kw: dict[str, Any] = dict(tp=tp, pp=pp, dp=dp, micro_batch=mb, recompute="full", zero=0,
                                  sequence_parallel=False, schedule="interleaved" if chunks > 1 else "1f1b",
                                  virtual_stages=chunks)
        sw = replace(MEGATRON_2021, dp_overlap=ddp == "torch")
        _, r, _ = optimize(cfg, cluster("dgx-a100", n), gb, SEQ, dtype="fp16", software=sw, **kw)
        pred = megatron_flops(cfg, gb, SEQ) / r.step_time_s / n / 1e12
        rows.append(dict(model=name, tp=tp, pp=pp, dp=dp, GPUs=n, global_batch=gb, plan=r.plan.describe(),
                         published_TFLOPs=published, predicted_TFLOPs=pred, error_pct=100 * (pred / published - 1),
                         hw_TFLOPs_coda=r.hardware_flops_per_s / 1e12, peak_memory_GiB=r.peak_memory_bytes / GiB,
                         fits_80GB=r.fits))
    return pd.DataFrame(rows)


def sc21_table2() -> pd.DataFrame:
    """Predicted vs published TFLOP/s per GPU for SC'21 table 2: PTD-P and DeepSpeed ZeRO-3 on GPT-3 175B
    (development data, section 5 of the module docstring)."""
    cfg = replace(get("gpt3-175b"), vocab_size=51200)  # Megatron pads 50257 to a multiple of 128 * t
    rows = []
    for system, n, tp, pp, mb, published in SC21_TABLE2_ROWS:
        dp = n // (tp * pp)
        sw, zero = (MEGATRON_2021, 0) if system == "PTD-P" else (DEEPSPEED_2021, 3)
        _, r, _ = optimize(cfg, cluster("dgx-a100", n), SC21_TABLE2_BATCH, SEQ, dtype="fp16", software=sw, tp=tp,
                           pp=pp, dp=dp, micro_batch=mb, recompute="full", zero=zero, sequence_parallel=False,
                           schedule="1f1b", virtual_stages=1)
        pred = megatron_flops(cfg, SC21_TABLE2_BATCH, SEQ) / r.step_time_s / n / 1e12
        bd = r.breakdown()
        rows.append(dict(system=system, software=sw.name, GPUs=n, plan=r.plan.describe(), published_TFLOPs=published,
                         predicted_TFLOPs=pred, error_pct=100 * (pred / published - 1),
                         comm_exposed_pct=100 * (bd["zero3_comm"] + bd["tp_comm"] + bd["pp_comm"] + bd["dp_comm"])
                         / r.step_time_s, peak_memory_GiB=r.peak_memory_bytes / GiB, fits_80GB=r.fits))
    return pd.DataFrame(rows)


def mpt_table() -> pd.DataFrame:
    """Predicted vs published tokens/s per GPU for the llm-foundry MPT rows (FSDP)."""
    rows = []
    for cl_name, size, n, mb, ga, ac, mfu, published in MPT_ROWS:
        cfg = mpt_config(size)
        row: dict[str, Any] = dict(cluster=cl_name, model=cfg.name, GPUs=n, micro_batch=mb, grad_accum=ga,
                                   recompute="full" if ac else "none", published_tokens_per_s_per_gpu=published)
        try:
            _, r, _ = optimize(cfg, cluster(cl_name, n), mb * ga * n, SEQ, dtype="bf16", software=FSDP, tp=1, pp=1,
                               dp=n, micro_batch=mb, recompute=row["recompute"], zero=3)
            pred = r.tokens_per_s_per_device
            # llm-foundry's MFU counts the full attention matrix (scripts/train/benchmarking/collect_results.py:
            # attn_flops_per_seq = n_layers * 2 * 2 * d_model * seq_len**2): shown in that count; errors are on tokens/s
            mfu_full = full_matrix_mfu(r.mfu, pred, r.peak_flops, cfg.n_layers, cfg.hidden, SEQ)
            row.update(predicted_tokens_per_s_per_gpu=pred, error_pct=100 * (pred / published - 1),
                       published_mfu_pct=mfu, predicted_mfu_pct=100 * mfu_full,
                       peak_memory_GiB=r.peak_memory_bytes / GiB)
        except CodaError as err:
            row.update(predicted_tokens_per_s_per_gpu=float("nan"), error_pct=float("nan"), published_mfu_pct=mfu,
                       predicted_mfu_pct=float("nan"), peak_memory_GiB=float("nan"), note=str(err)[:80])
        rows.append(row)
    return pd.DataFrame(rows)


def gpu_ratio_table(mpt: pd.DataFrame) -> pd.DataFrame:
    """H100 over A100 tokens/s per GPU of each MPT model, published and predicted (from `mpt_table()`).
    Where both runs share a plan per GPU (same micro-batch and recomputation) the ratio's error is the
    device model's alone: whatever the plan model misses cancels out of it."""
    a, h = (mpt[mpt["cluster"] == c].set_index("model") for c in ("dgx-a100", "dgx-h100"))
    out = pd.DataFrame({
        "same_plan_per_gpu": (a["micro_batch"] == h["micro_batch"]) & (a["recompute"] == h["recompute"]),
        "same_global_plan": (a[["GPUs", "micro_batch", "grad_accum"]] == h[["GPUs", "micro_batch", "grad_accum"]])
        .all(axis=1),
        "published_h100_over_a100": h["published_tokens_per_s_per_gpu"] / a["published_tokens_per_s_per_gpu"],
        "predicted_h100_over_a100": h["predicted_tokens_per_s_per_gpu"] / a["predicted_tokens_per_s_per_gpu"]})
    out["ratio_error_pct"] = 100 * (out["predicted_h100_over_a100"] / out["published_h100_over_a100"] - 1)
    return out.reset_index()


def bridge_layout(n_layers: int, pp: int, vp: int) -> tuple[dict[str, Any], str]:
    """The schedule choices for a published PP x VP layout, and a note: interleaved with equal
    chunks when pp*vp divides the layers; else, when it divides layers + 2, interleaved with the
    embedding and the loss counted as one layer each (Megatron-Bridge's
    `account_for_embedding_in_pipeline_split` / `account_for_loss_in_pipeline_split`), i.e. one
    block fewer in the first and the last chunk; else 1F1B."""
    chunks = pp * vp
    if vp == 1:
        return dict(schedule="1f1b", virtual_stages=1), ""
    if n_layers % chunks == 0:
        return dict(schedule="interleaved", virtual_stages=vp), ""
    layers = lighter_ends_stage_layers(n_layers, chunks)
    if layers is not None:
        c = layers[1]
        return (dict(schedule="interleaved", virtual_stages=vp, stage_layers=layers),
                f"embedding and loss count as layers: chunks of {c - 1}, {c} x {chunks - 2}, {c - 1} blocks")
    return dict(schedule="1f1b", virtual_stages=1), f"1F1B: {vp} chunks x {pp} stages do not divide {n_layers} layers"


def bridge_table() -> pd.DataFrame:
    """Predicted vs published tokens/s per GPU for the Megatron-Bridge H100 FP8 rows."""
    rows = []
    for name, n, gb, tp, pp, cp, vp, published in BRIDGE_ROWS:
        row: dict[str, Any] = dict(model=name, GPUs=n, global_batch=gb, tp=tp, pp=pp, cp=cp, vp=vp,
                                   published_tokens_per_s_per_gpu=published)
        cfg = get(name)
        layout, note = bridge_layout(cfg.n_layers, pp, vp)
        _, r, _ = optimize(cfg, cluster("dgx-h100", n), gb, BRIDGE_SEQ, dtype="fp8", software=MEGATRON_CORE,
                           tp=tp, cp=cp, pp=pp, dp=n // (tp * cp * pp), micro_batch=1, zero=1,
                           sequence_parallel=tp > 1, **layout)
        pred = r.tokens_per_s_per_device
        row.update(plan=r.plan.describe(), predicted_tokens_per_s_per_gpu=pred,
                   error_pct=100 * (pred / published - 1), predicted_mfu_pct=100 * r.mfu,
                   peak_memory_GiB=r.peak_memory_bytes / GiB, note=note)
        rows.append(row)
    return pd.DataFrame(rows)


def bridge_moe_table() -> pd.DataFrame:
    """Predicted vs published tokens/s per GPU for the Megatron-Bridge H100 FP8 Qwen3 MoE rows
    (expert parallelism; the plan as published, recomputation left to `optimize`; the pipeline
    layout of `bridge_layout`, as for the dense rows), and what the plan would
    reach with the all-to-alls overlapped (`Software.ep_overlap`; which the runs used is not
    published)."""
    rows = []
    for name, release, routing, n, gb, mb, tp, pp, vp, ep, published in BRIDGE_MOE_ROWS:
        cfg = get(name)
        layout, note = bridge_layout(cfg.n_layers, pp, vp)
        r, hidden = (optimize(cfg, cluster("dgx-h100", n), gb, BRIDGE_MOE_SEQ, dtype="fp8", software=sw, tp=tp, pp=pp,
                              dp=n // (tp * pp), ep=ep, micro_batch=mb, zero=1, sequence_parallel=tp > 1,
                              **layout)[1]
                     for sw in (MEGATRON_CORE, replace(MEGATRON_CORE, ep_overlap=True)))
        pred = r.tokens_per_s_per_device
        rows.append(dict(release=release, routing=routing, model=cfg.name, GPUs=n, global_batch=gb,
                         plan=r.plan.describe(), published_tokens_per_s_per_gpu=published,
                         predicted_tokens_per_s_per_gpu=pred,
                         error_pct=100 * (pred / published - 1), predicted_mfu_pct=100 * r.mfu,
                         ep_comm_pct=100 * r.breakdown()["ep_comm"] / r.step_time_s,
                         with_ep_overlap_tokens_per_s_per_gpu=hidden.tokens_per_s_per_device,
                         peak_memory_GiB=r.peak_memory_bytes / GiB, note=note))
    return pd.DataFrame(rows)


def neusight_runs() -> list[tuple[str, str, int, str, float]]:
    """Shipped NeuSight 4-GPU GPT2-large training runs: (gpu dir, variant, batch, run, measured s)."""
    out = []
    root = resources.files("coda").joinpath("data").joinpath("neusight").joinpath("e2e")
    for gdir in NEUSIGHT_GPUS:
        folder = root.joinpath(gdir)
        if not folder.is_dir():
            continue
        for f in sorted(folder.iterdir(), key=lambda p: p.name):
            name = f.name.removesuffix(".json")
            parts = name.split("-")
            if name.startswith("gpt2_large-train-") and len(parts) == 5 and f.name.endswith(".json"):
                out.append((gdir, parts[4], int(parts[3]), name, json.loads(f.read_text())["e2e_latency"] * 1e-3))
    return out


def _neusight_predict(gdir: str, variant: str, batch: int) -> tuple[float, str]:
    """Predicted forward + backward seconds of one 4-GPU run, and the compute graphs used."""
    from coda.evaluate.iteration import iteration

    cl_name, gpu_name = NEUSIGHT_GPUS[gdir]
    cl = cluster(cl_name, 4, device=gpu(gpu_name))
    cfg = get("gpt2-large")
    seq, e = 1024, 4
    if variant == "tp4":
        # Hugging Face GPT-2 in train mode: dropout 0.1 on attention probabilities and residual branches
        sw = Software(attention="unfused", dp_overlap=True, scatter_gather=False, dropout=True, name="megatron-tp")
        _, r, _ = optimize(cfg, cl, batch, seq, dtype="fp32", software=sw, tp=4, pp=1, dp=1, micro_batch=batch,
                           recompute="none", sequence_parallel=False)
        return r.step_time_s - r.breakdown()["optimizer"], "fused (tp=4)"
    if variant == "dp4":
        it = iteration(cfg, gpu_name, batch // 4, seq, mode="train", dtype="fp32", attention="unfused",
                       framework="eager")
        # DDP all-reduces fp32 gradients in 25 MB buckets during the backward pass; the last bucket
        # (and whatever does not fit behind the backward) is exposed.
        total = cl.collective_time("all_reduce", e * cfg.param_count(), 4)
        exposed = max(cl.collective_time("all_reduce", 25e6, 4), total - it.backward_s)
        return it.total_s + exposed, "eager (batch/4 per GPU)"
    it = iteration(cfg, gpu_name, batch, seq, mode="train", dtype="fp32", attention="unfused", framework="eager")
    msg = batch * seq * cfg.hidden * e  # one micro-batch: forward activations and backward gradients, 3 boundaries
    p2p = sum(cl.collective_time("send_recv", msg, [i, i + 1]) for i in range(3))
    return it.total_s + 2 * p2p, "eager (1 micro-batch through 4 stages)"


def neusight_table() -> pd.DataFrame:
    """Predicted vs measured time of the NeuSight 4-GPU GPT2-large runs."""
    rows = []
    for gdir, variant, batch, run, measured in neusight_runs():
        pred, graphs = _neusight_predict(gdir, variant, batch)
        rows.append(dict(gpu=NEUSIGHT_GPUS[gdir][1], run=run, measured_ms=measured * 1e3, predicted_ms=pred * 1e3,
                         error_pct=100 * (pred / measured - 1), compute_graphs=graphs))
    return pd.DataFrame(rows)


def _summary(df: pd.DataFrame, what: str) -> pd.DataFrame:
    err = df["error_pct"].abs().dropna()
    med = statistics.median(err) if len(err) else None
    return pd.DataFrame([dict(set=what, rows=len(err), median_abs_error_pct=med,
                              max_abs_error_pct=err.max() if len(err) else None)])


def training_report() -> list[tuple[str, pd.DataFrame]]:
    """Sections for `coda validate training`."""
    from coda.evaluate.megatron_h100_validation import megatron_h100_table, sensitivity_table

    meg, mpt, bridge, neu = megatron_table(), mpt_table(), bridge_table(), neusight_table()
    moe, table2, h100 = bridge_moe_table(), sc21_table2(), megatron_h100_table()
    summary = pd.concat([_summary(meg, "Megatron-LM TFLOP/s (target: each <= 10%, median <= 5%)"),
                         _summary(mpt[mpt["cluster"] == "dgx-a100"], "MPT FSDP tokens/s, A100 (target: each <= 15%)"),
                         _summary(mpt[mpt["cluster"] == "dgx-h100"], "MPT FSDP tokens/s, H100 (target: each <= 15%)"),
                         _summary(bridge, "Megatron-Bridge H100 FP8 tokens/s (reported)"),
                         _summary(moe, "Megatron-Bridge H100 FP8 MoE tokens/s (reported)"),
                         _summary(table2, "SC'21 table 2, PTD-P and ZeRO-3 TFLOP/s, development data (target: "
                                          "each <= 15%)"),
                         _summary(h100, "Megatron-LM README H100 TFLOP/s, development data (target: each <= 15%)"),
                         _summary(pd.concat([table2, h100]), "SC'21 table 2 + Megatron-LM README H100 (target: "
                                                              "median <= 7%)"),
                         _summary(neu, "NeuSight 4-GPU time")], ignore_index=True)
    return [
        ("Megatron-LM, Narayanan et al. SC'21 table 1, dgx-a100, fp16, plans of its examples/sc21/run_table_1.sh "
         "(full recompute, dropout 0.1): TFLOP/s per GPU", meg),
        ("MosaicML llm-foundry MPT, PyTorch FSDP (zero=3), bf16, seq 2048: tokens/s per GPU", mpt),
        ("MPT, H100 over A100 tokens/s per GPU: published and predicted speed-ups (where the plan per GPU is the "
         "same, the ratio's error is the device model's alone)", gpu_ratio_table(mpt)),
        ("NVIDIA Megatron-Bridge 25.11, dgx-h100, fp8, seq 8192, micro-batch 1, published TP/CP/PP/VP: "
         "tokens/s per GPU", bridge),
        ("NVIDIA Megatron-Bridge, dgx-h100, fp8, seq 4096, Qwen3 MoE with expert parallelism, published "
         "TP/PP/VP/EP: tokens/s per GPU", moe),
        ("Narayanan et al. SC'21 table 2 (development data), GPT-3 175B, dgx-a100, fp16, global batch 1536, full "
         "recompute: PTD-P (megatron-lm-2021) vs ZeRO-3 without model parallelism (deepspeed-zero3-2021), TFLOP/s per "
         "GPU", table2),
        ("Megatron-LM README H100 weak scaling (development data), dgx-h100, bf16, seq 4096, published t/p/d, "
         "megatron-core-2024 (TP comm and param-gather overlap), micro-batch 1, no recompute, 1F1B (Megatron-LM's "
         "GPT-3 example): TFLOP/s per GPU by Megatron's count", h100),
        ("Megatron-LM README H100: error % under each choice of what the README does not publish (micro-batch, "
         "recomputation, model chunks per device); the rule's is mb1 none", sensitivity_table()),
        ("NeuSight 4-GPU GPT2-large training, FP32, seq 1024 (forward + backward)", neu),
        ("summary", summary),
    ]
