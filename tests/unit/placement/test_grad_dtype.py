"""Gradients wider than the weights (`Software.grad_dtype`): Megatron-LM's fp32 gradients of a bf16 model."""

import dataclasses
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coda.arch.clusters import cluster
from coda.errors import ConfigError
from coda.models.config import ModelConfig
from coda.placement import MEGATRON_CORE, MEGATRON_CORE_2024, Plan, Software
from coda.placement.chain import CostModel
from coda.placement.step import evaluate_plan

CFG = ModelConfig(name="t", n_layers=4, hidden=1024, n_heads=8, ffn_hidden=4096, vocab_size=32000, max_seq_len=2048)
FP32 = dataclasses.replace(MEGATRON_CORE, grad_dtype="fp32")


def _model(software, n=16):
    return CostModel(CFG, cluster("dgx-h100", n), 2048, "bf16", software)


def test_megatron_2024_reduces_fp32_gradients_and_the_2025_recipes_bf16():
    assert MEGATRON_CORE_2024.grad_dtype == "fp32"  # arguments.py at f2e5db4: forced for every bf16 run
    assert MEGATRON_CORE.grad_dtype is None  # Megatron-Bridge perf configs: grad_reduce_in_fp32 = False


@pytest.mark.parametrize("bad", ["fp8", "FP32", "", "int8"])
def test_unknown_grad_dtype_is_refused(bad):
    with pytest.raises(ConfigError, match="grad_dtype"):
        Software(grad_dtype=bad)


@pytest.mark.parametrize("zero", [0, 1, 2, 3])
def test_gradient_memory_is_four_bytes_per_held_weight(zero):
    """Megatron-LM docs/source/distrib_optimizer.md, "bf16 param, fp32 grads": 2 + 4 + 12/d bytes per
    parameter with the distributed optimizer; gradients twice the bf16 ones whatever the ZeRO stage."""
    plan = Plan(tp=1, pp=1, dp=16, micro_batch=1, global_batch=16, zero=zero)
    bf16 = evaluate_plan(_model(MEGATRON_CORE), plan, check_memory=False).pipeline.stages[0]
    fp32 = evaluate_plan(_model(FP32), plan, check_memory=False).pipeline.stages[0]
    assert fp32.grad_bytes == pytest.approx(2 * bf16.grad_bytes)
    assert (fp32.weight_bytes, fp32.optim_bytes) == (bf16.weight_bytes, bf16.optim_bytes)
    if zero == 1:
        params = bf16.weight_bytes / 2
        assert fp32.weight_bytes + fp32.grad_bytes + fp32.optim_bytes == pytest.approx((6 + 12 / 16) * params)


def test_reduction_moves_twice_the_bytes_and_the_gather_the_same():
    plan = Plan(tp=1, pp=1, dp=16, micro_batch=1, global_batch=64, zero=1)
    a, b = _model(MEGATRON_CORE).terms(plan), _model(FP32).terms(plan)
    assert b.dp_sync[0].s_per_byte == pytest.approx(2 * a.dp_sync[0].s_per_byte)
    assert b.dp_sync[0].latency_s == a.dp_sync[0].latency_s
    assert b.dp_gather == a.dp_gather
    assert (b.chain.sync_bytes == a.chain.sync_bytes).all()  # the chain counts weight bytes


@settings(max_examples=25, deadline=None)
@given(zero=st.sampled_from([0, 1, 2, 3]), dp=st.sampled_from([2, 4, 8, 16]), m=st.integers(1, 6),
       overlap=st.booleans())
def test_wider_gradients_never_shorten_a_step(zero, dp, m, overlap):
    plan = Plan(tp=16 // dp, pp=1, dp=dp, micro_batch=1, global_batch=dp * m, zero=zero,
                sequence_parallel=dp < 16)
    base = dataclasses.replace(MEGATRON_CORE, dp_overlap=overlap)
    narrow = evaluate_plan(_model(base), plan, check_memory=False)
    wide = evaluate_plan(_model(dataclasses.replace(base, grad_dtype="fp32")), plan, check_memory=False)
    assert wide.step_time_s >= narrow.step_time_s * (1 - 1e-12)
    assert wide.peak_memory_bytes > narrow.peak_memory_bytes
    same = evaluate_plan(_model(dataclasses.replace(base, grad_dtype="bf16")), plan, check_memory=False)
    assert same.step_time_s == narrow.step_time_s  # naming the weights' own dtype changes nothing


def test_cli_sets_the_gradient_dtype_over_the_profile():
    cmd = [sys.executable, "-m", "coda", "train", "--model", "llama2-7b", "--cluster", "dgx-h100", "--devices", "16",
           "--global-batch", "64", "--seq-len", "2048", "--software", "megatron-core", "--tp", "1", "--pp", "1",
           "--dp", "16", "--micro-batch", "1", "--recompute", "none", "--no-sequence-parallel", "--schedule", "1f1b",
           "--virtual-stages", "1", "--zero", "1", "--json"]
    out = {g: subprocess.run(cmd + ["--grad-dtype", g], capture_output=True, text=True) for g in ("bf16", "fp32")}
    assert all(r.returncode == 0 for r in out.values()), {g: r.stderr for g, r in out.items()}
    assert "grad_dtype=fp32" in out["fp32"].stdout
    bad = subprocess.run(cmd + ["--grad-dtype", "fp8"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--grad-dtype" in bad.stderr
