"""User-facing evaluations that compose models, hardware, predictors, schedules and placement.

- `iteration(cfg, device, batch, seq_len, ...)`: one training or forward step on one device.
- `training(cfg, cluster, plan, seq_len, ...)`: one training step of a parallel plan on a cluster.
"""

from coda.evaluate.iteration import IterationResult, iteration
from coda.evaluate.training import TrainingResult, training

__all__ = ["IterationResult", "TrainingResult", "iteration", "training"]
