"""`serving-design`: which accelerator serves Llama-3-8B best, prompt-heavy against decode-heavy, per watt.

For two workloads (summarisation: 4096 prompt tokens, 100 output; code generation: 200 prompt, 2000 output), the
serving design search (`coda.serving.design_search`) over a design space of PHAZE's template with the axes that
matter for inference (tensor-core count and array size, HBM bandwidth, HBM capacity), deployments of tp 1 and 2,
Sarathi-Serve batching, under P99 TTFT <= 2 s and P99 TBT <= 100 ms; objective output tokens/s per watt of TDP at
the capacity. Beside the best design: the faithful TPU v4, PHAZE's TPUv4-like chip, A100 and H100 (DGX).

Files: `designs.csv` (per workload and chip, its best deployment or its bound), `deployments.csv` (every chip and
deployment), `capacity_per_watt.png` (tokens/s per W against TDP), `results.md`, `command.txt`, `metadata.json`.
`--quick` is a 4-design space with shorter traces, for CI. (tp 4 and 8 were tried on 24 designs and never won per
watt for this 8B model: more chips per replica buy latency this SLO does not ask for.)
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from coda import models
from coda.arch.accelerators import Accelerator
from coda.arch.design_space import DesignSpace
from coda.experiments.options import Options
from coda.experiments.outputs import FLOAT_FORMAT, metadata, provenance, write_metadata, write_table
from coda.serving.capacity import Workload
from coda.serving.design_search import DesignSearchResult, design_search
from coda.serving.space import ServingSpace
from coda.serving.trace import Lengths
from coda.units import GiB, MiB, markdown_table

log = logging.getLogger(__name__)

MODEL = "llama3-8b"
SLO = {"ttft_p99_s": 2.0, "tbt_p99_s": 0.1}
MAX_DEVICES = 8
SERVING_SPACE = ServingSpace(tp=(1, 2), pp=(1,), replicas=(1,), schedulers=("sarathi",), max_batch=(256,),
                             chunk=(512,))
QUICK_SERVING_SPACE = ServingSpace(tp=(1, 2), pp=(1,), replicas=(1,), schedulers=("sarathi",), max_batch=(256,),
                                   chunk=(512,))


@dataclass(frozen=True)
class Case:
    """One workload: its name, fixed prompt and output lengths, and requests per replica (full, quick)."""

    name: str
    prompt: int
    output: int
    requests: int
    quick_requests: int

    def workload(self, quick: bool) -> Workload:
        return Workload(Lengths("fixed", self.prompt), Lengths("fixed", self.output),
                        requests=self.quick_requests if quick else self.requests, seed=0)


CASES = (
    # a request lives about 1 s: 150 requests span many lifetimes at the capacities found
    Case("prompt-heavy", 4096, 100, 150, 40),
    # a request lives 2000 decodes (about 100 s): 1000 requests span several lifetimes, so the KV cache fills and
    # the capacity is below the bound (with 150 the run ends before it fills, docs/serving.md "Finite runs")
    Case("decode-heavy", 200, 2000, 1000, 120),
)


ARRAYS = ((128, (4, 8, 16)), (64, (16, 32, 64)), (32, (64, 128, 256)))
"""Tensor-core families of equal peaks (137.6, 275.3 and 550.5 TFLOP/s at 1.05 GHz): n_tc arrays of side x side."""


def _family(side: int, n_tc: tuple[int, ...], bw: tuple[float, ...], hbm: tuple[int, ...]) -> list[Accelerator]:
    return list(DesignSpace.phaze(n_tc=n_tc, n_vc=(2,), tc_rows=(side,), tc_cols=(side,), vc_lanes=(1024,),
                                  glb_bytes=(32 * MiB,), hbm_bytes=hbm, hbm_bw_bytes_per_s=bw, min_area_fraction=0.0))


def full_space() -> list[Accelerator]:
    """PHAZE's template (its TPUv4-like area budget) along the axes that matter for inference: three tensor-core
    families of equal peaks (`ARRAYS`: 4-16 arrays of 128 x 128, 16-64 of 64 x 64, 64-256 of 32 x 32), HBM at 1200
    or 2400 GB/s, 32 or 64 GiB; the faithful TPU v4's vector units (2 x 1024 lanes) and a 32 MiB GLB: 36 designs."""
    return [a for side, n in ARRAYS for a in _family(side, n, (1200e9, 2400e9), (32 * GiB, 64 * GiB))]


def quick_space() -> list[Accelerator]:
    """Four designs: 8 arrays of 128 x 128 or 32 of 64 x 64, HBM at 1200 or 2400 GB/s (a test runs it)."""
    return _family(128, (8,), (1200e9, 2400e9), (32 * GiB,)) + _family(64, (32,), (1200e9, 2400e9), (32 * GiB,))


def run(opts: Options) -> dict[str, pd.DataFrame]:
    """Run both workloads, write the files into `opts.out` (module docstring); returns the frames by file stem."""
    t0 = time.time()
    prov = provenance()
    space = quick_space() if opts.quick else full_space()
    sspace = QUICK_SERVING_SPACE if opts.quick else SERVING_SPACE
    results: dict[str, DesignSearchResult] = {}
    stages: dict[str, float] = {}
    for case in CASES:
        t = time.perf_counter()
        log.info("serving-design: %s", case.name)
        results[case.name] = design_search(MODEL, space, case.workload(opts.quick), SLO, max_devices=MAX_DEVICES,
                                           serving_space=sspace, store=opts.store, executor=opts.executor,
                                           workers=opts.jobs, progress=opts.progress)
        stages[case.name] = time.perf_counter() - t
    designs = pd.concat([_chips(c.name, results[c.name]) for c in CASES], ignore_index=True)
    deployments = pd.concat([results[c.name].deployments.assign(workload=c.name) for c in CASES], ignore_index=True)
    deployments = deployments[["workload", *[k for k in deployments.columns if k != "workload"]]]
    sentence = answer(results, space)
    out = opts.out
    md = [f"# serving-design: which chip serves {MODEL} best, per watt", "",
          f"SLO: P99 TTFT <= {SLO['ttft_p99_s']:g} s, P99 TBT <= {SLO['tbt_p99_s'] * 1e3:g} ms; deployments of "
          f"tp {', '.join(map(str, sspace.tp))} on at most {MAX_DEVICES} chips, Sarathi chunk 512, max batch 256; "
          f"objective output tokens/s per W of TDP at the capacity. Design space: {len(space)} designs "
          f"({'quick' if opts.quick else 'full'}).", "", sentence, ""]
    for c in CASES:
        r = results[c.name]
        md += [f"## {c.name}: {r.workload}", "", r.summary(), "",
               _markdown(_shown(designs[designs["workload"] == c.name])), ""]
    md += ["![tokens/s per W against TDP](capacity_per_watt.png)", ""]
    write_table(designs, out, "designs")
    write_table(deployments, out, "deployments")
    _plot(results, out / "capacity_per_watt.png")
    (out / "results.md").write_text("\n".join(md), encoding="utf-8")
    write_metadata(out, metadata(opts.command, t0, prov, executor=opts.executor, jobs=opts.jobs, quick=opts.quick,
                                 model=MODEL, slo=SLO, space=len(space), stages_s=stages,
                                 counts={k: r.counts for k, r in results.items()}, seconds=time.time() - t0,
                                 answer=sentence))
    return {"designs": designs, "deployments": deployments}


def _markdown(df: pd.DataFrame) -> str:
    return markdown_table(df.astype(object).where(df.notna(), ""), floatfmt=FLOAT_FORMAT)


def _chips(name: str, r: DesignSearchResult) -> pd.DataFrame:
    df = r.chips.copy()
    df.insert(0, "workload", name)
    return df


def _shown(df: pd.DataFrame) -> pd.DataFrame:
    """The columns of the Markdown tables (the CSV has them all)."""
    out = pd.DataFrame({
        "chip": df["chip"], "kind": df["kind"], "n_tc": df["n_tc"], "HBM_GBps": df["hbm_bw_bytes_per_s"] / 1e9,
        "HBM_GiB": df["hbm_bytes"] / GiB, "TDP_W": df["tdp_w"], "tp": df["tp"], "status": df["status"],
        "capacity_rps": df["capacity_qps"], "tok_s_per_W": df["tokens_per_s_per_watt"],
        "bound_tok_s_per_W": df["best_bound_objective"], "TTFT_p99_s": df["ttft_p99_s"],
        "TBT_p99_ms": df["tbt_p99_s"] * 1e3})
    return out.reset_index(drop=True)


def answer(results: dict[str, DesignSearchResult], space: list[Accelerator]) -> str:
    """The finding in one sentence per workload (the best design, its axes, its ratio to the faithful TPU v4), and
    why, from the tile model: how much of each array size a decode attention op uses."""
    parts = []
    for name, r in results.items():
        b = r.best
        if b is None:
            parts.append(f"{name}: no design meets the SLO")
            continue
        ratio = r.ratio_to("tpuv4")
        parts.append(f"{name}: {int(b['n_tc'])} arrays of {int(b['tc_rows'])} x {int(b['tc_cols'])}, HBM "
                     f"{b['hbm_bw_bytes_per_s'] / 1e9:g} GB/s and {b['hbm_bytes'] / GiB:g} GiB at tp{int(b['tp'])} "
                     f"({b['tdp_w']:.0f} W), {b['tokens_per_s_per_watt']:.3g} output tokens/s per W"
                     + (f", {ratio:.2f}x the TPU v4" if not math.isnan(ratio) else ""))
    use = decode_attention_utilisation(space)
    why = ", ".join(f"{u:.2%} of a {side} x {side} array ({bound}-bound)"
                    for side, (u, bound) in sorted(use.items(), reverse=True))
    cfg = models.get(MODEL)
    group = cfg.n_heads // (cfg.n_kv_heads or cfg.n_heads)
    return (f"Best chip per watt for {MODEL}: " + "; ".join(parts) + f". Why: a decode step's attention ({group} "
            f"query rows per K/V head and sequence, the heads of a group stacked; {DECODE_PROBE[0]} sequences at "
            f"context {DECODE_PROBE[1]}) uses {why} in the tile model.")


DECODE_PROBE = (64, 1200)
"""Sequences and context of the decode attention op whose array utilisation `answer` reports."""


def decode_attention_utilisation(space: list[Accelerator]) -> dict[int, tuple[float, str]]:
    """The tile model's utilisation of a decode attention op of `MODEL` (`DECODE_PROBE`) on each array side of
    the space (its first design of that side), and what bounds the op there (compute or memory)."""
    from coda.arch.design_space import design_cluster
    from coda.models import get
    from coda.predictor import explain
    from coda.serving.costs import IterationCost
    from coda.serving.deployment import Deployment

    cfg = get(MODEL)
    out: dict[int, tuple[float, str]] = {}
    for acc in space:
        if acc.tc_rows not in out:
            op = IterationCost(Deployment(cfg, design_cluster(acc, 1))).attention_op(None, DECODE_PROBE[0], 1,
                                                                                      DECODE_PROBE[1])
            est = explain(op, acc)
            out[acc.tc_rows] = (float(est.details["utilisation"]), est.bound)
    return out


REFERENCE_MARKERS = {"tpuv4": "P", "tpuv4-like": "X", "a100-sxm4-80gb": "v", "h100-sxm": "D"}


def _plot(results: dict[str, DesignSearchResult], path: Path) -> None:
    from coda.plotting import pyplot, save_figure

    plt = pyplot("serving-design's plot")
    fig, axes = plt.subplots(1, len(results), figsize=(6.5 * len(results), 5.2), constrained_layout=True)
    sc: Any = None
    for ax, (name, r) in zip(axes, results.items()):
        ch = r.chips
        des = ch[ch["kind"] == "design"]
        ok = des[des["status"] == "ok"]
        cut = des[des["status"] != "ok"]
        for side, marker in zip((128, 64, 32), "os^"):
            mine = ok[ok["tc_rows"] == side]
            if mine.empty:  # the legend still shows the family's marker
                ax.scatter([], [], marker=marker, c="tab:gray", s=30, label=f"design, {side} x {side} arrays")
                continue
            sc = ax.scatter(mine["tdp_w"], mine["tokens_per_s_per_watt"], c=mine["hbm_bw_bytes_per_s"] / 1e9,
                            cmap="viridis", s=30, vmin=1000, vmax=2600, marker=marker, zorder=2,
                            label=f"design, {side} x {side} arrays")
        ax.scatter(cut["tdp_w"], cut["best_bound_objective"], facecolors="none", edgecolors="grey", s=30,
                   label="design cut by the bound or the incumbent: its upper bound", zorder=1)
        if r.best is not None:
            ax.scatter([r.best["tdp_w"]], [r.best["tokens_per_s_per_watt"]], marker="*", s=160, c="tab:red",
                       label="best per W", zorder=3)
        for _, ref in r.references.iterrows():
            if ref["status"] == "ok":
                ax.scatter([ref["tdp_w"]], [ref["tokens_per_s_per_watt"]], s=55,
                           marker=REFERENCE_MARKERS.get(ref["chip"], "o"), c="black", zorder=3,
                           label=ref["chip"] + (" (board TDP)" if ref["kind"] == "gpu" else ""))
        ax.set_xscale("log")
        ax.set_title(f"{name}: {r.workload}\n{len(ok)} designs measured to their capacity, {len(cut)} cut "
                     f"({r.counts['designs_pruned']} never simulated)", fontsize=9)
        ax.set_xlabel("TDP per chip (W)")
        ax.set_ylabel("output tokens/s per W at the SLO capacity")
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=5, fontsize=8)
    if sc is not None:
        fig.colorbar(sc, ax=list(axes), label="HBM bandwidth (GB/s)")
    save_figure(fig, path, "serving-design's plot")


__all__ = ["CASES", "MODEL", "SLO", "Options", "answer", "decode_attention_utilisation", "full_space", "quick_space",
           "run"]
