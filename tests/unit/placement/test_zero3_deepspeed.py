"""ZeRO-3 as DeepSpeed ran it in 2021 (`DEEPSPEED_2021`): one collective per weight tensor, three
gathers per step with full recomputation, nothing hidden, n rank copies per tensor-list collective;
closed forms against the cluster's collective costs, and the FSDP path left as it was."""

from dataclasses import replace

import pytest

from coda.arch.clusters import cluster
from coda.errors import ConfigError
from coda.models import get
from coda.models.ops import elementwise
from coda.placement import FSDP, CostModel, Plan, evaluate
from coda.placement.software import DEEPSPEED_2021, Software
from coda.predictor import op_latencies

CFG = get("megatron-1.7b")  # GPT block: fused QKV, projection, MLP up, MLP down = 4 gathered tensors
SEQ = 2048
NO_COPIES = replace(DEEPSPEED_2021, zero3_rank_copies=False)


def _chain(software: Software, n: int, recompute: str = "full", micro_batch: int = 1):
    cl = cluster("dgx-a100", n)
    plan = Plan(dp=n, zero=3, micro_batch=micro_batch, global_batch=n * micro_batch, recompute=recompute)
    return cl, CostModel(CFG, cl, SEQ, dtype="fp16", software=software).terms(plan).chain


def _tensor_bytes() -> float:
    """fp16 bytes of one of a block's four gathered tensors, on average (the block's biases and norm
    weights are spread over the four, as in the model: under 0.1% of its parameters)."""
    return 2.0 * CFG.block_params() / 4


@pytest.mark.parametrize("recompute, gathers", [("full", 3), ("selective", 2), ("none", 2)])
def test_per_tensor_collectives_closed_form(recompute, gathers):
    """Per block and micro-batch: `gathers` all-gathers and one reduce-scatter of each of 4 tensors,
    every call paying its ring latency; nothing is hidden."""
    n = 64
    cl, ch = _chain(NO_COPIES, n, recompute)
    ranks = tuple(range(n))
    t_b = _tensor_bytes()
    ag, rs = cl.collective_cost("all_gather", ranks), cl.collective_cost("reduce_scatter", ranks)
    want = 4 * (gathers * ag.time(t_b) + rs.time(t_b))
    assert ch.z3_s[1] == pytest.approx(want, rel=1e-9)
    assert ch.z3_hidden_s[1] == 0.0
    # the tied embedding table is one tensor, gathered and reduced like the others
    assert ch.z3_s[0] > 0.0


def test_rank_copies_are_n_copy_kernels_per_collective():
    n = 64
    cl, with_copies = _chain(DEEPSPEED_2021, n)
    _, without = _chain(NO_COPIES, n)
    shard = round(_tensor_bytes() / n / 2)
    t_copy = op_latencies([elementwise(shard, 0.0, 1, "fp16", name="copy")], cl.device)[0]
    # 3 gathers + 1 reduce-scatter of 4 tensors, each with n copy kernels of one rank's chunk
    assert with_copies.z3_s[1] - without.z3_s[1] == pytest.approx(4 * 4 * n * t_copy, rel=1e-6)


def test_ring_latency_grows_with_the_group():
    """At the same bytes per device, a larger data-parallel group pays more ring steps per call."""
    per_block = [_chain(NO_COPIES, n)[1].z3_s[1] for n in (16, 64, 256)]
    assert per_block[0] < per_block[1] < per_block[2]


def test_deepspeed_2021_exposes_more_than_fsdp():
    """FSDP hides its per-unit gathers behind compute; DeepSpeed 2021 waits for every call."""
    n = 256
    _, ds = _chain(replace(DEEPSPEED_2021, attention="fused", dropout=False), n)
    _, fsdp = _chain(FSDP, n)
    assert ds.z3_s.sum() > fsdp.z3_s.sum()
    assert fsdp.z3_hidden_s.sum() > 0 and ds.z3_hidden_s.sum() == 0
    # the traffic itself: DeepSpeed gathers a third time for the recomputed forward
    assert ds.z3_s.sum() > fsdp.z3_s.sum() + fsdp.z3_hidden_s.sum()


def test_per_tensor_prefetch_hides_the_excess_only():
    """With prefetching (FSDP-like overlap) per-tensor traffic is exposed only beyond the unit's compute."""
    n = 64
    sw = replace(NO_COPIES, zero3_prefetch=True)
    _, ch = _chain(sw, n)
    _, blocking = _chain(NO_COPIES, n)
    moved = ch.z3_s + ch.z3_hidden_s
    assert moved == pytest.approx(blocking.z3_s, rel=1e-9)
    assert (ch.z3_s <= blocking.z3_s + 1e-15).all()


def test_memory_does_not_depend_on_the_collective_granularity():
    n = 64
    plan = Plan(dp=n, zero=3, micro_batch=1, global_batch=n, recompute="full")
    a = evaluate(CFG, cluster("dgx-a100", n), plan, SEQ, dtype="fp16", software=DEEPSPEED_2021)
    b = evaluate(CFG, cluster("dgx-a100", n), plan, SEQ, dtype="fp16",
                 software=replace(DEEPSPEED_2021, zero3_granularity="unit"))
    assert a.peak_memory_bytes == pytest.approx(b.peak_memory_bytes)
    assert a.step_time_s > b.step_time_s  # 4 calls per block pay 4 ring latencies


def test_zero3_granularity_is_checked():
    with pytest.raises(ConfigError, match="zero3_granularity='layer' must be one of unit, tensor"):
        Software(zero3_granularity="layer")
