"""The simulator against closed forms (a single request, a saturated static batch, an M/D/1
queue), monotonicity in load, conservation, KV-block accounting and aggregation."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from coda.arch.clusters import cluster
from coda.evaluate import inference
from coda.models import get
from coda.serving.costs import BatchShape, CostTable, IterationCost
from coda.serving.deployment import Deployment
from coda.serving.schedulers import SchedulerConfig
from coda.serving.simulate import simulate
from coda.serving.trace import Lengths, Trace, generate

KINDS = ("static", "orca", "vllm", "sarathi")


def _trace(arrivals, prompts, outputs):
    return Trace(np.asarray(arrivals, float), np.asarray(prompts, np.int64), np.asarray(outputs, np.int64))


@pytest.fixture(scope="module")
def small():
    """Llama-2-7B on one H100 and its cost table (shared by the tests of this module)."""
    dep = Deployment(get("llama2-7b"), cluster("dgx-h100", 1), scheduler=SchedulerConfig(max_batch=64))
    return dep, CostTable.for_deployment(dep)


def _dep(base, **sched):
    return Deployment(base.model, base.cluster, tp=base.tp, pp=base.pp,
                      scheduler=SchedulerConfig(**{"max_batch": 64, **sched}))


@pytest.mark.parametrize("kind", KINDS)
def test_single_request(small, kind):
    """TTFT = the prefill, then output - 1 decode steps at contexts p .. p + O - 2."""
    base, tab = small
    p, o = 300, 6
    r = simulate(_dep(base, kind=kind), _trace([0.5], [p], [o]), cost=tab)
    row = r.requests.iloc[0]
    cost = tab.cost
    assert row["ttft_s"] == pytest.approx(cost.iteration_s(BatchShape.of([p])), rel=1e-3)
    steps = [cost.iteration_s(BatchShape.of(decode_context=[p + j])) for j in range(o - 1)]
    assert row["e2e_s"] - row["ttft_s"] == pytest.approx(sum(steps), rel=1e-3)
    np.testing.assert_allclose(np.sort(r.tbt["tbt_s"]), np.sort(steps), rtol=1e-3)
    assert row["queue_s"] == 0.0


@pytest.mark.parametrize("pp", [1, 2])
def test_saturated_static_batch_is_the_static_model(llama70, h100x8, pp):
    """b requests at t = 0, one static batch of b: TTFT and the batch's time as coda.evaluate.inference
    (O <= 8, so inference evaluates every decode context; it counts O steps, the simulator O - 1)."""
    b, p, o = 8, 512, 6
    dep = Deployment(llama70, h100x8, tp=4, pp=pp, replicas=1,
                     scheduler=SchedulerConfig(kind="static", max_batch=b))
    r = simulate(dep, _trace([0.0] * b, [p] * b, [o] * b), cost=IterationCost(dep))
    ref = inference(llama70, h100x8, 4, b, p, o, pp=pp)
    # the static model's TTFT is its last micro-batch's first token
    assert r.requests["ttft_s"].max() == pytest.approx(ref.ttft_s, rel=1e-9)
    if pp == 1:
        np.testing.assert_allclose(r.requests["e2e_s"], ref.e2e_s - ref.tpot_last_s, rtol=1e-9)


def test_md1_queue(small):
    """One server, batch 1, deterministic service S (one output token: the prefill), Poisson
    arrivals at rho = 0.3: mean wait rho*S / (2(1 - rho)) (Pollaczek-Khinchine). 40,000
    requests: the standard error of the mean wait is about 1.5% of it here."""
    base, tab = small
    dep = _dep(base, kind="static", max_batch=1)
    S = tab.cost.iteration_s(BatchShape.of([256]))
    rho = 0.3
    tr = generate(40000, rho / S, Lengths("fixed", 256), Lengths("fixed", 1), seed=7)
    r = simulate(dep, tr, cost=tab)
    np.testing.assert_allclose(r.requests["e2e_s"] - r.requests["queue_s"], S, rtol=1e-9)
    assert r.requests["queue_s"].mean() == pytest.approx(rho * S / (2 * (1 - rho)), rel=0.05)


@pytest.mark.parametrize("kind", KINDS)
def test_more_load_no_lower_latency(small, kind):
    """The same requests arriving faster (arrival times scaled down): percentiles do not fall."""
    base, tab = small
    tr = generate(400, 1.0, Lengths("uniform", 32, 1024), Lengths("uniform", 8, 256), seed=3)
    out = []
    for scale in (1.0, 0.25, 0.05):
        t = Trace(tr.arrival_s * scale, tr.prompt_tokens, tr.output_tokens)
        out.append(simulate(_dep(base, kind=kind), t, cost=tab).summary())
    for key in ("ttft_p50_s", "ttft_p90_s", "ttft_p99_s", "e2e_p50_s", "e2e_p90_s", "e2e_p99_s"):
        vals = [s[key] for s in out]
        assert vals == sorted(vals), (key, vals)


@pytest.mark.parametrize("kind", KINDS)
def test_aggregation_changes_nothing(small, kind):
    base, tab = small
    tr = generate(300, 4.0, Lengths("uniform", 32, 1024), Lengths("uniform", 8, 300), seed=11)
    a = simulate(_dep(base, kind=kind), tr, cost=tab)
    b = simulate(_dep(base, kind=kind), tr, cost=tab, aggregate=False)
    cols = ["ttft_s", "e2e_s", "queue_s", "tpot_s", "max_tbt_s", "preemptions"]
    # the same sums of step times in another order: equal to a nanosecond
    np.testing.assert_allclose(a.requests[cols].to_numpy(float), b.requests[cols].to_numpy(float), rtol=1e-9,
                               atol=1e-9)
    assert len(a.tbt) == len(b.tbt)
    assert a.summary()["iterations"] == b.summary()["iterations"]


def _tiny_kv(base, kind, blocks_left):
    """A deployment whose replica has room for about `blocks_left` KV blocks of 16 tokens."""
    dep = _dep(base, kind=kind)
    b = dep.kv_budget()
    reserve = base.reserve_bytes + (b.blocks - blocks_left) * b.bytes_per_block
    return Deployment(base.model, base.cluster, reserve_bytes=reserve,
                      scheduler=SchedulerConfig(kind=kind, max_batch=64))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(kind=st.sampled_from(KINDS), seed=st.integers(0, 10**6), n=st.integers(1, 40),
       rate=st.floats(0.5, 200.0), blocks=st.integers(70, 400))
def test_kv_blocks_within_budget_and_conservation(small, kind, seed, n, rate, blocks):
    """Random traces on a small KV budget (preemptions happen): blocks in use never exceed the
    budget, and every request finishes once with exactly its output tokens."""
    base, tab = small
    dep = _tiny_kv(base, kind, blocks)
    tr = generate(n, rate, Lengths("uniform", 1, 600), Lengths("uniform", 1, 400), seed=seed)
    r = simulate(dep, tr, cost=tab)
    budget = dep.kv_budget().blocks
    assert r.iterations["kv_blocks"].max() <= budget
    assert (r.iterations["kv_blocks"] >= 0).all()
    rq = r.requests
    assert (rq["generated_tokens"] == rq["output_tokens"]).all()
    assert rq["e2e_s"].notna().all() and (rq["e2e_s"] >= rq["ttft_s"]).all() and (rq["ttft_s"] > 0).all()
    assert len(r.tbt) == int((rq["output_tokens"] - 1).sum())  # one gap between consecutive tokens
    if kind in ("static", "orca"):
        assert rq["preemptions"].sum() == 0


def test_preemption_happens_on_a_small_budget(small):
    base, tab = small
    dep = _tiny_kv(base, "vllm", 80)
    tr = generate(30, 100.0, Lengths("fixed", 200), Lengths("fixed", 300), seed=1)
    r = simulate(dep, tr, cost=tab)
    assert r.requests["preemptions"].sum() > 0
    assert (r.requests["generated_tokens"] == 300).all()


def test_router_spreads_requests(llama70, h100x8):
    tr = generate(40, 5.0, Lengths("fixed", 100), Lengths("fixed", 20), seed=2)
    for policy in ("round_robin", "least_outstanding"):
        dep = Deployment(llama70, h100x8, tp=2, router=policy, scheduler=SchedulerConfig(kind="orca"))
        r = simulate(dep, tr)
        counts = np.bincount(r.requests["replica"], minlength=4)
        assert counts.min() >= 5, (policy, counts)
    rr = simulate(Deployment(llama70, h100x8, tp=2), tr)
    assert (rr.requests["replica"].to_numpy() == np.arange(40) % 4).all()


def test_goodput_and_summary(small):
    from coda.serving.metrics import SLO

    base, tab = small
    tr = generate(200, 5.0, Lengths("uniform", 32, 512), Lengths("uniform", 8, 128), seed=4)
    s = simulate(_dep(base, kind="sarathi", chunk=256), tr, cost=tab, slo=SLO(ttft_s=1e-9)).summary()
    assert s["slo_attainment"] == 0.0 and s["goodput_requests_per_s"] == 0.0
    s = simulate(_dep(base, kind="sarathi", chunk=256), tr, cost=tab, slo=SLO(ttft_s=100.0, tpot_s=100.0)).summary()
    assert s["slo_attainment"] == 1.0
    assert s["goodput_requests_per_s"] == pytest.approx(s["requests_per_s"])
    assert s["tokens_per_s_per_watt"] == pytest.approx(s["tokens_per_s"] / 700.0)
    assert s["ttft_p50_s"] <= s["ttft_p90_s"] <= s["ttft_p99_s"]
