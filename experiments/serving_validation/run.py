"""Published serving measurements against coda's simulation (the rows of `coda validate serving`).

    python experiments/serving_validation/run.py [--out DIR]

Writes `predicted_vs_measured.csv` (every point of `coda/serving/validation_points.csv` with the
prediction and its error) and `predicted_vs_measured.png` (predicted against measured, log-log,
development and held-out points apart) to DIR (default: this folder), and prints the summary.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from coda.serving.validation import summarise, validate  # noqa: E402

UNITS = {"ttft_mean_s": "mean TTFT (s)", "itl_mean_s": "mean inter-token latency (s)",
         "output_tokens_per_s": "output tokens/s"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).parent), help="output folder (default: this folder)")
    out = Path(ap.parse_args().out)
    table = validate()
    table.to_csv(out / "predicted_vs_measured.csv", index=False)
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.5))
    for ax, (metric, label) in zip(axes, UNITS.items()):
        for split, marker in (("development", "o"), ("held_out", "s")):
            t = table[(table["metric"] == metric) & (table["split"] == split)]
            if len(t):
                ax.scatter(t["measured"], t["predicted"], marker=marker, label=split, alpha=0.8, zorder=3)
        t = table[table["metric"] == metric]
        lo, hi = t[["measured", "predicted"]].min().min() / 1.5, t[["measured", "predicted"]].max().max() * 1.5
        ax.plot([lo, hi], [lo, hi], color="0.5", lw=0.8)
        band = np.array([lo, hi])
        ax.fill_between(band, band * 0.8, band * 1.2, color="0.9", label="±20%", zorder=0)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(f"measured {label}")
        ax.set_ylabel(f"coda {label}")
        ax.legend(fontsize=8)
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.grid(alpha=0.3)
    fig.suptitle("serving on H100: NVIDIA NIM (closed loop, Llama-3.3-70B TP2) and TensorRT-LLM (offline, "
                 "Llama-3.1-8B / 3.3-70B / 3.1-405B)", fontsize=10)
    fig.tight_layout()
    fig.savefig(out / "predicted_vs_measured.png", dpi=110)
    print(summarise(table).to_string(index=False))


if __name__ == "__main__":
    main()
