"""Predicted vs measured kernel latency on the data the calibration did not fit.

    python experiments/predictor_accuracy/run.py [--out DIR]

Writes `kernels.csv` (every held-out measurement with coda's and the roofline's prediction) and
`predicted_vs_measured.png` (log-log scatter, one panel per set, roofline in grey) to DIR
(default: this folder). The numbers are those of `coda validate predictor`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from coda.predictor.validation import kernel_errors  # noqa: E402

PANELS = (  # (title, selector)
    ("Vidur FP16 linear, A100 (held-out models)",
     lambda f: (f["source"] == "vidur") & (f["family"] == "gemm") & (f["gpu"] == "a100-sxm4-80gb")),
    ("Vidur FP16 linear, H100 (held-out models)",
     lambda f: (f["source"] == "vidur") & (f["family"] == "gemm") & (f["gpu"] == "h100-sxm")),
    ("NeuSight FP32 bmm + linear, H100 (unseen GPU)",
     lambda f: (f["source"] == "neusight") & (f["family"] == "gemm") & (f["gpu"] == "h100-sxm")),
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent)
    out = ap.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    f = kernel_errors()
    held = f[f["split"] == "held out"]
    cols = ["source", "gpu", "model", "layer_op", "tp", "tokens", "latency_s", "ours_s", "roofline_s", "ours_ape",
            "roofline_ape"]
    held[cols].to_csv(out / "kernels.csv", index=False, float_format="%.6g")
    fig, axes = plt.subplots(1, len(PANELS), figsize=(5 * len(PANELS), 4.6))
    for ax, (title, select) in zip(axes, PANELS):
        d = held[select(held)]
        ax.scatter(d["latency_s"] * 1e3, d["roofline_s"] * 1e3, s=2, c="0.75", label="roofline", rasterized=True)
        ax.scatter(d["latency_s"] * 1e3, d["ours_s"] * 1e3, s=2, c="tab:blue", label="coda", rasterized=True)
        lo, hi = d["latency_s"].min() * 1e3 / 2, d["latency_s"].max() * 1e3 * 2
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        medians = f"median APE coda {d['ours_ape'].median():.1f}%, roofline {d['roofline_ape'].median():.1f}%"
        ax.set(xscale="log", yscale="log", xlim=(lo, hi), ylim=(lo, hi), xlabel="measured (ms)",
               ylabel="predicted (ms)", title=f"{title}\n{medians}")
        ax.title.set_fontsize(9)
        ax.legend(loc="upper left", markerscale=4, fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "predicted_vs_measured.png", dpi=110)
    print(f"wrote {out / 'kernels.csv'} ({len(held)} rows) and {out / 'predicted_vs_measured.png'}")


if __name__ == "__main__":
    main()
