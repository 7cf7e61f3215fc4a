"""`coda validate e2e`: single-GPU end-to-end time of Hugging Face models against NeuSight.

NeuSight (Lee et al., ASPLOS 2025; MIT) measured BERT-large and GPT2-large in PyTorch 2.1
eager mode, FP32 (no TF32), with CUDA events: `train` = `model(input_ids)` in train mode
(forward) + `loss.backward()` (backward; the cross-entropy forward between them is not timed,
so it is removed from coda's forward here), no optimizer step and gradients never zeroed;
`inf` = one forward under no_grad in eval mode. BERT uses `BertForPreTraining` in training
and `BertForSequenceClassification` in inference (NeuSight `Tracing/trace.py`), GPT-2
`GPT2LMHeadModel`. Shipped: the `*.json` measurements in `coda/data/neusight/e2e/<GPU>/` and
`kernel_trace_sums.csv`, the sum of NeuSight's per-kernel trace of each run on the same GPU
(host-only nodes removed, the traced block multiplied by the layer count): what a perfect
per-kernel predictor summing kernels would report. Nothing here is fitted to these numbers.

Units: the frames hold seconds (`*_s`, converted once where the files are read; NeuSight's files
and `kernel_trace_sums.csv` are in milliseconds); only the printed tables of `e2e_report` show
milliseconds (`*_ms`).
"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from coda.evaluate.iteration import iteration
from coda.models.hf import from_hf_config
from coda.predictor.roofline import Roofline

GPU_DIRS = {"NVIDIA_H100_80GB_HBM3": "h100-sxm", "NVIDIA_A100-PCIE-40GB": "a100-pcie-40gb",
            "NVIDIA_A100_80GB_PCIe": "a100-pcie-80gb", "NVIDIA_A100-SXM4-40GB": "a100-sxm4-40gb"}
MODELLED = {"bert_large": "bert", "gpt2_large": "gpt2"}
# NeuSight's own end-to-end MAPE (shared/reference/published.md, last section), per GPU and mode.
NEUSIGHT_MAPE = {("h100-sxm", "inf"): 6.1, ("h100-sxm", "train"): 6.6, ("a100-pcie-40gb", "inf"): 6.5,
                 ("a100-pcie-80gb", "train"): 7.6}
_RUN = re.compile(r"(?P<model>[a-z0-9_]+)-(?P<mode>train|inf)-(?P<seq>\d+)-(?P<batch>\d+)"
                  r"(?:-(?P<variant>[a-z0-9_]+))?$")
_HOST_ONLY = r"^(view|permute|transpose|unsqueeze|expand|split|getitem|to|type|size|dim|getattr)(_\d+)?$"


def _data() -> Any:
    return resources.files("coda").joinpath("data").joinpath("neusight")


MS = 1e-3
"""Seconds per millisecond, the unit of NeuSight's measurements and of `kernel_trace_sums.csv`."""


def measured_runs() -> pd.DataFrame:
    """Every shipped NeuSight end-to-end measurement: gpu, run, model, mode, seq_len, batch,
    variant (``""``, ``fusion``, ``dp4``, ``tp4``, ``pp4_1``), fw_s, bw_s, measured_s (seconds)."""
    rows = []
    for gpu_dir, gpu in GPU_DIRS.items():
        folder = _data().joinpath("e2e").joinpath(gpu_dir)
        for f in sorted(folder.iterdir(), key=lambda p: p.name):
            if not f.name.endswith(".json"):
                continue
            m = _RUN.match(f.name[:-5])
            assert m is not None, f.name  # shipped names follow NeuSight's pattern
            d = json.loads(f.read_text())
            rows.append(dict(gpu=gpu, run=f.name[:-5], model=m["model"], mode=m["mode"], seq_len=int(m["seq"]),
                             batch=int(m["batch"]), variant=m["variant"] or "", fw_s=d["fw_latency"] * MS,
                             bw_s=d["bwall_latency"] * MS, measured_s=d["e2e_latency"] * MS))
    return pd.DataFrame(rows)


def kernel_trace_sums(trace_dir: str | Path) -> pd.DataFrame:
    """Regenerate `kernel_trace_sums.csv` from NeuSight's per-op traces (`e2e/<GPU>/*.csv`): the
    file's rows, in its unit (milliseconds, as the traces).

    Per run: fw_ms = sum of the measured forward latencies of the nodes that launch kernels,
    non-block nodes once plus the block-0 nodes times `num_layer`; bw_ms likewise with the
    backward and AccumulateGrad latencies. Host-only nodes (views, size, getitem, ...) are dropped.
    """
    rows = []
    for csv in sorted(Path(trace_dir).glob("*/*.csv")):
        df = pd.read_csv(csv)
        layers = json.loads(csv.with_suffix(".json").read_text())["num_layer"]
        block = df["meta"].astype(str).str.contains(r"\.h\.0'|layer\.0'")
        kernel = ~(df["Name"].str.match(_HOST_ONLY) | (df["output_shape"] == "(1,)"))
        weight = np.where(block, layers, 1)
        fw = (df["fw_latency"] * weight)[kernel].sum()
        bw = (df["bw_latency"] * weight)[kernel].sum() + (df["acc_latency"] * weight).sum()
        rows.append(dict(gpu_dir=csv.parent.name, run=csv.stem, fw_ms=round(float(fw), 3), bw_ms=round(float(bw), 3)))
    return pd.DataFrame(rows)


def _kernel_sums() -> pd.DataFrame:
    text = _data().joinpath("e2e").joinpath("kernel_trace_sums.csv").read_text()
    from io import StringIO

    df = pd.read_csv(StringIO(text))
    df["gpu"] = df["gpu_dir"].map(GPU_DIRS)
    return df.assign(kernel_sum_s=(df["fw_ms"] + df["bw_ms"]) * MS)[["gpu", "run", "kernel_sum_s"]]


def _predict(r: pd.Series, framework: str) -> dict[str, float]:
    """coda's and the roofline's time of one run, seconds (coda's also split into forward and backward)."""
    cfg = from_hf_config(json.loads(_data().joinpath("models").joinpath(f"{r['model']}.json").read_text()),
                         name=r["model"])
    mode = "train" if r["mode"] == "train" else "forward"
    head = "lm" if MODELLED[r["model"]] == "gpt2" else ("pretraining" if mode == "train" else "classification")
    out = {}
    variants: tuple[tuple[str, dict[str, Any]], ...] = (("coda", {}),
                                                         ("roofline", dict(predictor=Roofline(), cpu_dispatch_s=0.0)))
    for key, kw in variants:
        res = iteration(cfg, r["gpu"], int(r["batch"]), int(r["seq_len"]), mode, "fp32", "unfused", framework,
                        head=head, **kw)
        untimed = res.layer_seconds("loss", "forward")  # NeuSight computes the loss outside its timers
        out[f"{key}_s"] = res.total_s - untimed
        if key == "coda":
            out.update(coda_fw_s=res.forward_s - untimed, coda_bw_s=res.backward_s)
    return out


def _ape(pred: pd.Series, meas: pd.Series) -> pd.Series:
    return ((pred - meas).abs() / meas * 100).round(1)


def e2e_errors() -> pd.DataFrame:
    """Modelled single-GPU eager runs with coda's, the roofline's and the kernel-sum's time (seconds) and APE %."""
    runs = measured_runs()
    runs = runs[runs["model"].isin(MODELLED) & (runs["variant"] == "")].reset_index(drop=True)
    pred = pd.DataFrame([_predict(r, "eager") for _, r in runs.iterrows()])
    df = pd.concat([runs, pred], axis=1).merge(_kernel_sums(), on=["gpu", "run"], how="left")
    for key in ("coda", "roofline", "kernel_sum"):
        df[f"{key}_ape"] = _ape(df[f"{key}_s"], df["measured_s"])
    return df


def _in_ms(df: pd.DataFrame) -> pd.DataFrame:
    """A frame for printing: every `*_s` column as `*_ms` (milliseconds), in place."""
    return df.rename(columns={c: c[:-2] + "_ms" for c in df.columns if c.endswith("_s")}).assign(
        **{c[:-2] + "_ms": df[c] / MS for c in df.columns if c.endswith("_s")})


def e2e_report() -> list[tuple[str, pd.DataFrame]]:
    """Sections of `coda validate e2e`."""
    df = _in_ms(e2e_errors())
    cols = ["gpu", "run", "fw_ms", "coda_fw_ms", "bw_ms", "coda_bw_ms", "measured_ms", "coda_ms", "coda_ape",
            "roofline_ms", "roofline_ape", "kernel_sum_ms", "kernel_sum_ape"]
    table = df[cols].round(1)
    means = dict(runs=("run", "size"), coda_mape=("coda_ape", "mean"), roofline_mape=("roofline_ape", "mean"),
                 kernel_sum_mape=("kernel_sum_ape", "mean"))
    by_gpu = df.groupby("gpu", sort=False).agg(**means).round(1).reset_index()
    by_mode = df.groupby(["gpu", "mode"], sort=False).agg(**means).round(1).reset_index()
    by_mode["neusight_mape"] = [NEUSIGHT_MAPE.get((g, m), np.nan) for g, m in zip(by_mode["gpu"], by_mode["mode"])]
    runs = measured_runs()
    fusion = runs[runs["model"].isin(MODELLED) & (runs["variant"] == "fusion")].reset_index(drop=True)
    fused = pd.concat([fusion, pd.DataFrame([_predict(r, "fused") for _, r in fusion.iterrows()])], axis=1)
    fused = _in_ms(fused.assign(coda_ape=_ape(fused["coda_s"], fused["measured_s"]),
                                roofline_ape=_ape(fused["roofline_s"], fused["measured_s"])))
    rest = runs[~runs.index.isin(runs[runs["model"].isin(MODELLED) & runs["variant"].isin(["", "fusion"])].index)]
    rest = rest.assign(status=np.where(rest["model"].isin(MODELLED), "multi-GPU: see placement",
                                       "not modelled (encoder-decoder MoE)"))
    return [
        ("End to end, PyTorch eager FP32, NeuSight dev set (ms; coda fw excludes the untimed loss forward; "
         "kernel_sum = NeuSight's own per-kernel trace summed)", table),
        ("Mean APE % per GPU (target <= 6)", by_gpu),
        ("Mean APE % per GPU and mode, with NeuSight's published MAPE", by_mode),
        ("Extra: torch.compile runs (-fusion) with framework='fused', attention='unfused' (not in the target)",
         fused[["gpu", "run", "measured_ms", "coda_ms", "coda_ape", "roofline_ms", "roofline_ape"]].round(1)),
        ("Not compared", _in_ms(rest)[["gpu", "run", "measured_ms", "status"]].round(1)),
    ]
