"""`phaze-training`: PHAZE's five training workloads on 1024 chips over its full design space, per watt.

For each model, the exact best design of `DesignSpace.phaze()` (29,360 designs; `coda.search.search`,
objective tokens/s per W of cluster TDP) beside PHAZE's TPUv4-like chip, the faithful TPU v4 and A100/H100
DGX rows; the best single design for all five (geometric mean of the per-model tokens/s per W, exact:
`coda.experiments.family`); a Pareto plot of throughput against TDP per model; a sensitivity table
(`coda.experiments.sensitivity`); and the answer as one sentence against the faithful TPU v4.

Setting (PHAZE, Wang et al., "Integrated Hardware Architecture and Device Placement Search", ICML 2024,
released configuration): 1024 accelerators, global batch 4096 sequences, sequence lengths BERT-large 512,
GPT2-XL 1024, OPT-350M 2048, Llama-2-7B 4096, GPT-3 175B 2048 (docs/search.md, docs/experiments.md).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from coda.arch.accelerators import Accelerator, tpuv4, tpuv4_like
from coda.arch.design_space import DesignSpace
from coda.experiments.evaluator import Evaluator, Workload, layer_timer
from coda.experiments.family import OBJECTIVE, FamilyResult, design_key, family_search, geomean
from coda.experiments.options import Options
from coda.experiments.outputs import metadata, provenance, write_metadata, write_table
from coda.experiments.sensitivity import MAX_DESIGNS, run_sensitivity, sensitivity_set
from coda.search import DEFAULT_CHOICES, ResultStore, SearchResult, gpu_reference, pareto_front, search
from coda.search.bounds import DEFAULT_TIE_TOL, tokens_per_s_bound
from coda.units import MiB

log = logging.getLogger(__name__)

N_DEVICES = 1024
GLOBAL_BATCH = 4096
_PHAZE = "PHAZE (Wang et al., ICML 2024), released configuration: 1024 chips, global batch 4096, seq len "
WORKLOADS = (
    Workload("bert-large", GLOBAL_BATCH, 512, _PHAZE + "512 (BERT-large)"),
    Workload("gpt2-xl", GLOBAL_BATCH, 1024, _PHAZE + "1024 (GPT2-XL, 1.5B)"),
    Workload("opt-350m", GLOBAL_BATCH, 2048, _PHAZE + "2048 (OPT-350M)"),
    Workload("llama2-7b", GLOBAL_BATCH, 4096, _PHAZE + "4096 (Llama-2-7B)"),
    Workload("gpt3-175b", GLOBAL_BATCH, 2048, _PHAZE + "2048 (Megatron GPT-3 175B)"),
)
GPUS = ("a100-sxm4-80gb", "h100-sxm")
QUICK_SENSITIVITY = 2
"""`--quick` re-evaluates the family's best two designs (and the references) under each perturbation."""
REFERENCE_NAMES = ("tpuv4-like", "tpuv4")


def full_space() -> DesignSpace:
    """PHAZE's space (`coda accelerators space`): 29,360 designs under the TPUv4-like area budget."""
    return DesignSpace.phaze()


def quick_space() -> DesignSpace:
    """A small subspace for `--quick` (a test runs it): PHAZE's budget, 16 designs."""
    return DesignSpace.phaze(n_tc=(4, 8, 16), n_vc=(2, 8), tc_rows=(128,), tc_cols=(64, 128),
                             glb_bytes=(2 * MiB, 32 * MiB))


def run(opts: Options) -> dict[str, pd.DataFrame]:
    """Run the experiment and write its files into `opts.out` (module doc); returns the frames by file stem."""
    from coda.models import get as model_preset

    t0 = time.time()
    prov = provenance()
    space = quick_space() if opts.quick else full_space()
    configs = {w.model: model_preset(w.model) for w in WORKLOADS}
    timer = layer_timer(opts.timer)
    stages: dict[str, float] = {}
    designs = space.to_frame()
    accelerators = list(space)
    index = {design_key(r): i for i, r in enumerate(designs.to_dict("records"))}
    if len(index) != len(designs):  # search rows carry the template fields only, not the links
        from coda.errors import ConfigError

        raise ConfigError("phaze-training: the space's designs differ in fields a search row does not hold (links); "
                          "give the space one link setting")
    results: dict[str, SearchResult] = {}
    for w in WORKLOADS:
        t = time.perf_counter()
        log.info("phaze-training: searching %s", w.model)
        results[w.model] = search(configs[w.model], space, N_DEVICES, w.global_batch, w.seq_len,
                                  store=opts.store, layer_time=timer, executor=opts.executor, workers=opts.jobs,
                                  progress=opts.progress, tie_tol=DEFAULT_TIE_TOL)
        stages[f"search {w.model}"] = time.perf_counter() - t
    t = time.perf_counter()
    gpus = {w.model: gpu_reference(configs[w.model], GPUS, N_DEVICES, w.global_batch, w.seq_len) for w in WORKLOADS}
    stages["gpu rows"] = time.perf_counter() - t
    known = {(index[design_key(r)], m): r for m, res in results.items() for r in res.frame.to_dict("records")}
    db = ResultStore(opts.store) if opts.store is not None else None
    try:
        ev = Evaluator(db, opts.executor, opts.jobs, opts.timer, N_DEVICES, dict(DEFAULT_CHOICES), configs)
        t = time.perf_counter()
        fam = family_search(accelerators, designs, WORKLOADS, known, ev, DEFAULT_TIE_TOL)
        stages["family"] = time.perf_counter() - t
        if fam.best is None:
            raise_no_family()
        t = time.perf_counter()
        best_idx = [index[design_key(results[w.model].best)] for w in WORKLOADS if results[w.model].best is not None]
        chosen = sensitivity_set(fam, [] if opts.quick else best_idx, QUICK_SENSITIVITY if opts.quick else MAX_DESIGNS)
        refs = {"tpuv4-like": tpuv4_like(), "tpuv4": tpuv4()}
        sens, sens_detail = run_sensitivity(space, accelerators, designs, refs, WORKLOADS, fam, chosen, ev)
        stages["sensitivity"] = time.perf_counter() - t
    finally:
        if db is not None:
            db.close()
    frames = _tables(results, gpus, fam, accelerators, designs)
    frames["sensitivity"] = sens
    frames["sensitivity_detail"] = sens_detail
    frames["pareto"], front_note = _pareto(results, designs, configs)
    sentence = answer(fam, frames["family"], accelerators)
    counts = {m: r.counts() for m, r in results.items()}
    meta = metadata(opts.command or f"coda.experiments.run('phaze-training', quick={opts.quick})", t0, prov,
                    experiment="phaze-training", quick=opts.quick, timer=opts.timer, timer_repr=repr(timer),
                    executor=opts.executor, jobs=opts.jobs, store=str(opts.store) if opts.store else None,
                    n_designs=len(designs), searches=counts, family=fam.counts(), stage_seconds=stages,
                    seconds=time.time() - t0, answer=sentence)
    _write(opts.out, frames, meta, sentence, fam, results, front_note)
    return frames


def raise_no_family() -> None:
    from coda.errors import InfeasibleDesign

    raise InfeasibleDesign("phaze-training: no design of the space trains all five models (each needs a plan that "
                           "fits in HBM); widen the space (more HBM) or drop a model")


# --- tables ---------------------------------------------------------------------------------------
def _chip(row: Any) -> dict[str, Any]:
    """Display columns of a chip row (design, reference or GPU)."""
    is_gpu = bool(pd.isna(row.get("n_tc")))  # GPU rows have no template fields
    return dict(
        name=row["name"],
        tensor_cores="" if is_gpu else f"{int(row['n_tc'])}x{int(row['tc_rows'])}x{int(row['tc_cols'])}",
        vector_cores="" if is_gpu else f"{int(row['n_vc'])}x{int(row['vc_lanes'])}",
        glb_MiB=np.nan if is_gpu else float(row["glb_bytes"]) / MiB,
        area_mm2=float(row["area_mm2"]), tdp_w=float(row["tdp_w"]))


def _tables(results: dict[str, SearchResult], gpus: dict[str, pd.DataFrame], fam: FamilyResult,
            accelerators: list[Accelerator], designs: pd.DataFrame) -> dict[str, pd.DataFrame]:
    best_design = int(fam.best["design"]) if fam.best is not None else -1
    rows = []
    for m, res in results.items():
        faithful = res.faithful_reference
        assert faithful is not None
        entries: list[tuple[str, Any]] = [("best for model", res.best)]
        entries.append(("best for all five", pd.Series(fam.rows[(best_design, m)])))
        entries += [("PHAZE TPUv4-like", res.reference), ("TPU v4 (faithful)", faithful)]
        entries += [("GPU (DGX, board TDP, die area)", g) for _, g in gpus[m].iterrows()]
        for role, r in entries:
            if r is None:
                continue
            ok = r["status"] == "ok"
            rows.append(dict(model=m, role=role, **_chip(r), plan=r["plan"] if ok else f"infeasible: {r['reason']}",
                             tokens_per_s=float(r["tokens_per_s"]), tokens_per_s_per_w=float(r[OBJECTIVE]),
                             tokens_per_s_vs_tpuv4=float(r["tokens_per_s"]) / float(faithful["tokens_per_s"]),
                             per_w_vs_tpuv4=float(r[OBJECTIVE]) / float(faithful[OBJECTIVE])))
    per_model = pd.DataFrame(rows)
    return {"per_model": per_model, "family": _family_table(results, gpus, fam, designs)}


def _family_table(results: dict[str, SearchResult], gpus: dict[str, pd.DataFrame], fam: FamilyResult,
                  designs: pd.DataFrame) -> pd.DataFrame:
    models = list(results)
    top = fam.frame.head(max(10, len(fam.near_ties())))
    rows = []
    for rank, (_, r) in enumerate(top.iterrows(), start=1):
        d = designs.iloc[int(r["design"])].to_dict()
        d["name"] = fam.rows[(int(r["design"]), models[0])]["name"]
        rows.append(dict(rank=str(rank), **_chip(d), **{m: float(r[m]) for m in models},
                         geomean=float(r["geomean"])))
    for rs in ([results[m].reference for m in models], [results[m].faithful_reference for m in models]):
        per = {m: float(x[OBJECTIVE]) if x["status"] == "ok" else 0.0 for m, x in zip(models, rs)}
        rows.append(dict(rank="ref", **_chip(rs[0]), **per, geomean=geomean(list(per.values()))))
    for k in range(len(GPUS)):
        gr = [gpus[m].iloc[k] for m in models]
        per = {m: float(x[OBJECTIVE]) if x["status"] == "ok" else 0.0 for m, x in zip(models, gr)}
        rows.append(dict(rank="gpu", **_chip(gr[0]), **per, geomean=geomean(list(per.values()))))
    out = pd.DataFrame(rows)
    faithful = float(out[out["name"] == "tpuv4"]["geomean"].iloc[0])
    out["geomean_vs_tpuv4"] = out["geomean"] / faithful
    return out


def _pareto(results: dict[str, SearchResult], designs: pd.DataFrame,
            configs: dict[str, Any]) -> tuple[pd.DataFrame, dict[str, int]]:
    """Each model's front of tokens/s against TDP over its evaluated designs, and per model how many
    unevaluated designs the throughput bound cannot keep off it."""
    from coda.search import training_flops_per_token_lb

    fronts, open_count = [], {}
    vector = (designs["vc_lanes"] * designs["n_vc"] * designs["clock_hz"]).to_numpy(float)
    for w in WORKLOADS:
        res = results[w.model]
        front = pareto_front(res.frame)
        fronts.append(front.assign(model=w.model)[["model", "name", "tdp_w", "area_mm2", "tokens_per_s",
                                                    OBJECTIVE]])
        fpt = training_flops_per_token_lb(configs[w.model], w.seq_len)
        bound = np.array([tokens_per_s_bound(p, v, N_DEVICES, fpt) for p, v in zip(designs["peak_flops"], vector)])
        seen = {design_key(r) for r in res.frame.to_dict("records")}
        unseen = np.array([design_key(r) not in seen for r in designs.to_dict("records")])
        ft, fv = front["tdp_w"].to_numpy(float), front["tokens_per_s"].to_numpy(float)
        tdp = designs["tdp_w"].to_numpy(float)
        dominated = np.array([bool(np.any((ft <= t) & (fv >= b))) for t, b in zip(tdp, bound)])
        open_count[w.model] = int(np.sum(unseen & ~dominated))
    return pd.concat(fronts, ignore_index=True), open_count


# --- the answer -----------------------------------------------------------------------------------
def _fields(acc: Accelerator) -> str:
    return (f"{acc.n_tc} tensor cores of {acc.tc_rows}x{acc.tc_cols}, {acc.n_vc} vector cores of {acc.vc_lanes} "
            f"lanes, {acc.glb_bytes / MiB:.4g} MiB GLB")


def answer(fam: FamilyResult, table: pd.DataFrame, accelerators: list[Accelerator]) -> str:
    """The answer in one sentence, against the faithful TPU v4, with where the gain comes from."""
    assert fam.best is not None
    win = accelerators[int(fam.best["design"])]
    ref = tpuv4()
    row = table.iloc[0]
    faithful = table[table["name"] == "tpuv4"].iloc[0]
    like = table[table["name"] == "tpuv4-like"].iloc[0]
    models = [c for c in table.columns if c in {w.model for w in WORKLOADS}]
    per = [float(row[m]) / float(faithful[m]) for m in models]
    thr = geomean([r * win.tdp_w / ref.tdp_w for r in per])
    pw, pr = win.power_breakdown(), ref.power_breakdown()
    moved = sorted(pw, key=lambda k: abs(pw[k] - pr[k]), reverse=True)[:2]
    power = ", ".join(f"{k} {pr[k]:.0f} -> {pw[k]:.0f} W" for k in moved)
    return (f"The best single chip for all five models is {_fields(win)} ({win.tdp_w:.0f} W, {win.area_mm2:.0f} mm2 "
            f"at 22 nm): {float(row['geomean_vs_tpuv4']):.2f}x the faithful TPU v4's tokens/s per W (geometric "
            f"mean; {min(per):.2f}-{max(per):.2f}x per model), from {thr:.2f}x its throughput at "
            f"{win.tdp_w / ref.tdp_w:.2f}x its TDP (TPU v4: {_fields(ref)}, {ref.tdp_w:.0f} W; the largest power "
            f"changes: {power}); against PHAZE's TPUv4-like reference the same chip is "
            f"{float(row['geomean']) / float(like['geomean']):.2f}x.")


# --- files ----------------------------------------------------------------------------------------
def _plot(results: dict[str, SearchResult], gpus: dict[str, pd.DataFrame], path: Path,
          open_count: dict[str, int]) -> None:
    from coda.plotting import pyplot, save_figure

    plt = pyplot("phaze-training's Pareto plot")
    fig, grid = plt.subplots(2, 3, figsize=(13, 8), constrained_layout=True)
    axes = grid.ravel()
    sc = None
    for ax, (m, res) in zip(axes, results.items()):
        ok = res.frame[res.frame["status"] == "ok"]
        sc = ax.scatter(ok["tdp_w"], ok["tokens_per_s"], c=ok["area_mm2"], cmap="viridis", s=8, vmin=0,
                        vmax=float(tpuv4_like().area_mm2))
        front = pareto_front(res.frame)
        ax.step(front["tdp_w"], front["tokens_per_s"], where="post", c="tab:orange", lw=1, label="Pareto front")
        if res.best is not None:
            ax.scatter([res.best["tdp_w"]], [res.best["tokens_per_s"]], marker="*", s=140, c="tab:red",
                       label="best per W", zorder=3)
        for marker, ref in zip("sP", (res.reference, res.faithful_reference)):
            if ref is not None and ref["status"] == "ok":
                ax.scatter([ref["tdp_w"]], [ref["tokens_per_s"]], marker=marker, s=50, c="black", label=ref["name"],
                           zorder=3)
        for marker, (_, g) in zip("^v", gpus[m][gpus[m]["status"] == "ok"].iterrows()):
            ax.scatter([g["tdp_w"]], [g["tokens_per_s"]], marker=marker, s=50, c="tab:green",
                       label=f"{g['name']} (board TDP)", zorder=3)
        ax.set_yscale("log")
        ax.set_title(f"{m}: {len(ok)} designs evaluated, {open_count[m]} others\nnot excluded from the front by "
                     "the bound", fontsize=9)
        ax.set_xlabel("TDP per chip (W)")
        ax.set_ylabel(f"training tokens/s on {N_DEVICES} chips")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    for ax in axes[len(results):]:
        ax.axis("off")
    if sc is not None:
        fig.colorbar(sc, ax=axes[len(results):].tolist() or axes.tolist(), label="area (mm2, 22 nm model)",
                     location="left", shrink=0.8)
    save_figure(fig, path, "phaze-training's Pareto plot")


def _write(out: Path, frames: dict[str, pd.DataFrame], meta: dict[str, Any], sentence: str, fam: FamilyResult,
           results: dict[str, SearchResult], open_count: dict[str, int]) -> None:
    from coda.plotting import pyplot

    pyplot("phaze-training's Pareto plot")
    md = {stem: write_table(df, out, stem) for stem, df in frames.items()}
    write_metadata(out, meta)
    c = meta["family"]
    searches = "; ".join(f"{m}: {r['evaluated'] + r['cached']} evaluated, {r['pruned_by_bound']} pruned"
                         for m, r in meta["searches"].items())
    text = [
        "# phaze-training", "",
        "Generated by `coda experiment run phaze-training` (do not edit; `command.txt` has the exact command, "
        "`metadata.json` the coda version, git commit, timer and timings).", "",
        f"**Answer.** {sentence}", "",
        f"Setting: {N_DEVICES} chips, global batch {GLOBAL_BATCH}; sequence lengths "
        + ", ".join(f"{w.model} {w.seq_len}" for w in WORKLOADS)
        + f" (PHAZE, ICML 2024). Space: {meta['n_designs']} designs"
        + (" (--quick subspace)" if meta["quick"] else " (PHAZE's full space, `coda accelerators space`)")
        + f"; layer timer `{meta['timer']}`; objective tokens/s per W of cluster TDP; run time "
          f"{meta['seconds']:.0f} s ({meta['executor']}, {meta['jobs']} jobs).", "",
        f"Per-model searches (exact, near ties within {DEFAULT_TIE_TOL:.0%}): {searches}.", "",
        "## Best design per model, the best single design, the references and GPUs", "",
        "`*_vs_tpuv4`: ratio to the faithful TPU v4 (`tpuv4()`) of the same model.", "",
        md["per_model"], "",
        "## Best single design for all five (geometric mean of tokens/s per W)", "",
        f"Exact: {c['completed']} designs were evaluated for all five models ({c['evaluated']} rows evaluated "
        f"for the family, {c['cached']} read from the store); the other {c['pruned_by_bound']} have a family "
        f"upper bound below the best geometric mean less {fam.tie_tol:.0%} (`coda.experiments.family`).", "",
        md["family"], "",
        "## Sensitivity: does the winner change?", "",
        "Each constant moved to each end of its range (`source`); `max_relative_gain`: the largest gain of "
        "a re-evaluated design's geometric mean relative to the winner's; `not_excluded`: designs outside the "
        "re-evaluated set whose perturbed family upper bound reaches the perturbed winner (0: proven).", "",
        md["sensitivity"], "",
        "## Pareto fronts (tokens/s against TDP per chip, area as colour)", "",
        "![Pareto fronts](pareto.png)", "",
        "Fronts over each model's evaluated designs (the search prunes by the per-watt bound); designs never "
        "evaluated whose throughput bound the front does not dominate: "
        + ", ".join(f"{m} {n}" for m, n in open_count.items()) + ".", "",
        md["pareto"], "",
    ]
    (out / "results.md").write_text("\n".join(text), encoding="utf-8")
    _plot(results, _gpu_frames(frames, results), out / "pareto.png", open_count)


def _gpu_frames(frames: dict[str, pd.DataFrame], results: dict[str, SearchResult]) -> dict[str, pd.DataFrame]:
    """The GPU rows of each model for the plot, from the per-model table."""
    pm = frames["per_model"]
    out = {}
    for m in results:
        g = pm[(pm["model"] == m) & pm["role"].str.startswith("GPU")]
        out[m] = pd.DataFrame(dict(name=g["name"], tdp_w=g["tdp_w"], tokens_per_s=g["tokens_per_s"],
                                   status="ok"))
    return out


__all__ = ["GPUS", "N_DEVICES", "WORKLOADS", "Options", "answer", "full_space", "quick_space", "run"]
