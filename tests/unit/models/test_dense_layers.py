"""Dense layers among MoE ones (`ModelConfig.dense_layers`, GLM-4.5's first layers, Qwen MoE's
`mlp_only_layers`): parameters, graphs, expert parallelism, placement bounds and serving memory."""

import pytest

from coda.arch.clusters import cluster
from coda.errors import ConfigError
from coda.evaluate import inference, training
from coda.evaluate.inference import stage_weight_bytes
from coda.models import build, from_hf_config, get
from coda.placement import Plan
from coda.placement.costs import _expert_params
from coda.placement.optimize import candidate_plans


@pytest.fixture
def air(fixtures_dir):
    return from_hf_config(fixtures_dir / "hf_configs" / "glm4_5_air.json")


def test_glm_air_parameters(air):
    h, a, g, d, E, f, fd = 4096, 96, 8, 128, 128, 1408, 10944
    attn = h * a * d * 2 + 2 * h * g * d
    norms = 2 * h
    dense = attn + norms + 3 * h * fd
    moe = attn + norms + E * 3 * h * f + h * E + 3 * h * f  # experts, router, one shared expert
    emb = 151552 * h
    assert (air.dense_layers, air.dense_ffn_hidden, air.shared_ffn_hidden) == ((0,), fd, f)
    assert air.param_count() == 2 * emb + dense + 45 * moe + h  # untied head and its final norm
    assert air.param_count() == pytest.approx(106e9, rel=0.01)  # model card: 106B
    assert air.active_param_count() == air.param_count() - 45 * (E - 8) * 3 * h * f


def test_qwen_moe_dense_layers_and_config_errors():
    base = {"model_type": "qwen3_moe", "hidden_size": 1024, "intermediate_size": 3072, "moe_intermediate_size": 256,
            "num_experts": 8, "num_experts_per_tok": 2, "num_attention_heads": 8, "num_hidden_layers": 6,
            "vocab_size": 1000, "max_position_embeddings": 4096}
    assert from_hf_config({**base, "decoder_sparse_step": 2}).dense_layers == (0, 2, 4)  # layers 1, 3, 5 are MoE
    c = from_hf_config({**base, "mlp_only_layers": [0, 5]})
    assert (c.dense_layers, c.dense_ffn_hidden, c.block_counts) == ((0, 5), 3072, (2, 4))
    with pytest.raises(ConfigError, match="dense_layers"):
        get("llama2-7b").replace(dense_layers=(0,), dense_ffn_hidden=1024)  # not an MoE model
    with pytest.raises(ConfigError, match="dense_layers"):
        c.replace(dense_ffn_hidden=0)
    with pytest.raises(ConfigError, match="dense_layers"):
        c.replace(dense_layers=tuple(range(6)))


def test_graphs_expert_parallelism_and_memory(air):
    mixed = air.replace(n_layers=4, dense_layers=(0,))
    fwd = build(mixed, "forward", 1, 256, tp=2, sequence_parallel=True, ep=4)
    assert [(g.name, n) for g, n in fwd.layers] == [("embedding", 1), ("block.dense", 1), ("block", 3), ("head", 1)]
    dense, moe = fwd.layers[1][0], fwd.layers[2][0]
    assert dense.by_name("mlp_up").dims["n"] == 2 * 10944 // 2 and _expert_params(dense) == 0
    assert {op.dims["collective"] for op in dense.nodes if op.kind == "collective"} == {"all_gather",
                                                                                         "reduce_scatter"}
    assert {"ep_dispatch", "ep_combine", "router"} <= {op.name for op in moe.nodes}
    assert _expert_params(moe) == 128 // 4 * mixed.mlp_params()
    # ZeRO-1 with ep 4 on 8 devices: the dense layer's weights are split like attention's
    plan = Plan(tp=2, dp=4, ep=4, sequence_parallel=True, zero=1, global_batch=4)
    st = training(mixed, cluster("dgx-h100", 8), plan, 256, check_memory=False).pipeline.stages[0]
    layers = sum(g.param_count() * n for g, n in fwd.layers)
    assert st.weight_bytes == pytest.approx(2 * layers, rel=1e-9)


def test_optimize_bounds_hold_with_dense_layers(air, assert_bounds_hold):
    small = air.replace(n_layers=4, dense_layers=(0, 1), n_experts=8, experts_per_token=2, hidden=1024, n_heads=8,
                        n_kv_heads=8, head_dim=128, ffn_hidden=512, shared_ffn_hidden=512, dense_ffn_hidden=2048,
                        vocab_size=4096)
    plans = candidate_plans(small, 8, 16, 8, micro_batch=1, ep=(1, 2, 4, 8), zero=(0, 1, 3))
    assert {p.ep for p in plans} == {1, 2, 4, 8} and {p.pp for p in plans} >= {1, 2, 4}
    assert_bounds_hold(small, cluster("dgx-h100", 8), 1024, plans)


def test_serving_memory_counts_each_kind(air):
    assert stage_weight_bytes(air, (1, 45), True, True) == 2 * air.param_count()
    with pytest.raises(ConfigError, match="kinds of block"):
        stage_weight_bytes(air, 46, True, True)
    r = inference(air, cluster("dgx-h100", 8), 1, 8, 1024, 64, ep=8)
    experts_off = 45 * (128 - 128 // 8) * air.mlp_params()
    assert r.weights_bytes == 2 * (air.param_count() - experts_off)
    two = inference(air, cluster("dgx-h100", 16), 8, 8, 1024, 64, pp=2)
    first = stage_weight_bytes(air, (1, 22), True, False, tp=8)
    last = stage_weight_bytes(air, (0, 23), False, True, tp=8)
    assert two.weights_bytes == pytest.approx(max(first, last))
