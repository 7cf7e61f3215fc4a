"""Published vs predicted training throughput (the rows of `coda validate training`).

    python experiments/training_validation/run.py [--out DIR]

Writes `training.csv` and `published_vs_predicted.png` (Megatron-LM TFLOP/s per GPU; MPT,
Megatron-Bridge dense and Megatron-Bridge MoE tokens/s per GPU; published beside predicted, with
the error of each row) to DIR (default: this folder).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from coda.evaluate.training_validation import bridge_moe_table, bridge_table, megatron_table, mpt_table  # noqa: E402


def _bars(ax: plt.Axes, labels: list[str], published: np.ndarray, predicted: np.ndarray, unit: str,
          title: str) -> None:
    x = np.arange(len(labels))
    ax.bar(x - 0.2, published, 0.4, label="published", color="0.6")
    ax.bar(x + 0.2, predicted, 0.4, label="coda", color="tab:blue")
    for xi, p, q in zip(x, published, predicted):
        ax.annotate(f"{100 * (q / p - 1):+.0f}%", (xi + 0.2, q), ha="center", va="bottom", fontsize=7)
    ax.set_xticks(x, labels, rotation=30, ha="right", fontsize=8)
    ax.set(ylabel=unit, title=title)
    ax.title.set_fontsize(9)
    ax.legend(fontsize=8)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent)
    out = ap.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    meg, mpt, bridge, moe = megatron_table(), mpt_table(), bridge_table(), bridge_moe_table()
    pd.concat([meg.assign(set="megatron"), mpt.assign(set="mpt"), bridge.assign(set="megatron-bridge"),
               moe.assign(set="megatron-bridge-moe")]).to_csv(out / "training.csv", index=False, float_format="%.6g")
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.8), gridspec_kw={"width_ratios": [2, 2.5, 2.5]})
    _bars(axes[0, 0], list(meg["model"]), meg["published_TFLOPs"].to_numpy(), meg["predicted_TFLOPs"].to_numpy(),
          "TFLOP/s per GPU", "Megatron-LM SC'21 table 1 (DGX A100)")
    for ax, cl in zip(axes[0, 1:], ("dgx-a100", "dgx-h100")):
        d = mpt[mpt["cluster"] == cl]
        _bars(ax, list(d["model"]), d["published_tokens_per_s_per_gpu"].to_numpy(),
              d["predicted_tokens_per_s_per_gpu"].to_numpy(), "tokens/s per GPU", f"MosaicML MPT, FSDP ({cl})")
        ax.set_yscale("log")
    _bars(axes[1, 0], list(bridge["model"]), bridge["published_tokens_per_s_per_gpu"].to_numpy(),
          bridge["predicted_tokens_per_s_per_gpu"].to_numpy(), "tokens/s per GPU",
          "Megatron-Bridge 25.11, H100 FP8 (reported)")
    axes[1, 0].set_yscale("log")
    for ax, name in zip(axes[1, 1:], ("qwen3-30b-a3b", "qwen3-235b-a22b")):
        d = moe[moe["model"] == name]
        _bars(ax, [f"{r} ({w})" for r, w in zip(d["release"], d["routing"])],
              d["published_tokens_per_s_per_gpu"].to_numpy(), d["predicted_tokens_per_s_per_gpu"].to_numpy(),
              "tokens/s per GPU", f"Megatron-Bridge MoE, {name}, H100 FP8 (reported)")
    fig.tight_layout()
    fig.savefig(out / "published_vs_predicted.png", dpi=110)
    print(f"wrote {out / 'training.csv'} and {out / 'published_vs_predicted.png'}")


if __name__ == "__main__":
    main()
