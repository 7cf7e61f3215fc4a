"""Published serving measurements against the simulator's predictions (`coda validate serving`).

The points (`validation_points.csv`, shipped with the package; `experiments/serving_validation/
README.md` cites and discusses them) are latency and throughput measurements of real serving
systems on H100s, one row per measured number:

- NVIDIA NIM LLM benchmarking (AIPerf, closed loop of `concurrency` clients): Llama-3.3-70B,
  fp8, TP2 on 2 x H100, 5000 prompt / 500 output tokens: mean TTFT, mean inter-token latency and
  output tokens/s at 8 concurrencies (24 points; *development*: run while this module was written).
- TensorRT-LLM's performance overview (`trtllm-bench throughput`: every request queued at once,
  the offline maximum-throughput scenario): output tokens/s of Llama-3.3-70B (H100 TP2),
  Llama-3.1-405B (H100 TP8) and Llama-3.1-8B (H100 TP1), fp8, at 10 (prompt, output) lengths
  each (30 points; *held out*: first run after this module and its settings were fixed).

Nothing is fitted to these points. Each row names the deployment as the source describes it; what
the source leaves open is set once for all rows from the serving engine's documented defaults:
the `orca` policy (TensorRT-LLM's default capacity scheduler, GUARANTEED_NO_EVICT, admits a
request only with KV room for its whole prompt and output and runs whole prefills; a prompt
longer than `max_num_tokens` runs as chunked context beside the decodes, the only way its
micro-batch scheduler can run it: `coda.serving.schedulers.orca`), at most
2048 sequences (the LLM API's `max_batch_size`) and 8192 tokens (`max_num_tokens`) an iteration,
fp8 KV cache (the NVIDIA ModelOpt FP8 checkpoints quantise it), and coda's default memory reserve.
A closed-loop row runs `requests` = 10 x concurrency (at least 50) requests; an offline row the
source's `num_requests`.

Metrics (SI units): `ttft_mean_s` the mean time to first token; `itl_mean_s` the mean over
requests of (last token - first token) / (output - 1), as genai-perf/AIPerf define inter-token
latency; `output_tokens_per_s` the output tokens over the makespan.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from importlib import resources
from typing import Any

import numpy as np
import pandas as pd

from coda.arch.clusters import cluster
from coda.errors import ConfigError
from coda.models import get
from coda.serving.deployment import Deployment
from coda.serving.schedulers import SchedulerConfig, SchedulerKind
from coda.serving.simulate import simulate
from coda.serving.trace import Trace

log = logging.getLogger(__name__)

POINTS_FILE = "validation_points.csv"
COLUMNS = ("id", "split", "source", "where", "model", "context", "gpu", "devices", "tp", "pp", "dtype", "kv_dtype",
           "scheduler", "max_batch", "max_tokens", "prompt_tokens", "output_tokens", "concurrency", "requests",
           "metric", "measured")
METRICS = ("ttft_mean_s", "itl_mean_s", "output_tokens_per_s")
SPLITS = ("development", "held_out")
CLUSTERS = {"h100-sxm": "dgx-h100", "a100-sxm-80gb": "dgx-a100"}
"""GPU of a point -> the cluster preset whose NVSwitch domain it ran in."""
SETTING = ("model", "context", "gpu", "devices", "tp", "pp", "dtype", "kv_dtype", "scheduler", "max_batch",
           "max_tokens", "prompt_tokens", "output_tokens", "concurrency", "requests")
"""The columns that make one simulation (its rows differ only in the metric)."""


def load_points(path: str | None = None) -> pd.DataFrame:
    """The measurements, one row each (module docstring); default the shipped file.

    Raises:
        ConfigError: a missing or unknown column, an unknown split or metric, a non-positive value.
    """
    if path is None:
        with resources.files("coda.serving").joinpath(POINTS_FILE).open() as f:
            df = pd.read_csv(f)
        where = POINTS_FILE
    else:
        try:
            df = pd.read_csv(path)
        except (OSError, pd.errors.ParserError) as err:
            raise ConfigError(f"serving points {path!r}: cannot read ({err})") from None
        where = path
    if tuple(df.columns) != COLUMNS:
        raise ConfigError(f"{where}: columns {list(df.columns)} must be exactly {', '.join(COLUMNS)}")
    bad = df[~df["split"].isin(SPLITS) | ~df["metric"].isin(METRICS) | ~(df["measured"] > 0)]
    if len(bad):
        r = bad.iloc[0]
        raise ConfigError(f"{where}: point {r['id']}: split {r['split']!r} must be one of {SPLITS}, metric "
                          f"{r['metric']!r} one of {METRICS}, measured {r['measured']!r} > 0")
    if df["id"].duplicated().any():
        raise ConfigError(f"{where}: duplicate ids {sorted(df.loc[df['id'].duplicated(), 'id'])}")
    return df


def _deployment(s: pd.Series) -> Deployment:
    cfg = get(str(s["model"]))
    if int(s["context"]) != cfg.max_seq_len:
        cfg = cfg.replace(max_seq_len=int(s["context"]))
    name = CLUSTERS.get(str(s["gpu"]))
    if name is None:
        raise ConfigError(f"serving point: gpu {s['gpu']!r} must be one of {', '.join(CLUSTERS)}")
    sched = SchedulerConfig(kind=SchedulerKind.from_str(str(s["scheduler"])), max_batch=int(s["max_batch"]),
                            max_tokens=int(s["max_tokens"]))
    return Deployment(cfg, cluster(name, int(s["devices"])), tp=int(s["tp"]), pp=int(s["pp"]), dtype=str(s["dtype"]),
                      kv_dtype=str(s["kv_dtype"]), scheduler=sched)


def predict_setting(s: pd.Series) -> dict[str, float]:
    """Simulate one setting (a row's `SETTING` columns) and return every metric of `METRICS`."""
    dep = _deployment(s)
    n = int(s["requests"])
    trace = Trace(np.zeros(n), np.full(n, int(s["prompt_tokens"]), dtype=np.int64),
                  np.full(n, int(s["output_tokens"]), dtype=np.int64), source=f"{n} requests")
    conc = None if pd.isna(s["concurrency"]) else int(s["concurrency"])
    r = simulate(dep, trace, concurrency=conc)
    rq = r.requests
    return {"ttft_mean_s": float(rq["ttft_s"].mean()), "itl_mean_s": float(rq["tpot_s"].mean()),
            "output_tokens_per_s": r.summary()["tokens_per_s"]}


def validate(points: pd.DataFrame | None = None, split: str | None = None,
             progress: Callable[[int, int], Any] | None = None) -> pd.DataFrame:
    """Predict every point and compare.

    Args:
        points: the measurements (default `load_points()`).
        split: only ``development`` or only ``held_out`` points (default both).
        progress: called with (settings done, settings) after each simulation.

    Returns:
        One row per point: its id, split, source, setting, metric, measured, predicted and
        error = (predicted - measured) / measured.
    """
    df = load_points() if points is None else points
    if split is not None:
        if split not in SPLITS:
            raise ConfigError(f"validate: split={split!r} must be one of {', '.join(SPLITS)} (or None for both)")
        df = df[df["split"] == split]
    df = df.reset_index(drop=True)
    keys = pd.Series(["|".join(map(str, row)) for row in df[list(SETTING)].itertuples(index=False)], index=df.index)
    predicted = np.full(len(df), np.nan)
    groups = list(df.groupby(keys, sort=False).groups.items())
    for done, (_, idx) in enumerate(groups, 1):
        got = predict_setting(df.loc[idx[0]])
        predicted[idx] = [got[m] for m in df.loc[idx, "metric"]]
        log.info("serving validation: %d/%d settings", done, len(groups))
        if progress is not None:
            progress(done, len(groups))
    out = df[["id", "split", "source", "model", "devices", "tp", "dtype", "prompt_tokens", "output_tokens",
              "concurrency", "metric", "measured"]].copy()
    out["predicted"] = predicted
    out["error"] = (out["predicted"] - out["measured"]) / out["measured"]
    return out


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """Per split and source and metric: points, median and largest |error|, and the signed mean error."""
    g = table.assign(abs_error=table["error"].abs()).groupby(["split", "source", "metric"], sort=False)
    return pd.DataFrame({"points": g.size(), "median_abs_error": g["abs_error"].median(),
                         "max_abs_error": g["abs_error"].max(), "mean_error": g["error"].mean()}).reset_index()


def serving_report() -> list[tuple[str, pd.DataFrame]]:
    """Sections for `coda validate serving`: every point, then the summary."""
    table = validate()
    shown = table.drop(columns=["source"])
    return [("Published serving measurements (H100; NVIDIA NIM closed loop, TensorRT-LLM offline) against coda's "
             "simulation; development points were run while the harness was written, held-out ones only after; "
             "nothing is fitted to them", shown),
            ("summary", summarise(table))]


__all__ = ["METRICS", "SPLITS", "load_points", "predict_setting", "serving_report", "summarise", "validate"]
