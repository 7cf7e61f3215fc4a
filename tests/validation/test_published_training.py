"""Published multi-GPU training runs (`../shared/reference/published.md`), with their tolerances.

- Megatron-LM, Narayanan et al. SC'21 table 1: TFLOP/s per GPU within 10% per row, median <= 5%.
- MosaicML llm-foundry MPT (FSDP): tokens/s per GPU within 15% per row.
- Narayanan et al. SC'21 table 2 (development data): PTD-P and DeepSpeed ZeRO-3 on GPT-3 175B
  within 15% per row, and ZeRO-3 ranked below PTD-P at 768 and 1536 GPUs, as measured.
- NeuSight 4-GPU GPT2-large runs: error reported (no published tolerance; NeuSight's own
  end-to-end MAPE is 6-8%).
Rows the model misses are marked xfail with the reason (docs/training.md discusses each); the
tables print with `coda validate training`.
"""

import statistics

import pytest

from coda.evaluate import training_validation as tv

# Known misses and why (docs/training.md, "Where it lands").
MEGATRON_XFAIL: dict[str, str] = {}
MPT_XFAIL_H100 = ("the predictor runs large H100 bf16 GEMMs at ~80% of peak; llm-foundry's H100 runs (early "
                  "Hopper software) reached only 40-46% MFU")
MPT_XFAIL_H100_MODELS = ("mpt-70b", "mpt-13b", "mpt-7b", "mpt-1b")  # 12-44% fast; mpt-30b lands within 15%
MPT_XFAIL_A100 = {"mpt-13b": "+15.6% fast since MPT's ALiBi is costed as what it is, a bias inside the fused attention "
                             "kernel (before, a stand-in RoPE charged 1.3 points of elementwise time it does not run)"}


SC21_TABLE2_XFAIL = {("ZeRO-3", 768): "predicted 103.7 TFLOP/s against 88 (+17.9%): the exposed traffic the model "
                                      "builds from the collective costs (29 s) is 10 s short of the step the paper "
                                      "measured; docs/training.md, DeepSpeed ZeRO-3 (2021)"}


@pytest.fixture(scope="module")
def table2():
    return tv.sc21_table2()


@pytest.fixture(scope="module")
def megatron():
    return tv.megatron_table().set_index("model")


@pytest.fixture(scope="module")
def mpt():
    return tv.mpt_table()


@pytest.mark.parametrize("name", [r[0] for r in tv.MEGATRON_ROWS])
def test_megatron_row_within_10_percent(megatron, name, request):
    if name in MEGATRON_XFAIL:
        request.applymarker(pytest.mark.xfail(reason=MEGATRON_XFAIL[name], strict=False))
    row = megatron.loc[name]
    assert row["fits_80GB"]
    assert abs(row["error_pct"]) <= 10, f"{name}: predicted {row['predicted_TFLOPs']:.1f} vs {row['published_TFLOPs']}"


def test_megatron_median_within_5_percent(megatron):
    assert statistics.median(megatron["error_pct"].abs()) <= 5
    assert megatron["fits_80GB"].all()


@pytest.mark.parametrize("i", range(len(tv.MPT_ROWS)))
def test_mpt_row_within_15_percent(mpt, i, request):
    row = mpt.iloc[i]
    if row["cluster"] == "dgx-h100" and row["model"] in MPT_XFAIL_H100_MODELS:
        request.applymarker(pytest.mark.xfail(reason=MPT_XFAIL_H100, strict=True))
    if row["cluster"] == "dgx-a100" and row["model"] in MPT_XFAIL_A100:
        request.applymarker(pytest.mark.xfail(reason=MPT_XFAIL_A100[row["model"]], strict=True))
    assert abs(row["error_pct"]) <= 15, f"{row['cluster']} {row['model']}: {row['error_pct']:+.1f}%"


def test_neusight_four_gpu_runs_reported():
    df = tv.neusight_table()
    assert len(df) >= 3 and set(df["run"].str.split("-").str[-1]) >= {"dp4", "tp4", "pp4_1"}
    assert df["error_pct"].abs().max() < 50  # reported, not tuned; a sanity bound only


def test_megatron_bridge_fp8_rows_reported():
    """Megatron-Bridge H100 FP8 rows: reported (no tolerance is published for them). The 405B row
    runs with its context parallelism (cp 2) and 8 chunks per device, the embedding and the loss
    counted as pipeline layers (126 + 2 = 64 chunks x 2), and says so."""
    df = tv.bridge_table().set_index("model")
    assert df["error_pct"].notna().all() and (df["peak_memory_GiB"] <= 80).all()
    assert "cp2" in df.loc["llama3.1-405b", "plan"] and "interleaved(v=8)" in df.loc["llama3.1-405b", "plan"]
    assert df.loc["llama3.1-405b", "note"].startswith("embedding and loss count as layers")
    assert (df.loc[["llama3-8b", "llama3-70b"], "note"] == "").all()
    assert df["error_pct"].abs().max() < 50  # reported, not tuned; a sanity bound only


def test_megatron_bridge_moe_rows_reported():
    """Megatron-Bridge H100 FP8 Qwen3 MoE rows run with their expert parallelism (the published
    layout: ep 8 for 30B-A3B, tp 2 folded into ep 32 for 235B-A22B), fit, and time their
    all-to-alls; reported, not a target (docs/training.md)."""
    df = tv.bridge_moe_table()
    ep = df["model"].map({"qwen3-30b-a3b": "ep8", "qwen3-235b-a22b": "tp2 pp8 dp16 ep32"})
    assert all(e in p for e, p in zip(ep, df["plan"])) and (df["peak_memory_GiB"] <= 80).all()
    assert (df["ep_comm_pct"] > 0).all() and df["error_pct"].notna().all()


@pytest.mark.parametrize("i", range(len(tv.SC21_TABLE2_ROWS)))
def test_sc21_table2_row_within_15_percent(table2, i, request):
    row = table2.iloc[i]
    key = (row["system"], int(row["GPUs"]))
    if key in SC21_TABLE2_XFAIL:
        request.applymarker(pytest.mark.xfail(reason=SC21_TABLE2_XFAIL[key], strict=True))
    assert row["fits_80GB"]
    assert abs(row["error_pct"]) <= 15, f"{key}: {row['predicted_TFLOPs']:.1f} vs {row['published_TFLOPs']}"


@pytest.mark.parametrize("gpus", [768, 1536])
def test_sc21_table2_ranks_zero3_below_ptdp(table2, gpus):
    """The paper's conclusion: without model parallelism ZeRO-3 falls behind PTD-P as GPUs are added."""
    at = table2[table2["GPUs"] == gpus].set_index("system")["predicted_TFLOPs"]
    assert at["ZeRO-3"] < at["PTD-P"]


def test_gpu_ratio_is_h100_over_a100_per_model():
    """gpu_ratio_table: a closed form on a synthetic frame, and plan flags that compare what they say."""
    import pandas as pd

    rows = [("dgx-a100", "m1", 8, 2, 3, "none", 100.0, 110.0), ("dgx-h100", "m1", 8, 2, 1, "none", 250.0, 330.0),
            ("dgx-a100", "m2", 64, 8, 4, "full", 40.0, 40.0), ("dgx-h100", "m2", 64, 8, 4, "full", 100.0, 90.0)]
    cols = ["cluster", "model", "GPUs", "micro_batch", "grad_accum", "recompute", "published_tokens_per_s_per_gpu",
            "predicted_tokens_per_s_per_gpu"]
    out = tv.gpu_ratio_table(pd.DataFrame(rows, columns=cols)).set_index("model")
    assert out.loc["m1", "published_h100_over_a100"] == pytest.approx(2.5)
    assert out.loc["m1", "ratio_error_pct"] == pytest.approx(100 * (3.0 / 2.5 - 1))
    assert out.loc["m2", "ratio_error_pct"] == pytest.approx(100 * (2.25 / 2.5 - 1))
    assert bool(out.loc["m1", "same_plan_per_gpu"]) and not bool(out.loc["m1", "same_global_plan"])
    assert bool(out.loc["m2", "same_global_plan"])
