"""`coda validate acceptance`: every accuracy target coda is held to, in one table, met or not.

One row per check: what is checked, the target, the value (the worst case over what the target
covers, e.g. the largest per-model median) and whether it is met. The values come from the
same functions as the other `coda validate` reports (nothing is fitted here); the detailed
tables, with the fitted / held-out split of each, are in those reports.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from coda.arch import area
from coda.arch.accelerators import tdp_comparison, tpuv4, tpuv4_like
from coda.arch.collectives_fit import REPORT_MIN_BYTES, collectives_report
from coda.arch.design_space import PHAZE_KEY, SPACE_KEY, DesignSpace, phaze_cores
from coda.evaluate.accelerator_validation import PUBLISHED_POWER_TARGET, tpuv4_end_to_end, tpuv5e_end_to_end
from coda.evaluate.accelerator_validation import kernel_errors as template_kernel_errors
from coda.evaluate.e2e_validation import e2e_errors
from coda.evaluate.megatron_h100_validation import megatron_h100_table
from coda.evaluate.training_validation import gpu_ratio_table, megatron_table, mpt_table, sc21_table2
from coda.predictor.calibrate import HELD_OUT_GPU
from coda.predictor.validation import kernel_errors

COLUMNS = ("area", "check", "target", "value", "met", "reason")


def _rows() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    def add(area: str, check: str, target: str, value: float, ok: Callable[[float], bool], reason: str = "") -> None:
        met = bool(ok(value))
        rows.append(dict(area=area, check=check, target=target, value=round(float(value), 2), met=met,
                         reason="" if met else reason))

    acc = collectives_report()[0][1]
    col = f"median_ape_%_>={REPORT_MIN_BYTES // 2**20}MiB"
    for (system, multi, split), g in acc[acc["collective"] == "all_reduce"].groupby(
            ["system", acc["nodes"] > 1, "split"], sort=True):
        add("collectives", f"{system} all-reduce, {'2 nodes' if multi else '1 node'}, {split} group sizes",
            "median APE <= 10% per group size (>= 1 MiB)", g[col].max(), lambda v: v <= 10)

    f = kernel_errors()
    vidur = f[(f["source"] == "vidur") & (f["family"] == "gemm") & (f["split"] == "held out")]
    for gpu, g in vidur.groupby("gpu", sort=True):
        ape = g.groupby("model")["ours_ape"]
        add("predictor", f"Vidur FP16 linear layers of held-out models, {gpu}", "median APE <= 5% per model",
            ape.median().max(), lambda v: v <= 5)
        add("predictor", f"Vidur FP16 linear layers of held-out models, {gpu}", "p90 APE <= 12% per model",
            ape.quantile(0.9).max(), lambda v: v <= 12)
    neus = f[(f["source"] == "neusight") & (f["family"] == "gemm") & (f["gpu"] == HELD_OUT_GPU)]
    add("predictor", f"NeuSight FP32 bmm and linear on the unseen {HELD_OUT_GPU}", "median APE <= 10% per op",
        neus.groupby("layer_op")["ours_ape"].median().max(), lambda v: v <= 10)

    e2e = e2e_errors()
    for gpu, g in e2e.groupby("gpu", sort=False):
        add("end to end", f"NeuSight PyTorch eager FP32 runs, {gpu}", "mean APE <= 6%", g["coda_ape"].mean(),
            lambda v: v <= 6)

    meg = megatron_table()["error_pct"].abs()
    add("training", "Megatron-LM SC'21 table 1, TFLOP/s per GPU", "each row within 10%", meg.max(), lambda v: v <= 10)
    add("training", "Megatron-LM SC'21 table 1, TFLOP/s per GPU", "median within 5%", statistics.median(meg),
        lambda v: v <= 5)
    mpt = mpt_table()
    ratio = gpu_ratio_table(mpt).set_index("model")["ratio_error_pct"]
    for cluster, g in mpt.groupby("cluster", sort=True):
        add("training", f"MosaicML MPT (FSDP) tokens/s per GPU, {cluster}", "each row within 15%",
            g["error_pct"].abs().max(), lambda v: v <= 15,
            f"every row fast; coda's H100/A100 speed-up is {ratio.min():.0f} to {ratio.max():.0f}% above the "
            f"published ({ratio['mpt-70b']:+.0f}% for mpt-70b, the same plan on both): the H100 is fast in sustained "
            "bf16 training although its isolated kernels match the held-out Vidur timings (docs/training.md)"
            if cluster == "dgx-h100" else
            "mpt-13b +15.6%: ALiBi costs nothing inside the fused attention kernel; the other four rows within 8%")
    t2 = sc21_table2()
    add("training", "SC'21 table 2, PTD-P and DeepSpeed ZeRO-3, GPT-3 175B (development data)", "each row within 15%",
        t2["error_pct"].abs().max(), lambda v: v <= 15,
        "ZeRO-3 on 768 GPUs +17.9%: the modelled exposed traffic is 10 s short of the measured step (docs/training.md)")
    add("training", "SC'21 table 2, PTD-P and DeepSpeed ZeRO-3, GPT-3 175B (development data)", "median within 7%",
        t2["error_pct"].abs().median(), lambda v: v <= 7,
        "PTD-P rows within 2%, ZeRO-3 rows 7-18% fast")
    z = t2.pivot(index="GPUs", columns="system", values="predicted_TFLOPs")
    add("training", "SC'21 table 2: ZeRO-3 slower than PTD-P at 768 and 1536 GPUs, as measured",
        "0 of 2 ranked the other way", int((z.loc[[768, 1536], "ZeRO-3"] >= z.loc[[768, 1536], "PTD-P"]).sum()),
        lambda v: v == 0)
    h100 = megatron_h100_table()
    miss = ", ".join(f"{r.model} {r.error_pct:+.1f}%" for r in h100.itertuples() if abs(r.error_pct) > 15)
    add("training", "H100 weak scaling of the Megatron-LM README, TFLOP/s per GPU (development data)",
        "each row within 15%",
        h100["error_pct"].abs().max(), lambda v: v <= 15,
        f"{miss}: at t <= 2 the step is compute alone, and the H100 runs faster in coda than in sustained bf16 "
        "training (MPT's H100/A100 ratio); 32B is bound by 24 GB of fp32 gradient and weight traffic per GPU over "
        "48 nodes that only the last micro-batch hides under the rule's micro-batch 1 (docs/training.md)")
    both = pd.concat([t2["error_pct"], h100["error_pct"]]).abs()
    add("training", "SC'21 table 2 + the Megatron-LM README H100 rows (development data)", "median within 7%",
        both.median(), lambda v: v <= 7,
        f"SC'21 table 2's rows alone {t2['error_pct'].abs().median():.1f}%, the H100 rows alone "
        f"{h100['error_pct'].abs().median():.1f}% (docs/training.md)")

    cores = phaze_cores()
    model_um2 = area.area_um2(cores["num_tc"], cores["width"], cores["depth"], cores["num_vc"], cores["width_vc"],
                              cores["GLB_Buffer"])
    add("accelerators", f"area model vs PHAZE cores.json ({len(cores):,} rows)", "max error <= 0.01%",
        100 * np.abs(model_um2 / cores["area"].to_numpy() - 1).max(), lambda v: v <= 0.01)
    ours = set(map(tuple, DesignSpace.phaze().to_frame()[list(SPACE_KEY)].to_numpy().tolist()))
    theirs = set(map(tuple, cores[list(PHAZE_KEY)].to_numpy().tolist()))
    add("accelerators", "DesignSpace.phaze() vs cores.json", "0 configurations differ", len(ours ^ theirs),
        lambda v: v == 0)
    acc_ref = tpuv4_like()
    add("accelerators", "tpuv4_like() area (mm², 22 nm)", "278.83 +- 0.01", acc_ref.area_mm2,
        lambda v: abs(v - 278.83) <= 0.01)
    add("accelerators", "tpuv4_like() peak (TFLOP/s)", "275.3 +- 0.1%", acc_ref.peak_flops / 1e12,
        lambda v: abs(v / 275.3 - 1) <= 1e-3)
    faithful = tpuv4()
    add("accelerators", "tpuv4() peak (TFLOP/s; Google: 275 bf16)", "275.3 +- 0.1%", faithful.peak_flops / 1e12,
        lambda v: abs(v / 275.3 - 1) <= 1e-3)
    tdp = tdp_comparison().set_index("name")
    add("accelerators", "tpuv4_like() TDP (W; measured max 192)", "160-230 W", tdp.loc["tpuv4-like", "tdp_w"],
        lambda v: 160 <= v <= 230)
    for name in ("tpuv4", "a100-like", "h100-like"):
        ref = tdp.loc[name, "reference_w"]
        add("accelerators", f"{name} TDP vs {ref:g} W ({'measured max' if name == 'tpuv4' else 'TDP'})",
            f"within {100 * PUBLISHED_POWER_TARGET:g}%", 100 * abs(tdp.loc[name, "error"]),
            lambda v: v <= 100 * PUBLISHED_POWER_TARGET,
            "full-activity model of the template; parts of the chip it leaves out (docs/hardware.md)")
    kern = template_kernel_errors()
    for r in kern[kern["family"] == "gemm"].to_dict(orient="records"):
        add("accelerators", f"{r['template']} template through the accelerator tile model vs Vidur FP16 GEMMs, "
            f"{r['gpu']}", "median APE <= 15%", r["median_ape_%"], lambda v: v <= 15,
            f"template {r['median_error_%']:+.0f}% median (too fast): {r['cause']}")
    e2e = tpuv4_end_to_end(search_all=False).iloc[0]
    add("accelerators",
        f"tpuv4() PaLM 540B end to end ({e2e['n_devices']} chips, PaLM's layout) vs published 46.2% MFU",
        "MFU within 20%", abs(e2e["mfu_error_%"]), lambda v: v <= 20,
        f"coda's MFU {100 * e2e['mfu_palm_count']:.1f}% (PaLM's count) with {e2e['plan']}: the tpuv4-pod ICI is "
        "uncalibrated (efficiency 1, 1 us per step) and the tile model charges no HBM or vector-unit inefficiency")
    v5e = tpuv5e_end_to_end().iloc[0]
    add("accelerators", f"tpuv5e() MaxText 32B end to end ({v5e['n_devices']} chips, MaxText's layout) vs "
        "published 132 TFLOP/s per chip", "TFLOP/s within 20%", abs(v5e["error_%"]), lambda v: v <= 20,
        f"coda {v5e['tflops_per_chip']:.1f} TFLOP/s per chip with {v5e['plan']}: ICI uncalibrated (efficiency 1), "
        "no HBM or vector-unit inefficiency charged")
    return rows


def acceptance_table() -> pd.DataFrame:
    """The checks (module doc) as a DataFrame with columns `COLUMNS`."""
    return pd.DataFrame(_rows(), columns=list(COLUMNS))


def acceptance_report() -> list[tuple[str, pd.DataFrame]]:
    """Sections of `coda validate acceptance`: the checks, and a count of met and unmet ones."""
    df = acceptance_table()
    counts = df.groupby("area", sort=False)["met"].agg(checks="size", met="sum").reset_index()
    counts["unmet"] = counts["checks"] - counts["met"]
    return [("Accuracy targets (value = the worst case over what the target covers; details in the other "
             "`coda validate` reports)", df), ("met per area", counts)]
