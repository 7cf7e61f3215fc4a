"""`Device`: what a cluster is made of, a `GPU` or an `Accelerator`, as one type."""

from __future__ import annotations

from typing import TypeAlias

from coda.arch.accelerators import Accelerator
from coda.arch.gpus import GPU

Device: TypeAlias = GPU | Accelerator
"""A device coda can cost: a catalogued GPU (measured, calibrated predictor) or an accelerator
design (PHAZE template, analytical predictor and on-chip ILP)."""

__all__ = ["Device"]
