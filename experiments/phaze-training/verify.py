"""Re-evaluate the design rows of a phaze-training per_model.csv on the installed coda and print each
row's relative difference in tokens/s per W (and whether the plan is the same).

    python experiments/phaze-training/verify.py experiments/phaze-training/per_model.csv
"""
import sys

import pandas as pd

from coda.arch.accelerators import tpuv4, tpuv4_like
from coda.arch.design_space import DesignSpace
from coda.experiments.phaze_training import GLOBAL_BATCH, N_DEVICES, WORKLOADS
from coda.models import get
from coda.placement import predictor_layer_time
from coda.search import DEFAULT_CHOICES
from coda.search.design_eval import evaluate_design

csv = pd.read_csv(sys.argv[1])
names = set(csv["name"])
accs = {a.name: a for a in DesignSpace.phaze() if a.name in names}
accs.update({"tpuv4": tpuv4(), "tpuv4-like": tpuv4_like()})
seq = {w.model: w.seq_len for w in WORKLOADS}
worst = 0.0
for _, r in csv.iterrows():
    if r["name"] not in accs:
        continue
    row = evaluate_design(get(r["model"]), accs[r["name"]], N_DEVICES, GLOBAL_BATCH, seq[r["model"]],
                          dict(DEFAULT_CHOICES), predictor_layer_time)
    d = row["tokens_per_s_per_w"] / r["tokens_per_s_per_w"] - 1
    worst = max(worst, abs(d))
    plan = "same plan" if row["plan"] == r["plan"] else f"{row['plan']} vs {r['plan']}"
    print(f"{r['model']:10s} {r['name']:28s} {r['tokens_per_s_per_w']:.6g} -> {row['tokens_per_s_per_w']:.6g} "
          f"({d:+.2e}) {plan}")
print("worst relative difference", worst)
