"""Clusters of devices, their network hierarchy, and the time of collectives on them.

A `Cluster` is `n_devices` identical devices and a tuple of `Level`s, innermost first. Level
`l` has a `size` (devices in one of its domains: 8 for an NVSwitch node, `n_devices` for the
outermost network), a per-device bandwidth each way (what one device can send, and at the same
time receive, over that level's links), a per-step latency and fitted efficiencies.

Rank convention: ranks are numbered so that a level-`l` domain is `size_l` consecutive ranks
(rank `r` is in node `r // size_0`). `group` is either an int `g` (ranks `0..g-1`: a group of
`g <= size_0` devices fits in one node; a larger one must be whole domains of the level below
the one it spans, e.g. a multiple of 8 on a DGX) or an explicit sequence of ranks (e.g.
`range(0, 32, 8)`: one device in each of 4 nodes, the shape of a data-parallel group).

Collectives (the NCCL ring model, per kind) are timed by `coda.arch.collectives`; `Cluster`
offers them as methods and this module re-exports them.

Calibration: latencies and efficiencies are fitted to Vidur's NCCL measurements
(`coda.arch.collectives_fit`); all_gather, reduce_scatter, broadcast and all_to_all reuse the
all-reduce fit (no measurements of them are shipped). The presets `vidur-a100` and `vidur-h100`
are those testbeds exactly. A preset level may replace the fitted efficiency with a published
measurement of the real system (`efficiency` + `efficiency_source` in its JSON): the DGX
presets do so for InfiniBand, because the Vidur A100 testbed reaches 23% of HDR per NIC across
nodes, while NCCL's maintainers report 96% on DGX A100 (and 94% for NDR on H100).

A cluster from its parts (GPU, GPUs per node, per-GPU bandwidth inside and between nodes) is
`Cluster.from_parts(...)` or a spec string in place of a preset name, `cluster("h100-sxm:8:
nvlink=200GBps:ib=400Gbps", 64)`; see `coda.arch.cluster_parts` for units and defaults.
"""

from __future__ import annotations

import json
import math
import numbers
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from coda.arch.collectives import CollectiveCost, CollectiveKind, collective_cost, collective_time
from coda.errors import ConfigError, UnknownNameError

Group = int | Sequence[int]
_CATALOG = Path(__file__).resolve().parent / "cluster_catalog"

MAX_DEVICES = 2**20
"""Most devices a cluster may have: 2^20 = 1048576, ten times the largest GPU clusters built
(about 10^5 GPUs in 2024; a TPU v4 pod has 4096 chips). Above it a device count is a typo, and
refusing it keeps every enumeration over the devices small."""


def _check_n_devices(n_devices: Any, where: str) -> None:
    """Refuse a device count that is not an integer in [1, MAX_DEVICES], naming `where`."""
    if isinstance(n_devices, bool) or not isinstance(n_devices, int) or n_devices < 1:
        raise ConfigError(f"{where}: n_devices must be a positive int in [1, 2^20 = {MAX_DEVICES}], got "
                          f"{n_devices!r}")
    if n_devices > MAX_DEVICES:
        raise ConfigError(f"{where}: n_devices={n_devices} exceeds {MAX_DEVICES} (2^20, ten times the largest "
                          f"cluster built); use at most {MAX_DEVICES}")


def is_rate(value: object) -> bool:
    """A bandwidth: a real number (not a bool), finite and > 0."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and 0 < float(value) < math.inf


def is_duration(value: object) -> bool:
    """A latency or a per-call overhead: a real number (not a bool), finite and >= 0."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and 0 <= float(value) < math.inf


def is_fraction(value: object) -> bool:
    """An efficiency, the achieved share of a nominal bandwidth: a real number (not a bool) in (0, 1]."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and 0 < float(value) <= 1


def whole_domains(n_devices: int, domain: int) -> bool:
    """`n_devices` fit in one domain of `domain` devices, or fill whole domains (a multiple of it)."""
    return n_devices <= domain or n_devices % domain == 0


@dataclass(frozen=True)
class Level:
    """One level of a cluster's network hierarchy.

    Attributes:
        name: e.g. `nvswitch`, `infiniband`, `ici-x`.
        size: devices in one domain of this level (cumulative: 8 for a DGX node, then the whole
            cluster for the network above it).
        bw_each_way_bytes_per_s: bandwidth one device can send (and receive, simultaneously)
            over this level, e.g. 300e9 for NVLink 3 (600 GB/s bidirectional).
        latency_s: latency of one ring step through this level (alpha).
        efficiency: achieved fraction of `bw_each_way_bytes_per_s` by ring collectives, in (0, 1].
        p2p_latency_s: latency of a point-to-point transfer; defaults to `latency_s`.
        p2p_efficiency: achieved bandwidth fraction of send/recv; defaults to `efficiency`.
        source: where the bandwidth and the latency/efficiency come from.
    """

    name: str
    size: int
    bw_each_way_bytes_per_s: float
    latency_s: float = 0.0
    efficiency: float = 1.0
    p2p_latency_s: float | None = None
    p2p_efficiency: float | None = None
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or self.size < 1:
            raise ConfigError(f"level {self.name!r}: size must be a positive int, got {self.size!r}")
        if not is_rate(self.bw_each_way_bytes_per_s):
            raise ConfigError(
                f"level {self.name!r}: bw_each_way_bytes_per_s must be > 0, got {self.bw_each_way_bytes_per_s!r}"
            )
        if self.p2p_latency_s is None:
            object.__setattr__(self, "p2p_latency_s", self.latency_s)
        if self.p2p_efficiency is None:
            object.__setattr__(self, "p2p_efficiency", self.efficiency)
        for attr in ("latency_s", "p2p_latency_s"):
            v = getattr(self, attr)
            if not is_duration(v):
                raise ConfigError(f"level {self.name!r}: {attr} must be >= 0 seconds, got {v!r}")
        for attr in ("efficiency", "p2p_efficiency"):
            v = getattr(self, attr)
            if not is_fraction(v):
                raise ConfigError(f"level {self.name!r}: {attr} must be in (0, 1], got {v!r}")


@dataclass(frozen=True)
class GroupSpan:
    """Where a group of devices sits in the hierarchy.

    Attributes:
        size: devices in the group (n).
        levels: indices of the levels the group spans, innermost first (empty for n == 1).
        members: for each spanned level l, m_l: the fewest group members in one level-(l-1)
            domain that holds any (1 for level 0).
    """

    size: int
    levels: tuple[int, ...]
    members: tuple[int, ...]


@dataclass(frozen=True)
class Cluster:
    """`n_devices` identical devices connected by a hierarchy of network levels.

    Attributes:
        device: the device, any object with a `name` (a `GPU`, an `Accelerator`) or a name string.
        n_devices: devices in the cluster.
        levels: innermost first; sizes strictly increasing, each dividing the next, the last
            equal to `n_devices` (a single device needs no level).
        collective_overhead_s: fixed time per collective call (launch and synchronisation).
        name: preset name or `custom`.
    """

    device: Any
    n_devices: int
    levels: tuple[Level, ...]
    collective_overhead_s: float = 0.0
    name: str = "custom"

    def __post_init__(self) -> None:
        object.__setattr__(self, "levels", tuple(self.levels))
        _check_n_devices(self.n_devices, "cluster")
        if not is_duration(self.collective_overhead_s):
            raise ConfigError(f"cluster: collective_overhead_s must be >= 0, got {self.collective_overhead_s!r}")
        if self.n_devices > 1 and not self.levels:
            raise ConfigError(f"cluster of {self.n_devices} devices needs at least one Level")
        prev = 1
        for lv in self.levels:
            if lv.size <= prev or lv.size % prev:
                raise ConfigError(f"cluster: level {lv.name!r} size {lv.size} must be a multiple of, and larger "
                                  f"than, the level below ({prev})")
            prev = lv.size
        if self.levels and self.levels[-1].size != self.n_devices:
            raise ConfigError(f"cluster: the outermost level {self.levels[-1].name!r} has size "
                              f"{self.levels[-1].size}; it must equal n_devices={self.n_devices}")

    @property
    def device_name(self) -> str:
        """The device's name (the device itself if it is a string)."""
        return self.device if isinstance(self.device, str) else str(getattr(self.device, "name", self.device))

    def group_ranks(self, group: Group) -> tuple[int, ...]:
        """The ranks of `group` (see the module docstring), validated."""
        if isinstance(group, numbers.Integral) and not isinstance(group, bool):
            group = int(group)
        if isinstance(group, (bool, str, bytes)) or not isinstance(group, (int, Sequence)):
            raise ConfigError(f"group must be an int (group size) or a sequence of ranks, got {group!r}")
        if isinstance(group, int):
            if not 1 <= group <= self.n_devices:
                raise ConfigError(f"group of {group} devices does not fit cluster {self.name!r} of "
                                  f"{self.n_devices} devices; use 1..{self.n_devices} or a larger cluster")
            inner = 1
            for lv in self.levels:
                if group <= lv.size:
                    break
                inner = lv.size
            if group % inner:
                raise ConfigError(f"a group of {group} contiguous devices would split a {inner}-device domain of "
                                  f"{self.name!r}; use a multiple of {inner} or pass explicit ranks")
            return tuple(range(group))
        ranks = tuple(int(r) for r in group)
        if not ranks:
            raise ConfigError("group has no ranks; pass at least one")
        if len(set(ranks)) != len(ranks):
            raise ConfigError(f"group has repeated ranks {sorted(ranks)}; each device may appear once")
        bad = [r for r in ranks if not 0 <= r < self.n_devices]
        if bad:
            raise ConfigError(f"ranks {bad} are outside cluster {self.name!r} (0..{self.n_devices - 1})")
        return ranks

    def span(self, group: Group) -> GroupSpan:
        """Which levels `group` spans and its members per domain (see `GroupSpan`)."""
        ranks = self.group_ranks(group)
        if len(ranks) == 1:
            return GroupSpan(1, (), ())
        levels, members = [0], [1]
        for i in range(1, len(self.levels)):
            per_domain = Counter(r // self.levels[i - 1].size for r in ranks)
            if len(per_domain) > 1:
                levels.append(i)
                members.append(min(per_domain.values()))
        return GroupSpan(len(ranks), tuple(levels), tuple(members))

    def collective_cost(self, kind: str | CollectiveKind, group: Group) -> CollectiveCost:
        """Latency and seconds per byte of one collective; formulas in the module docstring."""
        return collective_cost(self, kind, group)

    def collective_time(self, kind: str | CollectiveKind, n_bytes: float, group: Group) -> float:
        """Seconds for collective `kind` of `n_bytes` (nccl-tests convention) over `group`."""
        return collective_time(self, kind, n_bytes, group)

    @classmethod
    def from_parts(cls, gpu: Any, n_devices: int, gpus_per_node: int, intra_node_GBps: float,
                   inter_node_Gbps: float | None = None, **options: Any) -> Cluster:
        """A GPU cluster from its parts, e.g. an H800 system:
        `Cluster.from_parts(gpu="h100-sxm", n_devices=64, gpus_per_node=8, intra_node_GBps=200,
        inter_node_Gbps=400)`. Bandwidths are per GPU, each way: GB/s inside a node, Gb/s between
        nodes. Latencies and efficiencies default to the cited values of the GPU's fabric preset
        (a warning says when they are borrowed from other hardware); `options` replace them
        (`intra_efficiency`, `inter_efficiency`, `intra_latency_us`, `inter_latency_us`,
        `collective_overhead_us`, `name`). See `coda.arch.cluster_parts.cluster_from_parts`.
        """
        from coda.arch.cluster_parts import cluster_from_parts

        out: Cluster = cluster_from_parts(gpu, n_devices, gpus_per_node, intra_node_GBps, inter_node_Gbps, **options)
        return out


# ---------------------------------------------------------------------------------------- presets

_PRESET_KEYS = {"name", "description", "device", "device_kind", "calibration", "levels", "collective_overhead_us"}
_LEVEL_KEYS = {"name", "size", "bw_each_way_GBps", "latency_us", "efficiency", "efficiency_source", "source"}


@cache
def _preset(name: str) -> dict[str, Any]:
    path = _CATALOG / f"{name}.json"
    data = json.loads(path.read_text())
    unknown, missing = set(data) - _PRESET_KEYS, {"name", "device", "device_kind", "calibration", "levels"} - set(data)
    if unknown or missing:
        raise ConfigError(f"{path.name}: unknown keys {sorted(unknown)}, missing keys {sorted(missing)}")
    for lv in data["levels"]:
        need = {"name", "size", "bw_each_way_GBps", "source"}
        if not data["calibration"]:
            need |= {"latency_us", "efficiency"}
        if data["calibration"] and "efficiency" in lv:
            need |= {"efficiency_source"}
        if set(lv) - _LEVEL_KEYS or need - set(lv):
            raise ConfigError(f"{path.name}: level {lv.get('name')!r} has keys {sorted(lv)}; allowed "
                              f"{sorted(_LEVEL_KEYS)}, required {sorted(need)}")
    return data


def list_clusters() -> list[str]:
    """Names of the cluster presets (`dgx-a100`, `dgx-h100`, `tpuv4-pod`, `vidur-a100`, `vidur-h100`)."""
    return sorted(p.stem for p in _CATALOG.glob("*.json") if p.stem != "nccl_fit")


def _levels_for(preset: dict[str, Any], n_devices: int) -> list[tuple[dict[str, Any], int]]:
    """Nominal levels cut to `n_devices`: (level spec, size) pairs, innermost first."""
    out: list[tuple[dict[str, Any], int]] = []
    inner = 1
    for spec in preset["levels"]:
        size = spec["size"]
        if size is None or size >= n_devices:
            if not whole_domains(n_devices, inner):
                raise ConfigError(f"{preset['name']} has {inner}-device domains: n_devices must be at most "
                                  f"{inner} or a multiple of {inner}, got {n_devices}")
            out.append((spec, n_devices))
            return out
        out.append((spec, size))
        inner = size
    raise ConfigError(f"{preset['name']} holds at most {inner} devices, got n_devices={n_devices}")


def cluster(name: str, n_devices: int, device: Any = None) -> Cluster:
    """A preset cluster of `n_devices` devices, with fitted collective parameters if calibrated, or
    a cluster from its parts.

    Args:
        name: a preset of `list_clusters()` (case-insensitive): `dgx-a100`, `dgx-h100`,
            `tpuv4-pod`, or `vidur-a100` / `vidur-h100` (the testbeds of Vidur's NCCL profiles);
            or a parts spec `GPU:GPUS_PER_NODE:nvlink=<GBps>:ib=<Gbps>`, e.g.
            `h100-sxm:8:nvlink=200GBps:ib=400Gbps` (`coda.arch.cluster_parts.SPEC_SYNTAX`).
        n_devices: devices; at most one node's worth or whole nodes (a multiple of 8 on a DGX).
        device: replaces the preset's device (e.g. `gpu("a100-sxm4-40gb")` or an `Accelerator`).

    Raises:
        UnknownNameError: unknown preset (with suggestions).
        ConfigError: a bad `n_devices`.
        CodaError: the fitted parameters do not match the shipped data.
    """
    if not isinstance(name, str):
        raise ConfigError(f"cluster={name!r} ({type(name).__name__}) must be a preset name: "
                          f"{', '.join(list_clusters())}")
    from coda.arch.cluster_parts import cluster_from_spec, is_parts_spec

    if is_parts_spec(name):
        out: Cluster = cluster_from_spec(name, n_devices, device)
        return out
    key = name.strip().lower()
    if key not in list_clusters():
        raise UnknownNameError("cluster", name, list_clusters())
    _check_n_devices(n_devices, f"cluster {key!r}")
    p = _preset(key)
    fit: dict[str, Any] = {}
    if p["calibration"]:
        from coda.arch.network_data import load_fitted_params

        fit = load_fitted_params()["systems"][p["calibration"]]
    levels = []
    for spec, size in _levels_for(p, n_devices) if n_devices > 1 else []:
        if fit:
            f = fit["levels"][spec["name"]]
            kw = dict(latency_s=f["latency_s"], efficiency=f["efficiency"],
                      p2p_latency_s=f["p2p_latency_s"], p2p_efficiency=f["p2p_efficiency"])
            src = f"{spec['source']}; latency/efficiency fitted to Vidur NCCL data ({p['calibration']})"
            if "efficiency" in spec:  # a published measurement of this system replaces the testbed's fit
                kw.update(efficiency=spec["efficiency"], p2p_efficiency=spec["efficiency"])
                src = (f"{spec['source']}; latency fitted to Vidur NCCL data ({p['calibration']}); efficiency "
                       f"{spec['efficiency']} (collectives and send/recv): {spec['efficiency_source']}")
        else:
            kw = dict(latency_s=spec["latency_us"] * 1e-6, efficiency=spec["efficiency"])
            src = spec["source"]
        levels.append(Level(spec["name"], size, spec["bw_each_way_GBps"] * 1e9, source=src, **kw))
    if device is None:
        device = p["device"]
        if p["device_kind"] == "gpu":
            from coda.arch.gpus import gpu

            device = gpu(device)
    overhead = fit["collective_overhead_s"] if fit else p.get("collective_overhead_us", 0.0) * 1e-6
    return Cluster(device, n_devices, tuple(levels), overhead, key)


def preset_description(name: str) -> dict[str, Any]:
    """The preset's JSON description (a copy): device, calibration key, nominal levels, sources;
    for a parts spec (`cluster`), the same keys describing its parts."""
    from coda.arch.cluster_parts import is_parts_spec, spec_description

    if is_parts_spec(name):
        return spec_description(name)
    key = str(name).strip().lower()
    if key not in list_clusters():
        raise UnknownNameError("cluster", str(name), list_clusters())
    return json.loads(json.dumps(_preset(key)))
