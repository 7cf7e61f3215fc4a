"""The iteration cost agrees with coda.evaluate.inference's static model, and the table with the
direct evaluation."""

import numpy as np
import pytest

from coda.evaluate import inference
from coda.models import build
from coda.serving.costs import BatchShape, CostTable, IterationCost, random_shapes, table_error
from coda.serving.deployment import Deployment


@pytest.mark.parametrize("tp,pp", [(8, 1), (4, 2), (2, 1)])
def test_single_prefill_is_ttft(llama70, h100x8, tp, pp):
    c = IterationCost(Deployment(llama70, h100x8, tp=tp, pp=pp))
    r = inference(llama70, h100x8, tp, 1, 1000, 4, pp=pp)
    assert c.iteration_s(BatchShape.of([1000])) == pytest.approx(r.ttft_s, rel=1e-12)


@pytest.mark.parametrize("tp,b,ctx", [(8, 1, 700), (4, 16, 2000), (2, 64, 128)])
def test_decode_batch_is_decode_step(llama70, h100x8, tp, b, ctx):
    c = IterationCost(Deployment(llama70, h100x8, tp=tp))
    r = inference(llama70, h100x8, tp, b, ctx, 1)  # one output token: TPOT is the step at context ctx
    assert c.stage_times(BatchShape.of(decode_context=[ctx] * b)).sum() == pytest.approx(r.tpot_first_s, rel=1e-12)


def test_pipeline_decode_matches_static_model(llama70, h100x8):
    """pp=2, b=8: two micro-batches of 4; the static step is max(m * busiest, sum + P*hop)."""
    c = IterationCost(Deployment(llama70, h100x8, tp=4, pp=2))
    r = inference(llama70, h100x8, 4, 8, 1000, 1, pp=2)
    st = c.stage_times(BatchShape.of(decode_context=[1000] * 4))
    _, ring = c.hops(4, True)
    assert max(2 * st.max(), st.sum() + 2 * ring) == pytest.approx(r.tpot_first_s, rel=1e-12)


def test_attention_op_is_the_builders(llama70, h100x8):
    c = IterationCost(Deployment(llama70, h100x8, tp=8))
    built = [op for lg, _ in build(llama70, "prefill", 1, 300, tp=8, context_len=200).layers
             for op in lg.nodes if op.kind == "attention"][0]
    assert c.attention_op(None, 1, 300, 500) == built


def test_table_error_is_small(llama70, h100x8):
    tab = CostTable.for_deployment(Deployment(llama70, h100x8, tp=8), max_context=4096)
    err = np.abs(table_error(tab, random_shapes(150, 4096, 256, 4096, seed=5)))
    assert np.percentile(err, 99) <= 0.01
    assert np.percentile(err, 50) <= 0.002


def test_decode_steps_match_single_steps(llama70, h100x8):
    tab = CostTable.for_deployment(Deployment(llama70, h100x8, tp=8), max_context=4096)
    ctx = np.array([100, 900, 1500])
    many = tab.decode_steps(ctx, 20)
    one = [tab.stage_times(BatchShape.of(decode_context=ctx + j)).sum() for j in range(20)]
    np.testing.assert_allclose(many, one, rtol=1e-12)
