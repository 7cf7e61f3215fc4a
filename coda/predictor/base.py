"""The predictor interface: `(Op, device) -> Estimate`, shared by every latency model."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from coda.errors import ConfigError
from coda.models.ops import Op

BOUNDS = ("compute", "memory", "launch")


@dataclass(frozen=True)
class Estimate:
    """A predicted latency with the reasons for it.

    Attributes:
        latency_s: predicted time of the op in seconds.
        bound: what limits it: ``compute``, ``memory`` or ``launch`` (fixed overhead).
        model: name of the predictor that made it.
        details: model-specific breakdown (tile shape, tiles, waves, per-wave time, utilisation).
    """

    latency_s: float
    bound: str
    model: str
    details: dict[str, Any] = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class OpLatency:
    """Latency of one op on an accelerator, as the on-chip scheduler (ilp/) needs it.

    Attributes:
        core_type: ``"tensor"`` (matmul, attention) or ``"vector"`` (everything else).
        one_core_s: seconds on a single core of that type.
        all_cores_s: seconds split across all cores of that type (intra-op parallelism).
    """

    core_type: str
    one_core_s: float
    all_cores_s: float


class BasePredictor(ABC):
    """A latency model. Subclasses implement `estimate`; `latency` is its `latency_s`."""

    name: str = "base"

    @abstractmethod
    def estimate(self, op: Op, device: Any) -> Estimate:
        """Latency of `op` on `device` with its breakdown."""

    def latency(self, op: Op, device: Any) -> float:
        """Predicted seconds of `op` on `device`."""
        return self.estimate(op, device).latency_s


def reject_collective(op: Op) -> None:
    """Collectives are timed by `Cluster.collective_time`, which knows the group's links."""
    if op.kind == "collective":
        raise ConfigError(
            f"op {op.name!r} is a {op.dims['collective']} collective: time it with Cluster.collective_time, "
            "not with a single-device predictor"
        )
