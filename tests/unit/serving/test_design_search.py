"""The serving design search: its best design equals brute force, pruning never removes the best, its rough
(roofline) bound is above the exact one, the store resumes, bad input is refused, and the CLI ends with a sentence."""

import math

import numpy as np
import pytest

from coda.arch.accelerators import Accelerator
from coda.arch.design_space import DesignSpace
from coda.arch.gpus import gpu
from coda.cli import main
from coda.errors import ConfigError, InfeasibleDesign
from coda.models import get
from coda.serving.capacity import Workload, capacity, capacity_bound
from coda.serving.costs import CostTable, IterationCost, linear_table
from coda.serving.deployment import Deployment
from coda.serving.design_chips import Chip, layout_counts, rough_linear_table
from coda.serving.design_search import design_search
from coda.serving.metrics import SLO
from coda.serving.space import ServingSpace, enumerate_specs
from coda.serving.trace import Lengths
from coda.units import GiB, MiB

SLO_ = {"ttft_p99_s": 0.5, "tbt_p99_s": 0.05}
SPACE = ServingSpace(tp=(1, 2), pp=(1,), replicas=(1,), schedulers=("sarathi",), max_batch=(64,), chunk=(512,))
WORK = Workload(Lengths("uniform", 64, 512), Lengths("uniform", 8, 64), requests=40, seed=3)


def _design(n_tc: int, bw: float, hbm_gib: int = 32) -> Accelerator:
    return Accelerator(n_tc=n_tc, tc_rows=128, tc_cols=128, n_vc=2, vc_lanes=1024, glb_bytes=32 * MiB,
                       hbm_bytes=hbm_gib * GiB, hbm_bw_bytes_per_s=bw, name=f"d{n_tc}-{bw / 1e9:g}")


DESIGNS = [_design(2, 1200e9), _design(4, 1200e9), _design(8, 1200e9), _design(8, 2400e9), _design(16, 600e9)]
KW = dict(max_devices=2, serving_space=SPACE, references=False, gpus=(), executor="inline")


@pytest.fixture(scope="module")
def llama7():
    return get("llama2-7b")


@pytest.fixture(scope="module")
def searched(llama7):
    return design_search(llama7, DESIGNS, WORK, SLO_, **KW), design_search(llama7, DESIGNS, WORK, SLO_, prune=False,
                                                                           **KW)


def _brute_force(cfg):
    """Every deployment of every design measured (no incumbent, no pruning), as the search would measure it."""
    template = WORK.template()
    context = int((template.prompt_tokens + template.output_tokens).max())
    specs = list(enumerate_specs(cfg, ["x"], 2, SPACE))
    tokens = max(max(s.max_tokens, s.chunk, context) + s.max_batch for s in specs)
    slo = SLO(**SLO_)
    rows = []
    for acc in DESIGNS:
        chip = Chip(acc.name, "design", acc)
        for spec in specs:
            dep = chip.deployment(cfg, spec)
            budget = dep.kv_budget()
            ub = capacity_bound(dep, linear_table(IterationCost(dep), tokens), budget, template)
            layout = Deployment(cfg, chip.cluster(spec.tp), tp=spec.tp, dtype=spec.dtype)
            table = CostTable(IterationCost(layout), tokens, spec.max_batch + 1, context)
            c = capacity(dep, template, slo, ub, table=table)
            per_w = c.qps * float(np.mean(template.output_tokens)) / (spec.n_devices * acc.tdp_w)
            rows.append((per_w if c.status == "ok" else -math.inf, acc.name, spec.tp, c.qps))
    return rows


def test_best_equals_brute_force(searched, llama7):
    pruned, full = searched
    rows = _brute_force(llama7)
    best = max(rows, key=lambda r: r[0])
    assert best[0] > 0
    for res in (pruned, full):
        b = res.best
        assert b is not None
        assert (b["chip"], int(b["tp"])) == (best[1], best[2])
        assert b["capacity_qps"] == pytest.approx(best[3], rel=1e-12)
        assert b["tokens_per_s_per_watt"] == pytest.approx(best[0], rel=1e-12)
    # without pruning every deployment is measured: each capacity equals brute force's
    d = full.deployments.set_index(["chip", "tp"])
    for _, name, tp, qps in rows:
        assert d.loc[(name, tp), "capacity_qps"] == pytest.approx(qps, rel=1e-12)
    assert full.counts["pruned_rough"] == full.counts["pruned_bound"] == 0


def test_pruning_prunes_and_never_removes_the_best(searched):
    pruned, full = searched
    c = pruned.counts
    assert c["pruned_rough"] + c["pruned_bound"] > 0 and c["designs_pruned"] > 0  # it prunes
    d = pruned.deployments
    cut = d[d["status"].isin(["pruned_rough", "pruned_bound"])]
    assert (cut["bound_objective"] <= pruned.best["tokens_per_s_per_watt"]).all()  # none of them could win
    f = full.deployments.set_index(["chip", "tp"])
    for _, r in cut.iterrows():  # and measured, none beats the best
        assert not f.loc[(r["chip"], r["tp"]), "tokens_per_s_per_watt"] > pruned.best["tokens_per_s_per_watt"]
    assert pruned.chips.iloc[0]["chip"] == pruned.best["chip"] and bool(pruned.best["exact"])
    assert pruned.summary().startswith("Best design for llama2-7b") and "pruned by the roofline bound" in \
        pruned.summary()


def test_rough_bound_is_above_the_exact_bound(searched, llama7):
    _, full = searched
    d = full.deployments
    assert (d["bound_qps"] <= d["rough_bound_qps"]).all() and d["bound_qps"].notna().all()
    # the rough token-level time is below the tile model's at every token count, for designs and a GPU
    chips = [Chip(a.name, "design", a) for a in DESIGNS] + [Chip("h100-sxm", "gpu", gpu("h100-sxm"))]
    for tp in (1, 2):
        spec = next(s for s in enumerate_specs(llama7, ["x"], 2, SPACE) if s.tp == tp)
        counts = layout_counts(chips[0].deployment(llama7, spec), 2048)
        for chip in chips:
            exact = linear_table(IterationCost(chip.deployment(llama7, spec)), 2048)
            rough = rough_linear_table(counts, chip.device)
            assert (rough <= exact).all() and (rough > 0.2 * exact).all()


def test_store_resumes(llama7, tmp_path):
    store = tmp_path / "runs.sqlite"
    first = design_search(llama7, DESIGNS[:3], WORK, SLO_, store=store, **KW)
    again = design_search(llama7, DESIGNS[:3], WORK, SLO_, store=store, **KW)
    assert first.counts["evaluated"] > 0 and again.counts["evaluated"] == 0
    assert again.counts["cached"] == first.counts["evaluated"]
    assert again.best["chip"] == first.best["chip"] and again.best["capacity_qps"] == first.best["capacity_qps"]


def test_references_and_gpus_beside_the_designs(llama7):
    res = design_search(llama7, DESIGNS[2:3], WORK, SLO_, max_devices=2, serving_space=SPACE, gpus=("h100-sxm",),
                        executor="inline")
    assert sorted(res.references["chip"]) == ["h100-sxm", "tpuv4", "tpuv4-like"]
    assert set(res.references["kind"]) == {"reference", "gpu"}
    assert (res.references["status"] == "ok").all() and res.references["exact"].all()
    assert res.ratio_to("tpuv4") == pytest.approx(
        res.best["tokens_per_s_per_watt"] / res.references.set_index("chip").loc["tpuv4", "tokens_per_s_per_watt"])
    assert "x tpuv4" in res.summary() and "x h100-sxm" in res.summary()


def test_nobody_meets_the_slo_names_the_closest(llama7):
    res = design_search(llama7, DESIGNS[:2], WORK, {"ttft_p99_s": 1e-4}, **KW)
    assert res.best is None and res.closest is not None
    text = res.summary()
    assert text.startswith("No design serves llama2-7b") and "the closest is" in text
    assert res.closest["chip"] in {d.name for d in DESIGNS[:2]} and res.closest["alone_ttft_s"] > 1e-4


def test_bad_input(llama7):
    with pytest.raises(ConfigError, match="holds no design"):
        design_search(llama7, [], WORK, SLO_, **KW)
    with pytest.raises(InfeasibleDesign, match="max_tdp_w"):
        design_search(llama7, DesignSpace(n_tc=(8,), n_vc=(2,), tc_rows=(128,), tc_cols=(128,), max_tdp_w=1.0), WORK,
                      SLO_, **KW)
    with pytest.raises(ConfigError, match="objective"):
        design_search(llama7, DESIGNS, WORK, SLO_, objective="qps", **KW)
    with pytest.raises(ConfigError, match="Accelerators"):
        design_search(llama7, ["h100-sxm"], WORK, SLO_, **KW)
    with pytest.raises(ConfigError, match="slo"):
        design_search(llama7, DESIGNS, WORK, {}, **KW)
    with pytest.raises(ConfigError, match="max_devices=24"):
        design_search(llama7, DESIGNS, WORK, SLO_, **{**KW, "max_devices": 24})
    same = [_design(8, 1200e9), _design(8, 1200e9)]
    with pytest.raises(ConfigError, match="share every field"):
        design_search(llama7, same, WORK, SLO_, **KW)


def test_names_get_hbm_when_designs_differ_only_there(llama7):
    res = design_search(llama7, [_design(8, 1200e9, 32), _design(8, 1200e9, 64)], WORK, SLO_, **KW)
    assert sorted(res.chips["chip"]) == ["d8-1200-32GiB-1200GBps", "d8-1200-64GiB-1200GBps"]


def test_cli(capsys):
    assert main(["serve-design", "--model", "llama2-7b", "--prompt-len", "200", "--output-len", "20", "--requests",
                 "20", "--slo-ttft-p99", "0.5", "--n-tc", "4,8", "--n-vc", "2", "--tc-rows", "128", "--tc-cols", "128",
                 "--glb-mib", "32", "--tp", "1", "--max-devices", "1", "--no-references", "--gpus", "none",
                 "--executor", "inline"]) == 0
    out = capsys.readouterr().out
    assert "the 2 best of 2 designs" in out and out.strip().splitlines()[-1].startswith("Best design for llama2-7b")
    assert main(["serve-design", "--model", "llama2-7b", "--prompt-len", "200", "--output-len", "20"]) == 2
    assert "needs --slo-ttft-p99" in capsys.readouterr().err
    assert main(["serve-design", "--model", "llama2-7b", "--prompt-len", "200", "--output-len", "20",
                 "--slo-ttft-p99", "1", "--tc-rows", "100"]) == 2
    assert "power of two" in capsys.readouterr().err
