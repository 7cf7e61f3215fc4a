"""Preemption by swapping (`SchedulerConfig(preemption="swap")`): the same run as recomputation when
nothing is preempted; with preemption, every block swapped out comes back and each iteration's time
is its compute plus blocks x bytes per block / host-link bandwidth (closed form, under a constant
iteration cost); property tests over generated traces."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coda.arch.clusters import cluster
from coda.arch.gpus import gpu
from coda.errors import ConfigError, UnknownNameError
from coda.models import get
from coda.serving.deployment import Deployment
from coda.serving.schedulers import SchedulerConfig
from coda.serving.schedulers.base import DEFAULT_SWAP_SPACE_BYTES, Preemption
from coda.serving.simulate import host_blocks, simulate, swap_s_per_block
from coda.serving.trace import Trace
from coda.units import GiB

STEP_S = 0.01


class ConstantCost:
    """Every iteration (and every pipeline stage of it) takes STEP_S, no hops: the timeline is then
    iterations x STEP_S plus the swaps, in closed form."""

    def __init__(self, pp: int = 1) -> None:
        self.pp = pp

    def stage_times(self, shape):
        return np.full(self.pp, STEP_S)

    def hops(self, tokens, decodes):
        return 0.0, 0.0

    def decode_steps(self, kv, m):
        return np.full(m, STEP_S)


@pytest.fixture(scope="module")
def llama7():
    return get("llama2-7b")


def deployment(cfg, kind: str, preemption: str, blocks: int, pp: int = 1, swap_space: float | None = None):
    """llama2-7b on H100s with its KV budget cut to `blocks` blocks (the reserve takes the rest)."""
    cl = cluster("dgx-h100", pp)
    sc = SchedulerConfig(kind=kind, max_batch=64, max_tokens=4096, chunk=512)
    full = Deployment(cfg, cl, pp=pp, scheduler=sc).kv_budget()
    reserve = Deployment(cfg, cl, pp=pp).reserve_bytes + (full.blocks - blocks) * full.bytes_per_block
    kw = {} if swap_space is None else {"swap_space_bytes": swap_space}
    sc = SchedulerConfig(kind=kind, max_batch=64, max_tokens=4096, chunk=512, preemption=preemption, **kw)
    dep = Deployment(cfg, cl, pp=pp, reserve_bytes=reserve, scheduler=sc)
    assert dep.kv_budget().blocks == blocks
    return dep


def test_config_parses_and_refuses():
    assert SchedulerConfig(preemption="SWAP").preemption is Preemption.SWAP
    assert SchedulerConfig().preemption is Preemption.RECOMPUTE  # the default stays vLLM v0's
    assert SchedulerConfig().swap_space_bytes == 4 * GiB == DEFAULT_SWAP_SPACE_BYTES
    with pytest.raises(UnknownNameError, match="preemption"):
        SchedulerConfig(preemption="evict")
    with pytest.raises(ConfigError, match="swap_space_bytes"):
        SchedulerConfig(swap_space_bytes=-1)


def test_block_transfer_time_and_host_blocks(llama7):
    dep = deployment(llama7, "vllm", "swap", 100)
    b = dep.kv_budget()
    # 16 tokens x 32 layers x (K and V) x 4096 x 2 bytes = 8 MiB per block, over PCIe Gen5 x16 each way
    assert b.bytes_per_block == 16 * 32 * 2 * 4096 * 2
    assert swap_s_per_block(dep, b) == pytest.approx(b.bytes_per_block / 64e9, rel=1e-12)
    assert gpu("h100-sxm").host_link_bw_each_way_bytes_per_s == 64e9
    assert host_blocks(dep, b) == 4 * GiB // b.bytes_per_block == 512


def test_same_results_without_preemption(llama7):
    tr = Trace(np.linspace(0, 2, 40), np.full(40, 300), np.full(40, 60))
    for kind in ("vllm", "sarathi"):
        a = simulate(deployment(llama7, kind, "recompute", 2000), tr)
        b = simulate(deployment(llama7, kind, "swap", 2000), tr)
        assert a.summary()["preemptions"] == 0
        pd.testing.assert_frame_equal(a.requests, b.requests)
        pd.testing.assert_frame_equal(a.iterations, b.iterations)
        pd.testing.assert_frame_equal(a.tbt, b.tbt)


def _check_swap_closed_form(dep, trace):
    r = simulate(dep, trace, cost=ConstantCost())
    it = r.iterations
    tau = swap_s_per_block(dep, dep.kv_budget())
    moved = it["swap_out_blocks"] + it["swap_in_blocks"]
    # each iteration: its compute, plus every block moved before it at one block per tau
    np.testing.assert_allclose(it["end_s"] - it["start_s"], it["steps"] * STEP_S + moved * tau, rtol=1e-9, atol=1e-12)
    assert it["swap_out_blocks"].sum() == it["swap_in_blocks"].sum()  # every block swapped out came back
    assert (r.requests["generated_tokens"] == r.requests["output_tokens"]).all()
    return r, tau


def test_swap_costs_are_the_closed_form(llama7):
    n = 12
    tr = Trace(np.zeros(n), np.full(n, 200), np.full(n, 300))
    dep = deployment(llama7, "vllm", "swap", 120)
    r, tau = _check_swap_closed_form(dep, tr)
    s = r.summary()
    assert s["preemptions"] > 0 and s["swapped_blocks"] > 0
    # the replica never idles (everything arrives at 0): the makespan is the compute plus the transfers
    assert s["makespan_s"] == pytest.approx(s["iterations"] * STEP_S + s["swapped_blocks"] * tau, rel=1e-12)
    # a swapped request keeps its KV cache: no prompt is prefilled twice
    assert r.iterations["prefill_tokens"].sum() == 200 * n
    rec = simulate(deployment(llama7, "vllm", "recompute", 120), tr, cost=ConstantCost())
    assert rec.iterations["prefill_tokens"].sum() > 200 * n  # recomputation re-prefills
    assert rec.summary()["swapped_blocks"] == 0


def test_no_swap_space_falls_back_to_recomputation(llama7):
    n = 12
    tr = Trace(np.zeros(n), np.full(n, 200), np.full(n, 300))
    a = simulate(deployment(llama7, "vllm", "swap", 120, swap_space=0.0), tr, cost=ConstantCost())
    b = simulate(deployment(llama7, "vllm", "recompute", 120), tr, cost=ConstantCost())
    pd.testing.assert_frame_equal(a.requests, b.requests)
    assert a.summary()["swapped_blocks"] == 0


@st.composite
def traces(draw):
    n = draw(st.integers(2, 24))
    gaps = draw(st.lists(st.floats(0, 0.2), min_size=n, max_size=n))
    prompt = draw(st.lists(st.integers(1, 400), min_size=n, max_size=n))
    output = draw(st.lists(st.integers(1, 300), min_size=n, max_size=n))
    return Trace(np.cumsum(gaps) - gaps[0], np.asarray(prompt), np.asarray(output))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(trace=traces(), kind=st.sampled_from(["vllm", "sarathi"]), blocks=st.integers(48, 200),
       space=st.sampled_from([None, 64 * 2**20, 0.0]))
def test_swap_properties(llama7, trace, kind, blocks, space):
    dep = deployment(llama7, kind, "swap", blocks, swap_space=space)
    r, _ = _check_swap_closed_form(dep, trace)
    rec = simulate(deployment(llama7, kind, "recompute", blocks), trace, cost=ConstantCost())
    if r.summary()["preemptions"] == 0:
        assert rec.summary()["preemptions"] == 0
        pd.testing.assert_frame_equal(r.requests, rec.requests)
    if space == 0.0:  # no swap space: every preemption recomputes
        pd.testing.assert_frame_equal(r.requests, rec.requests)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(trace=traces(), kind=st.sampled_from(["vllm", "sarathi"]), blocks=st.integers(48, 160))
def test_swap_with_pipeline_stages_finishes(llama7, trace, kind, blocks):
    dep = deployment(llama7, kind, "swap", blocks, pp=2)
    r = simulate(dep, trace, cost=ConstantCost(pp=2))
    assert (r.requests["generated_tokens"] == r.requests["output_tokens"]).all()
    it = r.iterations
    assert it["swap_out_blocks"].sum() == it["swap_in_blocks"].sum()


def test_the_sentence_names_the_preemptions(llama7):
    from coda.serving.report import sentence

    n = 12
    tr = Trace(np.zeros(n), np.full(n, 200), np.full(n, 300))
    for mode, words in (("swap", "KV block transfers to and from host memory"), ("recompute", "by recomputation")):
        dep = deployment(llama7, "vllm", mode, 120)
        s = simulate(dep, tr, cost=ConstantCost()).summary()
        assert f"; {s['preemptions']:.0f} preemptions" in sentence(dep.describe(), n, s, None)
        assert words in sentence(dep.describe(), n, s, None)
    quiet = simulate(deployment(llama7, "vllm", "swap", 2000), tr, cost=ConstantCost()).summary()
    assert "preemptions" not in sentence("x", n, quiet, None)
