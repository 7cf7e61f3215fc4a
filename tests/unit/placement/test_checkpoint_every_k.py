"""Activation checkpointing of every k-th block (`Layout.recompute_every`, torchtitan's `ac_freq`):
with recompute='full', blocks 0, k, 2k, ... store their input alone and run their forward again in
the backward; the others store all their activations. Closed forms, monotonicity in k, the rules,
and optimize searching k exactly."""

from dataclasses import replace

import pytest

from coda.arch.clusters import cluster
from coda.cli import main
from coda.errors import ConfigError, InfeasibleDesign
from coda.models import get
from coda.placement import CostModel, Plan, Software, evaluate, optimize, validate_plan
from coda.placement.software import DEEPSPEED_2021
from coda.units import GiB

CFG = get("megatron-1.7b")  # GPT, 24 blocks
L, H = CFG.n_layers, CFG.hidden
SEQ, MB, N = 2048, 2, 8
SW = Software()  # fused attention: a block stores 34*s*b*h bytes (bf16) without recomputation


def _plan(k: int, **kw) -> Plan:
    return Plan(dp=N, micro_batch=MB, global_batch=N * MB * 2, recompute="full", recompute_every=k, **kw)


def _chain(k: int, software: Software = SW, **kw):
    return CostModel(CFG, cluster("dgx-a100", N), SEQ, software=software).terms(_plan(k, **kw)).chain


def _checkpointed(k: int) -> int:
    return -(-L // k)  # blocks 0, k, 2k, ... < L


@pytest.mark.parametrize("k", [1, 2, 3, 5, 24])
def test_activation_bytes_closed_form(k):
    """Korthikanti et al. 2022 per block: 2*s*b*h stored when checkpointed, 34*s*b*h otherwise (fused
    attention, no SP, tp 1), and the checkpointed blocks' transient rebuild of 34*s*b*h - 2*s*b*h."""
    ch = _chain(k)
    blocks = ch.act_bytes[1:-1]
    c = _checkpointed(k)
    assert blocks.sum() == pytest.approx((c * 2 + (L - c) * 34) * SEQ * MB * H, rel=1e-12)
    assert [i for i, b in enumerate(blocks) if b < 3 * SEQ * MB * H] == list(range(0, L, k))
    assert ch.work_bytes[1:-1].max() == pytest.approx(32 * SEQ * MB * H, rel=1e-12)
    assert (ch.work_bytes[1:-1] == 0).sum() == L - c


@pytest.mark.parametrize("k", [1, 4, 7])
def test_recomputation_runs_one_block_in_k(k):
    ch, c = _chain(k), _checkpointed(k)
    assert ch.rec_s.sum() == pytest.approx(c * ch.fwd_s[1], rel=1e-12)
    cm = CostModel(CFG, cluster("dgx-a100", N), SEQ, software=SW)
    block_fwd_flops = cm.profile(_plan(k)).fwd_flops[1]  # the forward a recomputed block runs again
    extra = ch.hw_flops.sum() - _chain(L).hw_flops.sum()  # k = L recomputes block 0 alone
    assert extra == pytest.approx((c - 1) * block_fwd_flops, rel=1e-9)


def test_every_block_is_full_recomputation():
    a = evaluate(CFG, cluster("dgx-a100", N), _plan(1), SEQ, software=SW)
    b = evaluate(CFG, cluster("dgx-a100", N), Plan(dp=N, micro_batch=MB, global_batch=N * MB * 2, recompute="full"),
                 SEQ, software=SW)
    assert a.step_time_s == b.step_time_s and a.peak_memory_bytes == b.peak_memory_bytes
    assert a.plan.describe() == b.plan.describe()


def test_memory_grows_and_time_falls_with_k():
    results = [evaluate(CFG, cluster("dgx-a100", N), _plan(k), SEQ, software=SW) for k in (1, 2, 4, 8, 24)]
    mem = [r.peak_memory_bytes for r in results]
    step = [r.step_time_s for r in results]
    assert mem == sorted(mem) and len(set(mem)) == len(mem)
    assert step == sorted(step, reverse=True) and len(set(step)) == len(step)
    none = evaluate(CFG, cluster("dgx-a100", N), Plan(dp=N, micro_batch=MB, global_batch=N * MB * 2), SEQ,
                    software=SW)
    assert step[-1] > none.step_time_s and mem[-1] < none.peak_memory_bytes  # k = L still recomputes block 0


def test_deepspeed_gathers_again_only_for_checkpointed_blocks():
    ch = _chain(4, replace(DEEPSPEED_2021, zero3_rank_copies=False), zero=3)
    cl = cluster("dgx-a100", N)
    ag = cl.collective_cost("all_gather", tuple(range(N))).time(2 * CFG.block_params() / 4)
    assert ch.z3_s[1] - ch.z3_s[2] == pytest.approx(4 * ag, rel=1e-9)  # block 0 checkpointed, block 1 not
    assert ch.z3_s[5] == pytest.approx(ch.z3_s[1], rel=1e-12)  # block 4


def test_rules():
    with pytest.raises(ConfigError, match="recompute_every=2 checkpoints every 2-th block.*use recompute='full'"):
        Plan(dp=N, global_batch=N, recompute_every=2)
    with pytest.raises(ConfigError, match="recompute_every=0 must be a positive integer"):
        Plan(dp=N, global_batch=N, recompute="full", recompute_every=0)
    with pytest.raises(InfeasibleDesign, match="recompute_every=25 exceeds the 24 layers"):
        validate_plan(Plan(dp=N, global_batch=N, recompute="full", recompute_every=25), CFG, N)


def test_optimize_searches_k_exactly():
    """Under a memory limit that full recomputation meets and no recomputation misses, the best k
    optimize finds is the best feasible one by brute force."""
    ks = (1, 2, 3, 4, 6, 8, 12, 24)
    full = evaluate(CFG, cluster("dgx-a100", N), _plan(1), SEQ, software=SW).peak_memory_bytes
    none = evaluate(CFG, cluster("dgx-a100", N), _plan(24), SEQ, software=SW).peak_memory_bytes
    sw = replace(SW, reserved_bytes=80 * GiB - (full + 0.7 * (none - full)))  # k = 3 fits (16 of 24 kept), 4 not
    brute = min((r.step_time_s, k) for k in ks
                if (r := evaluate(CFG, cluster("dgx-a100", N), _plan(k), SEQ, software=sw, check_memory=False)).fits)
    _, best, ranked = optimize(CFG, cluster("dgx-a100", N), N * MB * 2, SEQ, software=sw, tp=1, pp=1, dp=N,
                               micro_batch=MB, recompute="full", zero=0, recompute_every=ks)
    assert 1 < brute[1] < 24
    assert (best.step_time_s, best.plan.recompute_every) == brute
    assert ranked.iloc[0]["recompute_every"] == brute[1]


def test_cli(capsys):
    args = ["train", "--model", "megatron-1.7b", "--cluster", "dgx-a100", "--devices", str(N), "--global-batch",
            str(N * MB * 2), "--seq-len", str(SEQ), "--tp", "1", "--pp", "1", "--dp", str(N), "--micro-batch", str(MB),
            "--recompute", "full", "--no-sequence-parallel", "--schedule", "1f1b", "--virtual-stages", "1",
            "--zero", "0", "--recompute-every", "4"]
    assert main(args) == 0
    assert "full/4" in capsys.readouterr().out
    assert main(args[:-4] + ["--recompute-every", "1,4"]) == 0  # optimised: zero left out
    assert main(args[:-1] + ["1,4"]) == 2
    assert "a fully given plan takes one recompute_every value" in capsys.readouterr().err
