"""`coda validate inference`: predicted serving numbers against published TensorRT-LLM runs.

Nothing here is fitted to these rows (`../shared/reference/published.md`, Inference section):

1. TensorRT-LLM performance tables (`docs/source/performance.md`, "updated for v0.6.1"), static
   batching, Llama-2: H100 SXM FP8 and A100 80GB FP16. Both tables' column is "Throughput (out
   tok/s/GPU)": generated tokens per second per GPU, so a TP-4 row is the replica's throughput
   divided by 4. One replica of `tp` devices; fp8 runs weights, activations and KV cache in 1
   byte on the fp8 tensor-core peak.
2. Databricks (TensorRT-LLM) time to first token, batch 1, 512 prompt tokens, fp16, A100-40GB
   (`cluster("dgx-a100", n, device=gpu("a100-sxm4-40gb"))`). MPT-7B is the MosaicML config of
   `training_validation.mpt_config` (ALiBi positions).
3. Databricks decode model-bandwidth utilisation (MBU) of Llama-2-70B at batch 1; the prompt and
   output lengths are not stated (512 / 64 assumed; at batch 1 with GQA the KV bytes are < 1% of
   the weights, so they barely matter).

Expected misses: TensorRT-LLM fuses kernels and runs CUDA graphs, whereas the predictor times
eager kernels back to back; its benchmark may overlap prefill and decode of different requests
(in-flight batching), which is not modelled; fp8 rows depend on fp8 kernel efficiency, which
the predictor extrapolates from bf16/fp16 calibration data.
"""

from __future__ import annotations

import statistics

import pandas as pd

from coda.arch.clusters import cluster
from coda.arch.gpus import gpu
from coda.errors import CodaError
from coda.evaluate.inference import inference
from coda.evaluate.training_validation import mpt_config
from coda.models import get
from coda.models.config import ModelConfig

# (cluster, dtype, preset, batch, tp, input, output, published output tokens/s per GPU)
TRTLLM_ROWS = (
    ("dgx-h100", "fp8", "llama2-7b", 768, 1, 128, 128, 19694.0),
    ("dgx-h100", "fp8", "llama2-7b", 112, 1, 128, 2048, 6818.0),
    ("dgx-h100", "fp8", "llama2-7b", 80, 1, 2048, 128, 2244.0),
    ("dgx-h100", "fp8", "llama2-70b", 1024, 2, 128, 128, 2657.0),
    ("dgx-h100", "fp8", "llama2-70b", 64, 2, 2048, 2048, 547.0),
    ("dgx-a100", "fp16", "llama2-7b", 384, 1, 128, 128, 5586.0),
    ("dgx-a100", "fp16", "llama2-7b", 60, 1, 128, 2048, 1928.0),
    ("dgx-a100", "fp16", "llama2-70b", 240, 4, 128, 2048, 525.0),
)
# (model, A100-40GB devices = tp, published TTFT in ms); batch 1, 512 input tokens.
TTFT_ROWS = (("mpt-7b", 1, 46.0), ("mpt-7b", 2, 34.0), ("mpt-7b", 4, 26.0),
             ("llama2-70b", 4, 154.0), ("llama2-70b", 8, 114.0))
# (cluster, device, tp, published MBU); Llama-2-70B decode at batch 1.
MBU_ROWS = (("dgx-a100", "a100-sxm4-40gb", 4, 0.55), ("dgx-h100", "h100-sxm", 2, 0.60))


def _err(pred: float | None, pub: float) -> float | None:
    return None if pred is None else 100.0 * (pred - pub) / pub


def trtllm_table() -> pd.DataFrame:
    """TensorRT-LLM static-batching throughput rows, output tokens/s per GPU: published, predicted, error %."""
    rows = []
    for cl, dt, preset, b, tp, p, o, pub in TRTLLM_ROWS:
        pred, note = None, ""
        try:
            r = inference(get(preset), cluster(cl, tp), tp, b, p, o, dtype=dt)
            pred = r.tokens_per_s_per_device
            note = f"TTFT {r.ttft_s:.3g} s, TPOT {r.tpot_s * 1e3:.3g} ms"
        except CodaError as err:
            note = str(err)
        rows.append(dict(cluster=cl, dtype=dt, model=preset, batch=b, tp=tp, input=p, output=o,
                         unit="tokens/s per GPU", published=pub, predicted=pred, error_pct=_err(pred, pub), note=note))
    return pd.DataFrame(rows)


def _model(name: str) -> ModelConfig:
    return mpt_config("7b") if name == "mpt-7b" else get(name)


def ttft_table() -> pd.DataFrame:
    """Databricks TTFT rows (A100-40GB, fp16, batch 1, 512 prompt tokens)."""
    a100_40 = gpu("a100-sxm4-40gb")
    rows = []
    for name, n, pub in TTFT_ROWS:
        r = inference(_model(name), cluster("dgx-a100", n, device=a100_40), n, 1, 512, 1, dtype="fp16")
        pred = r.ttft_s * 1e3
        rows.append(dict(model=name, devices=n, tp=n, published_ms=pub, predicted_ms=pred, error_pct=_err(pred, pub),
                         comm_ms=r.ttft_comm_s * 1e3))
    return pd.DataFrame(rows)


def mbu_table() -> pd.DataFrame:
    """Databricks decode MBU of Llama-2-70B at batch 1 (prompt 512, output 64 assumed)."""
    rows = []
    for cl, dev, tp, pub in MBU_ROWS:
        r = inference(get("llama2-70b"), cluster(cl, tp, device=gpu(dev)), tp, 1, 512, 64, dtype="fp16")
        rows.append(dict(device=dev, tp=tp, published=pub, predicted=r.mbu, error_pct=_err(r.mbu, pub),
                         tpot_ms=r.tpot_s * 1e3))
    return pd.DataFrame(rows)


def inference_report() -> list[tuple[str, pd.DataFrame]]:
    """Sections for `coda validate inference`."""
    trt, ttft, mbu = trtllm_table(), ttft_table(), mbu_table()
    summary = pd.DataFrame([
        dict(set=what, rows=int(df["error_pct"].notna().sum()),
             median_abs_error_pct=statistics.median(df["error_pct"].dropna().abs()) if df["error_pct"].notna().any()
             else None)
        for what, df in (("TensorRT-LLM throughput", trt), ("Databricks TTFT", ttft), ("Databricks MBU", mbu))])
    return [
        ("TensorRT-LLM static batching, Llama-2, output tokens/s per GPU (H100 SXM fp8; A100 80GB fp16)", trt),
        ("Databricks TTFT, A100-40GB, fp16, batch 1, 512 input tokens", ttft),
        ("Databricks decode MBU, Llama-2-70B, fp16, batch 1 (lengths assumed 512 / 64)", mbu),
        ("summary (nothing fitted to these rows)", summary),
    ]
