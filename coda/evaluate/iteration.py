"""Single-device end-to-end time: `iteration(cfg, device, batch, seq_len, mode, ...)`.

The model's layer chain (embedding, block x l, head, and in training the loss) is timed op by
op with the device's predictor; each distinct layer is predicted once and multiplied by its
repeat count. `mode="train"` is forward + backward (no optimizer step, as in the NeuSight
measurements); `mode="forward"` is one full-sequence forward pass returning logits for every
position (a Hugging Face `model(input_ids)`), without dropout, loss or autograd.

Frameworks:
- ``fused``: the graphs of `coda.models.build` (FlashAttention or unfused attention, bias and
  activation fused into GEMM epilogues), kernels back to back on the GPU, each with the
  launch cost the calibrated tile model includes.
- ``eager``: PyTorch eager mode running the Hugging Face model (`coda.models.eager`: every
  separate bias/activation/dropout/copy kernel, autograd's backward). A kernel is issued by the
  CPU, which needs `CPU_DISPATCH_S` per op, and runs when the GPU is free; the GPU idles when
  it drains the queue. This two-stage pipeline is simulated exactly: with slack
  `q` = (GPU busy until) - (CPU issue time) before kernel i,
      idle_i = max(c - q, 0),   q <- max(q - c, 0) + t_i,
  so a kernel costs max(t_i, c) only when the GPU has no queued work, and tiny kernels after
  long ones are hidden, as on real hardware. Each phase starts with an empty queue (the
  NeuSight loop synchronises between forward and backward).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd

from coda.arch.accelerators import Accelerator
from coda.arch.gpus import GPU, gpu
from coda.errors import ConfigError
from coda.models import build, get
from coda.models import ops as O
from coda.models.backward import backward_graph
from coda.models.config import ModelConfig
from coda.models.eager import HEADS, NUM_LABELS, eager_backward, eager_forward
from coda.models.graph import ModelGraph, OpGraph
from coda.predictor import BasePredictor, op_latencies
from coda.units import dtype_bytes

MODES = ("train", "forward")
FRAMEWORKS = ("fused", "eager")
# Host time per eager op: the median CUDA-event time of the host-only nodes (size, view,
# getitem, permute, ...) in the 16 NeuSight per-op traces (shared/data/neusight/e2e/*/*.csv,
# 784 nodes, PyTorch 2.1): 8.1 us (per host: H100 7.0, A100-40GB 6.6, A100-80GB 8.8 us). It is
# the time between two CUDA events around an op that launches nothing: Python + dispatcher +
# event overhead, a floor for the CPU cost of issuing one kernel. Applied per kernel in both
# phases (in backward the autograd engine issues them from C++, so there it is an upper bound).
CPU_DISPATCH_S = 8.1e-6


@dataclass(frozen=True)
class IterationResult:
    """Predicted time of one iteration on one device.

    Attributes:
        model, device: names.
        batch, seq_len, mode, dtype, attention, framework: the inputs.
        forward_s: forward pass (in training including the loss), seconds.
        backward_s: backward pass (0 for mode="forward"), seconds.
        total_s: forward_s + backward_s.
        host_idle_s: part of total_s the GPU waits for the CPU (eager only).
        breakdown: one row per (layer, phase) -- or per op with `per_op=True` -- with columns
            layer, repeat, phase, kernels (or op, kind, gpu_s), seconds (one repeat) and
            total_s (all repeats); `breakdown.total_s.sum() == total_s`.
    """

    model: str
    device: str
    batch: int
    seq_len: int
    mode: str
    dtype: str
    attention: str
    framework: str
    forward_s: float
    backward_s: float
    host_idle_s: float
    breakdown: pd.DataFrame = field(compare=False, repr=False)
    total_s: float = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "total_s", self.forward_s + self.backward_s)

    def layer_seconds(self, layer: str, phase: str = "forward") -> float:
        """Total seconds of one layer kind in one phase (all repeats), e.g. ``("block", "backward")``."""
        b = self.breakdown
        return float(b.loc[(b["layer"] == layer) & (b["phase"] == phase), "total_s"].sum())


def _device(device: Any, dtype: str, framework: str) -> GPU | Accelerator:
    dtype_bytes(dtype)
    if isinstance(device, str):
        device = gpu(device)
    if isinstance(device, GPU):
        if not device.supports(dtype):
            ok = ", ".join(d for d in ("fp32", "tf32", "fp16", "bf16", "fp8") if device.supports(d))
            raise ConfigError(f"{device.name} does not support {dtype}; use one of its dtypes ({ok})")
        return device
    if isinstance(device, Accelerator):
        if framework == "eager":
            raise ConfigError("framework='eager' models PyTorch on NVIDIA GPUs; "
                              "use framework='fused' for an Accelerator")
        return device
    raise ConfigError(f"device must be a GPU name, a GPU or an Accelerator, not {type(device).__name__}")


def _split_loss(head: OpGraph, training: bool) -> tuple[OpGraph, OpGraph | None]:
    """The builder's head without its cross-entropy op, and that op as a ``loss`` layer."""
    ops = [op for op in head.nodes if op.name.startswith("cross_entropy")]
    rest = head.copy()
    rest.remove_nodes_from(ops)
    if not training:
        return rest, None
    loss = OpGraph(name="loss")
    for op in ops:
        loss.add(op)
    loss.add_edges_from((u, v) for u, v in head.edges if u in ops and v in ops)
    return rest, loss


def _classifier(cfg: ModelConfig, head: OpGraph, batch: int, seq_len: int, dtype: str) -> OpGraph:
    """The LM head replaced by a `num_labels` classifier: on the first token of each sequence
    after a tanh pooler (bidirectional models, as BERT), or on every position (decoders, as HF
    `*ForSequenceClassification`, which then picks the last)."""
    g = OpGraph(name="head")
    prev = [op for op in head.nodes if op.kind == "norm"]
    for op in prev:
        g.add(op)
    rows = batch if not cfg.causal else batch * seq_len
    if not cfg.causal:
        pooler = g.add(O.matmul(batch, cfg.hidden, cfg.hidden, dtype=dtype, name="pooler", weight=True, bias=True),
                       after=prev)
        prev = [g.add(O.elementwise(batch * cfg.hidden, 4, 1, dtype, name="pooler_tanh", fn="tanh"), after=[pooler])]
    g.add(O.matmul(rows, cfg.hidden, NUM_LABELS, dtype=dtype, name="classifier", weight=True, bias=cfg.bias),
          after=prev)
    return g


def _graphs(cfg: ModelConfig, batch: int, seq_len: int, training: bool, dtype: str, attention: str,
            framework: str, head: str, family: str | None,
            accumulate_grads: bool) -> tuple[ModelGraph, ModelGraph | None]:
    fwd = build(cfg, "forward", batch, seq_len, dtype=dtype, attention=attention)
    if framework == "eager":
        fwd = eager_forward(fwd, training, head=head, family=family)
        return fwd, eager_backward(fwd, accumulate_grads) if training else None
    if head == "pretraining":
        raise ConfigError("head='pretraining' (BERT MLM + next sentence) is modelled for framework='eager' only")
    *body, (hd, nh) = fwd.layers
    hd, loss = _split_loss(hd, training)
    if head == "classification":
        hd = _classifier(cfg, hd, batch, seq_len, dtype)
        if loss is not None:
            loss = OpGraph(name="loss")
            loss.add(O.softmax(batch, NUM_LABELS, dtype, name="cross_entropy"))  # on one logit row per sequence
    layers = (*body, (hd, nh)) + (((loss, 1),) if loss is not None else ())
    fwd = replace(fwd, layers=layers)
    if not training:
        return fwd, None
    bwd = replace(fwd, phase="backward", layers=tuple((backward_graph(g), n) for g, n in layers))
    return fwd, bwd


def _pipeline(gpu_s: list[float], repeat: int, cpu_s: float, slack: float) -> tuple[list[float], float]:
    """Host-issue pipeline over `repeat` passes of one layer's kernels (module doc).

    Returns per-op seconds summed over the repeats (GPU time + idle before it) and the final slack.
    """
    total = [0.0] * len(gpu_s)
    done = 0
    while done < repeat:
        start, idle = slack, []
        for t in gpu_s:
            wait = cpu_s - slack if cpu_s > slack else 0.0
            idle.append(wait)
            slack = (slack - cpu_s if slack > cpu_s else 0.0) + t
        # the state only grows from here: no more idle, every later pass is pure GPU time
        steady = not any(idle) and slack >= start
        n = repeat - done if steady or slack == start else 1
        for i, (t, w) in enumerate(zip(gpu_s, idle)):
            total[i] += n * (t + w)
        if steady and n > 1:
            slack += (n - 1) * (slack - start)
        done += n
    return total, slack


def iteration(cfg: ModelConfig | str, device: Any, batch: int, seq_len: int, mode: str = "train",
              dtype: str = "bf16", attention: str = "fused", framework: str = "fused", *, head: str = "lm",
              family: str | None = None, accumulate_grads: bool = True, cpu_dispatch_s: float | None = None,
              predictor: BasePredictor | None = None, per_op: bool = False) -> IterationResult:
    """Predicted time of one training iteration (forward + backward) or one forward pass.

    Args:
        cfg: the model, or a preset name.
        device: a GPU name (``"h100-sxm"``, ``"NVIDIA A100-PCIE-40GB"``), a `GPU`, or an
            `Accelerator` (its analytical tile model, ops summed in sequence).
        batch: sequences b; seq_len: tokens per sequence s.
        mode: ``train`` (forward with loss + backward, no optimizer) or ``forward``.
        dtype: element type of weights and activations.
        attention: ``fused`` (FlashAttention; in eager: HF SDPA) or ``unfused``.
        framework: ``fused`` or ``eager`` (PyTorch eager Hugging Face model; see module doc).
        head: eager only: ``lm``, ``pretraining`` (BERT) or ``classification``.
        family: eager only: Hugging Face family (`coda.models.eager.FAMILIES`), default from cfg.
        accumulate_grads: eager training adds each gradient into an existing `.grad`.
        cpu_dispatch_s: host time per eager kernel; default `CPU_DISPATCH_S` for eager, 0 for fused.
        predictor: latency model (default: the device's); e.g. `Roofline()` for the baseline.
        per_op: breakdown rows per op instead of per layer.

    Raises:
        ConfigError: unknown GPU, preset, mode or framework; a dtype the GPU lacks (fp8 on A100).
    """
    if mode not in MODES:
        raise ConfigError(f"mode={mode!r} must be one of {', '.join(MODES)}")
    if framework not in FRAMEWORKS:
        raise ConfigError(f"framework={framework!r} must be one of {', '.join(FRAMEWORKS)}")
    if head not in HEADS:
        raise ConfigError(f"head={head!r} must be one of {', '.join(HEADS)}")
    cfg = get(cfg) if isinstance(cfg, str) else cfg
    dev = _device(device, dtype, framework)
    training = mode == "train"
    fwd, bwd = _graphs(cfg, batch, seq_len, training, dtype, attention, framework, head, family, accumulate_grads)
    cpu = (CPU_DISPATCH_S if framework == "eager" else 0.0) if cpu_dispatch_s is None else float(cpu_dispatch_s)
    phases = [("forward", list(fwd.layers))] + ([("backward", list(reversed(bwd.layers)))] if bwd is not None else [])
    # kernel order matters only to the host pipeline and the per-op table; else skip the sort
    ordered = [(phase, g, n, g.ops() if cpu > 0 or per_op else list(g.nodes))
               for phase, layers in phases for g, n in layers]
    flat = [op for *_, ops in ordered for op in ops]
    times = op_latencies(flat, dev, predictor)
    rows: list[dict[str, Any]] = []
    sums = {"forward": 0.0, "backward": 0.0}
    gpu_total, i, slack, phase_now = 0.0, 0, 0.0, ""
    for phase, g, n, ops in ordered:
        t = times[i:i + len(ops)]
        i += len(ops)
        if phase != phase_now:  # each phase starts with an empty queue
            slack, phase_now = 0.0, phase
        totals, slack = _pipeline(t, n, cpu, slack) if cpu > 0 else ([n * x for x in t], slack)
        gpu_total += n * sum(t)
        layer = g.name.removesuffix(".backward")
        sums[phase] += sum(totals)
        if per_op:
            rows += [dict(layer=layer, repeat=n, phase=phase, op=op.name, kind=op.kind, gpu_s=x, seconds=tot / n,
                          total_s=tot) for op, x, tot in zip(ops, t, totals)]
        else:
            rows.append(dict(layer=layer, repeat=n, phase=phase, kernels=len(ops), seconds=sum(totals) / n,
                             total_s=sum(totals)))
    name = dev.name if isinstance(dev, GPU) else getattr(dev, "name", type(dev).__name__)
    return IterationResult(cfg.name, str(name), batch, seq_len, mode, dtype, attention, framework, sums["forward"],
                           sums["backward"], max(sums["forward"] + sums["backward"] - gpu_total, 0.0),
                           pd.DataFrame(rows))
