"""`Layout`: one validated value for the parallel dimensions, passed whole to graphs and costs."""

from __future__ import annotations

import pickle
from dataclasses import fields

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from coda.arch.clusters import cluster
from coda.errors import ConfigError, InfeasibleDesign
from coda.models import get
from coda.models.builder import build
from coda.models.config import ModelConfig
from coda.placement import CostModel, Layout, Plan
from coda.placement import rules as R
from coda.placement.layout import GRAPH_FIELDS
from coda.placement.plan import validate_plan

CFG = get("gpt2")  # 12 heads, 12 layers

layouts = st.builds(Layout, tp=st.sampled_from((1, 2, 3, 4, 6, 12)), pp=st.integers(1, 4), dp=st.integers(1, 4),
                    micro_batch=st.integers(1, 4), sequence_parallel=st.booleans(),
                    recompute=st.sampled_from(("none", "selective", "full")), zero=st.sampled_from((0, 1, 2, 3)),
                    cp=st.sampled_from((1, 2)))


@settings(max_examples=40, deadline=None)
@given(layouts)
def test_graphs_from_a_layout_equal_graphs_from_its_keywords(lay: Layout) -> None:
    if R.graph_reasons(CFG, lay, 256):  # the rule and the builder agree on what cannot be built
        with pytest.raises(ConfigError):
            build(CFG, "forward", lay.micro_batch, 256, layout=lay)
        return
    by_layout = build(CFG, "forward", lay.micro_batch, 256, layout=lay)
    by_keywords = build(CFG, "forward", lay.micro_batch, 256, tp=lay.tp, sequence_parallel=lay.sequence_parallel,
                        cp=lay.cp, ep=lay.ep)
    assert [g.flops() for g, _ in by_layout.layers] == [g.flops() for g, _ in by_keywords.layers]
    assert [sorted(op.name for op in g.nodes) for g, _ in by_layout.layers] == \
        [sorted(op.name for op in g.nodes) for g, _ in by_keywords.layers]


@settings(max_examples=40, deadline=None)
@given(layouts, st.integers(1, 64))
def test_a_plan_is_its_layout_plus_batch_and_split(lay: Layout, gb: int) -> None:
    plan = Plan.of(lay, gb)
    assert plan.layout == lay and isinstance(plan, Layout)
    assert plan.n_devices == lay.tp * lay.cp * lay.pp * lay.dp
    assert plan.replicas == lay.dp * lay.cp and plan.stage_devices == lay.tp * lay.cp * lay.dp
    g = plan.graph_layout  # the profile key: the graph fields kept, the rest at their defaults
    for f in fields(Layout):
        assert getattr(g, f.name) == (getattr(lay, f.name) if f.name in GRAPH_FIELDS else f.default)
    assert g == Layout(**{name: getattr(lay, name) for name in GRAPH_FIELDS})
    assert pickle.loads(pickle.dumps(plan)) == plan


def test_validation_is_the_rules() -> None:
    with pytest.raises(ConfigError, match=r"Plan\.tp=0 must be a positive integer"):
        Plan(tp=0)
    with pytest.raises(ConfigError, match=r"Layout\.zero=4 must be one of"):
        Layout(zero=4)
    with pytest.raises(ConfigError, match="needs schedule='interleaved'"):
        Layout(virtual_stages=2)
    assert R.layout_reasons(Layout(pp=2, schedule="interleaved", virtual_stages=2)) == []
    assert Layout(sequence_parallel=True).sequence_parallel is False  # a no-op without tp


def test_the_tp_rule_is_one_function_for_builder_plans_and_enumeration() -> None:
    cfg = ModelConfig(name="gqa12", n_layers=2, hidden=768, n_heads=12, n_kv_heads=4, ffn_hidden=3072,
                      vocab_size=1000, max_seq_len=1024)
    reasons = R.tp_divides_model(cfg, 6)  # divides the heads, not the 4 kv heads (nor is it a multiple of them)
    assert len(reasons) == 1 and "tp=6 must divide n_kv_heads=4" in reasons[0]
    assert R.tp_divides_model(cfg, 4) == [] and R.tp_divides_model(cfg, 12) == []  # 12 replicates kv heads
    with pytest.raises(ConfigError, match="n_kv_heads=4"):
        build(cfg, "forward", 1, 128, tp=6)
    with pytest.raises(InfeasibleDesign, match="n_kv_heads=4"):
        validate_plan(Plan(tp=6, global_batch=1), cfg)
    model = CostModel(cfg, cluster("dgx-a100", 8), 128)
    assert model.graph_reasons(Layout(tp=6)) == reasons
