"""One objective vocabulary for placement, design search and serving: what a search maximises.

Every objective is a column of the result frames, in SI units:

- ``tokens_per_s``: trained (or generated) tokens per second of the whole cluster;
- ``tokens_per_s_per_w``: tokens per second per watt of cluster TDP (tokens per joule at TDP);
- ``tokens_per_s_per_device``: tokens per second per device;
- ``qps_per_device``, ``qps_per_watt``, ``qps_per_dollar``: a serving deployment's capacity (the
  highest request rate meeting its SLO, `coda.serving.capacity`) per device, per watt of TDP, per
  dollar per second of the user's prices.

``throughput`` is accepted as an alias of ``tokens_per_s`` (the name placement used first).
"""

from __future__ import annotations

from coda.errors import ConfigError

OBJECTIVES: dict[str, str] = {
    "tokens_per_s": "tokens per second of the cluster",
    "tokens_per_s_per_w": "tokens per second per watt of cluster TDP",
    "tokens_per_s_per_device": "tokens per second per device",
    "qps_per_device": "serving capacity (requests/s under the SLO) per device",
    "qps_per_watt": "serving capacity per watt of the devices' TDP (requests per joule at TDP)",
    "qps_per_dollar": "serving capacity per dollar per second of the devices' price (requests per dollar)",
}
"""Every objective name and what it measures (higher is better for all)."""

ALIASES = {"throughput": "tokens_per_s"}


def objective(name: object, allowed: tuple[str, ...], where: str = "objective") -> str:
    """The canonical objective `name` stands for, if `allowed` here.

    Raises:
        ConfigError: an unknown name, or one this search cannot rank by (naming the allowed ones).
    """
    canon = ALIASES.get(str(name), str(name)) if isinstance(name, str) else None
    if canon not in OBJECTIVES or canon not in allowed:
        raise ConfigError(f"{where}={name!r} must be one of {', '.join(allowed)}")
    return canon


__all__ = ["ALIASES", "OBJECTIVES", "objective"]
