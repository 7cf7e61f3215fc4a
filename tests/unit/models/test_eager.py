"""PyTorch eager kernel lists (coda.models.eager): checked against the HF modelling code and the
kernel-launching nodes of NeuSight's per-op traces (shared/data/neusight/e2e/*/*.csv)."""

from __future__ import annotations

import pytest

from coda.errors import CodaError
from coda.models import build, get
from coda.models.eager import FAMILIES, eager_backward, eager_forward, hf_family


def _eager(name: str, batch: int = 2, seq: int = 64, training: bool = True, head: str = "lm", dtype: str = "fp32",
           attention: str = "unfused"):
    cfg = get(name)
    return cfg, eager_forward(build(cfg, "forward", batch, seq, dtype=dtype, attention=attention), training, head=head)


def _layer(model, name):
    return next(g for g, _ in model.layers if g.name == name)


def _names(model, layer="block"):
    return [op.name for op in _layer(model, layer).ops()]


# GPT2-large block, training, b > 1, from NeuSight's gpt2_large-train-1024-4 trace: its kernel nodes are
# ln_1, addmm, matmul, truediv, where, softmax, dropout, matmul_1, contiguous, addmm_1, resid_dropout, add,
# ln_2, addmm_2, mul, pow, mul, add, mul, tanh, add, mul, addmm_3, dropout, add; `matmul` and `matmul_1`
# also copy their permuted operands (q, k; v) before the bmm.
GPT2_TRAIN_BLOCK = ["ln1", "c_attn", "q_reshape", "k_reshape", "bmm_scores", "scores_div", "causal_where", "softmax",
                    "attn_dropout", "v_reshape", "bmm_context", "merge_heads", "out_proj", "attn_resid_dropout",
                    "attn_residual", "ln2", "mlp_up", "act.mul", "act.pow", "act.mul_1", "act.add", "act.mul_2",
                    "act.tanh", "act.add_1", "act.mul_3", "mlp_down", "mlp_dropout", "mlp_residual"]


def test_gpt2_block_matches_trace_kernels() -> None:
    _, m = _eager("gpt2", batch=4)
    names = _names(m)
    assert sorted(names) == sorted(GPT2_TRAIN_BLOCK)
    assert [n for n in names if n.startswith("act.")] == [n for n in GPT2_TRAIN_BLOCK if n.startswith("act.")]


def test_inference_has_no_dropout_and_no_loss() -> None:
    _, m = _eager("gpt2", training=False)
    assert not any("dropout" in n for layer, _ in m.layers for n in [op.name for op in layer.nodes])
    assert [g.name for g, _ in m.layers] == ["embedding", "block", "head"]
    _, t = _eager("gpt2", training=True)
    assert [g.name for g, _ in t.layers] == ["embedding", "block", "head", "loss"]
    assert sum("dropout" in n for n in _names(t)) == 3  # attention probs, attention output, MLP output


def test_batch_one_needs_no_matmul_copies() -> None:
    _, m = _eager("gpt2", batch=1)
    assert not {"q_reshape", "k_reshape", "v_reshape"} & set(_names(m))
    assert "merge_heads" in _names(m)  # the permuted context is always made contiguous


def test_bert_kernels() -> None:
    cfg, m = _eager("bert-large", head="pretraining")
    names = _names(m)
    assert {"q_proj", "k_proj", "v_proj", "mask_add", "act"} <= set(names)
    assert "causal_where" not in names and not any(n.startswith("act.") for n in names)  # one erf-gelu kernel
    emb = _names(m, "embedding")
    assert {"token_type_embedding", "embedding_norm", "embedding_dropout"} <= set(emb)
    head = _names(m, "head")
    assert {"pooler", "mlm_transform", "mlm_gelu", "mlm_norm", "mlm_decoder", "nsp"} == set(head) - {"pooler_tanh"}
    _, inf = _eager("bert-large", training=False, head="classification")
    assert set(_names(inf, "head")) == {"pooler", "pooler_tanh", "classifier"}
    assert hf_family(cfg) == "bert"


def test_same_gemm_work_as_builder() -> None:
    """Eager runs the builder's GEMMs (plus nothing else on tensor pipes) and moves more bytes."""
    cfg = get("gpt2")
    fwd = build(cfg, "forward", 2, 64, dtype="fp32", attention="unfused")
    eager = eager_forward(fwd, training=False)
    b, e = _layer(fwd, "block"), _layer(eager, "block")
    assert e.flops(["matmul"]) == pytest.approx(b.flops(["matmul"]))
    assert e.bytes() > b.bytes()
    assert e.number_of_nodes() > b.number_of_nodes()


def test_backward_gemms_and_autograd_kernels() -> None:
    _, m = _eager("gpt2", batch=2)
    bwd = eager_backward(m)
    f, b = _layer(m, "block"), next(g for g, _ in bwd.layers if g.name.startswith("block"))
    assert b.flops(["matmul"]) == pytest.approx(2 * f.flops(["matmul"]))
    names = {op.name for op in b.nodes}
    assert {"c_attn.bias_grad", "attn_dropout.bwd", "ln1.gamma_beta", "c_attn.accumulate_grad"} <= names
    assert "act.add_1.bwd" not in names  # 1 + tanh: the gradient passes through
    drop_f = f.by_name("attn_dropout")
    drop_b = b.by_name("attn_dropout.bwd")  # grad * mask * scale: fp32 grad + 1-byte mask in, fp32 out
    n = drop_f.dims["n_elements"]
    assert drop_b.bytes_read == pytest.approx(4 * n + n) and drop_b.bytes_written == pytest.approx(4 * n)
    no_acc = eager_backward(m, accumulate_grads=False)
    assert not any("accumulate_grad" in op.name for g, _ in no_acc.layers for op in g.nodes)
    for g, _ in bwd.layers:
        assert len({op.name for op in g.nodes}) == g.number_of_nodes()


@pytest.mark.parametrize("name", ["opt-125m", "llama2-7b"])
def test_other_families_build(name: str) -> None:
    cfg, m = _eager(name, batch=2, seq=32, dtype="bf16")
    assert hf_family(cfg) in FAMILIES
    bwd = eager_backward(m)
    assert all(g.number_of_nodes() > 0 for g, _ in bwd.layers)
    _, sdpa = _eager(name, batch=2, seq=32, dtype="bf16", attention="fused")
    assert "sdpa" in _names(sdpa) and "softmax" not in _names(sdpa)


def test_bad_input() -> None:
    cfg = get("gpt2")
    fwd = build(cfg, "forward", 1, 16)
    with pytest.raises(CodaError):
        eager_forward(fwd, True, head="nonsense")
    with pytest.raises(CodaError):
        eager_forward(fwd, True, family="t5")
    with pytest.raises(CodaError):
        eager_forward(fwd, True, head="pretraining")  # BERT only
    with pytest.raises(CodaError):
        eager_forward(build(cfg, "decode", 1, 16), False)
    with pytest.raises(CodaError):
        eager_forward(build(cfg, "forward", 1, 16, tp=2), False)
    with pytest.raises(CodaError):
        eager_forward(build(get("mixtral-8x7b"), "forward", 1, 16), False)
