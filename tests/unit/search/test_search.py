"""`coda.search`: exact bound-pruned design search, the SQLite store, the reference row, the CLI."""

import importlib.util
import json

import pandas as pd
import pytest

from coda.arch.design_space import DesignSpace
from coda.cli import main
from coda.errors import CodaError, ConfigError, InfeasibleDesign
from coda.models import get
from coda.placement import predictor_layer_time
from coda.search import SearchLayerTime, search, training_flops_per_token_lb
from coda.units import GiB, MiB

MODEL, DEVICES, BATCH, SEQ = "gpt2", 16, 64, 512
SPACE = DesignSpace(n_tc=(2, 8), n_vc=(1, 2), tc_rows=(64, 128), tc_cols=(64, 128), glb_bytes=(32 * MiB, 128 * MiB))
FAST = dict(layer_time=predictor_layer_time)  # the predictor sum: same bound argument, ~50 ms per design


def run(space=SPACE, **kw):
    return search(MODEL, space, DEVICES, BATCH, SEQ, **{**FAST, **kw})


@pytest.fixture(scope="module")
def exhaustive():
    return run(prune=False)


def test_pruned_search_returns_the_exhaustive_best(exhaustive):
    pruned = run()
    assert exhaustive.n_evaluated == len(SPACE) == 32 and exhaustive.n_pruned == 0
    assert pruned.n_pruned > 0 and pruned.n_evaluated + pruned.n_pruned == len(SPACE) and pruned.complete
    ok = exhaustive.frame[exhaustive.frame["status"] == "ok"]
    assert pruned.best["name"] == exhaustive.best["name"] == ok.loc[ok["tokens_per_s_per_w"].idxmax(), "name"]
    assert pruned.best["tokens_per_s_per_w"] == exhaustive.best["tokens_per_s_per_w"]
    # every pruned design's bound is below the best achieved objective
    visited = set(pruned.frame["name"])
    skipped = exhaustive.frame[~exhaustive.frame["name"].isin(visited)]
    assert (skipped["bound_objective"] < pruned.best["tokens_per_s_per_w"]).all()


@pytest.mark.parametrize("tie_tol", [0.0, 0.02, 0.1, 0.3])
def test_near_ties_equal_the_exhaustive_family(exhaustive, tie_tol):
    """Every design within tie_tol of the best is in the pruned frame, exactly as an exhaustive
    search finds them; a wider tolerance prunes less."""
    pruned = run(tie_tol=tie_tol)
    ok = exhaustive.frame[exhaustive.frame["status"] == "ok"]
    best = ok["tokens_per_s_per_w"].max()
    family = set(ok.loc[ok["tokens_per_s_per_w"] >= best * (1 - tie_tol), "name"])
    assert set(pruned.near_ties()["name"]) == family
    assert pruned.near_ties()["name"].iloc[0] == exhaustive.best["name"]
    skipped = exhaustive.frame[~exhaustive.frame["name"].isin(set(pruned.frame["name"]))]
    assert (skipped["bound_objective"] < best * (1 - tie_tol)).all()


def test_wider_tolerance_never_prunes_more():
    counts = [run(tie_tol=t).n_pruned for t in (0.0, 0.05, 0.2)]
    assert counts == sorted(counts, reverse=True)


def test_frame_exports_without_optional_dependencies(tmp_path):
    res = run()
    path = tmp_path / "designs.csv"
    res.to_csv(str(path))
    back = pd.read_csv(path)
    assert len(back) == len(res.frame) + 2 and "tokens_per_s_per_w" in back.columns
    md = res.to_markdown(top=3)
    lines = md.splitlines()
    assert lines[0] == "**top 3 by tokens_per_s_per_w**" and lines[2].startswith("| rank | name |")
    assert [row.split(" | ")[0] for row in lines[4:]] == ["| 1", "| 2", "| 3", "| ref", "| ref"]


@pytest.mark.parametrize("bad", [-0.1, 1.0, float("nan"), True])
def test_tie_tolerance_is_checked(bad):
    with pytest.raises(ConfigError, match="tie_tol"):
        run(tie_tol=bad)


def test_pruned_equals_exhaustive_for_throughput_objective():
    a, b = run(objective="tokens_per_s"), run(objective="tokens_per_s", prune=False)
    assert a.best["name"] == b.best["name"] and a.best["tokens_per_s"] == b.best["tokens_per_s"]
    assert a.n_evaluated < b.n_evaluated


def test_bound_is_above_achieved_for_every_design(exhaustive):
    fr = exhaustive.frame
    assert (fr["bound_tokens_per_s"] >= fr["tokens_per_s"]).all()
    assert (fr["bound_objective"] >= fr["tokens_per_s_per_w"]).all()
    assert (fr["tokens_per_s_per_w"] == fr["tokens_per_s"] / (DEVICES * fr["tdp_w"])).all()
    # also under forced tensor parallelism (vector ops replicated, vocab padded)
    tp = run(choices={"tp": (2, 4)}, prune=False)
    ok = tp.frame[tp.frame["status"] == "ok"]
    assert len(ok) and (ok["tp"] > 1).all() and (ok["bound_tokens_per_s"] >= ok["tokens_per_s"]).all()


def test_bound_flops_are_below_the_closed_form_and_above_6n():
    cfg = get(MODEL)
    fpt = training_flops_per_token_lb(cfg, SEQ)
    assert 6 * (cfg.param_count() - cfg.embedding_params()) <= fpt.tensor
    from coda.models.summary import summarize

    assert fpt.tensor < summarize(cfg, SEQ)["flops_per_token"]["training"]  # causal attention counted at 1/2
    assert fpt.vector > 0


def test_ilp_timer_bound_and_schedule_sharing_across_hbm_sizes():
    space = DesignSpace(n_tc=(8,), n_vc=(2,), tc_rows=(128,), tc_cols=(128,), glb_bytes=(128 * MiB,),
                        hbm_bytes=(16 * GiB, 32 * GiB))
    timer = SearchLayerTime(time_limit_s=0.0)  # list-scheduling heuristic: deterministic and fast
    res = search(MODEL, space, DEVICES, BATCH, SEQ, layer_time=timer, prune=False, choices={"tp": 1, "zero": 1},
                 executor="inline")  # the cache is per process: workers keep their own
    fr = res.frame
    assert list(fr["status"]) == ["ok", "ok"] and (fr["bound_tokens_per_s"] >= fr["tokens_per_s"]).all()
    assert timer.cache.stats.hits > 0  # the second HBM size (and the reference) reuse the schedules
    assert fr["step_s"].nunique() == 1  # HBM capacity does not change the time of a plan that fits both


def test_store_repeat_is_all_cached_and_identical(tmp_path):
    db = tmp_path / "runs.sqlite"
    first = run(store=db)
    again = run(store=db)
    assert first.n_cached == 0 and again.n_evaluated == 0 and again.n_cached == first.n_evaluated
    pd.testing.assert_frame_equal(first.frame, again.frame)
    pd.testing.assert_series_equal(first.reference, again.reference)
    other = search(MODEL, SPACE, DEVICES, BATCH, 256, store=db, max_designs=1, **FAST)  # another workload: new key
    assert other.n_cached == 0 and other.n_evaluated == 1


def test_store_resumes_an_interrupted_search(tmp_path):
    db = tmp_path / "runs.sqlite"
    cut = run(store=db, max_designs=3)
    assert cut.n_evaluated == 3 and not cut.complete and cut.n_unvisited > 0
    resumed = run(store=db)
    fresh = run()
    assert resumed.n_cached == 3 and resumed.complete
    assert resumed.n_evaluated + resumed.n_cached == fresh.n_evaluated
    pd.testing.assert_frame_equal(resumed.frame.drop(columns="seconds"), fresh.frame.drop(columns="seconds"))


def test_infeasible_designs_are_counted_with_reasons():
    space = DesignSpace(n_tc=(8,), n_vc=(2,), tc_rows=(128,), tc_cols=(64, 128), glb_bytes=(32 * MiB,),
                        hbm_bytes=(64 * MiB, 32 * GiB))
    res = run(space, prune=False)
    assert res.n_infeasible == 2 and res.n_evaluated == 4
    bad = res.frame[res.frame["status"] == "infeasible"]
    assert (bad["hbm_bytes"] == 64 * MiB).all() and bad["reason"].str.contains("fits under no plan").all()
    assert bad["tokens_per_s"].isna().all() and list(res.frame["status"][:2]) == ["ok", "ok"]


def test_reference_row_is_the_tpuv4_like_chip():
    res = run(DesignSpace(n_tc=(2,), n_vc=(1,), tc_rows=(64,), tc_cols=(64,), glb_bytes=(32 * MiB,)))
    ref = res.reference
    assert ref["name"] == "tpuv4-like" and ref["status"] == "ok" and ref["n_tc"] == 8
    assert ref["bound_tokens_per_s"] >= ref["tokens_per_s"] > 0
    table = res.table(5)
    assert list(table["rank"]) == ["1", "ref", "ref"] and list(table["name"].iloc[-2:]) == ["tpuv4-like", "tpuv4"]
    faithful = res.faithful_reference
    assert faithful["status"] == "ok" and faithful["vc_lanes"] == 1024 and faithful["n_vc"] == 2


def test_gpu_reference_rows_are_the_dgx_optimum_per_board_watt():
    """A GPU row is `optimize` on its generation's DGX preset with the search's placement space,
    scored per watt of board TDP; a GPU without a DGX preset is refused by name."""
    from coda.arch.clusters import cluster
    from coda.arch.gpus import gpu
    from coda.placement import optimize
    from coda.search import DEFAULT_CHOICES, gpu_reference

    rows = gpu_reference(MODEL, ["a100-sxm4-80gb", "NVIDIA H100 80GB HBM3"], DEVICES, BATCH, SEQ)
    assert list(rows["name"]) == ["a100-sxm4-80gb", "h100-sxm"] and (rows["status"] == "ok").all()
    for row, preset in zip(rows.itertuples(), ("dgx-a100", "dgx-h100")):
        g = gpu(row.name)
        _, best, _ = optimize(get(MODEL), cluster(preset, DEVICES, device=g), BATCH, SEQ, dtype="bf16",
                              **DEFAULT_CHOICES)
        assert row.tokens_per_s == pytest.approx(best.tokens_per_s)
        assert row.tokens_per_s_per_w == pytest.approx(best.tokens_per_s / (DEVICES * g.tdp_w))
        assert row.peak_flops == g.peak_flops("bf16") and row.tdp_w == g.tdp_w
    assert rows.loc[1, "tokens_per_s"] > rows.loc[0, "tokens_per_s"]  # more FLOP/s and bandwidth is never slower
    with pytest.raises(ConfigError, match="DGX preset"):
        gpu_reference(MODEL, ["l4"], DEVICES, BATCH, SEQ)
    with pytest.raises(CodaError, match="did you mean"):
        gpu_reference(MODEL, ["h100-sxn"], DEVICES, BATCH, SEQ)


def test_bad_input_raises_coda_errors():
    with pytest.raises(InfeasibleDesign, match="max_tdp_w"):
        run(DesignSpace(n_tc=(2,), n_vc=(1,), tc_rows=(64,), tc_cols=(64,), max_tdp_w=1.0))
    for kw in (dict(n_devices=0), dict(n_devices=24), dict(global_batch=0)):
        args = {**dict(n_devices=DEVICES, global_batch=BATCH, seq_len=SEQ), **kw}
        with pytest.raises(CodaError):
            search(MODEL, SPACE, **args, **FAST)
    with pytest.raises(ConfigError, match="objective"):
        run(objective="speed")
    with pytest.raises(ConfigError, match="placement choice"):
        run(choices={"tensor": 2})


def test_cli_help_and_tiny_run(capsys, tmp_path):
    with pytest.raises(SystemExit) as ex:
        main(["search", "--help"])
    assert ex.value.code == 0
    capsys.readouterr()
    args = ["search", "--model", MODEL, "--devices", str(DEVICES), "--global-batch", str(BATCH), "--seq-len", str(SEQ),
            "--n-tc", "2,8", "--n-vc", "1", "--tc-rows", "128", "--tc-cols", "128", "--glb-mib", "32",
            "--min-area-fraction", "0", "--timer", "predictor", "--store", str(tmp_path / "s.sqlite")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("designs 2:") and "tpuv4-like" in out and "ref" in out
    assert main(args + ["--json", "--top", "1"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["counts"]["cached"] >= 1 and len(data["top"]) == 1 and data["reference"]["name"] == "tpuv4-like"
    assert data["gpu_references"] == []
    assert main(args + ["--json", "--gpu-reference", "h100-sxm"]) == 0
    assert json.loads(capsys.readouterr().out)["gpu_references"][0]["name"] == "h100-sxm"
    assert main(args + ["--json", "--pareto"]) == 0  # every design evaluated, the front of both
    data = json.loads(capsys.readouterr().out)
    assert data["counts"]["pruned_by_bound"] == 0 and 1 <= len(data["pareto"]) <= 2
    if importlib.util.find_spec("matplotlib") is not None:
        assert main(args + ["--plot", str(tmp_path / "s.png")]) == 0
        assert (tmp_path / "s.png").stat().st_size > 0
    capsys.readouterr()
    assert main(args[:-4] + ["--devices", "24"]) == 2
    assert capsys.readouterr().err.startswith("coda: error: tpuv4-pod has 16-device domains")


def test_cli_placement_choices(capsys):
    args = ["search", "--model", MODEL, "--devices", str(DEVICES), "--global-batch", str(BATCH), "--seq-len", str(SEQ),
            "--n-tc", "2,8", "--n-vc", "1", "--tc-rows", "128", "--tc-cols", "128", "--glb-mib", "32",
            "--min-area-fraction", "0", "--timer", "predictor", "--json", "--gpu-reference", "a100-sxm4-80gb"]
    assert main(args + ["--tp", "2", "--micro-batch", "2", "--recompute", "full", "--zero", "1"]) == 0
    data = json.loads(capsys.readouterr().out)
    rows = data["top"] + [data["reference"]] + data["gpu_references"]
    assert len(rows) == 4 and all((r["tp"], r["micro_batch"], r["recompute"], r["zero"]) == (2, 2, "full", 1)
                                  for r in rows)
    assert main(args + ["--recompute", "sometimes"]) == 2
    assert "recompute='sometimes' must be one of none, selective, full" in capsys.readouterr().err
