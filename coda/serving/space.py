"""The serving-plan search space: deployments of a model on up to N GPUs of given types, as data.

A `ServingSpace` lists the choices (tp, pp, ep, replicas, schedulers and their budgets);
`enumerate_specs` takes their product (`itertools.product`) and keeps the combinations a
scheduler reads (vllm and orca: max_batch x max_tokens; sarathi: max_batch x chunk; static:
max_batch) that fit the device count. A `DeploymentSpec` is one of them: plain values, so it
pickles to a worker and keys the result store; `deployment(model)` builds the `Deployment` on
the DGX cluster of its GPU's generation (as `coda.search.gpu_reference` does).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from coda.arch.clusters import cluster
from coda.arch.gpus import GPU, gpu
from coda.errors import ConfigError, InfeasibleDesign
from coda.models.config import ModelConfig
from coda.serving.deployment import Deployment
from coda.serving.schedulers.base import MAX_SEQS, MAX_TOKENS, SchedulerConfig, SchedulerKind

DGX_PRESET = {"ampere": "dgx-a100", "hopper": "dgx-h100"}
"""The cluster preset of each GPU generation (NVSwitch nodes of 8, InfiniBand between them)."""
DEFAULT_SCHEDULER = SchedulerConfig()
"""Budgets a scheduler keeps when the space does not vary them (the knobs it does not read)."""


def _help(text: str) -> dict[str, str]:
    return {"help": text}


def _ints(name: str, values: Any, hi: int) -> tuple[int, ...]:
    vals = tuple(values) if isinstance(values, (list, tuple)) else (values,)
    if not vals or any(isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= hi for v in vals):
        raise ConfigError(f"serving space: {name}={values!r} must be a non-empty list of integers in [1, {hi}]")
    return tuple(sorted(set(vals)))


@dataclass(frozen=True)
class ServingSpace:
    """The choices of a serving search (each a tuple; see `enumerate_specs`)."""

    tp: tuple[int, ...] = field(default=(1, 2, 4, 8), metadata=_help("tensor-parallel widths"))
    pp: tuple[int, ...] = field(default=(1, 2, 4), metadata=_help("pipeline stages"))
    ep: tuple[int, ...] = field(default=(1,), metadata=_help("expert-parallel widths (MoE, with tp = pp = 1)"))
    replicas: tuple[int, ...] = field(default=(1, 2, 4, 8, 16), metadata=_help("replica counts"))
    schedulers: tuple[str, ...] = field(default=("vllm", "sarathi"), metadata=_help("batching policies"))
    max_batch: tuple[int, ...] = field(default=(128, 256), metadata=_help("most sequences per iteration"))
    max_tokens: tuple[int, ...] = field(default=(4096,), metadata=_help("vllm, orca: prompt tokens per iteration"))
    chunk: tuple[int, ...] = field(default=(256, 512, 1024, 2048), metadata=_help("sarathi: token budget"))
    dtype: str = field(default="bf16", metadata=_help("weights, activations and KV cache"))

    def __post_init__(self) -> None:
        for name, hi in (("tp", 1024), ("pp", 1024), ("ep", 1024), ("replicas", 2**20), ("max_batch", MAX_SEQS),
                         ("max_tokens", MAX_TOKENS), ("chunk", MAX_TOKENS)):
            object.__setattr__(self, name, _ints(name, getattr(self, name), hi))
        kinds = tuple(self.schedulers) if isinstance(self.schedulers, (list, tuple)) else (self.schedulers,)
        if not kinds:
            raise ConfigError("serving space: schedulers=() must name at least one of "
                              f"{', '.join(k.value for k in SchedulerKind)}")
        object.__setattr__(self, "schedulers", tuple(dict.fromkeys(SchedulerKind.from_str(k).value for k in kinds)))

    def scheduler_configs(self) -> list[SchedulerConfig]:
        """Every scheduler configuration of the space (only the knobs each policy reads vary)."""
        out = []
        d = DEFAULT_SCHEDULER
        for kind in self.schedulers:
            k = SchedulerKind.from_str(kind)
            tokens = self.max_tokens if k in (SchedulerKind.VLLM, SchedulerKind.ORCA) else (d.max_tokens,)
            chunks = self.chunk if k is SchedulerKind.SARATHI else (d.chunk,)
            for b, t, c in itertools.product(self.max_batch, tokens, chunks):
                out.append(SchedulerConfig(kind=k, max_batch=b, max_tokens=t, chunk=c))
        return out


@dataclass(frozen=True)
class DeploymentSpec:
    """One deployment of the search, as plain values (module docstring)."""

    gpu: str
    tp: int
    pp: int
    ep: int
    replicas: int
    scheduler: str
    max_batch: int
    max_tokens: int
    chunk: int
    dtype: str = "bf16"

    @property
    def devices_per_replica(self) -> int:
        return self.tp * self.pp * self.ep

    @property
    def n_devices(self) -> int:
        return self.replicas * self.devices_per_replica

    @property
    def layout(self) -> tuple[str, int, int, int, str]:
        """What the iteration costs depend on: (gpu, tp, pp, ep, dtype)."""
        return (self.gpu, self.tp, self.pp, self.ep, self.dtype)

    def scheduler_config(self) -> SchedulerConfig:
        return SchedulerConfig(kind=SchedulerKind.from_str(self.scheduler), max_batch=self.max_batch,
                               max_tokens=self.max_tokens, chunk=self.chunk)

    def deployment(self, model: ModelConfig, n_devices: int | None = None) -> Deployment:
        """The `Deployment` on a DGX cluster of `n_devices` (default: exactly its own) of its GPU.

        Raises:
            ConfigError: a layout the model does not allow; InfeasibleDesign: too few devices.
        """
        g = gpu(self.gpu)
        cl = cluster(dgx_preset(g), n_devices or self.n_devices, device=g)
        return Deployment(model, cl, tp=self.tp, pp=self.pp, ep=self.ep, replicas=self.replicas, dtype=self.dtype,
                          scheduler=self.scheduler_config())

    def label(self) -> str:
        """`2 x tp4 pp1 on h100-sxm, sarathi chunk 512 batch 256` (the knobs its policy reads)."""
        kind = SchedulerKind.from_str(self.scheduler)
        knobs = (f"chunk {self.chunk}" if kind is SchedulerKind.SARATHI
                 else f"max_tokens {self.max_tokens}" if kind in (SchedulerKind.VLLM, SchedulerKind.ORCA) else "")
        ep = f" ep{self.ep}" if self.ep > 1 else ""
        return (f"{self.replicas} x (tp{self.tp} pp{self.pp}{ep}) = {self.n_devices} x {self.gpu}, {self.scheduler} "
                f"{knobs + ', ' if knobs else ''}max_batch {self.max_batch}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def dgx_preset(g: GPU) -> str:
    """The cluster preset of a GPU's generation.

    Raises:
        ConfigError: a GPU of another generation (naming the ones that have a preset).
    """
    if g.architecture not in DGX_PRESET:
        raise ConfigError(f"serving search: GPU {g.name!r} is {g.architecture}; only Ampere and Hopper GPUs have a "
                          f"cluster preset ({', '.join(DGX_PRESET.values())}): use e.g. a100-sxm4-80gb or h100-sxm")
    return DGX_PRESET[g.architecture]


def enumerate_specs(model: ModelConfig, gpus: Sequence[str], max_devices: int,
                    space: ServingSpace) -> Iterator[DeploymentSpec]:
    """Every deployment of `space` on at most `max_devices` GPUs of each type (module docstring),
    in a fixed order; layouts the model cannot take (ep on a dense model, tp beyond the heads,
    pp beyond the layers) are left to `Deployment` to refuse with its reason."""
    ep_choices = space.ep if model.is_moe else (1,)
    for name, tp, pp, ep in itertools.product(gpus, space.tp, space.pp, ep_choices):
        if ep > 1 and (tp > 1 or pp > 1):
            continue  # expert parallelism runs attention data-parallel (Deployment's rule)
        per = tp * pp * ep
        for r, sc in itertools.product(space.replicas, space.scheduler_configs()):
            if r * per <= max_devices:
                yield DeploymentSpec(name, tp, pp, ep, r, sc.kind.value, sc.max_batch, sc.max_tokens, sc.chunk,
                                     space.dtype)


def baseline_spec(model: ModelConfig, gpu_name: str, max_devices: int, space: ServingSpace) -> DeploymentSpec | None:
    """The heuristic deployment a user would try first: the largest tp of the space within a node
    (8) and the device count that holds the weights with room for KV, pp = 1, as many replicas
    as the devices hold, vllm with its default budgets (max_batch 256, max_tokens 4096); None if
    no tp fits."""
    d = DEFAULT_SCHEDULER
    for tp in sorted((t for t in space.tp if t <= min(8, max_devices)), reverse=True):
        spec = DeploymentSpec(gpu_name, tp, 1, 1, max_devices // tp, SchedulerKind.VLLM.value, d.max_batch,
                              d.max_tokens, d.chunk, space.dtype)
        try:
            spec.deployment(model).kv_budget()
        except ConfigError:  # a tp the model's heads do not take: the next smaller one
            continue
        except InfeasibleDesign:  # the largest valid tp does not hold the weights: no smaller one does
            return None
        return spec
    return None


def n_replica_choices(max_devices: int) -> tuple[int, ...]:
    """Powers of two up to `max_devices` (the default replica counts)."""
    return tuple(2**k for k in range(int(math.log2(max_devices)) + 1))


__all__ = ["DEFAULT_SCHEDULER", "DGX_PRESET", "DeploymentSpec", "ServingSpace", "baseline_spec", "dgx_preset",
           "enumerate_specs", "n_replica_choices"]
