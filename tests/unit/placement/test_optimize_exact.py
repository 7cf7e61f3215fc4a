"""`optimize` (enumeration + stage DP + branch and bound) equals brute force over all plans and splits.

Small instances: <= 16 devices, <= 8 layers, random layer times (a synthetic layer timer), random
per-layer perturbations of times and sizes (so blocks differ), random memory limits.
"""

import dataclasses
import hashlib
import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coda.arch.clusters import cluster
from coda.errors import InfeasibleDesign
from coda.models.config import ModelConfig
from coda.placement.chain import CostModel, Software
from coda.placement.optimize import candidate_plans, search_plans
from coda.placement.pipeline import evaluate_split, stage_layers_from_bounds
from coda.placement.plan import stage_layers_of


@dataclasses.dataclass(frozen=True)
class RandomLayerTime:
    """Deterministic pseudo-random seconds per graph (1e-4 .. 1e-2), keyed by the graph's content."""

    seed: int

    def __call__(self, graph, device):
        h = hashlib.sha256(f"{self.seed}:{graph.signature()}".encode()).digest()
        return 1e-4 + int.from_bytes(h[:4], "little") / 2**32 * 1e-2


@dataclasses.dataclass(frozen=True)
class HeteroCosts(CostModel):
    """Every unit's time and static memory scaled by its own random factor >= 1 (keeps the search's
    lower bounds valid), so the chain is heterogeneous."""

    seed: int = 0

    def terms(self, plan):
        t = super().terms(plan)
        ch = t.chain
        key = [self.seed, plan.tp, plan.pp, plan.dp, plan.micro_batch, plan.zero, len(plan.recompute),
               int(plan.sequence_parallel), plan.virtual_stages]
        rng = np.random.default_rng(key)
        f_t, f_m = rng.uniform(1, 3, ch.n), rng.uniform(1, 2, ch.n)
        scaled = {f: getattr(ch, f) * f_t for f in ("fwd_s", "bwd_s", "rec_s", "tp_s")}
        scaled.update({f: getattr(ch, f) * f_m for f in ("weight_bytes", "grad_bytes", "optim_bytes", "act_bytes")})
        return dataclasses.replace(t, chain=dataclasses.replace(ch, **scaled))


def brute_force(model, n, gb, **choices):
    best = math.inf
    max_tp = model.cluster.levels[0].size if model.cluster.levels else 1
    L = model.cfg.n_layers
    for plan in candidate_plans(model.cfg, n, gb, max_tp, model.software.attention, **choices):
        if model.graph_reasons(plan):  # the builder rejects some (tp, SP) pairs, as in search_plans
            continue
        terms = model.terms(plan)
        if plan.schedule == "1f1b":
            splits = []
            for cuts in itertools.combinations(range(1, L + 2), plan.pp - 1):
                b = (0, *cuts, L + 2)
                splits.append(stage_layers_from_bounds(list(zip(b[:-1], b[1:]))))
        else:
            splits = [stage_layers_of(plan, L)]
        for sl in splits:
            r = evaluate_split(terms, plan, sl)
            if r.fits:
                best = min(best, r.step_s)
    return best


def check(seed, n, layers, heads, gb, limit_mb, unfused, pp, cp=None, ep=None):
    """search_plans() == brute force, with pp free (None) or fixed (so that the stage split matters),
    and context / expert parallelism among the choices when `cp` / `ep` is given (an MoE model
    with 4 experts, top-2, for `ep`)."""
    choices = {} if pp is None else {"pp": pp}
    if cp is not None:
        choices["cp"] = cp
    moe = {}
    if ep is not None:
        choices["ep"] = ep
        moe = dict(n_experts=4, experts_per_token=2)
    cfg = ModelConfig(name=f"tiny{seed}", n_layers=layers, hidden=32 * heads, n_heads=heads, ffn_hidden=128 * heads,
                      vocab_size=512, max_seq_len=128, **moe)
    cl = cluster("dgx-a100", n)
    sw = Software(attention="unfused" if unfused else "fused", dp_overlap=bool(seed % 2),
                  reserved_bytes=cl.device.hbm_bytes - limit_mb * 2**20)
    model = HeteroCosts(cfg, cl, 64, "bf16", sw, RandomLayerTime(seed), seed=seed)
    want = brute_force(model, n, gb, **choices)
    if not math.isfinite(want):
        with pytest.raises(InfeasibleDesign):
            search_plans(model, n, gb, **choices)
        return
    best, df = search_plans(model, n, gb, **choices)
    assert best.step_time_s == pytest.approx(want, rel=1e-9)
    assert best.fits and best.peak_memory_bytes <= limit_mb * 2**20 * (1 + 1e-12)
    assert df["step_s"].iloc[0] == pytest.approx(want, rel=1e-9)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10**6), n=st.sampled_from([1, 2, 4, 8, 16]), layers=st.integers(1, 8),
       heads=st.sampled_from([2, 4, 8]), gb=st.sampled_from([2, 4, 8]), limit_mb=st.floats(2.0, 40.0),
       unfused=st.booleans(), pp=st.sampled_from([None, 2, 3, 4]))
def test_optimize_equals_brute_force(seed, n, layers, heads, gb, limit_mb, unfused, pp):
    check(seed, n, layers, heads, gb, limit_mb, unfused, pp)


def _seeded_cases(count=16):
    """Seeded random pipelined instances (pp fixed to 2 or 4), where unbalanced splits often win."""
    rng = np.random.default_rng(2024)
    cases = []
    while len(cases) < count:
        n, layers, pp = int(rng.choice([4, 8, 16])), int(rng.integers(2, 9)), int(rng.choice([2, 4]))
        if pp <= layers:
            cases.append((int(rng.integers(10**6)), n, layers, int(rng.choice([2, 4, 8])), int(rng.choice([2, 4, 8])),
                          float(rng.uniform(2, 40)), bool(rng.integers(2)), pp))
    return cases


@pytest.mark.parametrize("case", _seeded_cases(), ids=lambda c: f"seed{c[0]}-n{c[1]}-l{c[2]}-pp{c[7]}")
def test_optimize_equals_brute_force_seeded(case):
    check(*case)


@pytest.mark.parametrize("case", _seeded_cases(8), ids=lambda c: f"cp-seed{c[0]}-n{c[1]}-l{c[2]}-pp{c[7]}")
def test_optimize_with_context_parallelism_equals_brute_force(case):
    """The same, with cp in {1, 2} enumerated (fused attention, which context parallelism needs)."""
    seed, n, layers, heads, gb, limit_mb, _, pp = case
    check(seed, n, layers, heads, gb, limit_mb, False, pp, cp=(1, 2))


@pytest.mark.parametrize("case", _seeded_cases(8), ids=lambda c: f"ep-seed{c[0]}-n{c[1]}-l{c[2]}-pp{c[7]}")
def test_optimize_with_expert_parallelism_equals_brute_force(case):
    """The same for an MoE model, with ep in {1, 2, 4} enumerated."""
    seed, n, layers, heads, gb, limit_mb, unfused, pp = case
    check(seed, n, layers, heads, gb, limit_mb, unfused, pp, ep=(1, 2, 4))
