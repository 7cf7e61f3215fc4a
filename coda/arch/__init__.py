"""Hardware: GPUs, accelerators (PHAZE template with area and TDP models), the design space, clusters."""

from coda.arch.accelerators import Accelerator, tpuv4_like
from coda.arch.clusters import Cluster, Level, cluster, list_clusters
from coda.arch.design_space import DesignSpace
from coda.arch.device import Device
from coda.arch.gpus import GPU, gpu, list_gpus

__all__ = ["GPU", "Accelerator", "Cluster", "DesignSpace", "Device", "Level", "cluster", "gpu", "list_clusters",
           "list_gpus", "tpuv4_like"]
