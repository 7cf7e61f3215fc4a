"""The Megatron-LM README's H100 weak-scaling rows (README "Training Speed and Scalability",
images/model_table.png; development data): each within 15% of its published TFLOP/s per GPU, the rows
that miss marked strict xfail with the reason (`coda validate acceptance` says the same)."""

import pytest

from coda.arch.gpus import gpu
from coda.evaluate.megatron_h100_validation import ROWS, RULE, SEQ, _run, gpt_config, megatron_core_flops

TOLERANCE_PCT = 15.0
# Rows that miss today, and why (docs/training.md, "Megatron-LM README H100 rows").
MISSES = {
    "1.7B": "too fast (+31%): compute alone at t=1 (no TP traffic, DP traffic hidden); the predictor's bf16 GEMM and "
            "attention rates at h=2048 are above the run's (41% MFU); launch and host overheads not modelled",
    "7.1B": "too fast (+28%): compute alone at t=2 (h=4096), as for 1.7B",
    "32B": "too slow (-17%): 4e9 weights per GPU, so 16 GB of fp32 gradients reduce-scattered and 8 GB of weights "
           "gathered over 48 nodes at <= 50 GB/s per GPU each step, hidden only behind the last of 4 micro-batches' "
           "backward and the first one's forward; the run hid more of it than the rule's plan can "
           "(micro-batch 2: +0.8%)",
}
MEDIAN_MISS = ("median 11.5%: the two compute-only rows (1.7B, 7.1B) are 28-31% fast and the rows with pipelining "
               "8-12% fast; only the micro-batch the README does not publish moves the median (sensitivity_table: "
               "5.5% at micro-batch 2), and choosing it after seeing the rows would be fitting (docs/training.md)")


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
