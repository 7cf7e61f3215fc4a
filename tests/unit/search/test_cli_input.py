"""`coda search` refuses bad input before any work in one line naming the flag, its value and its range; its
flags state their defaults; it ends with the answer as a sentence (issue #12)."""

import argparse
import json

import pytest

import coda.search.run as run_mod
from coda.arch.design_space import DesignSpace
from coda.cli import build_parser, main
from coda.errors import ConfigError
from coda.placement import predictor_layer_time
from coda.search import SearchLayerTime, gpu_reference, search
from coda.units import MiB

MODEL, DEVICES, BATCH, SEQ = "gpt2", 16, 64, 512
BASE = ["search", "--model", MODEL, "--devices", str(DEVICES), "--global-batch", str(BATCH), "--seq-len", str(SEQ),
        "--n-tc", "2,8", "--n-vc", "1,2", "--tc-rows", "64,128", "--tc-cols", "64,128", "--glb-mib", "32,128",
        "--timer", "predictor", "--executor", "inline"]


def with_flag(flag, value):
    """BASE with `flag` set to `value` (replacing its value when BASE has the flag)."""
    args = list(BASE)
    if flag in args:
        args[args.index(flag) + 1] = value
        return args
    return [*args, flag, value]


BAD = [("--top", "-1", "integer >= 1"), ("--top", "0", "integer >= 1"), ("--max-designs", "-1", "integer >= 1"),
       ("--workers", "0", "integer >= 1"), ("--devices", "0", "integer >= 1"), ("--seq-len", "0", "integer >= 1"),
       ("--max-area-mm2", "inf", "finite number of mm2 > 0"), ("--max-area-mm2", "nan", "finite number of mm2 > 0"),
       ("--max-area-mm2", "-5", "finite number of mm2 > 0"), ("--min-area-fraction", "nan", "[0, 1]"),
       ("--min-area-fraction", "1.5", "[0, 1]"), ("--max-tdp-w", "inf", "finite number of W > 0"),
       ("--ilp-time-limit", "-1", "finite number >= 0"), ("--ilp-time-limit", "nan", "finite number >= 0"),
       ("--n-tc", ",", "lists no value"), ("--glb-mib", ",", "lists no value"), ("--tc-rows", "96", "power of two"),
       ("--tc-cols", "100", "use 64 or 128"), ("--n-vc", "0", "integers >= 1"),
       ("--gpu-reference", "nonsense", "unknown gpu 'nonsense'"), ("--gpu-reference", "l4", "DGX preset"),
       ("--tp", "3", "no value divides n_devices=16"), ("--pp", "3,5", "no value divides n_devices=16"),
       ("--tp", ",", "lists no value")]


def test_the_old_chips_flag_is_gone(capsys):
    """One name for the device count across the CLI (issue #13): `--devices`, no `--chips` alias."""
    assert main([*BASE, "--chips", "16"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "unrecognized arguments: --chips 16" in err[0], err
    assert main([a if a != "--devices" else "--chips" for a in BASE]) == 2
    assert "the following arguments are required: --devices" in capsys.readouterr().err


@pytest.mark.parametrize("flag,value,match", BAD, ids=[f"{f}={v}" for f, v, _ in BAD])
def test_bad_flag_is_one_line_before_any_work(flag, value, match, capsys, monkeypatch):
    def no_work(*args, **kwargs):
        raise AssertionError("work started")

    monkeypatch.setattr(run_mod, "evaluate_design", no_work)
    monkeypatch.setattr(run_mod, "training_flops_per_token_lb", no_work)
    assert main(with_flag(flag, value)) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert captured.out == "" and len(lines) == 1 and lines[0].startswith("coda: error: "), captured.err
    assert match in lines[0], lines[0]
    if flag not in ("--tp", "--pp", "--gpu-reference"):
        assert f"{flag} {value}" in lines[0] or f"{flag} lists" in lines[0], lines[0]


def test_library_refuses_non_finite_budgets_and_timer_settings():
    for kw in (dict(max_area_mm2=float("inf"), min_area_fraction=0.0), dict(max_area_mm2=float("nan")),
               dict(max_tdp_w=float("inf")), dict(clock_hz=(float("inf"),))):
        with pytest.raises(ConfigError, match="finite"):
            DesignSpace(n_tc=(2,), n_vc=(1,), tc_rows=(64,), tc_cols=(64,), **kw)
    for kw in (dict(time_limit_s=-1.0), dict(time_limit_s=float("nan")), dict(gap=1.0)):
        with pytest.raises(ConfigError, match="SearchLayerTime"):
            SearchLayerTime(**kw)
    with pytest.raises(ConfigError, match=r"no tp=4 times pp=8 divides n_devices=16"):
        search(MODEL, DesignSpace(n_tc=(2,), n_vc=(1,), tc_rows=(64,), tc_cols=(64,)), DEVICES, BATCH, SEQ,
               choices={"tp": (4,), "pp": (8,)}, layer_time=predictor_layer_time)


def search_parser() -> argparse.ArgumentParser:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices["search"]


def test_every_flag_states_its_default_and_progress_follows_the_terminal(monkeypatch, capsys):
    for action in search_parser()._actions:
        if action.dest == "help":
            continue
        text = action.help or ""
        assert "default" in text or "required" in text, (action.dest, text)
    for flag, unit in (("--max-area-mm2", "mm2"), ("--max-tdp-w", "W"), ("--glb-mib", "MiB"), ("--hbm-gib", "GiB"),
                       ("--ilp-time-limit", "seconds")):
        action = next(a for a in search_parser()._actions if flag in a.option_strings)
        assert unit in action.help, flag
    assert "ray" in next(a for a in search_parser()._actions if "--executor" in a.option_strings).choices
    seen = []
    real = run_mod.search

    def spy(*args, **kwargs):
        seen.append(kwargs["progress"])
        return real(*args, **kwargs)

    monkeypatch.setattr("coda.search.search", spy)
    tiny = with_flag("--n-tc", "8")
    for tty in (True, False):
        monkeypatch.setattr("sys.stderr.isatty", lambda tty=tty: tty)
        assert main(tiny + ["--json"]) == 0
    assert main(tiny + ["--json", "--no-progress"]) == 0
    capsys.readouterr()
    assert seen == [True, False, False]


@pytest.fixture(scope="module")
def result():
    space = DesignSpace.phaze(n_tc=(2, 8), n_vc=(1, 2), tc_rows=(64, 128), tc_cols=(64, 128),
                              glb_bytes=(32 * MiB, 128 * MiB))
    return search(MODEL, space, DEVICES, BATCH, SEQ, layer_time=predictor_layer_time, executor="inline")


def test_summary_says_the_answer(result):
    gpus = gpu_reference(MODEL, ["a100-sxm4-80gb", "h100-sxm"], DEVICES, BATCH, SEQ)
    best, ref = result.best, result.reference
    text = result.summary(gpus)
    assert text.startswith(f"Best: {int(best['n_tc'])} tensor cores of {int(best['tc_rows'])}x{int(best['tc_cols'])}")
    assert f"trains gpt2 at {run_mod_number(best['tokens_per_s'])} tokens/s on 16 chips with tp={best['tp']} " \
        f"pp={best['pp']} dp={best['dp']} mb={best['micro_batch']}" in text
    assert f"{run_mod_number(best['tokens_per_s_per_w'])} tokens/s/W" in text
    ratio = best["tokens_per_s_per_w"] / ref["tokens_per_s_per_w"]
    faithful = best["tokens_per_s_per_w"] / result.faithful_reference["tokens_per_s_per_w"]
    gpu_ratios = [best["tokens_per_s_per_w"] / g for g in gpus["tokens_per_s_per_w"]]
    assert f"{ratio:.2f}x PHAZE's TPUv4-like reference, {faithful:.2f}x the faithful TPU v4 and " \
        f"{gpu_ratios[0]:.2f}x / {gpu_ratios[1]:.2f}x the a100-sxm4-80gb / h100-sxm rows." in text
    assert list(result.table(3)["name"].iloc[-2:]) == ["tpuv4-like", "tpuv4"]
    assert " W, " in text and " mm2 at 22 nm)" in text and f"{int(best['glb_bytes']) // MiB} MiB GLB" in text
    throughput = search(MODEL, DesignSpace(n_tc=(8,), n_vc=(2,), tc_rows=(128,), tc_cols=(64,),
                                           glb_bytes=(32 * MiB,)), DEVICES, BATCH, SEQ, objective="tokens_per_s",
                        layer_time=predictor_layer_time, executor="inline")
    assert f"at {run_mod_number(throughput.best['tokens_per_s'])} tokens/s (" in throughput.summary()


def run_mod_number(x):
    from coda.search.summary import number

    return number(x)


def test_number_format():
    from coda.search.summary import number

    assert [number(x) for x in (1.234e5, 680.4, 0.5, 9.9996e5, 0.0)] == ["1.23e5", "680", "0.5", "1e6", "0"]


def test_short_table_says_why_and_cli_prints_the_sentence_last(result, capsys):
    n_ok = int((result.frame["status"] == "ok").sum())
    assert result.shortfall(n_ok) is None
    why = result.shortfall(n_ok + 5)
    assert why == f"only {n_ok} feasible designs were visited of {result.n_space}: {result.n_pruned} pruned by " \
                  "the bound (provably worse than the best by more than 2%)"
    assert main(BASE + ["--top", "100"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert any(line.startswith("top 100 by") and f"; {n_ok} listed: only {n_ok} feasible" in line for line in out)
    assert out[-1] == result.summary(gpu_reference(MODEL, [], DEVICES, BATCH, SEQ))
    assert main(BASE + ["--json", "--top", "100"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["summary"] == out[-1] and data["shortfall"] == why


def test_incomplete_and_infeasible_summaries():
    space = DesignSpace(n_tc=(2, 8), n_vc=(1,), tc_rows=(128,), tc_cols=(128,), glb_bytes=(32 * MiB,))
    cut = search(MODEL, space, DEVICES, BATCH, SEQ, layer_time=predictor_layer_time, executor="inline", max_designs=1,
                 prune=False)
    assert cut.summary().startswith("Best so far (not proven: max_designs stopped the search with 1 design unvisited)")
    tiny_hbm = DesignSpace(n_tc=(8,), n_vc=(2,), tc_rows=(128,), tc_cols=(128,), glb_bytes=(32 * MiB,),
                           hbm_bytes=(64 * MiB,))
    none = search(MODEL, tiny_hbm, DEVICES, BATCH, SEQ, layer_time=predictor_layer_time, executor="inline")
    assert none.best is None and none.summary().startswith("No design fits: the only visited design of 1 is infeasible")
