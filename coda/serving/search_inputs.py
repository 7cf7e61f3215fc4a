"""The serving search's inputs, checked before any simulation (`coda.serving.search`)."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from coda.arch.clusters import cluster
from coda.arch.gpus import gpu
from coda.errors import ConfigError
from coda.models.config import ModelConfig
from coda.objectives import objective as canonical_objective
from coda.serving.capacity import Workload, unit_rate
from coda.serving.metrics import SLO
from coda.serving.search_result import EXECUTORS, OBJECTIVES, SLO_KEYS
from coda.serving.space import ServingSpace, dgx_preset
from coda.serving.trace import MAX_REQUESTS, Trace


def _as_slo(slo: Any) -> SLO:
    if isinstance(slo, SLO):
        out = SLO(ttft_p99_s=slo.ttft_p99_s, tbt_p99_s=slo.tbt_p99_s)
    elif isinstance(slo, Mapping):
        unknown = sorted(set(map(str, slo)) - set(SLO_KEYS))
        if unknown:
            raise ConfigError(f"serving search: slo keys {', '.join(unknown)} are unknown; use {', '.join(SLO_KEYS)} "
                              "(seconds)")
        out = SLO(**{k: slo.get(k) for k in SLO_KEYS})
    else:
        raise ConfigError(f"serving search: slo={slo!r} must be a dict with {' and/or '.join(SLO_KEYS)} (seconds)")
    if out.ttft_p99_s is None and out.tbt_p99_s is None:
        raise ConfigError(f"serving search: slo needs {' and/or '.join(SLO_KEYS)} (seconds); capacity under no "
                          "target is unbounded")
    return out


def _prices(objective: str, gpus: Sequence[str], prices: Mapping[str, float] | None) -> dict[str, float]:
    out: dict[str, float] = {}
    for name, v in (prices or {}).items():
        canon = gpu(name).name
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 < v < math.inf:
            raise ConfigError(f"serving search: price of {name}={v!r} must be a finite number of USD per device-hour "
                              "> 0")
        out[canon] = float(v)
    if objective == "qps_per_dollar":
        missing = [g for g in gpus if g not in out]
        if missing:
            raise ConfigError(f"serving search: objective='qps_per_dollar' needs a price for every GPU; none for "
                              f"{', '.join(missing)} (prices_usd_per_h={{'{missing[0]}': 2.5}})")
    return out


def _template(cfg: ModelConfig, workload: Workload | Trace, replicas: int) -> tuple[Trace, str, bool]:
    """The unit-rate template (for a `Workload`, its requests for `replicas` replicas), its
    description, and whether deployments take a prefix of it per replica count."""
    if isinstance(workload, Workload):
        n = min(workload.requests * replicas, MAX_REQUESTS)
        t = replace(workload, requests=n).template()
        desc = workload.describe(per_replica=True)
    elif isinstance(workload, Trace):
        t = unit_rate(workload)
        desc = f"trace {workload.source or ''} ({len(workload)} requests, rescaled)".replace("  ", " ")
    else:
        raise ConfigError(f"serving search: workload={workload!r} must be a Workload (generated requests) or a Trace")
    t.check_context(cfg)
    return t, desc, isinstance(workload, Workload)


def trace_digest(t: Trace) -> str:
    """A digest of the requests (arrivals, prompt and output lengths): part of every store key."""
    h = hashlib.sha256()
    for a in (t.arrival_s.astype(float), t.prompt_tokens.astype(np.int64), t.output_tokens.astype(np.int64)):
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:32]


@dataclass(frozen=True)
class SearchInputs:
    """A serving search's arguments after their checks.

    Attributes:
        cfg: the model.
        gpus: canonical GPU names, without repeats.
        objective: the canonical objective (`OBJECTIVES`).
        prices: USD per device-hour by canonical GPU name.
        slo: the targets.
        space: the choices.
        template: the unit-rate requests (`_template`).
        desc: the workload's description.
        per_replica: requests per replica a deployment takes from `template` (0: the whole template).
    """

    cfg: ModelConfig
    gpus: list[str]
    objective: str
    prices: dict[str, float]
    slo: SLO
    space: ServingSpace
    template: Trace
    desc: str
    per_replica: int


def _check_run(rel_tol: Any, executor: Any, workers: Any) -> None:
    """The bisection's tolerance and the executor's arguments."""
    if isinstance(rel_tol, bool) or not isinstance(rel_tol, (int, float)) or not 0 < rel_tol <= 1:
        raise ConfigError(f"serving search: rel_tol={rel_tol!r} must be a fraction in (0, 1]")
    if executor not in EXECUTORS:
        raise ConfigError(f"serving search: executor={executor!r} must be one of {', '.join(EXECUTORS)}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise ConfigError(f"serving search: workers={workers!r} must be an integer >= 1")


def checked_inputs(model: ModelConfig | str, gpus: Sequence[str], workload: Workload | Trace, slo: Any,
                   objective: str, prices_usd_per_h: Mapping[str, float] | None, max_devices: int,
                   space: ServingSpace | None, rel_tol: float, executor: str, workers: int | None) -> SearchInputs:
    """Check every argument of `coda.serving.search.search` (its docstring), in the order a user
    reads them, before any simulation.

    Raises:
        ConfigError, UnknownNameError: the first bad argument.
    """
    from coda.models import get

    cfg = get(model) if isinstance(model, str) else model
    if not isinstance(cfg, ModelConfig):
        raise ConfigError(f"serving search: model={model!r} must be a preset name or a ModelConfig")
    if isinstance(gpus, str) or not gpus:
        raise ConfigError(f"serving search: gpus={gpus!r} must be a non-empty list of GPU names, e.g. ['h100-sxm']")
    names = list(dict.fromkeys(gpu(n).name for n in gpus))
    if isinstance(max_devices, bool) or not isinstance(max_devices, int) or max_devices < 1:
        raise ConfigError(f"serving search: max_devices={max_devices!r} must be an integer >= 1")
    for n in names:
        cluster(dgx_preset(gpu(n)), max_devices)  # refuses a count the preset cannot hold
    objective = canonical_objective(objective, OBJECTIVES, "serving search: objective")
    prices = _prices(objective, names, prices_usd_per_h)
    slo_ = _as_slo(slo)
    _check_run(rel_tol, executor, workers)
    space = space or ServingSpace()
    if not isinstance(space, ServingSpace):
        raise ConfigError(f"serving search: space={space!r} must be a ServingSpace")
    most = max((r for r in space.replicas if min(space.tp) * min(space.pp) * r <= max_devices), default=1)
    template, desc, per_replica = _template(cfg, workload, most)
    per = workload.requests if isinstance(workload, Workload) else len(template)
    return SearchInputs(cfg, names, objective, prices, slo_, space, template, desc, per if per_replica else 0)
