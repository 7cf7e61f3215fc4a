"""Hardware: accelerators (PHAZE template with area and TDP models), the design space, GPUs, clusters."""

from coda.arch.accelerators import Accelerator, tpuv4_like
from coda.arch.design_space import DesignSpace

__all__ = ["Accelerator", "DesignSpace", "tpuv4_like"]
