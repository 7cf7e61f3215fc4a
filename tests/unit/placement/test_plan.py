"""Plan fields, validation against model and cluster, and the error messages."""

import pytest

from coda.errors import ConfigError, InfeasibleDesign
from coda.models import get
from coda.placement.optimize import candidate_plans
from coda.placement.plan import Plan, balanced_stage_layers, lighter_ends_stage_layers, stage_layers_of, validate_plan

GPT3 = get("gpt3-175b")


def test_plan_properties():
    p = Plan(tp=8, pp=16, dp=8, micro_batch=1, global_batch=1536, recompute="FULL", schedule="interleaved",
             virtual_stages=2)
    assert (p.n_devices, p.micro_batches, p.chunks, p.recompute) == (1024, 192, 32, "full")
    assert p.describe() == "tp8 pp16 dp8 mb1 gb1536 full interleaved(v=2) zero0"
    validate_plan(p, GPT3, 1024)
    assert Plan(tp=1, sequence_parallel=True).sequence_parallel is False  # no-op without tp


@pytest.mark.parametrize("kw, msg", [
    (dict(zero=4), "zero=4"), (dict(recompute="some"), "recompute='some'"), (dict(tp=0), "Plan.tp=0"),
    (dict(virtual_stages=2), "needs schedule='interleaved'"), (dict(schedule="interleaved"), "needs pp > 1"),
    (dict(stage_layers=(1, -1)), "non-negative"),
])
def test_bad_fields(kw, msg):
    with pytest.raises(ConfigError, match=msg):
        Plan(**kw)


@pytest.mark.parametrize("plan, n, msgs", [
    (Plan(tp=8, pp=4, dp=4, global_batch=512), 64, ["8*4*4 = 128 devices", "has 64", "use dp=2"]),
    (Plan(tp=8, pp=8, dp=1, micro_batch=3, global_batch=512), 64, ["512/(1*3)", "not a positive integer",
                                                                   "nearest: 1, 2, 4"]),
    (Plan(tp=1, pp=1, dp=64, micro_batch=1, global_batch=100), 64, ["dp=64 must divide global_batch=100", "64, 128"]),
    (Plan(tp=1, pp=128, dp=1, global_batch=8), 128, ["pp=128 pipeline stages exceed the 96 layers", "use pp <= 96"]),
    (Plan(tp=5, pp=1, dp=2, global_batch=8), 10, ["tp=5 must divide its 96 attention heads", "nearest valid tp"]),
    (Plan(tp=8, pp=4, dp=1, global_batch=8, schedule="interleaved", virtual_stages=5), 32,
     ["4 stages x 5 chunks = 20 must divide the 96 layers", "valid virtual_stages: [2, 3, 4, 6, 8, 12, 24]"]),
    (Plan(tp=8, pp=4, dp=1, global_batch=6, schedule="interleaved", virtual_stages=2), 32,
     ["6 micro-batches per pipeline", "multiple of pp=4"]),
    (Plan(tp=8, pp=2, dp=1, global_batch=8, stage_layers=(40, 40)), 16, ["sums to 80", "96 layers"]),
    (Plan(tp=8, pp=3, dp=1, global_batch=8, stage_layers=(48, 0, 48)), 24, ["every middle stage"]),
    (Plan(tp=8, pp=2, dp=1, global_batch=8, stage_layers=(96,)), 16, ["has 1 entries", "2 stages"]),
    (Plan(tp=8, pp=2, dp=1, global_batch=8, schedule="interleaved", virtual_stages=2, stage_layers=(24, 25, 23, 24)),
     16, ["equal layers in the middle chunks", "[24, 25, 23, 24]"]),
    (Plan(tp=8, pp=2, dp=1, global_batch=8, schedule="interleaved", virtual_stages=2, stage_layers=(25, 23, 23, 25)),
     16, ["no more in the first and last"]),
])
def test_invalid_plans_name_numbers_and_fixes(plan, n, msgs):
    with pytest.raises(InfeasibleDesign) as exc:
        validate_plan(plan, GPT3, n)
    for m in msgs:
        assert m in str(exc.value)


def test_interleaved_chunks_may_be_lighter_at_the_ends():
    """Megatron-Core's uneven first/last pipeline layers (e.g. the embedding and the loss counted
    as layers): 96 blocks in 4 chunks of 23, 25, 25, 23."""
    validate_plan(Plan(tp=8, pp=2, dp=1, global_batch=8, schedule="interleaved", virtual_stages=2,
                       stage_layers=(23, 25, 25, 23)), GPT3, 16)


def test_balanced_stage_layers():
    assert balanced_stage_layers(96, 16) == (6,) * 16
    sl = balanced_stage_layers(10, 4)
    assert sum(sl) == 10 and max(sl) - min(sl) <= 1 and sl[0] <= sl[1]  # remainder to the middle first
    assert stage_layers_of(Plan(pp=2, global_batch=2, stage_layers=(50, 46)), 96) == (50, 46)


def test_lighter_ends_layout_and_its_candidates():
    """126 layers in 64 chunks: 1, 2 x 62, 1 (Megatron-Bridge's Llama 3.1 405B layout); optimize's
    candidates include that interleaved layout when pp*v divides layers + 2 but not the layers."""
    assert lighter_ends_stage_layers(126, 64) == (1, *[2] * 62, 1)
    assert lighter_ends_stage_layers(96, 8) is None and lighter_ends_stage_layers(2, 4) is None
    cfg = GPT3.replace(n_layers=6)
    plans = candidate_plans(cfg, 8, 8, 8, pp=2, dp=4, micro_batch=1, schedule="interleaved")
    assert {(p.virtual_stages, p.stage_layers) for p in plans} == {(2, (1, 2, 2, 1)), (3, None)}  # 3: balanced
