"""Operators: the unit of work that predictors time and schedulers place.

An `Op` is a frozen description of one kernel: its kind, its shape, the FLOPs it performs and
the bytes it must move to and from memory at least once (inputs read, outputs written). The
factories below are the only way graphs create ops, so a matmul built by hand and a matmul from
a model graph are the same object.

Counting conventions (used by every test of closed forms):
- A multiply-add is 2 FLOPs. `C[m x n] = A[m x k] @ B[k x n]` costs `2*m*k*n` FLOPs per batch.
- Attention FLOPs count the full `q_len x kv_len` score matrix (`4*b*a*s*c*d`: QK^T and PV),
  ignoring causal masking, as the Megatron closed form `24*b*s*l*h^2*(1 + s/(6h))` does.
  The op keeps `causal` so that a predictor can skip masked tiles (FlashAttention does). A
  sliding window of W positions limits each query to `min(kv_len, W)` keys: `4*b*a*s*min(c, W)*d`.
- Elementwise, norm and softmax FLOPs are approximate arithmetic counts per element (stated
  in each factory); they matter only for vector-unit bounds, never for the GEMM closed forms.
- Bytes are compulsory traffic: every input read once, every output written once.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from coda.errors import ConfigError
from coda.units import dtype_bytes

KINDS = ("matmul", "attention", "attention_bwd", "elementwise", "norm", "softmax", "embedding", "collective")
COLLECTIVES = ("all_reduce", "all_gather", "reduce_scatter", "all_to_all", "send_recv", "broadcast")

# Approximate FLOPs per element (documented so vector-unit bounds are reproducible).
LAYERNORM_FLOPS_PER_ELEMENT = 8  # mean, variance (sub, square, add), normalise (sub, mul), scale, shift
RMSNORM_FLOPS_PER_ELEMENT = 5  # square, add, normalise (mul), scale; rsqrt per row is negligible
SOFTMAX_FLOPS_PER_ELEMENT = 5  # max, subtract, exp, sum, divide


@dataclass(frozen=True)
class Op:
    """One kernel. Use the factories (`matmul`, `attention`, ...) rather than this constructor.

    Attributes:
        name: unique within its graph, e.g. ``"qkv"`` or ``"qkv.dgrad"``.
        kind: one of `KINDS`.
        shape: the kind's named dimensions as ``((name, value), ...)``; read them with `dims`.
        flops: floating-point operations (multiply-add = 2).
        bytes_read: compulsory bytes read from memory (inputs, weights).
        bytes_written: compulsory bytes written (outputs).
        param_bytes: bytes of trainable parameters this op owns (0 for activations-only ops).
        dtype: element type name (``"bf16"``, ``"fp32"``, ...).
    """

    name: str
    kind: str
    shape: tuple[tuple[str, Any], ...]
    flops: float
    bytes_read: float
    bytes_written: float
    param_bytes: float
    dtype: str

    @cached_property
    def dims(self) -> dict[str, Any]:
        """The shape as a dict, e.g. ``{"batch": 1, "m": 4096, "k": 4096, "n": 12288}``."""
        return dict(self.shape)

    @property
    def bytes(self) -> float:
        """Total compulsory memory traffic, bytes_read + bytes_written."""
        return self.bytes_read + self.bytes_written

    @property
    def intensity(self) -> float:
        """Arithmetic intensity in FLOPs per byte of compulsory traffic."""
        return self.flops / self.bytes if self.bytes else math.inf

    def renamed(self, name: str) -> Op:
        """The same op under another name."""
        return dataclasses.replace(self, name=name)


MAX_OP_DIM = 2**48
"""Largest op dimension accepted (2.8e14): far above any real one (a 1M-token batch of a 64k-wide
model has 6.9e10 activation elements) and far below where float64 FLOP and byte counts lose
integer precision (2^53), so a larger value is a mistake, not a workload."""


def _positive(**sizes: int) -> None:
    for field, value in sizes.items():
        if not isinstance(value, (int,)) or isinstance(value, bool) or value <= 0:
            raise ConfigError(f"op dimension {field}={value!r} must be a positive integer")
        if value > MAX_OP_DIM:
            raise ConfigError(f"op dimension {field}={value} exceeds {MAX_OP_DIM:.3g} (2^48), far beyond any real "
                              "workload; check the units")


def matmul(m: int, k: int, n: int, batch: int = 1, dtype: str = "bf16", name: str = "matmul", weight: bool = False,
           bias: bool = False) -> Op:
    """`C[batch, m, n] = A[batch, m, k] @ B[batch, k, n]`: `2*batch*m*k*n` FLOPs.

    Args:
        m, k, n: rows of A, reduction length, columns of B.
        batch: independent matmuls of the same shape (bmm, or grouped expert GEMMs).
        dtype: element type of A, B and C.
        name: op name.
        weight: B is a trainable weight; then `param_bytes = batch*k*n*bytes`.
        bias: a bias of n per batch is added to C in the epilogue: n params, read once; its
            m*n additions are not counted, as in the published FLOP formulas.
    """
    _positive(m=m, k=k, n=n, batch=batch)
    e = dtype_bytes(dtype)
    b_bytes = batch * (k * n + (n if bias else 0)) * e
    return Op(
        name, "matmul", (("batch", batch), ("m", m), ("k", k), ("n", n), ("bias", bool(bias))),
        flops=2.0 * batch * m * k * n,
        bytes_read=float(batch * m * k * e + b_bytes),
        bytes_written=float(batch * m * n * e),
        param_bytes=float(b_bytes if weight else 0),
        dtype=dtype,
    )


def elementwise(n_elements: int, flops_per_element: float = 1.0, n_inputs: int = 1, dtype: str = "bf16",
                name: str = "elementwise", n_outputs: int = 1, fn: str = "generic") -> Op:
    """Pointwise op over `n_elements` with `n_inputs` input tensors and `n_outputs` outputs of that size.

    `fn` labels the function (``"add"``, ``"gelu"``, ``"swiglu"``, ``"rope"``, ...); the
    backward rule of an ``"add"`` differs (it only accumulates gradients).
    """
    _positive(n_elements=n_elements, n_inputs=n_inputs, n_outputs=n_outputs)
    if flops_per_element < 0:
        raise ConfigError(f"flops_per_element={flops_per_element} must be >= 0")
    e = dtype_bytes(dtype)
    return Op(
        name, "elementwise", (("n_elements", n_elements), ("n_inputs", n_inputs), ("n_outputs", n_outputs), ("fn", fn)),
        flops=float(flops_per_element * n_elements),
        bytes_read=float(n_inputs * n_elements * e),
        bytes_written=float(n_outputs * n_elements * e),
        param_bytes=0.0,
        dtype=dtype,
    )


def cast(n_elements: int, src: str = "bf16", dst: str = "fp8", name: str = "cast") -> Op:
    """Quantise `n_elements` from `src` to `dst` (Transformer Engine's cast before an FP8 GEMM;
    the amax reduction is fused into it): reads `src` bytes, writes `dst` bytes, 2 FLOPs per
    element (scale, convert). Its backward is an identity (the gradient passes straight through).
    """
    _positive(n_elements=n_elements)
    return Op(name, "elementwise", (("n_elements", n_elements), ("n_inputs", 1), ("n_outputs", 1), ("fn", "cast")),
              flops=2.0 * n_elements, bytes_read=float(n_elements * dtype_bytes(src)),
              bytes_written=float(n_elements * dtype_bytes(dst)), param_bytes=0.0, dtype=dst)


def dropout(n_elements: int, dtype: str = "bf16", name: str = "dropout", residual: bool = False) -> Op:
    """Training dropout over `n_elements`: reads x (and, fused with the residual add as Megatron's
    `bias_dropout_add` does, the residual), writes y and a 1-byte keep mask; 2 FLOPs per element
    (compare, scale; +1 for the add). Backward (`models.backward`): dX = dY * mask * scale.
    """
    _positive(n_elements=n_elements)
    e = dtype_bytes(dtype)
    n_in = 2 if residual else 1
    return Op(
        name, "elementwise", (("n_elements", n_elements), ("n_inputs", n_in), ("n_outputs", 1),
                              ("fn", "dropout_add" if residual else "dropout")),
        flops=float((2 + residual) * n_elements),
        bytes_read=float(n_in * n_elements * e),
        bytes_written=float(n_elements * (e + 1)),
        param_bytes=0.0,
        dtype=dtype,
    )


def norm(rows: int, cols: int, dtype: str = "bf16", kind: str = "layernorm", name: str = "norm") -> Op:
    """LayerNorm or RMSNorm over the last dimension of a `rows x cols` tensor.

    FLOPs: 8 per element for LayerNorm, 5 for RMSNorm. Parameters: `2*cols` (gain, bias) or
    `cols` (gain), read once.
    """
    _positive(rows=rows, cols=cols)
    if kind not in ("layernorm", "rmsnorm"):
        raise ConfigError(f"norm kind {kind!r} must be 'layernorm' or 'rmsnorm'")
    e = dtype_bytes(dtype)
    n_params = (2 if kind == "layernorm" else 1) * cols
    per_element = LAYERNORM_FLOPS_PER_ELEMENT if kind == "layernorm" else RMSNORM_FLOPS_PER_ELEMENT
    return Op(
        name, "norm", (("rows", rows), ("cols", cols), ("norm", kind)),
        flops=float(per_element * rows * cols),
        bytes_read=float((rows * cols + n_params) * e),
        bytes_written=float(rows * cols * e),
        param_bytes=float(n_params * e),
        dtype=dtype,
    )


def layernorm(rows: int, cols: int, dtype: str = "bf16", name: str = "layernorm") -> Op:
    """LayerNorm over `rows x cols` (see `norm`)."""
    return norm(rows, cols, dtype, "layernorm", name)


def softmax(rows: int, cols: int, dtype: str = "bf16", name: str = "softmax") -> Op:
    """Row softmax of a `rows x cols` tensor: 5 FLOPs per element, read once, written once."""
    _positive(rows=rows, cols=cols)
    e = dtype_bytes(dtype)
    return Op(
        name, "softmax", (("rows", rows), ("cols", cols)),
        flops=float(SOFTMAX_FLOPS_PER_ELEMENT * rows * cols),
        bytes_read=float(rows * cols * e),
        bytes_written=float(rows * cols * e),
        param_bytes=0.0,
        dtype=dtype,
    )


ATTENTION_KERNELS = ("fa2", "fa3")


def attention(batch: int, heads: int, kv_heads: int, q_len: int, kv_len: int, head_dim: int,
              causal: bool = True, dtype: str = "bf16", name: str = "attention", kernel: str = "fa2",
              window: int | None = None, kv_width: int | None = None) -> Op:
    """Fused (FlashAttention-style) attention `O = softmax(Q K^T / sqrt(d)) V`.

    Shapes: Q, O `[batch, heads, q_len, head_dim]`; K, V `[batch, kv_heads, kv_len, head_dim]`;
    the queries are the last `q_len` of the `kv_len` positions.
    FLOPs `4*batch*heads*q_len*min(kv_len, W)*head_dim` (QK^T and PV, full matrix, or the band
    of a causal sliding window of W positions; see module doc).
    Bytes: Q read once, the K, V rows some query attends to (`window_kv_rows`) read once, O
    written once; the score matrix never leaves the chip.
    `kernel`: ``fa2`` (FlashAttention-2) or ``fa3`` (FlashAttention-3 / cuDNN-class kernels that
    use Hopper's asynchronous tensor cores); predictors may time them differently.
    `kv_width`: elements per position and kv head that keys and values occupy together, default
    `2*head_dim`; absorbed multi-head latent attention reads one latent of `c_kv + d_r` as both.
    Heads whose query/key and value widths differ (MLA) use their mean as `head_dim`, which keeps
    the FLOPs and the Q + O bytes exact.
    """
    _positive(batch=batch, heads=heads, kv_heads=kv_heads, q_len=q_len, kv_len=kv_len, head_dim=head_dim)
    if kv_width is not None:
        _positive(kv_width=kv_width)
    if kernel not in ATTENTION_KERNELS:
        raise ConfigError(f"attention kernel {kernel!r} must be one of {', '.join(ATTENTION_KERNELS)}")
    if heads % kv_heads:
        raise ConfigError(f"kv_heads={kv_heads} must divide heads={heads}")
    if window is not None:
        _positive(window=window)
        if not causal:
            raise ConfigError("a sliding window needs causal attention")
        if window >= kv_len:
            window = None  # every query already sees every key it may: an ordinary causal op
    e = dtype_bytes(dtype)
    keys = kv_len if window is None else window
    shape = ((("batch", batch), ("heads", heads), ("kv_heads", kv_heads), ("q_len", q_len), ("kv_len", kv_len),
              ("head_dim", head_dim), ("causal", bool(causal))) + ((("kernel", kernel),) if kernel != "fa2" else ())
             + ((("window", window),) if window is not None else ())
             + ((("kv_width", kv_width),) if kv_width is not None else ()))
    q, kv = _attention_elements(dict(shape))
    return Op(
        name, "attention", shape,
        flops=4.0 * batch * heads * q_len * keys * head_dim,
        bytes_read=float((q + kv) * e),
        bytes_written=float(q * e),
        param_bytes=0.0,
        dtype=dtype,
    )


def window_kv_rows(q_len: int, kv_len: int, window: int | None) -> int:
    """Key/value positions some query attends to: all `kv_len`, or under a causal window of W the
    last `q_len + W - 1` (the first query reaches W - 1 positions back)."""
    return kv_len if window is None else min(kv_len, q_len + window - 1)


def _attention_elements(d: dict[str, Any]) -> tuple[int, int]:
    """(query elements, key + value elements read) of an attention op's dims: `b*a*q*d`, and
    `b*g*rows*kv_width` over the rows some query attends to (`window_kv_rows`)."""
    q = d["batch"] * d["heads"] * d["q_len"] * d["head_dim"]
    rows = window_kv_rows(d["q_len"], d["kv_len"], d.get("window"))
    return q, d["batch"] * d["kv_heads"] * rows * d.get("kv_width", 2 * d["head_dim"])


def attention_backward(fwd: Op, name: str | None = None) -> Op:
    """Backward of a fused attention op, FlashAttention-2 style (Dao 2023, algorithm 2).

    Five GEMMs per tile (S = QK^T recomputed, dV = P^T dO, dP = dO V^T, dQ = dS K, dK = dS^T Q),
    so FLOPs are 2.5x the forward's (`10*b*a*s*c*d`). Reads Q, K, V, O, dO (and the row
    log-sum-exp, negligible); writes dQ, dK, dV (K, V: the rows the forward read).
    """
    e = dtype_bytes(fwd.dtype)
    q, kv = _attention_elements(fwd.dims)
    return Op(
        name or f"{fwd.name}.bwd", "attention_bwd", fwd.shape,
        flops=2.5 * fwd.flops,
        bytes_read=float((3 * q + kv) * e),
        bytes_written=float((q + kv) * e),
        param_bytes=0.0,
        dtype=fwd.dtype,
    )


def embedding(tokens: int, hidden: int, vocab: int, dtype: str = "bf16", name: str = "embedding") -> Op:
    """Table lookup: gather `tokens` rows of width `hidden` from a `vocab x hidden` table.

    No FLOPs; reads the gathered rows (not the whole table), writes `tokens x hidden`;
    owns the table's parameters.
    """
    _positive(tokens=tokens, hidden=hidden, vocab=vocab)
    e = dtype_bytes(dtype)
    return Op(
        name, "embedding", (("tokens", tokens), ("hidden", hidden), ("vocab", vocab)),
        flops=0.0,
        bytes_read=float(tokens * hidden * e),
        bytes_written=float(tokens * hidden * e),
        param_bytes=float(vocab * hidden * e),
        dtype=dtype,
    )


def collective(kind: str, n_bytes: float, group: int, dtype: str = "bf16", name: str | None = None) -> Op:
    """A communication op among `group` devices.

    `n_bytes` follows the nccl-tests convention: the whole buffer (all-reduce input = output;
    all-gather output; reduce-scatter input; all-to-all per-rank buffer; send/recv message).
    Memory traffic is not counted here (the network time dominates); FLOPs are 0.
    """
    if kind not in COLLECTIVES:
        raise ConfigError(f"collective kind {kind!r} must be one of {', '.join(COLLECTIVES)}")
    _positive(group=group)
    if n_bytes < 0:
        raise ConfigError(f"collective n_bytes={n_bytes} must be >= 0")
    return Op(
        name or kind, "collective", (("collective", kind), ("n_bytes", float(n_bytes)), ("group", group)),
        flops=0.0, bytes_read=0.0, bytes_written=0.0, param_bytes=0.0, dtype=dtype,
    )
