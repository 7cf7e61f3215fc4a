"""`TrainingResult`: a plan's step time with its breakdown, memory per device, throughput, MFU, HFU.

Which FLOPs count is defined once, in `coda.placement.flops` (per step of `global_batch`
sequences of `seq_len` tokens on n = tp*cp*pp*dp devices):

- model FLOPs: PaLM's `6*N + 12*L*s*d` per token (Chowdhery et al. 2022, appendix B: N parameters,
  matmul and attention FLOPs only) with causal attention counted over the entries its mask keeps
  (about `6*L*s*d`), no recomputation;
- hardware FLOPs: what the kernels execute, recomputation and FlashAttention's backward
  recomputation of the scores included, fused causal attention at its kept entries. With full
  recomputation and unfused attention this is Megatron-LM's `96*B*s*l*h^2*(1 + s/(6h) + V/(16*l*h))`;
- MFU = model FLOPs / (step time * n * peak), HFU = hardware FLOPs / (step time * n * peak), with
  the device's dense peak for the dtype (`costs.device_peak_flops`); `0 < MFU <= HFU <= 1`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import pandas as pd

from coda.placement.costs import device_peak_flops
from coda.placement.pipeline import PipelineResult
from coda.placement.plan import Plan
from coda.units import GiB

BREAKDOWN = (
    ("forward", "forward compute of the slowest stage, x m micro-batches"),
    ("backward", "backward compute of the slowest stage, x m"),
    ("recompute", "activation recomputation of the slowest stage, x m"),
    ("tp_comm", "tensor-parallel collectives of the slowest stage, x m (exposed: all, or with tp_comm_overlap what "
                "the GEMMs do not hide)"),
    ("ep_comm", "expert-parallel all-to-alls of the slowest stage, x m (not overlapped)"),
    ("zero3_comm", "ZeRO-3 weight gathers / gradient reduce-scatters not hidden behind compute, x m"),
    ("pp_comm", "pipeline send/recv of the slowest stage, x m (blocking)"),
    ("bubble", "pipeline fill and drain: pipeline time - m x slowest stage"),
    ("dp_comm", "data-parallel gradient reduction (and ZeRO-1 weight all-gather) not overlapped"),
    ("optimizer", "optimizer step of the stage that finishes last"),
    ("embedding_sync", "all-reduce of tied embedding gradients between first and last stage"),
)


@dataclass(frozen=True, eq=False)
class TrainingResult:
    """One evaluated plan. Times in seconds, memory in bytes, FLOP rates in FLOP/s per device.

    Attributes:
        model, cluster, device, software: names.
        plan: the plan, with `stage_layers` filled in.
        seq_len, dtype: workload.
        pipeline: the per-stage costs (`pipeline.PipelineResult`).
        step_time_s: time of one optimizer step.
        tokens_per_s: global_batch * seq_len / step_time_s.
        model_flops_per_s, hardware_flops_per_s: per device (module docstring).
        mfu, hfu: utilisations (module docstring).
        peak_flops: the device's peak used for MFU / HFU.
    """

    model: str
    cluster: str
    device: str
    software: str
    plan: Plan
    seq_len: int
    dtype: str
    pipeline: PipelineResult
    step_time_s: float
    tokens_per_s: float
    model_flops_per_s: float
    hardware_flops_per_s: float
    mfu: float
    hfu: float
    peak_flops: float

    @property
    def fits(self) -> bool:
        return self.pipeline.fits

    @property
    def peak_memory_bytes(self) -> float:
        return self.pipeline.peak_memory_bytes

    @property
    def memory_limit_bytes(self) -> float:
        return self.pipeline.memory_limit

    @property
    def tokens_per_s_per_device(self) -> float:
        return self.tokens_per_s / self.plan.n_devices

    def breakdown(self) -> dict[str, float]:
        """Step-time components in seconds; they sum to `step_time_s`."""
        pr, m = self.pipeline, self.plan.micro_batches
        b, k = pr.stages[pr.bottleneck], pr.stages[pr.end_stage]
        return {
            "forward": m * b.fwd_s, "backward": m * b.bwd_s, "recompute": m * b.rec_s, "tp_comm": m * b.tp_s,
            "ep_comm": m * b.ep_s,
            "zero3_comm": m * b.z3_s, "pp_comm": m * b.p2p_s, "bubble": pr.bubble_s,
            "dp_comm": k.dp_exposed_s + k.dp_gather_s, "optimizer": k.opt_s, "embedding_sync": pr.emb_sync_s,
        }

    def overlapped(self) -> dict[str, float]:
        """Communication hidden behind compute (not in the step time), seconds."""
        pr, m = self.pipeline, self.plan.micro_batches
        b, k = pr.stages[pr.bottleneck], pr.stages[pr.end_stage]
        return {"dp_comm": k.dp_sync_s - k.dp_exposed_s, "zero3_comm": m * b.z3_hidden_s,
                "pp_comm": m * b.p2p_hidden_s, "ep_comm": m * b.ep_hidden_s}

    def breakdown_frame(self) -> pd.DataFrame:
        """Components with seconds, share of the step and what each is."""
        bd = self.breakdown()
        rows = [dict(component=c, time_s=bd[c], share=bd[c] / self.step_time_s, what=what) for c, what in BREAKDOWN]
        rows.append(dict(component="step", time_s=self.step_time_s, share=1.0, what="sum of the above"))
        for c, v in self.overlapped().items():
            if v > 0:
                rows.append(dict(component=f"{c} (overlapped)", time_s=v, share=float("nan"),
                                 what="hidden behind compute, not in the step"))
        return pd.DataFrame(rows)

    def stages_frame(self) -> pd.DataFrame:
        """Per device stage: layers, per-micro-batch times and memory components (GiB)."""
        rows = []
        for s in self.pipeline.stages:
            layers = ("emb+" if s.has_embedding else "") + str(s.blocks) + ("+head" if s.has_head else "")
            rows.append(dict(
                stage=s.stage, layers=layers, fwd_ms=s.fwd_s * 1e3, bwd_ms=s.bwd_s * 1e3, recompute_ms=s.rec_s * 1e3,
                tp_ms=s.tp_s * 1e3, ep_ms=s.ep_s * 1e3, pp_ms=s.p2p_s * 1e3, per_microbatch_ms=s.time_s * 1e3,
                dp_sync_ms=s.dp_sync_s * 1e3, optimizer_ms=s.opt_s * 1e3,
                weights_GiB=s.weight_bytes / GiB, grads_GiB=s.grad_bytes / GiB, optimizer_GiB=s.optim_bytes / GiB,
                activations_GiB=s.activation_bytes / GiB, inflight=s.inflight, workspace_GiB=s.work_bytes / GiB,
                total_GiB=s.memory_bytes / GiB))
        return pd.DataFrame(rows)

    def summary(self) -> dict[str, Any]:
        """Headline numbers in display units."""
        return dict(model=self.model, cluster=self.cluster, devices=self.plan.n_devices, plan=self.plan.describe(),
                    stage_layers=list(self.plan.stage_layers or ()), step_s=self.step_time_s,
                    tokens_per_s=self.tokens_per_s, tokens_per_s_per_device=self.tokens_per_s_per_device,
                    model_TFLOPs_per_device=self.model_flops_per_s / 1e12,
                    hardware_TFLOPs_per_device=self.hardware_flops_per_s / 1e12, mfu=self.mfu, hfu=self.hfu,
                    peak_memory_GiB=self.peak_memory_bytes / GiB, memory_limit_GiB=self.memory_limit_bytes / GiB,
                    fits=self.fits, software=self.software)

    def to_dict(self) -> dict[str, Any]:
        """Everything, JSON-ready (SI units in the breakdown)."""
        out = self.summary()
        out["plan_fields"] = {f.name: (list(v) if isinstance(v := getattr(self.plan, f.name), tuple) else v)
                              for f in dataclasses.fields(self.plan)}
        out["breakdown_s"] = self.breakdown()
        out["overlapped_s"] = self.overlapped()
        out["stages"] = self.stages_frame().to_dict(orient="records")
        return out


def make_result(model: Any, plan: Plan, pr: PipelineResult) -> TrainingResult:
    """Assemble a `TrainingResult` from a `CostModel`, the plan and its pipeline timing."""
    m, step = plan.micro_batches, pr.step_s
    model_flops = sum(s.model_flops for s in pr.stages) * m / plan.pp / step
    hw_flops = sum(s.hw_flops for s in pr.stages) * m / plan.pp / step
    peak = device_peak_flops(model.device, model.dtype)
    return TrainingResult(
        model=model.cfg.name, cluster=model.cluster.name, device=str(getattr(model.device, "name", model.device)),
        software=model.software.name, plan=plan.replace(stage_layers=pr.stage_layers), seq_len=model.seq_len,
        dtype=model.dtype, pipeline=pr, step_time_s=step, tokens_per_s=plan.global_batch * model.seq_len / step,
        model_flops_per_s=model_flops, hardware_flops_per_s=hw_flops, mfu=model_flops / peak, hfu=hw_flops / peak,
        peak_flops=peak)
