"""Reverse-mode transformation of a forward `OpGraph` into its backward `OpGraph`.

Rules, per forward op `Y = op(X, W)` with output gradient dY:
- matmul `C[m,n] = A[m,k] B[k,n]`: `dA = dC B^T` -> matmul(m, n, k) (".dgrad") and
  `dB = A^T dC` -> matmul(k, m, n) (".wgrad" when B is a weight, ".dgrad_b" otherwise).
  Exactly twice the forward FLOPs. An FP8 matmul first casts dC (bf16) to FP8 (".cast_grad").
- cast (to FP8 before a GEMM): an identity.
- attention: one fused FlashAttention-2 backward op (`ops.attention_backward`).
- elementwise: reads dY and the saved inputs, writes one gradient per input; an `add` only
  accumulates gradients (reads dY and the residual gradient, writes one); a dropout reads dY
  and its 1-byte mask (and, fused with the residual add, the residual gradient), writes one.
- norm, softmax: reads Y or X and dY, writes dX (norm also reduces dW over rows): 2x FLOPs.
- embedding: scatter-add of dY rows into the table gradient.
- collectives (Megatron conjugates): all_gather <-> reduce_scatter, all_to_all and send_recv
  stay; a forward all_reduce is an identity in backward. The backward all-reduce of the input
  of a column-parallel matmul is not in the forward graph (its forward is an identity), so the
  builder passes it in `after`, keyed by the matmul whose dgrad it reduces.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from coda.models.graph import OpGraph
from coda.models.ops import Op, attention_backward, cast, collective, matmul
from coda.units import dtype_bytes

_CONJUGATE = {"all_gather": "reduce_scatter", "reduce_scatter": "all_gather", "all_to_all": "all_to_all",
              "send_recv": "send_recv", "broadcast": "reduce_scatter", "all_reduce": None}


def _scaled(op: Op, name: str, flops_factor: float, read: float, written: float) -> Op:
    return Op(name, op.kind, op.shape + (("backward", True),), op.flops * flops_factor, read, written, 0.0, op.dtype)


def backward_ops(op: Op) -> tuple[list[Op], Op | None]:
    """The backward ops of one forward op, and the op that produces the gradient of its input.

    Returns `([], None)` for ops whose backward is an identity (a forward all-reduce).
    """
    d, e = op.dims, dtype_bytes(op.dtype)
    if op.kind == "matmul":
        b, m, k, n = d["batch"], d["m"], d["k"], d["n"]
        dgrad = matmul(m, n, k, batch=b, dtype=op.dtype, name=f"{op.name}.dgrad")
        other = matmul(k, m, n, batch=b, dtype=op.dtype, name=f"{op.name}.{'wgrad' if op.param_bytes else 'dgrad_b'}")
        if op.dtype == "fp8":
            return [cast(b * m * n, "bf16", "fp8", name=f"{op.name}.cast_grad"), dgrad, other], dgrad
        return [dgrad, other], dgrad
    if op.kind == "attention":
        bwd = attention_backward(op)
        return [bwd], bwd
    if op.kind == "elementwise" and d.get("fn") == "cast":
        return [], None  # straight-through: the gradient of a quantisation is the identity
    if op.kind == "elementwise":
        n, n_in = d["n_elements"], d["n_inputs"]
        if d.get("fn") == "add":
            bwd = _scaled(op, f"{op.name}.bwd", 1.0, 2 * n * e, n * e)
        elif d.get("fn") in ("dropout", "dropout_add"):  # dX = dY * mask * scale (+ the residual's dY)
            bwd = _scaled(op, f"{op.name}.bwd", 1.0, n * e + n + (n_in - 1) * n * e, n * e)
        else:
            bwd = _scaled(op, f"{op.name}.bwd", 1.0, (1 + n_in) * n * e, n_in * n * e)
        return [bwd], bwd
    if op.kind in ("norm", "softmax"):
        bwd = _scaled(op, f"{op.name}.bwd", 2.0, op.bytes_read + op.bytes_written, op.bytes_read)
        return [bwd], bwd
    if op.kind == "embedding":
        rows = float(d["tokens"] * d["hidden"])  # one add per gradient element into the table
        bwd = Op(f"{op.name}.bwd", op.kind, op.shape + (("backward", True),), rows, op.bytes_written, op.bytes_written,
                 0.0, op.dtype)
        return [bwd], bwd
    if op.kind == "collective":
        kind = _CONJUGATE[d["collective"]]
        if kind is None:
            return [], None
        bwd = collective(kind, d["n_bytes"], d["group"], op.dtype, name=f"{op.name}.bwd")
        return [bwd], bwd
    raise ValueError(f"no backward rule for op kind {op.kind!r}")  # internal: forward graphs have no other kinds


def backward_graph(fwd: OpGraph, after: Mapping[str, Sequence[Op]] | None = None) -> OpGraph:
    """The backward graph of `fwd`.

    Args:
        fwd: forward layer graph.
        after: extra ops (backward all-reduces of tensor-parallel inputs) to run after the
            input gradient of the named forward op, in sequence.

    Edges: the backward ops of v consume the input gradients of v's forward successors; a
    forward op whose backward is an identity passes those gradients straight through.
    """
    after = after or {}
    g = OpGraph(name=f"{fwd.name}.backward")
    grad_of_input: dict[Op, set[Op]] = {}  # forward op -> backward ops producing dL/d(its input)
    for v in reversed(fwd.ops()):
        upstream: set[Op] = set()
        for s in fwd.successors(v):
            upstream |= grad_of_input[s]
        ops, grad = backward_ops(v)
        for op in ops:
            g.add(op, after=upstream)
        produced = {grad} if grad is not None else upstream
        for extra in after.get(v.name, ()):
            g.add(extra, after=produced)
            produced = {extra}
        grad_of_input[v] = produced
    return g
