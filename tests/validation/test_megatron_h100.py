"""The Megatron-LM README's H100 weak-scaling rows (README "Training Speed and Scalability",
images/model_table.png; development data): each within 15% of its published TFLOP/s per GPU, the rows
that miss marked strict xfail with the reason (`coda validate acceptance` says the same)."""

import pytest

from coda.arch.gpus import gpu
from coda.evaluate.megatron_h100_validation import ROWS, RULE, SEQ, _run, gpt_config, megatron_core_flops

TOLERANCE_PCT = 15.0
# Rows that miss today, and why (docs/training.md, "Megatron-LM README H100 rows").
MISSES = {
    "1.7B": "too fast: compute alone at t=1; the predictor's bf16 GEMM and attention rates at h=2048 are above the "
            "run's (41% MFU); launch and host overheads not modelled",
    "7.1B": "too fast: compute alone at t=2 (h=4096), as for 1.7B",
    "16B": "too fast (+19%): every row is 2-31% fast since LayerNorm costs match the held-out kernels; the "
           "overcharged LayerNorm had hidden what the runs lose beyond coda's kernels (launch, host overheads)",
    "177B": "too fast (+16%), as for 16B",
}
MEDIAN_MISS = ("median 14% (all rows fast): LayerNorm was overcharged 9-140x at these shapes and hid the missing "
               "costs; with norms at their measured cost the small-shape GEMM/attention rates and launch overheads "
               "show (docs/training.md)")


@pytest.fixture(scope="module")
def predicted():
    return {row[0]: _run(row, **RULE) for row in ROWS}


def test_transcription_is_self_consistent():
    peak = gpu("h100-sxm").peak_flops("bf16")
    for name, layers, hidden, heads, t, _, d, gb, tflops, mfu in ROWS:
        # the table's MFU is over the dense BF16 peak, 989 TFLOP/s (462B: 459.9 / 989 = 46.50%, shown as 47%)
        assert abs(100 * tflops * 1e12 / peak - mfu) <= 0.52
        size = float(name.removesuffix("B")) * 1e9
        # untied embeddings and a 4h MLP give the table's sizes (1.7B: 1.75e9, the label truncated)
        assert gpt_config(name, layers, hidden, heads).param_count() == pytest.approx(size, rel=0.035)
        assert gb % d == 0 and hidden % heads == 0 and heads % t == 0


def test_flop_count_is_megatrons_closed_form():
    name, L, h, a = ROWS[3][:4]
    cfg, V, B, s = gpt_config(name, L, h, a), 131072, 192, SEQ
    closed = 72 * B * s * L * h * h * (1 + s / (6 * h) + V / (12 * L * h))
    assert megatron_core_flops(cfg, B, s) == pytest.approx(closed)


@pytest.mark.parametrize("row", [pytest.param(r, id=r[0], marks=pytest.mark.xfail(strict=True, reason=MISSES[r[0]]))
                                 if r[0] in MISSES else pytest.param(r, id=r[0]) for r in ROWS])
def test_row_within_tolerance(row, predicted):
    pred, result = predicted[row[0]]
    assert result.fits
    assert abs(100 * (pred / row[8] - 1)) <= TOLERANCE_PCT


@pytest.mark.xfail(strict=True, reason=MEDIAN_MISS)
def test_median_within_seven_percent(predicted):
    errors = sorted(abs(100 * (predicted[r[0]][0] / r[8] - 1)) for r in ROWS)
    assert errors[len(errors) // 2] <= 7.0


def test_tp_overlap_is_what_lifts_the_tensor_parallel_rows(predicted):
    for row in ROWS:
        without, _ = _run(row, **RULE, tp_comm_overlap=False)
        if row[4] > 1:
            assert predicted[row[0]][0] > without  # t > 1: overlap hides part of the TP collectives
        else:
            assert predicted[row[0]][0] == without
