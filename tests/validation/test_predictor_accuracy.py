"""Held-out accuracy of the shipped GPU calibration (what `coda validate predictor` prints).

Thresholds are the levels the shipped model reaches (a regression guard), next to the issue's
targets where they are met: NeuSight H100 (an unseen GPU) median APE <= 10%. The Vidur FP16
target (median <= 5%, p90 <= 12%; issue #16: H100 p90 < 15%) is not met yet: held-out medians are
4.0-7.2%, p90 12.0-19.4%; the guard is set just above them, and always far below the roofline's ~30%.
"""

import pytest

from coda.predictor.validation import best_candidate_ape, by_token_range, kernel_errors


@pytest.fixture(scope="module")
def errors():
    return kernel_errors()


def test_vidur_fp16_linear_held_out(errors):
    held = errors[(errors["source"] == "vidur") & (errors["family"] == "gemm") & (errors["split"] == "held out")]
    for (gpu, model), g in held.groupby(["gpu", "model"]):
        assert g["ours_ape"].median() <= 8.0, (gpu, model)
        assert g["ours_ape"].quantile(0.9) <= 21.0, (gpu, model)
        assert g["ours_ape"].median() < g["roofline_ape"].median() / 4, (gpu, model)


def test_neusight_unseen_h100(errors):
    h100 = errors[(errors["source"] == "neusight") & (errors["gpu"] == "h100-sxm")]
    assert (h100["split"] == "held out").all()
    for op, g in h100.groupby("layer_op"):
        assert g["ours_ape"].median() <= 10.0, op
        assert g["ours_ape"].median() < g["roofline_ape"].median(), op


def test_calibration_split_is_honest(errors):
    """No held-out row was used to fit: the fitted Vidur GEMMs are Llama-2-7B only."""
    fitted = errors[(errors["source"] == "vidur") & (errors["family"] == "gemm") & (errors["split"] == "fitted")]
    assert set(fitted["model"]) == {"meta-llama/Llama-2-7b-hf"}


def test_kernel_choice_bound(errors):
    """The candidate closest to each measurement is never further than the model's own pick
    (which is one of the candidates); knowing the kernel choice would bring every Vidur GEMM
    set's p90 under 12% (what `best_tile_p90` reports)."""
    gemm = errors[(errors["source"] == "vidur") & (errors["family"] == "gemm")]
    best = best_candidate_ape(gemm)
    assert (best <= gemm["ours_ape"].to_numpy() + 1e-9).all()
    for key, g in gemm.assign(best=best).groupby(["gpu", "model"]):
        assert g["best"].quantile(0.9) <= 12.0, key


def test_h100_breakdown_by_tokens_covers_every_row_and_locates_the_miss(errors):
    """The by-token table of `coda validate predictor` covers every Vidur H100 GEMM row once, and
    the held-out rows predicted > 15% too fast concentrate at 513-1024 tokens, where the held-out
    shapes (n = 8192) cross their first full wave of 128x256 tiles (docs/predictor.md), while
    the candidate closest to each measurement stays within 12% at p90 there."""
    linear = errors[(errors["source"] == "vidur") & (errors["family"] == "gemm")]
    table = by_token_range(linear.assign(best_tile_ape=best_candidate_ape(linear)))
    h100 = linear[linear["gpu"] == "h100-sxm"]
    for split, g in table.groupby("split"):
        assert g["rows"].sum() == (h100["split"] == split).sum(), split
    held = table[table["split"] == "held out"].set_index("tokens")
    assert held["too_fast_15_pct"].idxmax() == "513-1024"
    assert held.loc["513-1024", "best_tile_p90"] <= 12.0


def test_published_max_achievable_matmul_flops_held_out():
    """Bekman's MAMF tables (never fitted): each published best shape within 15% (the held-out GEMM target), and
    no prediction above the tensor peak."""
    from coda.predictor.validation import MAMF_ROWS, mamf_table

    t = mamf_table()
    assert len(t) == len(MAMF_ROWS)
    assert (t["predicted_TFLOPs"] < t["peak_TFLOPs"]).all()
    assert (t["published_TFLOPs"] < t["peak_TFLOPs"]).all()  # the transcription is physical
    assert (t["error_pct"].abs() <= 15.0).all(), t[["gpu", "dtype", "shape", "error_pct"]]
