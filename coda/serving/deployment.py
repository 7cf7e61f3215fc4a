"""What is served where: `Deployment` (model, cluster, replica layout, dtypes, KV paging, scheduler).

A deployment is `replicas` identical model replicas on the first `replicas * tp * pp * ep` devices
of a cluster, each a `tp`-wide tensor-parallel group in each of `pp` pipeline stages (or, for an
MoE model with `ep` > 1, `ep` devices with data-parallel attention and E/ep experts each, as
`coda.evaluate.inference` models it); with context parallelism (`cp` > 1) each stage is `cp`
such tensor-parallel groups that hold 1/cp of every sequence (`coda.evaluate.context_parallel`:
ring-attention prefill, KV cache sharded for decode), `replicas * tp * cp * pp` devices in all.
Its KV cache is paged in blocks of `kv_block_tokens`
tokens (vLLM, Kwon et al. SOSP'23, section 4.2); the blocks a replica may use are the HBM of its
fullest device left after the weights, the activation workspace of one iteration of
`SchedulerConfig.iteration_tokens` tokens (1/cp of them per device, and two ring buffers) and
`reserve_bytes` (`kv_budget`); a block's B tokens take B/cp tokens' KV on each device.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from coda.arch.clusters import MAX_DEVICES, Cluster
from coda.errors import ConfigError, InfeasibleDesign
from coda.evaluate.context_parallel import cp_reasons, ring_buffer_bytes
from coda.evaluate.inference import (
    DEFAULT_RESERVE_BYTES,
    kv_cache_bytes,
    stage_weight_bytes,
    workspace_bytes_per_sequence,
)
from coda.models.config import ModelConfig
from coda.placement.costs import device_memory_bytes
from coda.placement.plan import balanced_stage_layers
from coda.serving.schedulers.base import SchedulerConfig
from coda.units import dtype_bytes, fmt_bytes

ROUTERS = ("round_robin", "least_outstanding")
MAX_BLOCK_TOKENS = 2**16


def _help(text: str) -> dict[str, str]:
    return {"help": text}


def stage_block_counts(cfg: ModelConfig, pp: int) -> tuple[tuple[int, ...], ...]:
    """Per pipeline stage, its blocks of each distinct kind (`cfg.block_kinds`), stages of
    `balanced_stage_layers(l, pp)` consecutive layers (as `coda.evaluate.inference`)."""
    starts = np.cumsum((0, *balanced_stage_layers(cfg.n_layers, pp)))
    pattern = np.asarray(cfg.block_pattern)
    return tuple(tuple(int(c) for c in np.bincount(pattern[a:b], minlength=len(cfg.block_kinds)))
                 for a, b in zip(starts[:-1], starts[1:]))


@dataclass(frozen=True)
class KVBudget:
    """The paged KV cache of one replica.

    Attributes:
        block_tokens: tokens per block, B.
        blocks: blocks the replica may hold (its fullest device's free HBM / bytes per block).
        bytes_per_block: KV bytes one block takes on that device.
        weights_bytes, workspace_bytes, limit_bytes: that device's weights, workspace, and HBM
            minus the reserve.
    """

    block_tokens: int
    blocks: int
    bytes_per_block: float
    weights_bytes: float
    workspace_bytes: float
    limit_bytes: float

    def blocks_for(self, tokens: int) -> int:
        """Blocks that hold `tokens` tokens, ceil(tokens / B)."""
        return -(-int(tokens) // self.block_tokens)


@dataclass(frozen=True)
class Deployment:
    """A model served by identical replicas on a cluster (SI units; see the module docstring)."""

    model: ModelConfig = field(metadata=_help("the model (a ModelConfig; coda.models.get(name) for a preset)"))
    cluster: Cluster = field(metadata=_help("the cluster (coda.arch.clusters.cluster(name, n))"))
    tp: int = field(default=1, metadata=_help("tensor-parallel width per pipeline stage"))
    pp: int = field(default=1, metadata=_help("pipeline stages per replica"))
    ep: int = field(default=1, metadata=_help("expert parallelism of an MoE model (with tp = pp = 1)"))
    replicas: int | None = field(default=None, metadata=_help("replicas; default all the devices allow"))
    dtype: str = field(default="bf16", metadata=_help("weights and activations: bf16, fp16, fp8"))
    kv_dtype: str | None = field(default=None, metadata=_help("KV-cache element type; default dtype"))
    kv_block_tokens: int = field(default=16, metadata=_help("tokens per KV-cache block (vLLM's default 16)"))
    reserve_bytes: float = field(default=DEFAULT_RESERVE_BYTES, metadata=_help("HBM not for the model, bytes"))
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig, metadata=_help("batching policy"))
    router: str = field(default="round_robin", metadata=_help("round_robin | least_outstanding"))
    cp: int = field(default=1, metadata=_help("context-parallel width: tp-wide groups that each hold 1/cp of every "
                                              "sequence (long prompts)"))

    def __post_init__(self) -> None:
        self._check_types_and_sizes()
        self._check_layout()
        self._check_dtypes_and_memory()
        self._settle_replicas()

    def _check_types_and_sizes(self) -> None:
        if not isinstance(self.model, ModelConfig):
            raise ConfigError(f"model={self.model!r} must be a ModelConfig (coda.models.get('llama2-70b'))")
        if not isinstance(self.cluster, Cluster):
            raise ConfigError(f"cluster={self.cluster!r} must be a Cluster (coda.arch.clusters.cluster('dgx-h100', 8))")
        for name in ("tp", "pp", "ep", "cp", "kv_block_tokens"):
            v = getattr(self, name)
            hi = MAX_BLOCK_TOKENS if name == "kv_block_tokens" else MAX_DEVICES
            if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= hi:
                raise ConfigError(f"deployment: {name}={v!r} must be an integer in [1, {hi}]")
        if self.router not in ROUTERS:
            raise ConfigError(f"deployment: router={self.router!r} must be one of {', '.join(ROUTERS)}")
        if not isinstance(self.scheduler, SchedulerConfig):
            raise ConfigError(f"deployment: scheduler={self.scheduler!r} must be a SchedulerConfig")

    def _check_layout(self) -> None:
        cfg = self.model
        if self.mla_unsupported():
            raise ConfigError(f"{cfg.name}: multi-head latent attention runs different ops in prefill and decode; "
                              "the serving simulator does not batch them together yet (use a model without MLA)")
        if self.pp > cfg.n_layers:
            raise ConfigError(f"deployment: pp={self.pp} exceeds {cfg.name}'s {cfg.n_layers} layers; use pp <= "
                              f"{cfg.n_layers}")
        if self.ep > 1 and (not cfg.is_moe or cfg.n_experts % self.ep or self.tp > 1 or self.pp > 1):
            raise ConfigError(f"deployment: ep={self.ep} needs an MoE model whose {cfg.n_experts} expert(s) it "
                              "divides, with tp=1 and pp=1 (attention is data-parallel); use ep=1")
        reasons = cp_reasons(cfg, self.cp, 2 * self.cp, self.tp, self.ep)  # short chunks are padded (2*cp)
        if reasons:
            raise ConfigError("deployment: " + "; ".join(reasons))

    def _check_dtypes_and_memory(self) -> None:
        dtype_bytes(self.dtype)
        object.__setattr__(self, "kv_dtype", self.kv_dtype or self.dtype)
        dtype_bytes(self.kv_dtype or self.dtype)
        supports = getattr(self.cluster.device, "supports", None)
        if supports is not None and not supports(self.dtype):
            raise ConfigError(f"deployment: {self.cluster.device_name} has no {self.dtype} support; use bf16 or fp16")
        if isinstance(self.reserve_bytes, bool) or not isinstance(self.reserve_bytes, (int, float)) \
                or not 0 <= self.reserve_bytes < math.inf:
            raise ConfigError(f"deployment: reserve_bytes={self.reserve_bytes!r} must be a finite number >= 0")

    def _settle_replicas(self) -> None:
        fit = self.cluster.n_devices // self.devices_per_replica
        if fit == 0:
            sizes = "tp*cp*pp*ep" if self.cp > 1 else "tp*pp*ep"
            raise InfeasibleDesign(f"deployment: a replica needs {sizes} = {self.devices_per_replica} devices but "
                                   f"the cluster has {self.cluster.n_devices}; use a smaller layout or more devices")
        if self.replicas is None:
            object.__setattr__(self, "replicas", fit)
        r = self.replicas
        if isinstance(r, bool) or not isinstance(r, int) or not 1 <= r <= fit:
            raise ConfigError(f"deployment: replicas={r!r} must be an integer in [1, {fit}] ({self.cluster.n_devices}"
                              f" devices / {self.devices_per_replica} per replica)")

    def mla_unsupported(self) -> bool:
        return self.model.mla

    @property
    def devices_per_replica(self) -> int:
        return self.tp * self.cp * self.pp * self.ep

    @property
    def n_replicas(self) -> int:
        assert self.replicas is not None
        return self.replicas

    @property
    def n_devices(self) -> int:
        """Devices the replicas use."""
        return self.n_replicas * self.devices_per_replica

    @property
    def stage_blocks(self) -> tuple[tuple[int, ...], ...]:
        return stage_block_counts(self.model, self.pp)

    def kv_bytes_per_token(self) -> float:
        """KV bytes one token of one sequence takes on the fullest device of a replica: its
        stage's share of `kv_cache_bytes` (every layer keeps every token: a sliding window's
        rolling buffer is not paged, which overestimates such models' use); with context parallelism
        1/cp of that, the device's share of the sequence."""
        per_layer = kv_cache_bytes(self.model, 1, 1, self.tp, self.kv_dtype or self.dtype) / self.model.n_layers
        out = per_layer * max(sum(c) for c in self.stage_blocks)
        return out if self.cp == 1 else out / self.cp

    def kv_budget(self) -> KVBudget:
        """The paged KV cache of one replica (module docstring).

        Raises:
            InfeasibleDesign: the weights and workspace leave no room for a single block.
        """
        cfg, dev = self.model, self.cluster.device
        if isinstance(dev, str):
            raise ConfigError(f"cluster {self.cluster.name!r} gives no model of its device {dev!r}")
        limit = device_memory_bytes(dev) - self.reserve_bytes
        stages = self.stage_blocks
        weights = max(stage_weight_bytes(cfg, c, s == 0, s == self.pp - 1, self.tp, self.dtype, self.ep)
                      for s, c in enumerate(stages))
        want = self.scheduler.iteration_tokens
        tokens = min(want, cfg.max_seq_len)  # the workspace is linear in the tokens
        work = workspace_bytes_per_sequence(cfg, tokens, self.tp, self.dtype) * want / tokens
        if self.cp > 1:  # a device's share of the tokens, and the ring's two key/value buffers
            work = work / self.cp + ring_buffer_bytes(cfg, 1, want, self.tp, self.kv_dtype or self.dtype, self.cp)
        per_block = self.kv_bytes_per_token() * self.kv_block_tokens
        blocks = int((limit - weights - work) // per_block) if limit > weights + work else 0
        if blocks < 1:
            raise InfeasibleDesign(
                f"{cfg.name} with tp={self.tp}, pp={self.pp}, {self.dtype}: weights {fmt_bytes(weights)} + workspace "
                f"{fmt_bytes(work)} leave no room for one KV block of {fmt_bytes(per_block)} in "
                f"{fmt_bytes(limit)} of {self.cluster.device_name} (HBM minus reserve); use a larger tp, pp or cp")
        return KVBudget(self.kv_block_tokens, blocks, per_block, weights, work, limit)

    def kv_budget_for(self, context_tokens: int) -> KVBudget:
        """`kv_budget()`, once a request of `context_tokens` (prompt + output) fits one replica beside the
        blocks the scheduler keeps free.

        Raises:
            InfeasibleDesign: no room for a single block, or for such a request.
        """
        budget = self.kv_budget()
        need = budget.blocks_for(context_tokens)
        room = budget.blocks - self.scheduler.kept_free_blocks(budget.blocks)
        if need > room:
            raise InfeasibleDesign(f"the longest request needs {need} KV blocks; a replica holds {room}")
        return budget

    def describe(self) -> str:
        ep = f", ep={self.ep}" if self.ep > 1 else ""
        ep += f", cp={self.cp}" if self.cp > 1 else ""
        return (f"{self.model.name} on {self.n_devices} x {self.cluster.device_name}: {self.replicas} replica(s) of "
                f"tp={self.tp}, pp={self.pp}{ep}, {self.dtype} (KV {self.kv_dtype}), {self.scheduler.kind.value}")

    def tdp_w(self) -> float:
        """Board power of the devices in use (TDP x devices); NaN when the device has none."""
        tdp: Any = getattr(self.cluster.device, "tdp_w", None)
        return float(tdp) * self.n_devices if tdp is not None else math.nan
