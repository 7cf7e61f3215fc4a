"""A search's inputs, checked before any design is evaluated: the model, positive sizes, the
placement choices, the parallel widths against the device count, and a read-only store's coverage."""

from __future__ import annotations

from typing import Any

import numpy as np

from coda.errors import ConfigError
from coda.models.config import ModelConfig
from coda.placement import rules as R
from coda.placement.optimize import CHOICES, check_choices

DEFAULT_CHOICES: dict[str, Any] = {
    "tp": (1, 2, 4, 8), "micro_batch": (1, 2, 4), "recompute": ("none", "full"), "zero": (0, 1),
    "schedule": "1f1b", "sequence_parallel": False,
}
"""Placement choices of one design evaluation (a subset of `optimize`'s space, for speed)."""


def _as_cfg(model: ModelConfig | str) -> ModelConfig:
    if isinstance(model, ModelConfig):
        return model
    from coda.models import get

    return get(model)


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(f"search: {name} must be a positive integer, got {value!r}")
    return int(value)


def _merged_choices(choices: dict[str, Any] | None) -> dict[str, Any]:
    """DEFAULT_CHOICES updated by `choices`; a value None lifts that restriction."""
    merged = dict(DEFAULT_CHOICES)
    for k, v in (choices or {}).items():
        if k not in CHOICES:
            raise ConfigError(f"search: unknown placement choice {k!r}; allowed: {', '.join(CHOICES)}")
        if v is None:
            merged.pop(k, None)
        else:
            merged[k] = tuple(v) if isinstance(v, (list, set, frozenset)) else v
    check_choices(merged)  # bad values fail here, before any design is evaluated
    return merged


def check_parallel_widths(choices: dict[str, Any], n_devices: int) -> None:
    """Refuse tp / pp lists of which no value (or no tp * pp product) divides `n_devices`.

    Raises:
        ConfigError: naming the list, `n_devices` and the divisors that would work.
    """
    def values(name: str) -> tuple[int, ...] | None:
        v = choices.get(name)
        if v is None:
            return None
        return tuple(int(x) for x in (v if isinstance(v, (tuple, list)) else (v,)))

    divisors = R.divisors(n_devices)
    tp, pp = values("tp"), values("pp")
    for name, vals in (("tp", tp), ("pp", pp)):
        if vals is not None and not any(n_devices % v == 0 for v in vals):
            raise ConfigError(f"search: {name}={','.join(map(str, vals))}: no value divides n_devices={n_devices} "
                              f"(tp * pp * dp = n_devices); use divisors of {n_devices}: "
                              f"{', '.join(map(str, divisors))}")
    if tp is not None and pp is not None and not any(n_devices % (t * p) == 0 for t in tp for p in pp):
        raise ConfigError(f"search: no tp={','.join(map(str, tp))} times pp={','.join(map(str, pp))} divides "
                          f"n_devices={n_devices} (tp * pp * dp = n_devices); choose tp and pp whose product "
                          "divides it")


__all__ = ["DEFAULT_CHOICES", "check_parallel_widths"]
