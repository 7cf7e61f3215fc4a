"""Batching policies, one module each, behind `BaseScheduler` and registered by `SchedulerKind`:
`static`, `orca`, `vllm`, `sarathi` (their module docstrings give the policies and sources)."""

from coda.serving.schedulers.base import (
           BaseScheduler,
           SchedulerConfig,
           SchedulerKind,
           make_scheduler,
           register,
           scheduler_class,
)
from coda.serving.schedulers.orca import OrcaScheduler
from coda.serving.schedulers.sarathi import SarathiScheduler
from coda.serving.schedulers.static import StaticScheduler
from coda.serving.schedulers.vllm import VllmScheduler

register(SchedulerKind.STATIC, StaticScheduler)
register(SchedulerKind.ORCA, OrcaScheduler)
register(SchedulerKind.VLLM, VllmScheduler)
register(SchedulerKind.SARATHI, SarathiScheduler)

__all__ = ["BaseScheduler", "OrcaScheduler", "SarathiScheduler", "SchedulerConfig", "SchedulerKind", "StaticScheduler",
           "VllmScheduler", "make_scheduler", "register", "scheduler_class"]
