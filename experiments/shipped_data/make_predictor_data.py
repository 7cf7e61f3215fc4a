"""Write the compact subsets of the measured kernel data that coda ships for its predictor.

Maintainer script: reads the full artifacts (NeuSight, Vidur; MIT) from a folder laid out as
`data/neusight/kernels/*.csv` and `data/vidur/{compute,attention}/...`, and writes gzip CSVs
under `coda/data/`, keeping the original column names and only the columns coda uses.

    python experiments/shipped_data/make_predictor_data.py --source ../shared/data
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

OUT = Path(__file__).resolve().parents[2] / "coda" / "data"
NEUSIGHT_KEEP = ["OPName", "Latency", "Device", "Kernel Name", "B", "M", "N", "K", "H"]
VIDUR_OPS = ["attn_pre_proj", "attn_post_proj", "mlp_up_proj", "mlp_down_proj", "mlp_act", "input_layernorm",
             "post_attention_layernorm", "attn_rope", "add", "emb"]
VIDUR_SHAPES = ["n_head", "n_kv_head", "n_embd", "n_expanded_embd", "vocab_size", "use_gated_mlp", "num_tokens",
                "num_tensor_parallel_workers"]
ATTN_KEEP = ["time_stats.attn_prefill.median", "time_stats.attn_decode.median", "n_embd", "n_q_head", "n_kv_head",
             "num_tensor_parallel_workers", "batch_size", "prefill_chunk_size", "kv_cache_size", "is_prefill"]


def _write(df: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # mtime=0 in the gzip header keeps the file byte-identical across runs
    df.to_csv(path, index=False, float_format="%.6g", compression={"method": "gzip", "mtime": 0})
    print(f"{path.relative_to(OUT.parent.parent)}: {len(df)} rows, {path.stat().st_size / 1024:.0f} KiB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--source", type=Path, required=True, help="folder holding neusight/ and vidur/")
    src = ap.parse_args().source
    for name in ("bmm", "linear", "elem", "ln", "softmax"):
        df = pd.read_csv(src / "neusight" / "kernels" / f"{name}.csv")
        _write(df[[c for c in NEUSIGHT_KEEP if c in df.columns]], OUT / "neusight" / "kernels" / f"{name}.csv.gz")
    frames = []
    for path in sorted((src / "vidur" / "compute").glob("*/*/*/mlp.csv")):
        df = pd.read_csv(path)
        cols = [f"time_stats.{op}.median" for op in VIDUR_OPS if f"time_stats.{op}.median" in df.columns]
        df = df[cols + VIDUR_SHAPES].copy()
        gpu, org, model = path.parts[-4:-1]
        df.insert(0, "model", f"{org}/{model}")
        df.insert(0, "gpu", gpu)
        frames.append(df)
    _write(pd.concat(frames, ignore_index=True), OUT / "vidur" / "compute" / "mlp.csv.gz")
    attn = pd.read_csv(src / "vidur" / "attention" / "a100_attention.csv")[ATTN_KEEP]
    attn.insert(0, "gpu", "a100")
    _write(attn, OUT / "vidur" / "attention" / "attention.csv.gz")


if __name__ == "__main__":
    main()
