"""PyTorch eager execution of Hugging Face models: the kernels it launches, forward and backward.

`eager_forward(model, training)` rewrites a forward `ModelGraph` from `builder.build` (phase
``forward``, `attention="unfused"`; ``fused`` means HF's SDPA attention) op by op into the
kernel sequence that PyTorch 2.x eager mode runs for the Hugging Face implementation of the
model family; `eager_backward` is `backward.backward_graph` of it, corrected to what autograd
runs. Both are pure functions. The kernel lists follow the HF modelling code (transformers 4.3x,
`attn_implementation="eager"`) and were checked against the per-op traces of NeuSight
(`shared/data/neusight/e2e/*/*.csv`).

Legend: b batch, s sequence, T = b*s tokens, h hidden, a/g query/kv heads, d head dim, f FFN
width, V vocabulary, e element bytes. Per block, forward (GPT-2; training-only kernels in []):
  ln_1 -> addmm c_attn (bias in the cuBLAS epilogue, no bias kernel) -> [q, k reshape copies
  when b > 1: torch.matmul folds (b, a) of a permuted view] -> bmm QK^T -> truediv sqrt(d)
  -> where(causal) -> softmax -> [dropout] -> [v copy] -> bmm PV -> contiguous (merge heads)
  -> addmm c_proj -> [dropout] -> add -> ln_2 -> addmm c_fc -> gelu_new as 8 kernels
  (mul, pow, mul, add, mul, tanh, add, mul) -> addmm c_proj -> [dropout] -> add
BERT: three q/k/v addmm, an additive (b, 1, 1, s) mask instead of `where`, one erf-gelu kernel,
post-LN; embeddings add token-type rows and end in LayerNorm + [dropout]. OPT: q scaled by a
kernel, additive mask then `max(., finfo.min)`, relu. Llama: RMSNorm as its fp32 chain,
rotary embedding as 5 kernels per tensor, GQA `repeat_kv` copies, SiLU * up.

Backward (autograd, PyTorch 2.1 `derivatives.yaml`): addmm -> dgrad + wgrad GEMMs and a bias
`sum(0)` reduction; native_dropout -> grad * mask * scale (reads grad and the 1-byte mask);
scalar div/mul -> one kernel; where -> one; additive mask -> none; tanh/gelu/relu -> one
kernel reading grad and the saved tensor; tensor mul -> two; pow -> three; LayerNorm -> dx and
a gamma/beta reduction kernel; embedding -> zero-fill of the V x h gradient and a scatter;
gradients of a tensor used k times are summed by k-1 add kernels; with `accumulate_grads` each
parameter's gradient is added into its existing `.grad` (AccumulateGrad; NeuSight never zeroes
gradients, as in gradient accumulation). Dropout probabilities are the HF defaults (0.1 for
GPT-2, BERT, OPT residuals; 0 for OPT attention and Llama), since `ModelConfig` has none.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from coda.errors import ConfigError
from coda.models import ops as O
from coda.models.backward import backward_graph
from coda.models.config import ModelConfig
from coda.models.graph import ModelGraph, OpGraph
from coda.models.ops import Op
from coda.units import dtype_bytes

FAMILIES = ("gpt2", "bert", "opt", "llama")
HEADS = ("lm", "pretraining", "classification")
NUM_LABELS = 2  # HF default `num_labels` of a classification head
# Backward kernel spec of an eager op: (suffix, elements, tensors read, tensors written, extra
# bytes read per element). For elementwise/embedding ops it is the whole backward; for other
# kinds it runs after `backward_graph`'s ops (bias reductions, gradient sums, copies).
Spec = tuple[tuple[str, int, int, int, float], ...]


def hf_family(cfg: ModelConfig) -> str:
    """The Hugging Face family whose eager kernels model `cfg`: bidirectional -> ``bert``,
    gated (SwiGLU) -> ``llama``, relu -> ``opt``, else ``gpt2``."""
    if not cfg.causal:
        return "bert"
    return "llama" if cfg.gated else "opt" if cfg.mlp == "relu" else "gpt2"


def _pw(name: str, n: int, dt: str, fn: str, bwd: Spec, inputs: int = 1, flops: float = 1.0,
        extra_read: float = 0.0, extra_write: float = 0.0, out_dtype: str | None = None, out: int | None = None) -> Op:
    """A pointwise kernel over `n` elements: `inputs` tensors read, `out` (default n) elements of
    `out_dtype` written, plus `extra_read`/`extra_write` bytes (broadcast operands, masks)."""
    e, eo = dtype_bytes(dt), dtype_bytes(out_dtype or dt)
    shape = (("n_elements", n), ("n_inputs", inputs), ("n_outputs", 1), ("fn", fn), ("autograd", bwd))
    written = (n if out is None else out) * eo + extra_write
    return Op(name, "elementwise", shape, flops * n, inputs * n * e + extra_read, written, 0.0, dt)


def _with_spec(op: Op, bwd: Spec) -> Op:
    return dataclasses.replace(op, shape=op.shape + (("autograd", bwd),)) if bwd else op


def _copy(name: str, n: int, dt: str, bwd: bool = False) -> Op:
    """A strided-to-contiguous copy; its gradient comes back strided and is copied once if `bwd`."""
    return _pw(name, n, dt, "copy", (("bwd", n, 1, 1, 0.0),) if bwd else (), flops=0.0)


def _unary(name: str, n: int, dt: str, fn: str) -> Op:
    """y = f(x); backward reads grad and x (or y), writes dx."""
    return _pw(name, n, dt, fn, (("bwd", n, 2, 1, 0.0),), flops=4.0 if fn in ("tanh", "gelu", "silu") else 1.0)


def _scale(name: str, n: int, dt: str) -> Op:
    """Multiply or divide by a scalar; backward is the same scaling of the gradient."""
    return _pw(name, n, dt, "scale", (("bwd", n, 1, 1, 0.0),))


def _dropout(name: str, n: int, dt: str) -> Op:
    """native_dropout: reads x, writes y and a 1-byte keep mask; backward grad * mask * scale."""
    return _pw(name, n, dt, "dropout", (("bwd", n, 1, 1, 1.0),), flops=2.0, extra_write=float(n))


def _residual(name: str, n: int, dt: str) -> Op:
    """Residual add; in backward autograd sums the two gradients of the residual stream."""
    return _pw(name, n, dt, "add", (("bwd", n, 2, 1, 0.0),), inputs=2)


def _linear(name: str, rows: int, k: int, n: int, dt: str, bias: bool, extra: Spec = (), weight: bool = True) -> Op:
    """`F.linear` / Conv1D: one GEMM (cuBLAS addmm adds the bias in its epilogue); backward adds
    the bias gradient `grad.sum(0)` (reads rows x n) to the dgrad and wgrad GEMMs."""
    op = O.matmul(rows, k, n, dtype=dt, name=name, weight=weight, bias=bias)
    return _with_spec(op, ((("bias_grad", rows * n, 1, 0, 0.0),) if bias else ()) + extra)


def _tiny(name: str, n: int, dt: str) -> Op:
    """A small setup kernel without gradient (position ids, mask preparation)."""
    return _pw(name, n, dt, "setup", (), flops=1.0)


def _layernorm(name: str, rows: int, cols: int, dt: str) -> Op:
    """LayerNorm; backward also runs the gamma/beta reduction kernel (reads dy and x)."""
    return _with_spec(O.layernorm(rows, cols, dt, name), (("gamma_beta", rows * cols, 2, 0, 0.0),))


def _embedding(name: str, tokens: int, hidden: int, vocab: int, dt: str) -> Op:
    """Gather; backward zero-fills the vocab x hidden gradient, then scatters the token rows."""
    op = O.embedding(tokens, hidden, vocab, dt, name)
    return _with_spec(op, (("zero", vocab * hidden, 0, 1, 0.0), ("scatter", tokens * hidden, 1, 1, 0.0)))


class _X:
    """Sizes of one eager rewrite, read from the builder's ModelGraph."""

    def __init__(self, model: ModelGraph, training: bool, family: str, head: str) -> None:
        cfg = model.config
        self.cfg, self.fam, self.head, self.train, self.dt = cfg, family, head, training, model.dtype
        self.b, self.s = model.batch, model.seq_len
        self.T, self.h, self.a, self.g = self.b * self.s, cfg.hidden, cfg.n_heads, cfg.n_kv_heads or cfg.n_heads
        self.d, self.f, self.V = cfg.head_dim or 0, cfg.ffn_hidden, cfg.vocab_size
        self.A = self.b * self.a * self.s * self.s  # score-matrix elements
        self.qd, self.kd = self.a * self.d, self.g * self.d
        p_resid = {"gpt2": 0.1, "bert": 0.1, "opt": 0.1, "llama": 0.0}[family]
        p_attn = {"gpt2": 0.1, "bert": 0.1, "opt": 0.0, "llama": 0.0}[family]
        self.resid_drop, self.attn_drop = training and p_resid > 0, training and p_attn > 0

    def drop(self, name: str, n: int, attn: bool = False) -> list[Op]:
        return [_dropout(name, n, self.dt)] if (self.attn_drop if attn else self.resid_drop) else []


def _rmsnorm(x: _X, name: str, rows: int) -> list[Op]:
    """HF LlamaRMSNorm: to(fp32), pow 2, mean, add eps, rsqrt, mul, to(dtype), mul weight."""
    n, dt, up = rows * x.h, x.dt, "fp32"
    chain = ([_pw(f"{name}.to_fp32", n, dt, "copy", (("bwd", n, 1, 1, 0.0),), flops=0.0, out_dtype=up)]
             if dt != up else [])
    chain += [
        _pw(f"{name}.pow", n, up, "pow", (("bwd", n, 2, 1, 0.0), ("sum_grad_x", n, 2, 1, 0.0))),
        _pw(f"{name}.mean", n, up, "reduce", (("bwd", n, 1, 1, 0.0),), out=rows),
        _tiny(f"{name}.add_eps", rows, up), _tiny(f"{name}.rsqrt", rows, up),
        _pw(f"{name}.mul", n, up, "mul", (("bwd", n, 2, 1, 0.0), ("bwd_rstd", n, 2, 0, 0.0)), extra_read=rows * 4.0),
    ]
    if dt != up:
        chain.append(_pw(f"{name}.to_dtype", n, up, "copy", (("bwd", n, 1, 1, 0.0),), flops=0.0, out_dtype=dt))
    weight = _pw(f"{name}.weight", n, dt, "mul", (("bwd", n, 1, 1, 0.0), ("wgrad", n, 2, 0, 0.0)))
    return chain + [dataclasses.replace(weight, param_bytes=float(x.h * dtype_bytes(dt)))]


def _norm(x: _X, name: str, rows: int) -> list[Op]:
    return _rmsnorm(x, name, rows) if x.cfg.norm == "rmsnorm" else [_layernorm(name, rows, x.h, x.dt)]


def _activation(x: _X) -> list[Op]:
    n, dt = x.T * x.f, x.dt
    if x.fam == "gpt2" and x.cfg.mlp == "gelu":  # gelu_new: 0.5*x*(1+tanh(sqrt(2/pi)*(x+0.044715*x^3)))
        return [_scale("act.mul", n, dt),
                _pw("act.pow", n, dt, "pow", (("pow2", n, 1, 1, 0.0), ("mul3", n, 1, 1, 0.0),
                                              ("mul_grad", n, 2, 1, 0.0), ("sum_grad_x", n, 2, 1, 0.0))),
                _scale("act.mul_1", n, dt), _residual("act.add", n, dt), _scale("act.mul_2", n, dt),
                _unary("act.tanh", n, dt, "tanh"), _pw("act.add_1", n, dt, "add_scalar", ()),
                _pw("act.mul_3", n, dt, "mul", (("grad_a", n, 2, 1, 0.0), ("grad_b", n, 2, 1, 0.0)), inputs=2)]
    if x.cfg.gated:  # act_fn(gate) * up
        return [_unary("act.silu", n, dt, "silu"),
                _pw("act.mul", n, dt, "mul", (("grad_a", n, 2, 1, 0.0), ("grad_b", n, 2, 1, 0.0)), inputs=2)]
    return [_unary("act", n, dt, "relu" if x.cfg.mlp == "relu" else "gelu")]


def _rope(x: _X) -> list[Op]:
    """HF apply_rotary_pos_emb on q and k: q*cos, rotate_half (neg, cat), *sin, add; then
    `repeat_kv` copies k and v to all query heads (GQA)."""
    T, dt, out = x.T, x.dt, []
    for t, n in (("q", T * x.qd), ("k", T * x.kd)):
        out += [_pw(f"rope_{t}.mul_cos", n, dt, "mul", (("bwd", n, 1, 1, 0.0),)),
                _pw(f"rope_{t}.neg", n // 2, dt, "scale", (("bwd", n // 2, 1, 1, 0.0),)),
                _copy(f"rope_{t}.cat", n, dt, bwd=True),
                _pw(f"rope_{t}.mul_sin", n, dt, "mul", (("bwd", n, 1, 1, 0.0),)), _residual(f"rope_{t}.add", n, dt)]
    if x.a > x.g:
        out += [_copy(f"repeat_kv_{t}", T * x.qd, dt, bwd=True) for t in ("k", "v")]
    return out


def _attention_core(x: _X) -> dict[str, list[Op]]:
    """Unfused scores, mask, softmax and context, as the family's eager attention runs them.

    torch.matmul folds (b, a) of a permuted view with `reshape`, which copies when b > 1;
    OPT's `_shape` makes q, k, v contiguous first; Llama's rotary output is contiguous. The
    gradients of q, k, v reach a transposed view that is copied back to (b, s, h).
    """
    dt, T, A, folded, fam = x.dt, x.T, x.A, x.b > 1, x.fam
    view_back = (("grad_view_back", T * x.qd, 1, 1, 0.0),) if fam != "opt" else ()
    scores: list[Op] = []
    if fam == "opt":
        scores += [_scale("q_scaling", T * x.qd, dt)] + [_copy(f"{t}_shape", T * x.qd, dt, bwd=True) for t in "qkv"]
    elif folded and fam != "llama":
        scores += [_copy("q_reshape", T * x.qd, dt), _copy("k_reshape", T * x.qd, dt)]
    scores.append(_with_spec(O.matmul(x.s, x.d, x.s, batch=x.b * x.a, dtype=dt, name="bmm_scores"), view_back * 2))
    mask: list[Op] = [] if fam == "opt" else [_scale("scores_div", A, dt)]
    if fam == "gpt2":
        mask.append(_pw("causal_where", A, dt, "where", (("bwd", A, 1, 1, 0.0),), extra_read=x.s * x.s * 1.0))
    else:  # additive mask: BERT (b, 1, 1, s), OPT and Llama (b, 1, s, s); its gradient passes through
        mask_elements = x.b * x.s * (1 if fam == "bert" else x.s)
        mask.append(_pw("mask_add", A, dt, "add_mask", (), extra_read=float(mask_elements * dtype_bytes(dt))))
    if fam == "opt":
        mask.append(_pw("mask_max", A, dt, "max", (("bwd", A, 2, 1, 0.0),)))
    soft = [O.softmax(x.b * x.a * x.s, x.s, dt, name="softmax")] + x.drop("attn_dropout", A, attn=True)
    if fam == "llama" and dt != "fp32":  # softmax(dtype=float32).to(q.dtype)
        soft.append(_pw("softmax.to_dtype", A, "fp32", "copy", (("bwd", A, 1, 1, 0.0),), flops=0.0, out_dtype=dt))
    v_copy = folded and fam in ("gpt2", "bert") or (fam == "llama" and folded and x.a == x.g)
    context = [_copy("v_reshape", T * x.qd, dt)] if v_copy else []
    context.append(_with_spec(O.matmul(x.s, x.s, x.d, batch=x.b * x.a, dtype=dt, name="bmm_context"), view_back))
    context.append(_copy("merge_heads", T * x.qd, dt, bwd=folded or fam == "opt"))
    return {"attn_scores": scores, "attn_scale_mask": mask, "attn_softmax": soft, "attn_context": context}


def _block_rules(x: _X) -> dict[str, list[Op]]:
    T, h, dt, bias = x.T, x.h, x.dt, x.cfg.bias
    if x.fam == "gpt2":  # one Conv1D, split into q, k, v; backward concatenates the three gradients
        qkv = [_linear("c_attn", T, h, x.qd + 2 * x.kd, dt, bias, (("split_cat", T * (x.qd + 2 * x.kd), 1, 1, 0.0),))]
    else:
        extra = (("sum_grad_qkv", T * h, 2, 1, 0.0),) * 2  # the block input feeds three projections
        qkv = [_linear("q_proj", T, h, x.qd, dt, bias, extra), _linear("k_proj", T, h, x.kd, dt, bias),
               _linear("v_proj", T, h, x.kd, dt, bias)]
    up = [_linear("mlp_up", T, h, x.f, dt, bias)]
    if x.cfg.gated:
        up = [_linear("mlp_gate", T, h, x.f, dt, bias, (("sum_grad_x", T * h, 2, 1, 0.0),)),
              _linear("mlp_up", T, h, x.f, dt, bias)]
    sdpa = O.attention(x.b, x.a, x.g, x.s, x.s, x.d, x.cfg.causal, dt, name="sdpa")
    rules = {
        "ln1": _norm(x, "ln1", T), "qkv": qkv, "rope": _rope(x) if x.cfg.position == "rope" else [],
        "attention": [sdpa, _copy("merge_heads", T * x.qd, dt)],
        "out_proj": [_linear("out_proj", T, x.qd, h, dt, bias)] + x.drop("attn_resid_dropout", T * h),
        "attn_residual": [_residual("attn_residual", T * h, dt)], "ln2": _norm(x, "ln2", T), "mlp_up": up,
        "mlp_act": _activation(x),
        "mlp_down": [_linear("mlp_down", T, x.f, h, dt, bias)] + x.drop("mlp_dropout", T * h),
        "mlp_residual": [_residual("mlp_residual", T * h, dt)],
    }
    rules.update(_attention_core(x))
    return rules


def _embedding_rules(x: _X) -> dict[str, list[Op]]:
    T, h, b, s, dt, cfg = x.T, x.h, x.b, x.s, x.dt, x.cfg
    e, el = cfg.embed_dim or h, dtype_bytes(dt)
    setup = {"gpt2": [_tiny("position_ids", s, dt)],
             "bert": [_tiny(f"mask_{k}", T, dt) for k in ("ones", "sub", "mul")],
             "opt": [_tiny(f"positions_{k}", T, dt) for k in ("ones", "cumsum", "mul", "sub")]
             + [_tiny(f"causal_mask_{k}", b * s * s, dt) for k in ("fill", "expand", "invert")],
             "llama": [_tiny("position_ids", s, dt)]
             + [_tiny(f"causal_mask_{k}", b * s * s, dt) for k in ("fill", "triu", "expand")]
             + [_tiny(f"rotary_{k}", s * x.d, dt) for k in ("freqs", "cat", "cos", "sin")]}[x.fam]
    tok = setup + [_embedding("token_embedding", T, e, x.V, dt)]
    if x.fam == "bert":  # word + token type rows (same shape: the gradient passes through)
        tok += [_embedding("token_type_embedding", T, h, 2, dt), _pw("add_token_type", T * h, dt, "add", (), inputs=2)]
    tail = ([_layernorm("embedding_norm", T, h, dt)] if x.fam == "bert" else []) + x.drop("embedding_dropout", T * h)
    if x.fam == "llama":
        return {"token_embedding": tok + tail}
    if x.fam == "opt":  # positions per token: same shape as the token rows
        pos, add = T, _pw("embedding_add", T * h, dt, "add", (), inputs=2)
    else:  # one (1, s, h) row block broadcast over the batch; its gradient is summed over b
        pos, add = s, _pw("embedding_add", T * h, dt, "add", (("position_grad_sum", T * h, 1, 0, 0.0),),
                          extra_read=float(s * h * el))
    return {"token_embedding": tok, "project_in": [_linear("project_in", T, e, h, dt, False)],
            "position_embedding": [_embedding("position_embedding", pos, h, cfg.max_seq_len, dt)],
            "embedding_add": [add] + tail}


def _head_rules(x: _X) -> dict[str, list[Op]]:
    T, h, b, dt, cfg = x.T, x.h, x.b, x.dt, x.cfg
    e = cfg.embed_dim or h
    tied = (("tied_grad_sum", x.V * e, 2, 1, 0.0),) if cfg.tied_embeddings and x.train else ()
    if x.fam == "bert":
        pooler = [_linear("pooler", b, h, h, dt, True), _unary("pooler_tanh", b * h, dt, "tanh")]
        mlm = [_linear("mlm_transform", T, h, h, dt, True), _unary("mlm_gelu", T * h, dt, "gelu"),
               _layernorm("mlm_norm", T, h, dt), _linear("mlm_decoder", T, h, x.V, dt, True, tied, weight=False)]
        if x.head == "lm":
            logits = mlm
        elif x.head == "pretraining":
            logits = pooler + mlm + [_linear("nsp", b, h, NUM_LABELS, dt, True)]
        else:
            logits = pooler + x.drop("classifier_dropout", b * h) + [_linear("classifier", b, h, NUM_LABELS, dt, True)]
        return {"final_norm": [], "lm_head": logits, "cross_entropy": []}
    if x.head == "pretraining":
        raise ConfigError(f"head='pretraining' is BERT's (MLM + next sentence); {cfg.name} is a {x.fam} model")
    n = x.V if x.head == "lm" else NUM_LABELS
    logits = [_linear("lm_head" if x.head == "lm" else "score", T, e, n, dt, False, tied if x.head == "lm" else (),
                      weight=not (cfg.tied_embeddings and x.head == "lm"))]
    if x.fam == "llama" and dt != "fp32" and x.head == "lm":  # logits.float()
        logits.append(_pw("logits_float", T * n, dt, "copy", (("bwd", T * n, 1, 1, 0.0),), flops=0.0, out_dtype="fp32"))
    return {"final_norm": _norm(x, "final_norm", T), "project_out": [_linear("project_out", T, h, e, dt, False)],
            "lm_head": logits, "cross_entropy": []}


def _loss(x: _X) -> OpGraph:
    """`F.cross_entropy(logits.view(-1, n), labels)`: log_softmax, then nll_loss; nll backward
    zero-fills the rows x n gradient and scatters -1/rows at the labels."""
    rows, n = (x.T, x.V) if x.head != "classification" else (x.b, NUM_LABELS)
    dt = "fp32" if x.fam == "llama" else x.dt
    g = OpGraph(name="loss")
    ls = g.add(O.softmax(rows, n, dt, name="log_softmax"))
    nll_bwd = (("zero", rows * n, 0, 1, 0.0), ("scatter", rows, 1, 1, 0.0))
    g.add(_pw("nll_loss", rows, dt, "gather", nll_bwd), after=[ls])
    return g


def _rewrite(layer: OpGraph, rules: dict[str, list[Op]], name: str) -> OpGraph:
    """Replace each op by its chain of eager kernels, keeping the layer's dependencies."""
    g = OpGraph(name=name)
    ends: dict[Op, list[Op]] = {}
    for op in layer.ops():
        if op.name not in rules:
            raise ConfigError(f"eager execution of op {op.name!r} ({op.kind}) is not modelled; use framework='fused'")
        inputs = [end for p in layer.predecessors(op) for end in ends[p]]
        chain = rules[op.name]
        for k in chain:
            inputs = [g.add(k, after=inputs)]
        ends[op] = inputs
    return g


def eager_forward(model: ModelGraph, training: bool, head: str = "lm", family: str | None = None) -> ModelGraph:
    """The kernels PyTorch eager runs for `model`'s Hugging Face implementation, forward.

    Args:
        model: `build(cfg, "forward", b, s, tp=1, attention="unfused")` (``fused``: HF SDPA).
        training: `model.train()` (dropout kernels, loss layer) or `model.eval()` under no_grad.
        head: ``lm`` (causal LM / BERT masked LM: logits over all b*s positions),
            ``pretraining`` (BERT: pooler, MLM, next-sentence) or ``classification``
            (BERT: pooler + Linear(h, 2); decoders: Linear(h, 2) over all positions).
        family: one of `FAMILIES`; default `hf_family(model.config)`.

    Returns:
        ModelGraph with layers embedding, block (x n_layers), head, and in training a ``loss``
        layer (`F.cross_entropy` on the logits, as the NeuSight training loop computes it).

    Raises:
        ConfigError: wrong phase, tensor parallelism, MoE, unknown head or family.
    """
    cfg = model.config
    family = family or hf_family(cfg)
    if family not in FAMILIES:
        raise ConfigError(f"family={family!r} must be one of {', '.join(FAMILIES)}")
    if head not in HEADS:
        raise ConfigError(f"head={head!r} must be one of {', '.join(HEADS)}")
    if model.phase != "forward" or model.tp != 1 or cfg.is_moe:
        raise ConfigError("eager execution is modelled for the single-device forward graph of dense models "
                          f"(got phase={model.phase!r}, tp={model.tp}, experts={cfg.n_experts}); use framework='fused'")
    x = _X(model, training, family, head)
    rules: dict[str, Callable[[_X], dict[str, list[Op]]]] = {
        "embedding": _embedding_rules, "block": _block_rules, "head": _head_rules}
    layers = [(_rewrite(g, rules[g.name.split(".")[0]](x), g.name), n) for g, n in model.layers]
    if training:
        layers.append((_loss(x), 1))
    return dataclasses.replace(model, layers=tuple(layers))


def _accumulate_grads(op: Op) -> list[Op]:
    """AccumulateGrad into an existing `.grad`: an in-place add per parameter tensor."""
    e = dtype_bytes(op.dtype)
    n = int(round(op.param_bytes / e))
    if n == 0:
        return []
    d = op.dims
    sizes = ([d["k"] * d["n"] * d["batch"], d["n"]] if op.kind == "matmul" and d.get("bias") else
             [n // 2, n // 2] if op.kind == "norm" and d.get("norm") == "layernorm" else [n])
    return [O.elementwise(m, 1, 2, op.dtype, name=f"{op.name}.accumulate_grad{i or ''}", fn="add")
            for i, m in enumerate(sizes) if m > 0]


def _spec_ops(op: Op) -> list[Op]:
    e, spec = dtype_bytes(op.dtype), op.dims.get("autograd", ())
    names = [f"{op.name}.{sfx}" + (f"_{i}" if [t[0] for t in spec].count(sfx) > 1 else "")
             for i, (sfx, *_) in enumerate(spec)]
    return [Op(name, "elementwise", (("n_elements", n), ("n_inputs", max(r, 1)), ("n_outputs", 1),
                                     ("fn", "add" if (r, w) == (2, 1) else "reduce" if w == 0 else "backward")),
               float(n), r * n * e + extra * n, w * n * e, 0.0, op.dtype)
            for name, (_, n, r, w, extra) in zip(names, spec)]


def _splice(g: OpGraph, old: Op | None, after: Op | None, new: list[Op]) -> None:
    """Replace `old` (or insert after `after`) by the chain `new`, rewiring its edges."""
    anchor = old if old is not None else after
    assert anchor is not None
    succ = list(g.successors(anchor))
    preds = list(g.predecessors(old)) if old is not None else [anchor]
    if old is not None:
        g.remove_node(old)
    for k in new:
        preds = [g.add(k, after=preds)]
    for s in succ:
        for p in preds:
            g.add_edge(p, s)


def eager_backward(forward: ModelGraph, accumulate_grads: bool = True) -> ModelGraph:
    """Autograd's kernels for an `eager_forward` graph (training): `backward_graph` per layer,
    with elementwise and embedding backward replaced by their autograd kernels, the extra
    kernels of each op's spec (bias reductions, gradient sums, copies) and AccumulateGrad."""
    layers = []
    for fwd, n in forward.layers:
        g = backward_graph(fwd)
        for op in fwd.ops():
            bwd = g.by_name(f"{op.name}.bwd") if op.kind in ("elementwise", "embedding") else None
            last = bwd or g.by_name(f"{op.name}.dgrad" if op.kind == "matmul" else f"{op.name}.bwd")
            extra = _spec_ops(op) + (_accumulate_grads(op) if accumulate_grads else [])
            if bwd is not None or extra:
                _splice(g, bwd, last, extra)
        layers.append((g, n))
    return dataclasses.replace(forward, phase="backward", layers=tuple(layers))
