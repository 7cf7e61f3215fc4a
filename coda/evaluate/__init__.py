"""User-facing evaluations that compose models, hardware, predictors, schedules and placement.

- `iteration(cfg, device, batch, seq_len, ...)`: one training or forward step on one device.
- `training(cfg, cluster, plan, seq_len, ...)`: one training step of a parallel plan on a cluster.
- `inference(cfg, cluster, tp, batch, prompt_len, output_len, ..., pp=1)`: TTFT, TPOT, throughput,
  memory; `inference_sweep(..., batches, ...)`: the same over batch sizes, as a DataFrame.
"""

from coda.evaluate.inference import InferenceResult, inference, inference_sweep
from coda.evaluate.iteration import IterationResult, iteration
from coda.evaluate.training import TrainingResult, training

__all__ = ["InferenceResult", "IterationResult", "TrainingResult", "inference", "inference_sweep", "iteration",
           "training"]
